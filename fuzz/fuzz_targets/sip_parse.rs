//! Parse arbitrary datagrams and use every accessor: nothing may panic.
#![no_main]

use intertrunk::wire::sip::{HeaderName, Message, NameAddr, ParseOptions, Uri, Via};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for opts in [ParseOptions::default(), ParseOptions::lenient()] {
        let Ok(m) = Message::parse_with(data, &opts) else { continue };
        assert!(m.as_bytes().len() <= data.len());
        assert!(m.body().len() <= m.as_bytes().len());
        let _ = (m.is_request(), m.method(), m.status(), m.reason());
        if let Some(Ok(u)) = m.request_uri().map(Uri::parse) {
            let _ = (u.called_number(), u.param(b"user"));
        }
        for h in m.headers() {
            assert_eq!(HeaderName::parse(h.raw_name), h.name);
        }
        for name in [HeaderName::Contact, HeaderName::PAssertedIdentity, HeaderName::Route, HeaderName::Supported] {
            for v in m.header_values(name) {
                if let Ok(n) = NameAddr::parse(v) {
                    let _ = Uri::parse(n.uri).map(|u| u.called_number());
                }
            }
        }
        let _ = (m.top_via(), m.vias().filter_map(Result::ok).map(|v: Via| v.port).count());
        let _ = (m.call_id(), m.cseq(), m.from(), m.to(), m.max_forwards());
        let _ = (m.routes().count(), m.record_routes().count(), m.contact(), m.content_type());
    }
});
