//! Tests on whole messages: realistic equipment traffic, RFC 4475 torture cases, properties.

use super::*;

macro_rules! data {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/",
            $name,
            ".sip"
        ))
    };
}

pub(crate) const INVITE_900: &[u8] = data!("invite_900");
const INVITE_CUBE: &[u8] = data!("invite_cube");
const INVITE_LYNC: &[u8] = data!("invite_lync");
const RINGING_183: &[u8] = data!("ringing_183_audiocodes");
const OK_200: &[u8] = data!("ok_200_asterisk");
const ACK: &[u8] = data!("ack_freeswitch");
const BYE: &[u8] = data!("bye_lync");
const CANCEL: &[u8] = data!("cancel_cube");
const OPTIONS: &[u8] = data!("options_audiocodes");
const REINVITE: &[u8] = data!("reinvite_freeswitch_compact_ipv6");

const ALL: &[&[u8]] = &[
    INVITE_900,
    INVITE_CUBE,
    INVITE_LYNC,
    RINGING_183,
    OK_200,
    ACK,
    BYE,
    CANCEL,
    OPTIONS,
    REINVITE,
];

fn s(b: &[u8]) -> &str {
    core::str::from_utf8(b).unwrap()
}

#[test]
fn every_sample_parses_and_its_accessors_agree() {
    for &raw in ALL {
        let m = Message::parse(raw).unwrap_or_else(|e| panic!("{e}: {}", s(raw)));
        assert_eq!(m.as_bytes(), raw);
        m.top_via().unwrap();
        assert!(m.vias().all(|v| v.is_ok()));
        m.call_id().unwrap();
        let cseq = m.cseq().unwrap();
        if let Some(method) = m.method() {
            assert_eq!(cseq.method, method);
        }
        m.from().unwrap();
        m.to().unwrap();
        assert!(m.routes().all(|r| r.is_ok()));
        assert!(m.record_routes().all(|r| r.is_ok()));
        if let Some(c) = m.contact() {
            Uri::parse(c.unwrap().uri).unwrap();
        }
        let cl: usize = s(m.header(HeaderName::ContentLength).unwrap())
            .parse()
            .unwrap();
        assert_eq!(m.body().len(), cl);
        assert_eq!(m.body().is_empty(), m.content_type().is_none());
    }
}

#[test]
fn cube_invite() {
    let m = Message::parse(INVITE_CUBE).unwrap();
    assert!(m.is_request());
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(
        m.request_uri(),
        Some(&b"sip:+12065550100@10.0.0.20:5060;user=phone"[..])
    );
    assert_eq!(m.status(), None);
    let ruri = Uri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(ruri.called_number().unwrap().as_str(), "+12065550100");
    let via = m.top_via().unwrap();
    assert_eq!(
        (via.transport, via.host, via.port),
        (&b"UDP"[..], &b"10.10.20.5"[..], Some(5060))
    );
    assert_eq!(via.branch, Some(&b"z9hG4bK1A2B3C4D5E"[..]));
    assert_eq!(via.rport, Some(None));
    assert_eq!(
        m.call_id().unwrap(),
        b"8E3B2C10-AD3F11EF-8F4AC1D2-7B3E9A51@10.10.20.5"
    );
    assert_eq!(
        m.cseq().unwrap(),
        CSeq {
            number: 101,
            method: Method::Invite
        }
    );
    let from = m.from().unwrap();
    assert_eq!(from.tag, Some(&b"6F1A2B3C-1D2E"[..]));
    assert_eq!(from.uri, b"sip:+14255550123@10.10.20.5;user=phone");
    assert_eq!(m.to().unwrap().tag, None);
    assert_eq!(m.max_forwards(), Ok(Some(69)));
    assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));
    assert!(m.body().starts_with(b"v=0\r\n"));
    assert!(m.body().ends_with(b"a=ptime:20\r\n"));
    // Date has a comma but is one value; Supported is a list
    assert_eq!(
        m.header(HeaderName::Date),
        Some(&b"Sun, 29 Nov 2026 10:15:42 GMT"[..])
    );
    let supported: Vec<&[u8]> = m.header_values(HeaderName::Supported).collect();
    assert_eq!(
        supported,
        vec![
            &b"100rel"[..],
            b"timer",
            b"resource-priority",
            b"replaces",
            b"sdp-anat"
        ]
    );
    let other: Vec<_> = m
        .headers()
        .filter(|h| h.name == HeaderName::Other)
        .map(|h| h.raw_name)
        .collect();
    assert_eq!(other, vec![&b"Remote-Party-ID"[..], b"Cisco-Guid"]);
    assert_eq!(m.header_count(), 21);
}

#[test]
fn lync_invite_uppercase_names_and_pai_list() {
    let m = Message::parse(INVITE_LYNC).unwrap();
    let from = m.from().unwrap();
    assert_eq!(from.display, Some(&b"Doe, Jane"[..]));
    assert_eq!(from.tag, Some(&b"7a3b5c9d1e"[..]));
    assert_eq!(from.param(b"epid"), Some(Some(&b"A1B2C3D4E5"[..])));
    let user = Uri::parse(from.uri).unwrap().called_number().unwrap();
    assert_eq!(user.as_str(), "+14255550123");
    let via = m.top_via().unwrap();
    assert_eq!(via.transport, b"TCP");
    assert_eq!(via.port, Some(52617));
    let pai: Vec<NameAddr> = m
        .header_values(HeaderName::PAssertedIdentity)
        .map(|v| NameAddr::parse(v).unwrap())
        .collect();
    assert_eq!(pai.len(), 2);
    assert_eq!(pai[1].uri, b"tel:+14255550123;ext=4123");
    let contact = m.contact().unwrap().unwrap();
    let c = Uri::parse(contact.uri).unwrap();
    assert_eq!(c.param(b"maddr"), Some(Some(&b"10.1.1.50"[..])));
    assert_eq!(c.param(b"transport"), Some(Some(&b"Tcp"[..])));
    assert_eq!(
        m.content_type(),
        Some(&b"application/sdp; charset=utf-8"[..])
    );
    assert_eq!(m.header(HeaderName::Privacy), Some(&b"id"[..]));
}

#[test]
fn early_media_and_final_responses() {
    let m = Message::parse(RINGING_183).unwrap();
    assert!(!m.is_request());
    assert_eq!(m.status(), Some(183));
    assert_eq!(m.reason(), Some(&b"Session Progress"[..]));
    assert_eq!(m.method(), None);
    assert_eq!(m.request_uri(), None);
    let vias: Vec<Via> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].rport, Some(Some(5061)));
    assert_eq!(vias[1].received, Some(&b"10.10.20.5"[..]));
    assert_eq!(m.to().unwrap().tag, Some(&b"1c1912546717"[..]));
    let rr: Vec<_> = m.record_routes().map(Result::unwrap).collect();
    assert_eq!(rr[0].uri, b"sip:127.0.0.1:5061;lr");
    assert!(m.body().ends_with(b"a=rtcp:6011\r\n"));

    let m = Message::parse(OK_200).unwrap();
    assert_eq!(m.status(), Some(200));
    assert_eq!(m.reason(), Some(&b"OK"[..]));
    assert_eq!(m.cseq().unwrap().method, Method::Invite);
}

#[test]
fn in_dialog_requests() {
    let ack = Message::parse(ACK).unwrap();
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(
        ack.cseq().unwrap(),
        CSeq {
            number: 86204113,
            method: Method::Ack
        }
    );
    assert!(ack.body().is_empty());
    let bye = Message::parse(BYE).unwrap();
    assert_eq!(bye.method(), Some(Method::Bye));
    let routes: Vec<_> = bye.routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(
        routes,
        vec![&b"sip:127.0.0.1:5061;lr"[..], b"sip:10.9.9.9;lr"]
    );
    assert_eq!(bye.from().unwrap().display, Some(&b"Doe, Jane"[..]));
    assert!(bye
        .header(HeaderName::MsDiagnostics)
        .unwrap()
        .starts_with(b"51004;"));
    let cancel = Message::parse(CANCEL).unwrap();
    assert_eq!(cancel.method(), Some(Method::Cancel));
    assert_eq!(
        cancel.header(HeaderName::Reason),
        Some(&b"Q.850;cause=16"[..])
    );
    let options = Message::parse(OPTIONS).unwrap();
    assert_eq!(options.method(), Some(Method::Options));
    assert_eq!(
        Uri::parse(options.request_uri().unwrap()).unwrap().user,
        None
    );
    assert_eq!(options.top_via().unwrap().param(b"alias"), Some(None));
}

