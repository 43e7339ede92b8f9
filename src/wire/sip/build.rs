//! Writing messages: a bounded cursor, and the requests and responses a proxy originates
//! (RFC 3261 8.2.6 responses, 9.1 CANCEL, 17.1.1.3 ACK for a non-2xx final response).

use super::header::HeaderName;
use super::message::{Entry, Message};
use super::scan::{is_token, CommaSplit};
use super::uri::NameAddr;
use super::Error;

/// A bounded cursor over the caller's buffer. Writes past the end are dropped and remembered;
/// [`Writer::finish`] then reports `BufferTooSmall`, so callers check once at the end.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            buf,
            len: 0,
            overflow: false,
        }
    }

    #[inline]
    pub fn put(&mut self, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.overflow = true,
        }
    }

    pub fn put_str(&mut self, s: &str) {
        self.put(s.as_bytes());
    }

    pub fn put_u32(&mut self, n: u32) {
        let mut b = itoa::Buffer::new();
        self.put(b.format(n).as_bytes());
    }

    /// Octets written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether a write has been dropped for lack of room.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The number of octets written, or `BufferTooSmall` if anything did not fit.
    pub fn finish(self) -> Result<usize, Error> {
        if self.overflow {
            Err(Error::BufferTooSmall)
        } else {
            Ok(self.len)
        }
    }
}

impl core::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}

/// Octets allowed in a header value written by us: no CR, LF or other control octet.
pub(crate) fn check_value(v: &[u8]) -> Result<(), Error> {
    if v.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Error::BadValue);
    }
    Ok(())
}

pub(crate) fn check_token(v: &[u8]) -> Result<(), Error> {
    if v.is_empty() || !v.iter().all(|&b| is_token(b)) {
        return Err(Error::BadValue);
    }
    Ok(())
}

pub(crate) fn put_extra_headers(w: &mut Writer<'_>, extra: &[(&str, &[u8])]) -> Result<(), Error> {
    for (name, value) in extra {
        check_token(name.as_bytes())?;
        check_value(value)?;
        w.put_str(name);
        w.put(b": ");
        w.put(value);
        w.put(b"\r\n");
    }
    Ok(())
}

/// Copies a header field as it is (name, colon, value, folded lines), ended by CRLF.
pub(crate) fn copy_field(w: &mut Writer<'_>, msg: &Message<'_>, e: &Entry) {
    w.put(msg.slice(usize::from(e.line_start)..usize::from(e.value.end)));
    w.put(b"\r\n");
}

fn find(msg: &Message<'_>, name: HeaderName) -> Result<Entry, Error> {
    msg.entries()
        .iter()
        .find(|e| e.name == name)
        .copied()
        .ok_or(Error::MissingHeader)
}

/// Builds a response to `req` (RFC 3261 8.2.6): every Via, From, To (with `to_tag` appended
/// when given and To has none), Call-ID and CSeq copied, then `extra_headers` (e.g. Reason,
/// ms-diagnostics, Retry-After), then `Content-Length: 0`.
pub fn build_response(
    req: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
    extra_headers: &[(&str, &[u8])],
    out: &mut [u8],
) -> Result<usize, Error> {
    if !req.is_request() {
        return Err(Error::BadStartLine);
    }
    if !(100..=699).contains(&code) {
        return Err(Error::BadStatus);
    }
    check_value(reason.as_bytes())?;
    if let Some(t) = to_tag {
        check_token(t)?;
    }
    for name in [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        find(req, name)?;
    }
    let mut w = Writer::new(out);
    w.put(b"SIP/2.0 ");
    w.put_u32(u32::from(code));
    w.put(b" ");
    w.put_str(reason);
    w.put(b"\r\n");
    for e in req.entries() {
        match e.name {
            HeaderName::To => {
                w.put(req.slice(usize::from(e.line_start)..usize::from(e.value.end)));
                if let Some(tag) = to_tag {
                    let has_tag =
                        NameAddr::parse(req.entry_value(e)).is_ok_and(|n| n.tag.is_some());
                    if !has_tag {
                        w.put(b";tag=");
                        w.put(tag);
                    }
                }
                w.put(b"\r\n");
            }
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                copy_field(&mut w, req, e)
            }
            _ => {}
        }
    }
    put_extra_headers(&mut w, extra_headers)?;
    w.put(b"Content-Length: 0\r\n\r\n");
    w.finish()
}

/// The first line of a request we originate from `sent`: `METHOD uri SIP/2.0`, then its top
/// Via alone, then its Route fields (RFC 3261 9.1 and 17.1.1.3 share this shape).
fn start_like(w: &mut Writer<'_>, sent: &Message<'_>, method: &[u8]) -> Result<(), Error> {
    let uri = sent.request_uri().ok_or(Error::BadStartLine)?;
    let top = sent
        .header_values(HeaderName::Via)
        .next()
        .ok_or(Error::MissingHeader)?;
    w.put(method);
    w.put(b" ");
    w.put(uri);
    w.put(b" SIP/2.0\r\nVia: ");
    w.put(top);
    w.put(b"\r\n");
    Ok(())
}

fn end_like(w: &mut Writer<'_>, sent: &Message<'_>, method: &[u8]) -> Result<(), Error> {
    let cseq = sent.cseq()?;
    for e in sent
        .entries()
        .iter()
        .filter(|e| e.name == HeaderName::Route)
    {
        copy_field(w, sent, e);
    }
    copy_field(w, sent, &find(sent, HeaderName::CallId)?);
    w.put(b"CSeq: ");
    w.put_u32(cseq.number);
    w.put(b" ");
    w.put(method);
    w.put(b"\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    Ok(())
}

/// CANCEL for an INVITE we sent (RFC 3261 9.1): same Request-URI, top Via, Route, From, To,
/// Call-ID and CSeq number.
pub fn build_cancel(sent_invite: &Message<'_>, out: &mut [u8]) -> Result<usize, Error> {
    let mut w = Writer::new(out);
    start_like(&mut w, sent_invite, b"CANCEL")?;
    copy_field(&mut w, sent_invite, &find(sent_invite, HeaderName::From)?);
    copy_field(&mut w, sent_invite, &find(sent_invite, HeaderName::To)?);
    end_like(&mut w, sent_invite, b"CANCEL")?;
    w.finish()
}

/// ACK for a non-2xx final response to an INVITE we sent (RFC 3261 17.1.1.3): the INVITE's
/// Request-URI, top Via, Route, From, Call-ID and CSeq number, and the response's To (with the
/// tag it added).
pub fn build_ack(
    sent_invite: &Message<'_>,
    response: &Message<'_>,
    out: &mut [u8],
) -> Result<usize, Error> {
    if response.is_request() {
        return Err(Error::BadStartLine);
    }
    let to = find(response, HeaderName::To)?;
    let mut w = Writer::new(out);
    start_like(&mut w, sent_invite, b"ACK")?;
    copy_field(&mut w, sent_invite, &find(sent_invite, HeaderName::From)?);
    copy_field(&mut w, response, &to);
    end_like(&mut w, sent_invite, b"ACK")?;
    w.finish()
}

/// Position of the first list element after the first one in `value`, if any.
pub(crate) fn second_element(value: &[u8]) -> Option<&[u8]> {
    let mut it = CommaSplit::new(value);
    it.next();
    it.next()
}
