//! Calls and their dialog state (RFC 3261 12), as much as a record-routing proxy needs to
//! originate requests itself: the BYEs that end a call on media timeout or maximum duration,
//! and the ACK/BYE that dispose of a 2xx arriving on a branch already given up.
//!
//! The relay only ever sends to a configured trunk address or to the address a call came
//! from, never to a peer-chosen Contact or Route host: no peer can make it an open relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::context::Key;
use crate::media::{Leg, SessionId};
use crate::route::{RouteTable, TrunkId};
use crate::wire::sip::{is_request_uri, Error, HeaderName, Message, Writer};

pub(crate) struct Call {
    pub id: u64,
    pub wake: Option<Instant>,
    pub call_id: Box<[u8]>,
    pub table: Arc<RouteTable>,
    pub source: TrunkId,
    pub target: Option<TrunkId>,
    /// The INVITE context while the call is being set up.
    pub invite_ctx: Option<Key>,
    pub caller_addr: SocketAddr,
    /// Where the INVITE arrived (late 2xx retransmissions leave from there).
    pub caller_local: Option<SocketAddr>,
    pub callee_addr: Option<SocketAddr>,
    pub caller_tag: Vec<u8>,
    /// To tags of early dialogs on the current branch (capped by max_early_dialogs).
    pub early_tags: Vec<Vec<u8>>,
    /// The To tag of the confirmed dialog.
    pub callee_tag: Option<Vec<u8>>,
    pub session: Option<SessionId>,
    /// The current branch goes to a trunk with bypass too: SDP untouched.
    pub bypass: bool,
    pub latch_caller: bool,
    pub latch_callee: bool,
    pub answered: Option<Instant>,
    /// Maximum duration deadline (the call's only timer).
    pub end_at: Option<Instant>,
    /// From as received from the caller, From as sent to the callee, To with the callee tag.
    pub caller_from: Vec<u8>,
    pub callee_from: Vec<u8>,
    pub callee_to: Vec<u8>,
    pub caller_contact: Vec<u8>,
    pub callee_contact: Vec<u8>,
    /// Route sets from us toward each leg (URIs), in the order to write them.
    pub caller_routes: Vec<Vec<u8>>,
    pub callee_routes: Vec<Vec<u8>>,
    /// Highest CSeq seen in requests from each leg (ours continue from there).
    pub caller_cseq: u32,
    pub callee_cseq: u32,
}

impl Call {
    /// Which leg sent a request inside this call, from its tags; `None` if it matches no dialog.
    pub fn leg_of(&self, from_tag: &[u8], to_tag: &[u8]) -> Option<Leg> {
        let callee_tag = |t: &[u8]| {
            self.callee_tag.as_deref() == Some(t) || self.early_tags.iter().any(|e| e == t)
        };
        if from_tag == self.caller_tag.as_slice() && callee_tag(to_tag) {
            Some(Leg::Caller)
        } else if to_tag == self.caller_tag.as_slice() && callee_tag(from_tag) {
            Some(Leg::Callee)
        } else {
            None
        }
    }

    pub fn addr_of(&self, leg: Leg) -> Option<SocketAddr> {
        match leg {
            Leg::Caller => Some(self.caller_addr),
            Leg::Callee => self.callee_addr,
        }
    }

    pub fn is_answered(&self) -> bool {
        self.answered.is_some()
    }
}

pub(crate) fn other(leg: Leg) -> Leg {
    match leg {
        Leg::Caller => Leg::Callee,
        Leg::Callee => Leg::Caller,
    }
}

/// Route set from the Record-Route of a received request: the entries already there, in
/// order, lead from us back toward the caller.
pub(crate) fn routes_toward_caller(invite: &Message<'_>) -> Vec<Vec<u8>> {
    invite
        .record_routes()
        .filter_map(Result::ok)
        .take(16)
        .map(|na| na.uri)
        .filter(|u| valid_uri(u))
        .map(<[u8]>::to_vec)
        .collect()
}

/// Route set toward the callee from a 2xx's Record-Route: the entries above ours, reversed
/// (the one nearest to us first).
pub(crate) fn routes_toward_callee(
    resp: &Message<'_>,
    is_ours: impl Fn(&[u8]) -> bool,
) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for na in resp.record_routes().filter_map(Result::ok).take(16) {
        if is_ours(na.uri) {
            break;
        }
        if valid_uri(na.uri) {
            v.push(na.uri.to_vec());
        }
    }
    v.reverse();
    v
}