#[test]
fn compact_forms_and_ipv6_reinvite() {
    let m = Message::parse(REINVITE).unwrap();
    let via = m.top_via().unwrap();
    assert_eq!(via.host, b"2001:db8:50::20");
    assert_eq!(via.port, Some(5080));
    assert_eq!(
        m.call_id().unwrap(),
        b"6a2b6c3e-8f1d-123c-4b5e-02e0a1b2c3d4"
    );
    assert_eq!(m.from().unwrap().tag, Some(&b"Q7tUmr8D6a2eB"[..]));
    assert_eq!(m.to().unwrap().tag, Some(&b"as5f3e1b7c"[..]));
    let ruri = Uri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(
        (ruri.host, ruri.port),
        (&b"2001:db8:50::10"[..], Some(5060))
    );
    let contact = Uri::parse(m.contact().unwrap().unwrap().uri).unwrap();
    assert_eq!(contact.host, b"2001:db8:50::20");
    assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));
    assert_eq!(m.header_values(HeaderName::Supported).count(), 3);
    assert_eq!(m.header_values(HeaderName::AllowEvents).count(), 4);
    assert!(m.body().ends_with(b"a=sendonly\r\n"));
    let raw: Vec<&[u8]> = m.headers().take(1).map(|h| h.raw_name).collect();
    assert_eq!(raw, vec![&b"v"[..]]);
}

fn addr(s: &str) -> std::net::SocketAddr {
    s.parse().unwrap()
}

const OUR_VIA: OurVia<'static> = OurVia {
    transport: "UDP",
    host: "127.0.0.1",
    port: 5061,
    branch: b"z9hG4bK-itr-3a9f1c2b",
};

#[test]
fn rewrite_options_exactly() {
    let m = Message::parse(OPTIONS).unwrap();
    let rw = RequestRewrite {
        request_uri: Some(b"sip:127.0.0.30:5060"),
        via: Some(OUR_VIA),
        received_from: Some(addr("10.0.0.20:5060")),
        record_route: Some(b"sip:127.0.0.1:5061;lr"),
        ..Default::default()
    };
    let mut out = [0u8; 2048];
    let n = rewrite_request(&m, &rw, &mut out).unwrap();
    let expected = "OPTIONS sip:127.0.0.30:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-itr-3a9f1c2b;rport\r\n\
        Record-Route: <sip:127.0.0.1:5061;lr>\r\n\
        Via: SIP/2.0/UDP 10.0.0.20:5060;branch=z9hG4bKac1580302812;alias\r\n\
        Max-Forwards: 69\r\n\
        From: <sip:10.0.0.20>;tag=1c1580297433\r\n\
        To: <sip:127.0.0.1>\r\n\
        Call-ID: 15802974261112020105346@10.0.0.20\r\n\
        CSeq: 1 OPTIONS\r\n\
        Contact: <sip:10.0.0.20:5060>\r\n\
        Allow: REGISTER,OPTIONS,INVITE,ACK,CANCEL,BYE,NOTIFY,PRACK,REFER,INFO,SUBSCRIBE,UPDATE\r\n\
        User-Agent: Mediant 1000/v.7.20A.258.459\r\n\
        Content-Length: 0\r\n\r\n";
    assert_eq!(s(&out[..n]), expected);
}

#[test]
fn rewrite_invite_everything() {
    let m = Message::parse(INVITE_CUBE).unwrap();
    let sdp = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";
    let strip = [HeaderName::Other, HeaderName::Timestamp];
    let rw = RequestRewrite {
        request_uri: Some(b"sip:12065550100@127.0.0.30:5060;user=phone"),
        via: Some(OUR_VIA),
        // behind NAT: the source differs from sent-by
        received_from: Some(addr("203.0.113.7:41000")),
        record_route: Some(b"sip:127.0.0.1:5061;lr"),
        from_user: Some(b"4255550123"),
        strip: &strip,
        extra_headers: &[("X-Intertrunk-Route", b"ToPBX2")],
        body: Some(sdp),
        ..Default::default()
    };
    let mut out = [0u8; 4096];
    let n = rewrite_request(&m, &rw, &mut out).unwrap();
    let t = s(&out[..n]);
    assert!(t.starts_with(
        "INVITE sip:12065550100@127.0.0.30:5060;user=phone SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-itr-3a9f1c2b;rport\r\n\
         Record-Route: <sip:127.0.0.1:5061;lr>\r\n\
         Via: SIP/2.0/UDP 10.10.20.5:5060;branch=z9hG4bK1A2B3C4D5E;rport=41000;received=203.0.113.7\r\n\
         From: <sip:4255550123@10.10.20.5;user=phone>;tag=6F1A2B3C-1D2E\r\n"
    ), "{t}");
    assert!(t.contains("\r\nMax-Forwards: 68\r\n"));
    assert!(
        !t.contains("Remote-Party-ID") && !t.contains("Cisco-Guid") && !t.contains("Timestamp")
    );
    assert!(t.ends_with(&format!("X-Intertrunk-Route: ToPBX2\r\n\r\n{}", s(sdp))));
    let r = Message::parse(&out[..n]).unwrap();
    assert_eq!(r.body(), sdp);
    assert_eq!(
        r.header(HeaderName::ContentLength),
        Some(sdp.len().to_string().as_bytes())
    );
    assert_eq!(r.vias().count(), 2);
    assert_eq!(r.vias().nth(1).unwrap().unwrap().rport, Some(Some(41000)));
}

#[test]
fn rewrite_lync_pai_and_ipv6_via() {
    let m = Message::parse(INVITE_LYNC).unwrap();
    let rw = RequestRewrite {
        via: Some(OurVia {
            transport: "UDP",
            host: "2001:db8::1",
            port: 5061,
            branch: b"z9hG4bKx",
        }),
        received_from: Some(addr("10.1.1.50:52617")),
        pai_user: Some(b"+14255550199"),
        from_user: Some(b"+14255550199"),
        max_forwards: MaxForwards::Keep,
        ..Default::default()
    };
    let mut out = [0u8; 4096];
    let n = rewrite_request(&m, &rw, &mut out).unwrap();
    let t = s(&out[..n]);
    assert!(t.contains("\r\nVia: SIP/2.0/UDP [2001:db8::1]:5061;branch=z9hG4bKx;rport\r\n"));
    // sent-by equals the source and no rport was asked: the sender's Via is untouched
    assert!(t.contains("\r\nVIA: SIP/2.0/TCP 10.1.1.50:52617;branch=z9hG4bK1f2e3d4c\r\n"));
    assert!(t.contains("\r\nMAX-FORWARDS: 70\r\n"));
    assert!(t.contains(
        "\r\nP-ASSERTED-IDENTITY: \"Doe, Jane\" <sip:+14255550199@contoso.com>, <tel:+14255550199;ext=4123>\r\n"
    ));
    assert!(t.contains(
        "\r\nFROM: \"Doe, Jane\" <sip:+14255550199@mediation1.contoso.com;user=phone>;epid=A1B2C3D4E5;tag=7a3b5c9d1e\r\n"
    ));
    let r = Message::parse(&out[..n]).unwrap();
    assert_eq!(r.top_via().unwrap().host, b"2001:db8::1");
    assert_eq!(r.body(), m.body());
}

#[test]
fn rewrite_bye_pops_route_and_inserts_max_forwards() {
    let raw = String::from_utf8(BYE.to_vec())
        .unwrap()
        .replace("MAX-FORWARDS: 70\r\n", "");
    let m = Message::parse(raw.as_bytes()).unwrap();
    let rw = RequestRewrite {
        pop_route: true,
        via: Some(OUR_VIA),
        ..Default::default()
    };
    let mut out = [0u8; 2048];
    let n = rewrite_request(&m, &rw, &mut out).unwrap();
    let r = Message::parse(&out[..n]).unwrap();
    assert_eq!(r.max_forwards(), Ok(Some(70)));
    assert!(s(&out[..n]).contains("\r\nROUTE: <sip:10.9.9.9;lr>\r\n"));
    let m = Message::parse(ACK).unwrap();
    let n = rewrite_request(&m, &rw, &mut out).unwrap();
    let r = Message::parse(&out[..n]).unwrap();
    assert_eq!(r.routes().count(), 0);
    assert_eq!(r.header_count(), m.header_count() + 1 - 1);
}

