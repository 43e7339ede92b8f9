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
