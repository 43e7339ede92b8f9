//! Small helpers on SIP bytes: reason phrases, status-line replacement, transaction keys.

use crate::wire::sip::{Message, Method, Via};

/// Default reason phrase (RFC 3261 21) for the codes the relay writes or translates to.
pub(crate) fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        c if c < 200 => "Session Progress",
        c if c < 300 => "OK",
        c if c < 400 => "Redirection",
        c if c < 500 => "Request Failure",
        c if c < 600 => "Server Failure",
        _ => "Global Failure",
    }
}

/// Replaces the status line of the response in `buf[..len]` with `SIP/2.0 <code> <phrase>`,
/// shifting the rest; returns the new length, or `None` if it does not fit.
pub(crate) fn replace_status(buf: &mut [u8], len: usize, code: u16) -> Option<usize> {
    let end = memchr::memmem::find(buf.get(..len)?, b"\r\n")?;
    let line = format!("SIP/2.0 {code} {}", reason_phrase(code));
    let new_len = len - end + line.len();
    if new_len > buf.len() {
        return None;
    }
    buf.copy_within(end..len, line.len());
    buf[..line.len()].copy_from_slice(line.as_bytes());
    Some(new_len)
}

/// Server transaction key (RFC 3261 17.2.3): branch, sent-by, and the method (ACK matches
/// INVITE). A request without an RFC 3261 branch is keyed by Call-ID, From tag and CSeq.
pub(crate) fn server_key(msg: &Message<'_>, via: &Via<'_>, method: Method<'_>, out: &mut Vec<u8>) {
    out.clear();
    match via.branch.filter(|b| b.starts_with(b"z9hG4bK")) {
        Some(b) => out.extend_from_slice(b),
        None => {
            out.extend_from_slice(msg.call_id().unwrap_or_default());
            out.push(b'|');
            out.extend_from_slice(msg.from().ok().and_then(|f| f.tag).unwrap_or_default());
            out.push(b'|');
            out.extend_from_slice(&msg.cseq().map(|c| c.number).unwrap_or(0).to_be_bytes());
        }
    }
    out.push(b'|');
    out.extend_from_slice(via.host);
    out.extend_from_slice(&via.port.unwrap_or(5060).to_be_bytes());
    out.push(b'|');
    let m = if method == Method::Ack {
        Method::Invite
    } else {
        method
    };
    out.extend_from_slice(m.as_bytes());
}

/// `application/sdp`, parameters and case ignored.
pub(crate) fn is_sdp(msg: &Message<'_>) -> bool {
    !msg.body().is_empty()
        && msg.content_type().is_some_and(|ct| {
            let t = ct.split(|&b| b == b';').next().unwrap_or_default();
            t.trim_ascii().eq_ignore_ascii_case(b"application/sdp")
        })
}

/// A bounded, lossy UTF-8 string from peer bytes (for routing input and events).
pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(128)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_replaced_in_place() {
        let mut buf = [0u8; 128];
        let m = b"SIP/2.0 408 Request Timeout\r\nVia: x\r\n\r\n";
        buf[..m.len()].copy_from_slice(m);
        let n = replace_status(&mut buf, m.len(), 503).unwrap();
        assert_eq!(
            &buf[..n],
            &b"SIP/2.0 503 Service Unavailable\r\nVia: x\r\n\r\n"[..]
        );
        let mut small = [0u8; 40];
        small[..m.len()].copy_from_slice(m);
        assert!(replace_status(&mut small, m.len(), 503).is_none());
    }
}