#[test]
fn rewrite_refuses_exhausted_max_forwards_and_small_buffers() {
    let raw = String::from_utf8(INVITE_900.to_vec())
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let m = Message::parse(raw.as_bytes()).unwrap();
    let mut out = [0u8; 2048];
    assert_eq!(
        rewrite_request(&m, &RequestRewrite::default(), &mut out),
        Err(Error::TooManyHops)
    );
    let keep = RequestRewrite {
        max_forwards: MaxForwards::Keep,
        ..Default::default()
    };
    assert!(rewrite_request(&m, &keep, &mut out).is_ok());
    let m = Message::parse(INVITE_900).unwrap();
    let n = rewrite_request(&m, &keep, &mut out).unwrap();
    assert_eq!(&out[..n], INVITE_900, "an empty rewrite copies the message");
    for len in [0, 10, n - 1] {
        assert_eq!(
            rewrite_request(&m, &keep, &mut out[..len]),
            Err(Error::BufferTooSmall)
        );
    }
    let bad = RequestRewrite {
        request_uri: Some(b"sip:a b"),
        ..Default::default()
    };
    assert_eq!(rewrite_request(&m, &bad, &mut out), Err(Error::BadValue));
    let bad = RequestRewrite {
        from_user: Some(b"a@b"),
        ..Default::default()
    };
    assert_eq!(rewrite_request(&m, &bad, &mut out), Err(Error::BadValue));
    let bad = RequestRewrite {
        extra_headers: &[("X-A", b"1\r\nBye: x")],
        ..Default::default()
    };
    assert_eq!(rewrite_request(&m, &bad, &mut out), Err(Error::BadValue));
    let resp = Message::parse(OK_200).unwrap();
    assert_eq!(
        rewrite_request(&resp, &keep, &mut out),
        Err(Error::BadStartLine)
    );
    assert_eq!(
        rewrite_response(&m, &ResponseRewrite::default(), &mut out),
        Err(Error::BadStartLine)
    );
}

