//! Benchmarks of the SIP wire layer, side by side in one run so ratios survive a noisy machine:
//! our parse vs `rsip` on the same ~900-byte INVITE with SDP, vs `httparse` on an HTTP/1.1
//! request of the same header-section size and header count (per byte), parse + request
//! rewrite, response Via removal, and response generation.
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use intertrunk::wire::sip::{
    build_response, rewrite_request, rewrite_response, Message, OurVia, RequestRewrite,
    ResponseRewrite,
};

const INVITE: &[u8] = include_bytes!("../tests/data/invite_900.sip");
const RINGING: &[u8] = include_bytes!("../tests/data/ringing_183_audiocodes.sip");

/// Length of the header section (start line to the empty line included).
fn head_len(msg: &[u8]) -> usize {
    msg.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(msg.len(), |i| i + 4)
}

/// An HTTP/1.1 request whose header section has the INVITE's length and header count, padded
/// in one value; the body (ignored by httparse) has the INVITE's body length.
fn http_like(head: usize, headers: usize, body: usize) -> Vec<u8> {
    let mut fields: Vec<(String, String)> = vec![
        ("Host".into(), "api.carrier.example.net:8443".into()),
        (
            "User-Agent".into(),
            "intertrunk-bench/1.0 (linux; x86_64)".into(),
        ),
        (
            "Accept".into(),
            "application/json, text/plain;q=0.9, */*;q=0.1".into(),
        ),
        ("Accept-Encoding".into(), "gzip, deflate, br".into()),
        ("Accept-Language".into(), "en-US,en;q=0.8".into()),
        (
            "Authorization".into(),
            "Bearer 6b3f1e2d9c8a7b6f5e4d3c2b1a0f9e8d".into(),
        ),
        ("Cache-Control".into(), "no-cache".into()),
        ("Connection".into(), "keep-alive".into()),
        ("Content-Type".into(), "application/sdp".into()),
        (
            "Cookie".into(),
            "session=5f0a7d0c2b9e4c1a6e8f3d2b1a0c9e8d; region=us-west".into(),
        ),
        ("Date".into(), "Sun, 29 Nov 2026 10:15:42 GMT".into()),
        ("Origin".into(), "https://portal.carrier.example.net".into()),
        (
            "Referer".into(),
            "https://portal.carrier.example.net/calls/new".into(),
        ),
        (
            "X-Request-Id".into(),
            "f3a91c2e-5b7d-4e0a-9c1b-2d3e4f5a6b7c".into(),
        ),
        ("Content-Length".into(), body.to_string()),
    ];
    fields.truncate(headers);
    let line = "POST /v1/trunks/PstnGateway:gw1/calls/+12065550100 HTTP/1.1\r\n";
    let used: usize = line.len()
        + fields
            .iter()
            .map(|(n, v)| n.len() + 2 + v.len() + 2)
            .sum::<usize>()
        + 2;
    if let Some(pad) = head.checked_sub(used) {
        fields[1].1.push_str(&"x".repeat(pad));
    }
    let mut out = line.to_string();
    for (n, v) in &fields {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&"v".repeat(body));
    out.into_bytes()
}

fn parse(c: &mut Criterion) {
    let invite_head = head_len(INVITE);
    let header_count = Message::parse(INVITE).unwrap().header_count();
    let http = http_like(invite_head, header_count, INVITE.len() - invite_head);
    assert_eq!(head_len(&http), invite_head, "same header-section size");
    let mut hh = [httparse::EMPTY_HEADER; 32];
    let mut probe = httparse::Request::new(&mut hh);
    assert!(probe.parse(&http).unwrap().is_complete());
    assert_eq!(probe.headers.len(), header_count, "same header count");

    let mut g = c.benchmark_group("parse");
    // per byte of header section: the part all three parsers scan
    g.throughput(Throughput::Bytes(invite_head as u64));
    g.bench_function("intertrunk_sip", |b| {
        b.iter(|| Message::parse(black_box(INVITE)).unwrap().header_count())
    });
    g.bench_function("rsip", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(INVITE)).unwrap())
    });
    g.bench_function("httparse_http11", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            req.parse(black_box(&http)).unwrap().unwrap()
        })
    });
    g.finish();
}

fn rewrite(c: &mut Criterion) {
    let via = OurVia {
        transport: "UDP",
        host: "127.0.0.1",
        port: 5061,
        branch: b"z9hG4bK-itr-0c1d2e3f4a5b",
    };
    let rw = RequestRewrite {
        request_uri: Some(b"sip:+12065550100@127.0.0.30:5060;user=phone"),
        via: Some(via),
        record_route: Some(b"sip:127.0.0.1:5061;lr"),
        ..Default::default()
    };
    let mut out = [0u8; 2048];
    let mut g = c.benchmark_group("rewrite");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_plus_request_rewrite", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(INVITE)).unwrap();
            rewrite_request(&m, black_box(&rw), &mut out).unwrap()
        })
    });
    let pop = ResponseRewrite {
        pop_via: true,
        ..Default::default()
    };
    g.bench_function("parse_plus_response_via_removal", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(RINGING)).unwrap();
            rewrite_response(&m, black_box(&pop), &mut out).unwrap()
        })
    });
    let invite = Message::parse(INVITE).unwrap();
    let extra: [(&str, &[u8]); 1] = [("Reason", b"Q.850;cause=17;text=\"User busy\"")];
    g.bench_function("build_response_486", |b| {
        b.iter(|| {
            build_response(
                black_box(&invite),
                486,
                "Busy Here",
                Some(b"itr5a1b"),
                &extra,
                &mut out,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, parse, rewrite);
criterion_main!(benches);
