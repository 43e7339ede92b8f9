//! N iterations of parse + request rewrite on the ~900-byte INVITE, for instruction counts
//! under callgrind (perf/callgrind-wire.sh runs it with two N and takes the difference, so
//! start-up costs cancel out). A second argument `parse` leaves the rewrite out, so the
//! script can report parse alone and the rewrite's share.
use std::hint::black_box;

use intertrunk::wire::sip::{rewrite_request, Message, OurVia, RequestRewrite};

const INVITE: &[u8] = include_bytes!("../tests/data/invite_900.sip");

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let parse_only = std::env::args().nth(2).as_deref() == Some("parse");
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
    let mut total = 0usize;
    for _ in 0..n {
        let m = match Message::parse(black_box(INVITE)) {
            Ok(m) => m,
            Err(e) => panic!("sample does not parse: {e}"),
        };
        total += if parse_only {
            black_box(&m).header_count()
        } else {
            rewrite_request(&m, black_box(&rw), &mut out).unwrap_or(0)
        };
    }
    println!("{n} iterations, {total} octets written");
}