#[test]
fn response_pops_our_via_only() {
    let m = Message::parse(RINGING_183).unwrap();
    let mut out = [0u8; 2048];
    let n = rewrite_response(
        &m,
        &ResponseRewrite {
            pop_via: true,
            ..Default::default()
        },
        &mut out,
    )
    .unwrap();
    let first_via = "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-itr-3a9f1c2b;rport=5061\r\n";
    let expected = s(RINGING_183).replacen(first_via, "", 1);
    assert_eq!(s(&out[..n]), expected);
    // both Vias in one field: the second stays, spelled as it was
    let joined = s(RINGING_183).replacen(
        "rport=5061\r\nVia: SIP/2.0/UDP 10.10.20.5",
        "rport=5061 ,  SIP/2.0/UDP 10.10.20.5",
        1,
    );
    let m = Message::parse(joined.as_bytes()).unwrap();
    let n = rewrite_response(
        &m,
        &ResponseRewrite {
            pop_via: true,
            ..Default::default()
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(s(&out[..n]), expected);
    // a new body, and stripping
    let rw = ResponseRewrite {
        pop_via: true,
        body: Some(b"v=0\r\n"),
        strip: &[HeaderName::Server],
    };
    let n = rewrite_response(&m, &rw, &mut out).unwrap();
    let r = Message::parse(&out[..n]).unwrap();
    assert_eq!(r.body(), b"v=0\r\n");
    assert_eq!(r.header(HeaderName::Server), None);
    assert_eq!(r.vias().count(), 1);
    let none = Message::parse(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(
        rewrite_response(
            &none,
            &ResponseRewrite {
                pop_via: true,
                ..Default::default()
            },
            &mut out
        ),
        Err(Error::MissingHeader)
    );
}

#[test]
fn build_busy_response_with_diagnostics() {
    let m = Message::parse(INVITE_CUBE).unwrap();
    let mut out = [0u8; 2048];
    let extra: [(&str, &[u8]); 2] = [
        ("Reason", b"Q.850;cause=17;text=\"User busy\""),
        (
            "ms-diagnostics",
            b"12004;reason=\"Request could not be completed\";source=\"127.0.0.1\"",
        ),
    ];
    let n = build_response(&m, 486, "Busy Here", Some(b"itr5a1b"), &extra, &mut out).unwrap();
    let expected = "SIP/2.0 486 Busy Here\r\n\
        Via: SIP/2.0/UDP 10.10.20.5:5060;branch=z9hG4bK1A2B3C4D5E;rport\r\n\
        From: <sip:+14255550123@10.10.20.5;user=phone>;tag=6F1A2B3C-1D2E\r\n\
        To: <sip:+12065550100@10.0.0.20;user=phone>;tag=itr5a1b\r\n\
        Call-ID: 8E3B2C10-AD3F11EF-8F4AC1D2-7B3E9A51@10.10.20.5\r\n\
        CSeq: 101 INVITE\r\n\
        Reason: Q.850;cause=17;text=\"User busy\"\r\n\
        ms-diagnostics: 12004;reason=\"Request could not be completed\";source=\"127.0.0.1\"\r\n\
        Content-Length: 0\r\n\r\n";
    assert_eq!(s(&out[..n]), expected);
    let r = Message::parse(&out[..n]).unwrap();
    assert_eq!(r.status(), Some(486));
    assert_eq!(r.to().unwrap().tag, Some(&b"itr5a1b"[..]));
}

#[test]
fn build_response_keeps_all_vias_and_an_existing_tag() {
    let m = Message::parse(REINVITE).unwrap();
    let mut out = [0u8; 2048];
    let n = build_response(&m, 100, "Trying", None, &[], &mut out).unwrap();
    let r = Message::parse(&out[..n]).unwrap();
    assert_eq!(r.reason(), Some(&b"Trying"[..]));
    assert_eq!(r.top_via().unwrap().host, b"2001:db8:50::20");
    let n = build_response(
        &m,
        491,
        "Request Pending",
        Some(b"new"),
        &[("Retry-After", b"2")],
        &mut out,
    )
    .unwrap();
    let r = Message::parse(&out[..n]).unwrap();
    assert_eq!(
        r.to().unwrap().tag,
        Some(&b"as5f3e1b7c"[..]),
        "an existing To tag is kept"
    );
    assert_eq!(r.header(HeaderName::RetryAfter), Some(&b"2"[..]));
    let resp = Message::parse(RINGING_183).unwrap();
    let n = build_response(&resp, 200, "OK", None, &[], &mut out);
    assert_eq!(n, Err(Error::BadStartLine));
    assert_eq!(
        build_response(&m, 99, "x", None, &[], &mut out),
        Err(Error::BadStatus)
    );
    assert_eq!(
        build_response(&m, 700, "x", None, &[], &mut out),
        Err(Error::BadStatus)
    );
    assert_eq!(
        build_response(&m, 400, "a\r\nb", None, &[], &mut out),
        Err(Error::BadValue)
    );
    assert_eq!(
        build_response(&m, 400, "x", Some(b"a b"), &[], &mut out),
        Err(Error::BadValue)
    );
    assert_eq!(
        build_response(&m, 400, "x", None, &[], &mut out[..40]),
        Err(Error::BufferTooSmall)
    );
    let no_cseq = Message::parse(b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:b>;tag=1\r\nTo: <sip:a>\r\nCall-ID: x\r\n\r\n").unwrap();
    assert_eq!(
        build_response(&no_cseq, 400, "Bad Request", None, &[], &mut out),
        Err(Error::MissingHeader)
    );
}

#[test]
fn cancel_and_ack_for_a_sent_invite() {
    let m = Message::parse(INVITE_CUBE).unwrap();
    let rw = RequestRewrite {
        request_uri: Some(b"sip:12065550100@127.0.0.30:5060;user=phone"),
        via: Some(OUR_VIA),
        record_route: Some(b"sip:127.0.0.1:5061;lr"),
        ..Default::default()
    };
    let mut sent = [0u8; 4096];
    let n = rewrite_request(&m, &rw, &mut sent).unwrap();
    let sent = Message::parse(&sent[..n]).unwrap();
    let mut out = [0u8; 2048];
    let n = build_cancel(&sent, &mut out).unwrap();
    let expected = "CANCEL sip:12065550100@127.0.0.30:5060;user=phone SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-itr-3a9f1c2b;rport\r\n\
        From: <sip:+14255550123@10.10.20.5;user=phone>;tag=6F1A2B3C-1D2E\r\n\
        To: <sip:+12065550100@10.0.0.20;user=phone>\r\n\
        Call-ID: 8E3B2C10-AD3F11EF-8F4AC1D2-7B3E9A51@10.10.20.5\r\n\
        CSeq: 101 CANCEL\r\n\
        Max-Forwards: 70\r\n\
        Content-Length: 0\r\n\r\n";
    assert_eq!(s(&out[..n]), expected);

    let busy = "SIP/2.0 486 Busy Here\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-itr-3a9f1c2b;rport=5061\r\n\
        Via: SIP/2.0/UDP 10.10.20.5:5060;branch=z9hG4bK1A2B3C4D5E;rport=5060\r\n\
        From: <sip:+14255550123@10.10.20.5;user=phone>;tag=6F1A2B3C-1D2E\r\n\
        To: <sip:+12065550100@10.0.0.20;user=phone>;tag=gw486\r\n\
        Call-ID: 8E3B2C10-AD3F11EF-8F4AC1D2-7B3E9A51@10.10.20.5\r\n\
        CSeq: 101 INVITE\r\n\
        Content-Length: 0\r\n\r\n";
    let busy = Message::parse(busy.as_bytes()).unwrap();
    let n = build_ack(&sent, &busy, &mut out).unwrap();
    let ack = Message::parse(&out[..n]).unwrap();
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(ack.request_uri(), sent.request_uri());
    assert_eq!(ack.to().unwrap().tag, Some(&b"gw486"[..]));
    assert_eq!(
        ack.cseq().unwrap(),
        CSeq {
            number: 101,
            method: Method::Ack
        }
    );
    assert_eq!(ack.vias().count(), 1);
    assert_eq!(
        ack.top_via().unwrap().branch,
        Some(&b"z9hG4bK-itr-3a9f1c2b"[..])
    );
    // Route fields of the INVITE are repeated in CANCEL and ACK
    let bye = Message::parse(REINVITE).unwrap();
    let n = build_cancel(&bye, &mut out).unwrap();
    let c = Message::parse(&out[..n]).unwrap();
    assert_eq!(c.routes().count(), 1);
    assert_eq!(build_ack(&sent, &sent, &mut out), Err(Error::BadStartLine));
}

/// Lines joined with CRLF; `@CL@` becomes the body's length.
fn msg(head: &str, body: &str) -> Vec<u8> {
    let head = head
        .trim_start_matches('\n')
        .replace('\n', "\r\n")
        .replace("@CL@", &body.len().to_string());
    let mut v = head.into_bytes();
    v.extend_from_slice(b"\r\n");
    v.extend_from_slice(body.as_bytes());
    v
}

const TORTURE_SDP: &str =
    "v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\ns=-\r\nc=IN IP4 192.0.2.4\r\n\
    t=0 0\r\nm=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n";

/// RFC 4475 3.1.1.1: a short tortuous INVITE (whitespace, folding, case, escapes).
fn wsinv() -> Vec<u8> {
    msg(
        r#"
INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : @CL@
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;rport;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33
"#,
        TORTURE_SDP,
    )
}

#[test]
fn torture_wsinv_parses() {
    let raw = wsinv();
    let m = Message::parse(&raw).unwrap();
    assert_eq!(m.to().unwrap().uri, b"sip:vivekg@chair-dnrc.example.com");
    assert_eq!(m.to().unwrap().tag, Some(&b"1918181833n"[..]));
    let from = m.from().unwrap();
    assert_eq!(from.display, Some(&br#"J Rosenberg \\\""#[..]));
    assert_eq!(from.tag, Some(&b"98asjd8"[..]));
    assert_eq!(m.max_forwards(), Ok(Some(68)));
    assert_eq!(
        m.cseq().unwrap(),
        CSeq {
            number: 9,
            method: Method::Invite
        }
    );
    let vias: Vec<Via> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(
        (vias[0].transport, vias[0].host),
        (&b"UDP"[..], &b"192.0.2.2"[..])
    );
    assert_eq!(vias[1].transport, b"TCP");
    assert_eq!(vias[1].host, b"spindle.example.com");
    assert_eq!(vias[1].branch, Some(&b"z9hG4bK9ikj8"[..]));
    assert_eq!(vias[2].host, b"192.168.255.111");
    assert_eq!(vias[2].branch, Some(&b"z9hG4bK30239"[..]));
    assert_eq!(m.header(HeaderName::Subject), Some(&b""[..]));
    let nf = m
        .headers()
        .find(|h| h.raw_name == b"NewFangledHeader")
        .unwrap();
    assert_eq!(nf.value, b"newfangled value\r\n continued newfangled value");
    let contact = m.contact().unwrap().unwrap();
    assert_eq!(contact.display, Some(&br#"Quoted string \"\""#[..]));
    assert_eq!(contact.param(b"newparam"), Some(Some(&b"newvalue"[..])));
    assert_eq!(contact.param(b"q"), Some(Some(&b"0.33"[..])));
    assert_eq!(contact.param(b"secondparam"), Some(None));
    let route = m.routes().next().unwrap().unwrap();
    assert_eq!(Uri::parse(route.uri).unwrap().param(b"lr"), Some(None));
    assert_eq!(m.body(), TORTURE_SDP.as_bytes());
}

#[test]
fn torture_wsinv_rewrites() {
    let raw = wsinv();
    let m = Message::parse(&raw).unwrap();
    let rw = RequestRewrite {
        request_uri: Some(b"sip:vivekg@192.0.2.99"),
        via: Some(OUR_VIA),
        received_from: Some(addr("192.0.2.2:5070")),
        record_route: Some(b"sip:127.0.0.1:5061;lr"),
        pop_route: true,
        ..Default::default()
    };
    let mut out = [0u8; 4096];
    let n = rewrite_request(&m, &rw, &mut out).unwrap();
    let t = s(&out[..n]);
    assert!(t.contains("\r\nVia  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;rport=5070;branch=390skdjuw;received=192.0.2.2\r\n"), "{t}");
    assert!(t.contains("\r\nMaX-fOrWaRdS: 67\r\n"));
    assert!(!t.contains("Route:\r\n"), "the single Route value was ours");
    let r = Message::parse(&out[..n]).unwrap();
    assert_eq!(r.vias().count(), 4);
    assert_eq!(r.record_routes().count(), 1);
    assert_eq!(r.body(), TORTURE_SDP.as_bytes());
    assert_eq!(r.contact(), m.contact());
    assert_eq!(r.from(), m.from());
}

#[test]
fn torture_intmeth_unusual_characters() {
    let raw = msg(
        "
!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~:\u{feff}\u{5927}\u{505c}\u{96fb}
Content-Length: 0
",
        "",
    );
    let m = Message::parse(&raw).unwrap();
    let method = m.method().unwrap();
    assert_eq!(
        method.as_bytes(),
        b"!interesting-Method0123456789_*+`.%indeed'~"
    );
    assert_eq!(m.cseq().unwrap().method, method);
    let ruri = Uri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(
        ruri.user,
        Some(&b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"[..])
    );
    assert_eq!(ruri.host, b"example.com");
    assert_eq!(
        m.top_via().unwrap().branch,
        Some(&b"z9hG4bK-.!%66*_+`'~"[..])
    );
    let to = m.to().unwrap();
    assert_eq!(
        to.uri,
        b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com"
    );
    let from = m.from().unwrap();
    assert_eq!(from.display, Some(&b"token1~` token2'+_ token3*%!.-"[..]));
    assert_eq!(from.tag, Some(&b"_token~1'+`*%!-."[..]));
    assert_eq!(
        m.call_id().unwrap(),
        b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    assert_eq!(m.max_forwards(), Ok(Some(255)));
    let ext = m.headers().find(|h| h.name == HeaderName::Other).unwrap();
    assert_eq!(ext.raw_name, b"extensionHeader-!.%*+_`'~");
}

#[test]
fn torture_escapes_semicolons_and_transports() {
    // 3.1.1.3 esc01, 3.1.1.4 escnull, 3.1.1.9 semiuri, 3.1.1.10 transports
    let raw = msg(
        "
INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: @CL@
",
        TORTURE_SDP,
    );
    let m = Message::parse(&raw).unwrap();
    let ruri = Uri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(ruri.user, Some(&b"sips%3Auser%40example.com"[..]));
    assert_eq!(ruri.host, b"example.net");
    assert_eq!(m.call_id().unwrap(), b"esc01.239409asdfakjkn23onasd0-3234");
    let c = Uri::parse(m.contact().unwrap().unwrap().uri).unwrap();
    assert_eq!(c.param(b"n%61me"), Some(Some(&b"v%61lue%25%34%31"[..])));
    assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));

    let raw = msg(
        "
REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0
",
        "",
    );
    let m = Message::parse(&raw).unwrap();
    assert_eq!(
        Uri::parse(m.from().unwrap().uri).unwrap().user,
        Some(&b"null-%00-null"[..])
    );
    assert_eq!(m.header_values(HeaderName::Contact).count(), 2);

    let raw = msg(
        "
OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0
",
        "",
    );
    let m = Message::parse(&raw).unwrap();
    let ruri = Uri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(ruri.user, Some(&b"user;par=u%40example.net"[..]));
    assert_eq!(ruri.host, b"example.com");
    assert_eq!(m.header_values(HeaderName::Accept).count(), 6);

    let raw = msg(
        "
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0
",
        "",
    );
    let m = Message::parse(&raw).unwrap();
    let t: Vec<&[u8]> = m.vias().map(|v| v.unwrap().transport).collect();
    assert_eq!(t, vec![&b"UDP"[..], b"SCTP", b"TLS", b"UNKNOWN", b"TCP"]);
}

#[test]
fn torture_reason_phrases_and_trailing_octets() {
    // 3.1.1.12 unreason, 3.1.1.13 noreason
    let head = "SIP/2.0 200 = 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e}\n\
        Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\n\
        Call-ID: unreason.1234ksdfak3j2erwedfsASdf\n\
        CSeq: 35 INVITE\n\
        From: sip:user@example.com;tag=11141343\n\
        To: sip:user@example.edu;tag=2229\n\
        Content-Length: 0\n";
    let raw = msg(head, "");
    let m = Message::parse(&raw).unwrap();
    assert_eq!(
        m.reason(),
        Some("= 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e}".as_bytes())
    );
    let raw = msg(
        &head.replacen(
            "200 = 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e}",
            "100 ",
            1,
        ),
        "",
    );
    let m = Message::parse(&raw).unwrap();
    assert_eq!((m.status(), m.reason()), (Some(100), Some(&b""[..])));
    let no_sp = msg(
        &head.replacen(
            "200 = 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e}",
            "100",
            1,
        ),
        "",
    );
    assert_eq!(Message::parse(&no_sp).err(), Some(Error::BadStatus));
    let lenient = ParseOptions {
        allow_missing_reason_space: true,
        ..Default::default()
    };
    assert_eq!(
        Message::parse_with(&no_sp, &lenient).unwrap().reason(),
        Some(&b""[..])
    );

    // 3.1.1.8 dblreq: a second request after the first one's Content-Length is ignored
    let one = msg(
        "
REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0
",
        "",
    );
    let mut two = one.clone();
    two.extend_from_slice(b"INVITE sip:joe@example.com SIP/2.0\r\nt: sip:joe@example.com\r\n\r\n");
    let m = Message::parse(&two).unwrap();
    assert_eq!(m.method(), Some(Method::Register));
    assert_eq!(m.as_bytes(), &one[..]);
    assert!(m.body().is_empty());
    let mut out = [0u8; 2048];
    let n = rewrite_request(
        &m,
        &RequestRewrite {
            max_forwards: MaxForwards::Keep,
            ..Default::default()
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[..n], &one[..], "trailing octets are not forwarded");
    // without Content-Length the body runs to the end of the datagram (UDP)
    let raw = msg(
        "MESSAGE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n",
        "hello",
    );
    assert_eq!(Message::parse(&raw).unwrap().body(), b"hello");
}

/// A small valid request to corrupt one header of.
fn base_request(extra: &str) -> Vec<u8> {
    let extra = extra.replace("\r\n", "\n");
    msg(
        &format!(
            "
OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw
To: sip:user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: torture.ndaksdj9sdfj
CSeq: 8 OPTIONS
{extra}Content-Length: 0
"
        ),
        "",
    )
}

#[test]
fn torture_invalid_messages_give_the_matching_error() {
    let parse = |raw: &[u8]| Message::parse(raw).map(|_| ());
    // 3.1.2.1 badinv01: extraneous separators in Via
    let raw = s(&base_request(""))
        .replace("branch=z9hG4bKkdjuw", ";,;,,")
        .into_bytes();
    assert_eq!(Message::parse(&raw).unwrap().top_via(), Err(Error::BadVia));
    // 3.1.2.2 clerr and 3.1.2.3 ncl
    let raw = s(&base_request(""))
        .replace("Content-Length: 0", "Content-Length: 9999")
        .into_bytes();
    assert_eq!(parse(&raw), Err(Error::BadContentLength));
    let raw = s(&base_request(""))
        .replace("Content-Length: 0", "Content-Length: -999")
        .into_bytes();
    assert_eq!(parse(&raw), Err(Error::BadContentLength));
    let raw = base_request("Content-Length: 3\r\n");
    assert_eq!(
        parse(&raw),
        Err(Error::BadContentLength),
        "two different Content-Lengths"
    );
    let raw = s(&base_request(""))
        .replace("Content-Length: 0", "Content-Length: 99999999999999999999")
        .into_bytes();
    assert_eq!(parse(&raw), Err(Error::BadContentLength));
    // 3.1.2.4 scalar02 / 3.1.2.5 scalarlg: overlarge scalars
    let raw = s(&base_request(""))
        .replace("CSeq: 8 OPTIONS", "CSeq: 36893488147419103232 OPTIONS")
        .into_bytes();
    assert_eq!(Message::parse(&raw).unwrap().cseq(), Err(Error::BadCSeq));
    let raw = s(&base_request(""))
        .replace("CSeq: 8 OPTIONS", "CSeq: 2147483648 OPTIONS")
        .into_bytes();
    assert_eq!(Message::parse(&raw).unwrap().cseq(), Err(Error::BadCSeq));
    let raw = s(&base_request(""))
        .replace("Max-Forwards: 7", "Max-Forwards: 300")
        .into_bytes();
    assert_eq!(
        Message::parse(&raw).unwrap().max_forwards(),
        Err(Error::BadMaxForwards)
    );
    let mut out = [0u8; 1024];
    assert_eq!(
        rewrite_request(
            &Message::parse(&raw).unwrap(),
            &RequestRewrite::default(),
            &mut out
        ),
        Err(Error::BadMaxForwards)
    );
    // 3.1.2.6 quotbal: unterminated quoted string in a display name
    let raw = s(&base_request(""))
        .replace(
            "To: sip:user@example.com",
            "To: \"Mr. J. User <sip:j.user@example.com>",
        )
        .into_bytes();
    assert_eq!(Message::parse(&raw).unwrap().to(), Err(Error::BadNameAddr));
    // 3.1.2.7 ltgtruri, 3.1.2.8 lwsruri, 3.1.2.9 lwsstart, 3.1.2.10 trws
    for (line, lenient_ok) in [
        ("OPTIONS <sip:user@example.com> SIP/2.0", false),
        ("OPTIONS sip:user@example.com; lr SIP/2.0", false),
        ("OPTIONS  sip:user@example.com  SIP/2.0", true),
        ("OPTIONS sip:user@example.com SIP/2.0  ", false),
        ("OPTIONS sip:user@example.com\tSIP/2.0", false),
        ("OPTIONS sip:user@example.com", false),
        (" OPTIONS sip:user@example.com SIP/2.0", false),
    ] {
        let raw = s(&base_request(""))
            .replace("OPTIONS sip:user@example.com SIP/2.0", line)
            .into_bytes();
        assert_eq!(parse(&raw), Err(Error::BadStartLine), "{line:?}");
        let lenient = ParseOptions {
            allow_start_line_extra_spaces: true,
            ..Default::default()
        };
        assert_eq!(
            Message::parse_with(&raw, &lenient).is_ok(),
            lenient_ok,
            "{line:?}"
        );
    }
    // 3.1.2.11 escruri: headers in a Request-URI are for the application to refuse
    let raw = s(&base_request(""))
        .replace(
            "OPTIONS sip:user@example.com",
            "OPTIONS sip:user@example.com?Route=%3Csip:example.com%3E",
        )
        .into_bytes();
    let m = Message::parse(&raw).unwrap();
    assert_eq!(
        Uri::parse(m.request_uri().unwrap()).unwrap().headers,
        b"Route=%3Csip:example.com%3E"
    );
    // 3.1.2.13 regbadct: an addr-spec with '?' must be in <>
    let raw = base_request("Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\r\n");
    assert_eq!(
        Message::parse(&raw).unwrap().contact(),
        Some(Err(Error::BadNameAddr))
    );
    // 3.1.2.14 badaspec: whitespace inside <>; 3.1.2.15 baddn: unquoted comma in display name
    let raw = s(&base_request(""))
        .replace(
            "To: sip:user@example.com",
            "To: \"Watson, Thomas\" < sip:t.watson@example.org >",
        )
        .into_bytes();
    assert_eq!(Message::parse(&raw).unwrap().to(), Err(Error::BadNameAddr));
    let raw = s(&base_request(""))
        .replace(
            "From: sip:caller@example.net",
            "From: Bell, Alexander <sip:a.g.bell@example.com>",
        )
        .into_bytes();
    assert_eq!(
        Message::parse(&raw).unwrap().from(),
        Err(Error::BadNameAddr)
    );
    // 3.1.2.16 badvers
    let raw = s(&base_request(""))
        .replace("example.com SIP/2.0", "example.com SIP/7.0")
        .into_bytes();
    assert_eq!(parse(&raw), Err(Error::BadVersion));
    let raw = s(&base_request(""))
        .replace("Via: SIP/2.0/UDP", "Via: SIP/7.0/UDP")
        .into_bytes();
    assert_eq!(Message::parse(&raw).unwrap().top_via(), Err(Error::BadVia));
    assert_eq!(parse(b"SIP/3.0 200 OK\r\n\r\n"), Err(Error::BadVersion));
    // 3.1.2.17 mismatch01, 3.1.2.18 mismatch02
    let raw = s(&base_request(""))
        .replace("CSeq: 8 OPTIONS", "CSeq: 8 INVITE")
        .into_bytes();
    assert_eq!(Message::parse(&raw).unwrap().cseq(), Err(Error::BadCSeq));
    let raw = s(&base_request(""))
        .replace("OPTIONS sip", "NEWMETHOD sip")
        .into_bytes();
    assert_eq!(Message::parse(&raw).unwrap().cseq(), Err(Error::BadCSeq));
    // 3.1.2.19 bigcode
    assert_eq!(
        parse(b"SIP/2.0 4294967301 better not break the receiver\r\n\r\n"),
        Err(Error::BadStatus)
    );
    assert_eq!(parse(b"SIP/2.0 099 Low\r\n\r\n"), Err(Error::BadStatus));
    assert_eq!(parse(b"SIP/2.0 20 OK\r\n\r\n"), Err(Error::BadStatus));
    // 3.1.2.? multi01: several values in single-valued fields
    for extra in [
        "Call-ID: other@x\r\n",
        "To: sip:b@x\r\n",
        "From: sip:c@x;tag=2\r\n",
        "CSeq: 9 OPTIONS\r\n",
        "Max-Forwards: 6\r\n",
    ] {
        let m = base_request(extra);
        let m = Message::parse(&m).unwrap();
        let errs = [
            m.call_id().err(),
            m.to().err(),
            m.from().err(),
            m.cseq().err(),
            m.max_forwards().err(),
        ];
        assert_eq!(
            errs.iter().flatten().collect::<Vec<_>>(),
            vec![&Error::DuplicateHeader],
            "{extra}"
        );
    }
    // 3.3.1 insuf: missing mandatory fields; 3.3.2 unkscm
    let raw = b"INVITE sip:user@example.com SIP/2.0\r\nCSeq: 193942 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\nl: 0\r\n\r\n";
    let m = Message::parse(raw).unwrap();
    assert_eq!(
        (m.call_id(), m.from(), m.to()),
        (
            Err(Error::MissingHeader),
            Err(Error::MissingHeader),
            Err(Error::MissingHeader)
        )
    );
    let raw = s(&base_request(""))
        .replace(
            "OPTIONS sip:user@example.com",
            "OPTIONS nobodyknowsthisscheme:totallyopaquecontent",
        )
        .into_bytes();
    let m = Message::parse(&raw).unwrap();
    assert_eq!(
        Uri::parse(m.request_uri().unwrap()),
        Err(Error::UnsupportedScheme)
    );
}

#[test]
fn known_names_take_the_fast_path_without_loosening_it() {
    let parse = |raw: &[u8]| Message::parse(raw).map(|_| ());
    // a CR where a known name has '-' folds onto '-' in the word compare: still malformed
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\r\nCall\rID: abc@h\r\n\r\n"),
        Err(Error::BadHeader)
    );
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\r\nMax\rForwards: 70\r\n\r\n"),
        Err(Error::BadHeader)
    );
    // white space before the colon, odd case, a compact form, a name past sixteen octets, a
    // name that is not a token and one that only looks like a known name
    let raw = b"OPTIONS sip:a SIP/2.0\r\nvIA \t: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
i  :  abc@h  \r\nP-Asserted-Identity: <sip:1@h>\r\nX-Call-ID: x\r\nCall-IDs: y\r\n\
l:0\r\n\r\n";
    let m = Message::parse(raw).unwrap();
    let names: Vec<_> = m.headers().map(|h| (h.name, h.raw_name, h.value)).collect();
    assert_eq!(
        names,
        vec![
            (
                HeaderName::Via,
                &b"vIA"[..],
                &b"SIP/2.0/UDP h;branch=z9hG4bK1"[..]
            ),
            (HeaderName::CallId, b"i", b"abc@h"),
            (
                HeaderName::PAssertedIdentity,
                b"P-Asserted-Identity",
                b"<sip:1@h>"
            ),
            (HeaderName::Other, b"X-Call-ID", b"x"),
            (HeaderName::Other, b"Call-IDs", b"y"),
            (HeaderName::ContentLength, b"l", b"0"),
        ]
    );
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\r\nVia(x): SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n"),
        Err(Error::BadHeader)
    );
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\r\nVi a: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n"),
        Err(Error::BadHeader)
    );
}

#[test]
fn framing_errors_and_limits() {
    let parse = |raw: &[u8]| Message::parse(raw).map(|_| ());
    assert_eq!(parse(b""), Err(Error::Truncated));
    assert_eq!(parse(b"OPTIONS sip:a SIP/2.0"), Err(Error::Truncated));
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n"),
        Err(Error::Truncated),
        "no empty line"
    );
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r"),
        Err(Error::Truncated)
    );
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\r\nVia x\r\n\r\n"),
        Err(Error::BadHeader),
        "no colon"
    );
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\r\n: x\r\n\r\n"),
        Err(Error::BadHeader),
        "empty name"
    );
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\r\nV(a: x\r\n\r\n"),
        Err(Error::BadHeader),
        "bad name"
    );
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\r\n x: y\r\n\r\n"),
        Err(Error::BadHeader),
        "fold with no field"
    );
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\r\nVia: x\ry\r\n\r\n"),
        Err(Error::BadHeader),
        "stray CR"
    );
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\nVia: x\n\n"),
        Err(Error::BadStartLine),
        "bare LF"
    );
    assert_eq!(
        parse(b"OPTIONS sip:a SIP/2.0\r\nVia: x\n\r\n"),
        Err(Error::BadHeader),
        "bare LF"
    );
    assert_eq!(
        parse(b"\r\nOPTIONS sip:a SIP/2.0\r\n\r\n"),
        Err(Error::BadStartLine)
    );

    let lenient = ParseOptions::lenient();
    let m = Message::parse_with(
        b"\r\n\r\nOPTIONS sip:a SIP/2.0\nVia: SIP/2.0/UDP h\n  ;branch=z9hG4bK1\nl: 2\n\nhi",
        &lenient,
    )
    .unwrap();
    assert_eq!(m.top_via().unwrap().branch, Some(&b"z9hG4bK1"[..]));
    assert_eq!(m.body(), b"hi");
    assert!(m.as_bytes().starts_with(b"OPTIONS"));
    let mut out = [0u8; 512];
    let n = rewrite_request(&m, &RequestRewrite::default(), &mut out).unwrap();
    assert_eq!(s(&out[..n]), "OPTIONS sip:a SIP/2.0\r\nMax-Forwards: 70\r\nVia: SIP/2.0/UDP h\n  ;branch=z9hG4bK1\nl: 2\n\nhi");

    // limits
    let many: String = (0..MAX_HEADERS)
        .map(|i| format!("X-H{i}: {i}\r\n"))
        .collect();
    let raw = format!("OPTIONS sip:a SIP/2.0\r\n{many}\r\n");
    assert!(Message::parse(raw.as_bytes()).is_ok());
    let raw = format!("OPTIONS sip:a SIP/2.0\r\n{many}X-Last: 1\r\n\r\n");
    assert_eq!(parse(raw.as_bytes()), Err(Error::TooManyHeaders));
    let small = ParseOptions {
        limits: Limits {
            max_headers: 3,
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        Message::parse_with(&base_request(""), &small).err(),
        Some(Error::TooManyHeaders)
    );
    let short = ParseOptions {
        limits: Limits {
            max_line: 40,
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        Message::parse_with(&base_request(""), &short).err(),
        Some(Error::LineTooLong)
    );
    let folded = b"OPTIONS sip:a SIP/2.0\r\nSubject: 0123456789\r\n 0123456789\r\n 0123456789\r\n 0123456789\r\n\r\n";
    assert_eq!(
        Message::parse_with(folded, &short).err(),
        Some(Error::LineTooLong),
        "folded lines count together"
    );
    let tiny = ParseOptions {
        limits: Limits {
            max_message: 100,
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        Message::parse_with(INVITE_900, &tiny).err(),
        Some(Error::TooLarge)
    );
    assert_eq!(parse(&vec![b'a'; 70_000]), Err(Error::TooLarge));
}

#[test]
fn folding_and_odd_whitespace() {
    let raw = msg(
        "
INVITE sip:2065550100@pbx.example.com SIP/2.0
Via:\tSIP/2.0/UDP\t10.0.0.20:5060 ;\tbranch=z9hG4bKtab ;rport
Route: <sip:127.0.0.1:5061;lr>,
\t<sip:10.9.9.9;lr>
Route   :<sip:10.8.8.8;lr>
From:    \"A, B\"\t<sip:100@10.0.0.20>  ;  tag=x1
To: <sip:2065550100@pbx.example.com>
Call-ID:   abc@10.0.0.20   
CSeq:\t1\tINVITE
Max-Forwards:
 70
Subject: a long
   subject line
Content-Length: 0
",
        "",
    );
    let m = Message::parse(&raw).unwrap();
    let via = m.top_via().unwrap();
    assert_eq!(
        (via.host, via.port, via.branch),
        (&b"10.0.0.20"[..], Some(5060), Some(&b"z9hG4bKtab"[..]))
    );
    let routes: Vec<_> = m.routes().map(|r| r.unwrap().uri).collect();
    assert_eq!(
        routes,
        vec![
            &b"sip:127.0.0.1:5061;lr"[..],
            b"sip:10.9.9.9;lr",
            b"sip:10.8.8.8;lr"
        ]
    );
    assert_eq!(m.from().unwrap().display, Some(&b"A, B"[..]));
    assert_eq!(m.call_id().unwrap(), b"abc@10.0.0.20");
    assert_eq!(m.cseq().unwrap().number, 1);
    assert_eq!(m.max_forwards(), Ok(Some(70)));
    assert_eq!(
        m.header(HeaderName::Subject),
        Some(&b"a long\r\n   subject line"[..])
    );
    let mut out = [0u8; 2048];
    let rw = RequestRewrite {
        pop_route: true,
        ..Default::default()
    };
    let n = rewrite_request(&m, &rw, &mut out).unwrap();
    let t = s(&out[..n]);
    assert!(
        t.contains("\r\nRoute: <sip:10.9.9.9;lr>\r\nRoute   :<sip:10.8.8.8;lr>\r\n"),
        "{t}"
    );
    assert!(t.contains("\r\nMax-Forwards:\r\n 69\r\n"), "{t}");
    assert!(t.contains("\r\nSubject: a long\r\n   subject line\r\n"));
}

#[test]
fn ipv6_received_and_sent_by() {
    let m = Message::parse(REINVITE).unwrap();
    let mut out = [0u8; 2048];
    let rw = RequestRewrite {
        received_from: Some(addr("[2001:db8:50::99]:5080")),
        ..Default::default()
    };
    let n = rewrite_request(&m, &rw, &mut out).unwrap();
    let t = s(&out[..n]);
    assert!(t.contains("\r\nv: SIP/2.0/UDP [2001:db8:50::20]:5080;rport=5080;branch=z9hG4bKv3Q8p2Ny6mXa;received=2001:db8:50::99\r\n"), "{t}");
    let r = Message::parse(&out[..n]).unwrap();
    assert_eq!(r.top_via().unwrap().received, Some(&b"2001:db8:50::99"[..]));
    // an existing received is replaced, not doubled
    let raw = s(REINVITE)
        .replace(";rport;branch", ";received=192.0.2.1;branch")
        .into_bytes();
    let m = Message::parse(&raw).unwrap();
    let n = rewrite_request(&m, &rw, &mut out).unwrap();
    let r = Message::parse(&out[..n]).unwrap();
    let via = r.top_via().unwrap();
    assert_eq!(via.received, Some(&b"2001:db8:50::99"[..]));
    assert_eq!(via.param(b"received"), Some(Some(&b"2001:db8:50::99"[..])));
    assert_eq!(
        r.header(HeaderName::Via)
            .unwrap()
            .windows(8)
            .filter(|w| w == b"received")
            .count(),
        1
    );
}

/// Exercises every accessor, rewrite and builder on a parsed message; used on random input to
/// show nothing panics.
fn exercise(m: &Message<'_>) {
    let _ = (
        m.is_request(),
        m.method(),
        m.request_uri(),
        m.status(),
        m.reason(),
        m.body(),
    );
    for h in m.headers() {
        let _ = HeaderName::parse(h.raw_name);
    }
    for v in m.header_values(HeaderName::Contact) {
        if let Ok(n) = NameAddr::parse(v) {
            if let Ok(u) = Uri::parse(n.uri) {
                let _ = (u.called_number(), u.param(b"lr"));
            }
        }
    }
    let _ = (
        m.top_via(),
        m.vias().count(),
        m.call_id(),
        m.cseq(),
        m.from(),
        m.to(),
    );
    let _ = (
        m.max_forwards(),
        m.routes().count(),
        m.record_routes().count(),
        m.contact(),
        m.content_type(),
    );
    if let Some(Ok(u)) = m.request_uri().map(Uri::parse) {
        let _ = u.called_number();
    }
    let mut out = vec![0u8; 4096];
    let strip = [HeaderName::Other];
    let rw = RequestRewrite {
        request_uri: Some(b"sip:1@127.0.0.1"),
        via: Some(OUR_VIA),
        received_from: Some(addr("[2001:db8::1]:5060")),
        record_route: Some(b"sip:127.0.0.1:5061;lr"),
        pop_route: true,
        from_user: Some(b"+1"),
        pai_user: Some(b"+1"),
        strip: &strip,
        body: Some(b"x"),
        ..Default::default()
    };
    for rw in [rw, RequestRewrite::default()] {
        if let Ok(n) = rewrite_request(m, &rw, &mut out) {
            // a rewrite parses again, unless the fields we added pass the header limit
            match Message::parse_with(&out[..n], &ParseOptions::lenient()) {
                Ok(_) | Err(Error::TooManyHeaders) => {}
                Err(e) => panic!("rewrite does not parse: {e}"),
            }
        }
    }
    let _ = rewrite_response(
        m,
        &ResponseRewrite {
            pop_via: true,
            body: Some(b"y"),
            strip: &strip,
        },
        &mut out,
    );
    let _ = build_response(
        m,
        400,
        "Bad Request",
        Some(b"t"),
        &[("Reason", b"SIP;cause=400")],
        &mut out,
    );
    let _ = build_cancel(m, &mut out);
    let _ = build_ack(m, m, &mut out);
    let _ = rewrite_request(
        m,
        &RequestRewrite::default(),
        &mut out[..m.as_bytes().len() / 2],
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Gen {
        method: &'static str,
        ruri_user: String,
        vias: Vec<Vec<(String, Option<u16>, bool)>>, // fields of elements: host, port, rport flag
        max_forwards: Option<u8>,
        routes: Vec<String>,
        record_routes: Vec<String>,
        others: Vec<(String, String, usize)>, // name, value, position
        from_user: String,
        compact: bool,
        body: Option<String>,
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            (1u8..255, 0u8..255, 1u8..255).prop_map(|(a, b, c)| format!("10.{a}.{b}.{c}")),
            "[a-z]{1,8}\\.example\\.(com|net)",
            (1u16..0xffff, 1u16..0xffff).prop_map(|(a, b)| format!("[2001:db8::{a:x}:{b:x}]")),
        ]
    }

    fn gen() -> impl Strategy<Value = Gen> {
        (
            prop_oneof![
                Just("INVITE"),
                Just("BYE"),
                Just("OPTIONS"),
                Just("INFO"),
                Just("UPDATE")
            ],
            "\\+?[0-9]{3,15}",
            prop::collection::vec(
                prop::collection::vec(
                    (host(), prop::option::of(1024u16..65535), any::<bool>()),
                    1..3,
                ),
                1..4,
            ),
            prop::option::of(1u8..=255),
            prop::collection::vec(host(), 0..3),
            prop::collection::vec(host(), 0..3),
            prop::collection::vec(
                ("X-[A-Za-z]{1,10}", "[ -~]{0,40}", 0usize..12, any::<bool>()),
                0..6,
            ),
            "[0-9]{2,12}",
            any::<bool>(),
            prop::option::of("[ -~]{0,200}"),
        )
            .prop_map(
                |(
                    method,
                    ruri_user,
                    vias,
                    max_forwards,
                    routes,
                    record_routes,
                    others,
                    from_user,
                    compact,
                    body,
                )| Gen {
                    method,
                    ruri_user,
                    vias,
                    max_forwards,
                    routes,
                    record_routes,
                    others: others
                        .into_iter()
                        .map(|(n, v, p, fold)| {
                            let v = v.trim().to_string();
                            // a folded value: the continuation starts with white space
                            let v = if fold && !v.is_empty() {
                                format!("{v}\r\n  {v}")
                            } else {
                                v
                            };
                            (n, v, p)
                        })
                        .collect(),
                    from_user,
                    compact,
                    body,
                },
            )
    }

    impl Gen {
        fn render(&self) -> Vec<u8> {
            let mut h: Vec<String> = Vec::new();
            for (i, field) in self.vias.iter().enumerate() {
                let els: Vec<String> = field
                    .iter()
                    .enumerate()
                    .map(|(j, (host, port, rport))| {
                        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                        let rport = if *rport { ";rport" } else { "" };
                        format!("SIP/2.0/UDP {host}{port};branch=z9hG4bK{i}x{j}{rport}")
                    })
                    .collect();
                h.push(format!(
                    "{}: {}",
                    if self.compact { "v" } else { "Via" },
                    els.join(" , ")
                ));
            }
            if let Some(mf) = self.max_forwards {
                h.push(format!("Max-Forwards: {mf}"));
            }
            for r in &self.routes {
                h.push(format!("Route: <sip:{r};lr>"));
            }
            if !self.record_routes.is_empty() {
                let rr: Vec<String> = self
                    .record_routes
                    .iter()
                    .map(|r| format!("<sip:{r};lr>"))
                    .collect();
                h.push(format!("Record-Route: {}", rr.join(",")));
            }
            h.push(format!(
                "{}: \"Caller, A\" <sip:{}@10.0.0.1;user=phone>;tag=abc",
                if self.compact { "f" } else { "From" },
                self.from_user
            ));
            h.push("To: <sip:callee@10.0.0.2>".into());
            h.push(format!(
                "{}: prop-{}@10.0.0.1",
                if self.compact { "i" } else { "Call-ID" },
                self.from_user
            ));
            h.push(format!("CSeq: 7 {}", self.method));
            for (n, v, p) in &self.others {
                h.insert((*p).min(h.len()), format!("{n}: {v}"));
            }
            if let Some(b) = &self.body {
                h.push(format!("Content-Length: {}", b.len()));
            }
            let mut out = format!(
                "{} sip:{}@10.0.0.9 SIP/2.0\r\n{}\r\n\r\n",
                self.method,
                self.ruri_user,
                h.join("\r\n")
            );
            out.push_str(self.body.as_deref().unwrap_or(""));
            out.into_bytes()
        }
    }

    fn changed(name: HeaderName) -> bool {
        matches!(
            name,
            HeaderName::Via
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::MaxForwards
                | HeaderName::From
                | HeaderName::ContentLength
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

        #[test]
        fn rewrite_changes_exactly_what_it_must(
            g in gen(),
            new_ruri in any::<bool>(),
            our_via in any::<bool>(),
            src in prop::option::of((host(), 1024u16..65535)),
            rr in any::<bool>(),
            pop in any::<bool>(),
            keep_mf in any::<bool>(),
            from_user in prop::option::of("\\+?[0-9]{1,15}"),
            body in prop::option::of("[ -~]{0,100}"),
        ) {
            let raw = g.render();
            let m = Message::parse(&raw).unwrap();
            let src: Option<std::net::SocketAddr> = src.and_then(|(h, p)| {
                h.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>().ok().map(|ip| (ip, p).into())
            });
            let rw = RequestRewrite {
                request_uri: new_ruri.then_some(&b"sip:+12065550100@127.0.0.30:5060;user=phone"[..]),
                via: our_via.then_some(OUR_VIA),
                received_from: src,
                record_route: rr.then_some(&b"sip:127.0.0.1:5061;lr"[..]),
                pop_route: pop,
                max_forwards: if keep_mf { MaxForwards::Keep } else { MaxForwards::Decrement },
                from_user: from_user.as_deref().map(str::as_bytes),
                body: body.as_deref().map(str::as_bytes),
                ..Default::default()
            };
            let mut out = vec![0u8; 8192];
            let n = rewrite_request(&m, &rw, &mut out).unwrap();
            let r = Message::parse(&out[..n]).unwrap();

            prop_assert_eq!(r.method(), m.method());
            prop_assert_eq!(r.request_uri(), rw.request_uri.or(m.request_uri()));
            // Vias: ours first, then the sender's, stamped, then the rest untouched
            let old: Vec<Via> = m.vias().map(Result::unwrap).collect();
            let new: Vec<Via> = r.vias().map(Result::unwrap).collect();
            let skip = usize::from(our_via);
            prop_assert_eq!(new.len(), old.len() + skip);
            if our_via {
                prop_assert_eq!(new[0].host, b"127.0.0.1");
                prop_assert_eq!(new[0].port, Some(5061));
                prop_assert_eq!(new[0].branch, Some(&b"z9hG4bK-itr-3a9f1c2b"[..]));
                prop_assert_eq!(new[0].rport, Some(None));
            }
            let sender = &new[skip];
            prop_assert_eq!((sender.transport, sender.host, sender.port, sender.branch), (old[0].transport, old[0].host, old[0].port, old[0].branch));
            match src {
                Some(src) => {
                    if old[0].rport == Some(None) {
                        prop_assert_eq!(sender.rport, Some(Some(src.port())));
                    }
                    let same = std::str::from_utf8(old[0].host).unwrap().parse::<std::net::IpAddr>().ok() == Some(src.ip());
                    if old[0].rport == Some(None) || !same {
                        prop_assert_eq!(sender.received.map(|r| r.to_vec()), Some(src.ip().to_string().into_bytes()));
                    } else {
                        prop_assert_eq!(sender.received, None);
                    }
                }
                None => prop_assert_eq!(sender, &old[0]),
            }
            prop_assert_eq!(&new[skip + 1..], &old[1..]);
            // Max-Forwards
            let expected_mf = match (keep_mf, g.max_forwards) {
                (true, mf) => mf.map(u32::from),
                (false, Some(mf)) => Some(u32::from(mf) - 1),
                (false, None) => Some(70),
            };
            prop_assert_eq!(r.max_forwards().unwrap(), expected_mf);
            // Record-Route prepended, Route popped
            let old_rr: Vec<&[u8]> = m.record_routes().map(|x| x.unwrap().uri).collect();
            let new_rr: Vec<&[u8]> = r.record_routes().map(|x| x.unwrap().uri).collect();
            prop_assert_eq!(&new_rr[usize::from(rr)..], &old_rr[..]);
            if rr {
                prop_assert_eq!(new_rr[0], b"sip:127.0.0.1:5061;lr");
            }
            let old_routes: Vec<&[u8]> = m.routes().map(|x| x.unwrap().uri).collect();
            let new_routes: Vec<&[u8]> = r.routes().map(|x| x.unwrap().uri).collect();
            prop_assert_eq!(&new_routes[..], &old_routes[usize::from(pop).min(old_routes.len())..]);
            // From: only the user part may change
            let (of, nf) = (m.from().unwrap(), r.from().unwrap());
            prop_assert_eq!((of.display, of.tag, of.params), (nf.display, nf.tag, nf.params));
            let (ou, nu) = (Uri::parse(of.uri).unwrap(), Uri::parse(nf.uri).unwrap());
            prop_assert_eq!(nu.user, from_user.as_deref().map(str::as_bytes).or(ou.user));
            prop_assert_eq!((nu.host, nu.params), (ou.host, ou.params));
            // body and its length
            let body_now = body.as_deref().map_or(m.body(), str::as_bytes);
            prop_assert_eq!(r.body(), body_now);
            prop_assert_eq!(r.header(HeaderName::ContentLength).map(|v| v.to_vec()), Some(body_now.len().to_string().into_bytes()));
            // every other field identical, in order, spelled as it was
            let others = |x: &Message| x.headers().filter(|h| !changed(h.name)).map(|h| (h.raw_name.to_vec(), h.value.to_vec())).collect::<Vec<_>>();
            prop_assert_eq!(others(&r), others(&m));
        }

        #[test]
        fn response_via_pop_removes_only_the_top_value(g in gen()) {
            let raw = g.render();
            let req = Message::parse(&raw).unwrap();
            let mut resp = vec![0u8; 8192];
            let n = build_response(&req, 180, "Ringing", Some(b"t1"), &[], &mut resp).unwrap();
            let resp = Message::parse(&resp[..n]).unwrap();
            let vias: Vec<Via> = req.vias().map(Result::unwrap).collect();
            prop_assert_eq!(resp.vias().map(Result::unwrap).collect::<Vec<_>>(), vias.clone());
            prop_assert_eq!(resp.call_id(), req.call_id());
            prop_assert_eq!(resp.cseq().unwrap().number, 7);
            prop_assert_eq!(resp.to().unwrap().tag, Some(&b"t1"[..]));
            let mut out = vec![0u8; 8192];
            let n = rewrite_response(&resp, &ResponseRewrite { pop_via: true, ..Default::default() }, &mut out).unwrap();
            let popped = Message::parse(&out[..n]).unwrap();
            prop_assert_eq!(popped.vias().map(Result::unwrap).collect::<Vec<_>>(), vias[1..].to_vec());
            let rest = |x: &Message| x.headers().filter(|h| h.name != HeaderName::Via).map(|h| (h.raw_name.to_vec(), h.value.to_vec())).collect::<Vec<_>>();
            prop_assert_eq!(rest(&popped), rest(&resp));
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
            for opts in [ParseOptions::default(), ParseOptions::lenient()] {
                if let Ok(m) = Message::parse_with(&bytes, &opts) {
                    exercise(&m);
                }
            }
            let _ = Uri::parse(&bytes).map(|u| u.called_number());
            let _ = NameAddr::parse(&bytes);
            let _ = Via::parse(&bytes);
        }

        #[test]
        fn mutated_samples_never_panic(
            which in 0..ALL.len(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        ) {
            let mut raw = ALL[which].to_vec();
            for (at, byte, op) in edits {
                let i = at.index(raw.len() + 1);
                match op {
                    0 if i < raw.len() => raw[i] = byte,
                    1 => raw.insert(i, byte),
                    _ if i < raw.len() => { raw.remove(i); }
                    _ => {}
                }
            }
            for opts in [ParseOptions::default(), ParseOptions::lenient()] {
                if let Ok(m) = Message::parse_with(&raw, &opts) {
                    exercise(&m);
                }
            }
        }
    }
}