/// The URI of a message's Contact, if any.
pub(crate) fn contact_uri(msg: &Message<'_>) -> Vec<u8> {
    msg.contact()
        .and_then(Result::ok)
        .map(|c| c.uri)
        .filter(|u| valid_uri(u))
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// Whether a peer's URI may become our Request-URI or Route: name-addr parsing takes the
/// bytes between `<>` as they come, and a request of ours must never carry what does not
/// parse (a hostile Contact would otherwise make every BYE we send malformed). As lenient as
/// the start-line parser, so an odd but workable URI of a real peer (an unknown scheme, `_`
/// in a host name) is still used; `<>` are refused besides, since a Route is written inside.
fn valid_uri(uri: &[u8]) -> bool {
    is_request_uri(uri) && !uri.iter().any(|&b| b == b'<' || b == b'>')
}

/// Raw value of a header (From/To), for writing it back unchanged.
pub(crate) fn raw(msg: &Message<'_>, name: HeaderName) -> Vec<u8> {
    msg.header(name).map(<[u8]>::to_vec).unwrap_or_default()
}

/// What an in-dialog request we originate needs.
pub(crate) struct InDialog<'a> {
    pub method: &'a [u8],
    pub request_uri: &'a [u8],
    pub via_host: &'a str,
    pub via_port: u16,
    pub branch: &'a [u8],
    pub routes: &'a [Vec<u8>],
    pub from: &'a [u8],
    pub to: &'a [u8],
    pub call_id: &'a [u8],
    pub cseq: u32,
    pub reason: Option<&'a [u8]>,
}

/// Writes an in-dialog request (RFC 3261 12.2.1.1) with no body.
pub(crate) fn build_in_dialog(r: &InDialog<'_>, out: &mut [u8]) -> Result<usize, Error> {
    if r.request_uri.is_empty() || r.from.is_empty() || r.to.is_empty() {
        return Err(Error::MissingHeader);
    }
    if !valid_uri(r.request_uri) || !r.routes.iter().all(|u| valid_uri(u)) {
        return Err(Error::BadUri);
    }
    let mut w = Writer::new(out);
    w.put(r.method);
    w.put(b" ");
    w.put(r.request_uri);
    w.put(b" SIP/2.0\r\nVia: SIP/2.0/UDP ");
    w.put_str(r.via_host);
    w.put(b":");
    w.put_u32(u32::from(r.via_port));
    w.put(b";branch=");
    w.put(r.branch);
    w.put(b";rport\r\nMax-Forwards: 70\r\n");
    for route in r.routes {
        w.put(b"Route: <");
        w.put(route);
        w.put(b">\r\n");
    }
    w.put(b"From: ");
    w.put(r.from);
    w.put(b"\r\nTo: ");
    w.put(r.to);
    w.put(b"\r\nCall-ID: ");
    w.put(r.call_id);
    w.put(b"\r\nCSeq: ");
    w.put_u32(r.cseq);
    w.put(b" ");
    w.put(r.method);
    w.put(b"\r\n");
    if let Some(reason) = r.reason {
        w.put(b"Reason: ");
        w.put(reason);
        w.put(b"\r\n");
    }
    w.put(b"Content-Length: 0\r\n\r\n");
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_uris_are_kept_when_they_can_be_written_back() {
        for ok in [
            &b"sip:alice@127.0.0.11:5060"[..],
            b"sip:pbx_1.example.net;transport=udp;lr",
            b"sips:[2001:db8::1]:5061",
            b"tel:+14255550100",
            b"urn:service:sos",
        ] {
            assert!(valid_uri(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b""[..],
            b"alice@host",
            b":x",
            b"1sip:x",
            b"sip:ua\xff@host",
            b"sip:a b@host",
            b"sip:a>@host",
            b"sip:a\r\nVia: x",
        ] {
            assert!(!valid_uri(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn in_dialog_request_parses_back() {
        let mut out = [0u8; 1024];
        let routes = vec![b"sip:10.0.0.1;lr".to_vec()];
        let n = build_in_dialog(
            &InDialog {
                method: b"BYE",
                request_uri: b"sip:alice@127.0.0.11:5060",
                via_host: "127.0.0.1",
                via_port: 5061,
                branch: b"z9hG4bKitx",
                routes: &routes,
                from: b"<sip:bob@b>;tag=b1",
                to: b"<sip:alice@a>;tag=a1",
                call_id: b"c1@a",
                cseq: 7,
                reason: Some(b"SIP;cause=408;text=\"media timeout\""),
            },
            &mut out,
        )
        .unwrap();
        let m = Message::parse(&out[..n]).unwrap();
        assert_eq!(m.request_uri(), Some(&b"sip:alice@127.0.0.11:5060"[..]));
        assert_eq!(m.cseq().unwrap().number, 7);
        assert_eq!(m.from().unwrap().tag, Some(&b"b1"[..]));
        assert_eq!(m.to().unwrap().tag, Some(&b"a1"[..]));
        assert_eq!(m.routes().count(), 1);
        assert_eq!(m.top_via().unwrap().branch, Some(&b"z9hG4bKitx"[..]));
    }
}
