//! Rewrite and answer arbitrary messages: nothing may panic, and what we write parses again
//! with the changes in place.
#![no_main]

use intertrunk::wire::sip::{
    build_ack, build_cancel, build_response, rewrite_request, rewrite_response, Error, HeaderName, Message,
    OurVia, ParseOptions, RequestRewrite, ResponseRewrite,
};
use libfuzzer_sys::fuzz_target;

/// What we write must parse again (leniently: folded values of a leniently parsed message are
/// copied as they were), unless the fields we added pass the header limit.
fn reparse(out: &[u8]) -> Option<Message<'_>> {
    match Message::parse_with(out, &ParseOptions::lenient()) {
        Ok(m) => Some(m),
        Err(Error::TooManyHeaders) => None,
        Err(e) => panic!("written message does not parse: {e}: {:?}", String::from_utf8_lossy(out)),
    }
}

const OUR_VIA: OurVia<'static> = OurVia { transport: "UDP", host: "127.0.0.1", port: 5061, branch: b"z9hG4bK-fuzz" };

fuzz_target!(|data: &[u8]| {
    // the first octet picks the rewrite options, the rest is the datagram
    let Some((&knobs, data)) = data.split_first() else { return };
    let Ok(m) = Message::parse_with(data, &ParseOptions::lenient()) else { return };
    let mut out = [0u8; 8192];
    let strip = [HeaderName::Other, HeaderName::PAssertedIdentity];
    if m.is_request() {
        let rw = RequestRewrite {
            request_uri: (knobs & 1 != 0).then_some(&b"sip:+12065550100@127.0.0.30:5060;user=phone"[..]),
            via: (knobs & 2 != 0).then_some(OUR_VIA),
            received_from: (knobs & 4 != 0).then(|| "[2001:db8::7]:5070".parse().unwrap()),
            record_route: (knobs & 8 != 0).then_some(&b"sip:127.0.0.1:5061;lr"[..]),
            pop_route: knobs & 16 != 0,
            from_user: (knobs & 32 != 0).then_some(&b"+14255550100"[..]),
            pai_user: (knobs & 32 != 0).then_some(&b"+14255550100"[..]),
            strip: if knobs & 64 != 0 { &strip } else { &[] },
            body: (knobs & 128 != 0).then_some(&b"v=0\r\n"[..]),
            ..Default::default()
        };
        if let Ok(n) = rewrite_request(&m, &rw, &mut out) {
            if let Some(r) = reparse(&out[..n]) {
                assert_eq!(r.method(), m.method());
                if let Some(u) = rw.request_uri {
                    assert_eq!(r.request_uri(), Some(u));
                }
                if rw.via.is_some() {
                    assert_eq!(r.top_via().ok().and_then(|v| v.branch), Some(&b"z9hG4bK-fuzz"[..]));
                }
                assert_eq!(r.body(), rw.body.unwrap_or(m.body()));
            }
        }
        if let Ok(n) = build_response(&m, 486, "Busy Here", Some(b"fz1"), &[("Reason", b"Q.850;cause=17")], &mut out) {
            if let Some(r) = reparse(&out[..n]) {
                assert_eq!(r.status(), Some(486));
            }
        }
        if let Ok(n) = build_cancel(&m, &mut out) {
            reparse(&out[..n]);
        }
    } else {
        let rw = ResponseRewrite { pop_via: knobs & 1 != 0, body: (knobs & 2 != 0).then_some(&b"v=0\r\n"[..]), strip: &[] };
        if let Ok(n) = rewrite_response(&m, &rw, &mut out) {
            if let Some(r) = reparse(&out[..n]) {
                assert_eq!(r.status(), m.status());
            }
        }
    }
    let mut ack = [0u8; 4096];
    let _ = build_ack(&m, &m, &mut ack);
});
