//! One-pass rewriting of a message into the caller's buffer: untouched spans are copied, the
//! few things a proxy changes are written in place. Nothing is allocated.

use core::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::build::{check_token, put_extra_headers, second_element, Writer};
use super::header::HeaderName;
use super::message::{Entry, Message, StartLine};
use super::scan::{offset_in, CommaSplit, Params};
use super::uri::{NameAddr, Scheme, Uri};
use super::via::Via;
use super::Error;

/// The Via we prepend: `SIP/2.0/<transport> <host>:<port>;branch=<branch>;rport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OurVia<'a> {
    pub transport: &'a str,
    /// An IP address or name; an IPv6 address is written in `[]`.
    pub host: &'a str,
    pub port: u16,
    /// The whole branch, magic cookie `z9hG4bK` included.
    pub branch: &'a [u8],
}

/// What to do with Max-Forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxForwards {
    /// Decrement (RFC 3261 16.6 step 3); insert `Max-Forwards: 70` when absent. A value of 0
    /// gives `TooManyHops` (answer 483).
    #[default]
    Decrement,
    Keep,
}

/// The changes to make to a request being forwarded. `Default` changes nothing but
/// Max-Forwards.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestRewrite<'a> {
    pub request_uri: Option<&'a [u8]>,
    /// Prepended as the new top Via, with `;rport`.
    pub via: Option<OurVia<'a>>,
    /// Where the request came from: RFC 3581 `rport=<port>` and `received=<ip>` on the
    /// sender's Via (and RFC 3261 18.2.1 `received` when its sent-by host differs).
    pub received_from: Option<SocketAddr>,
    /// A URI, written as `Record-Route: <URI>` before any other Record-Route.
    pub record_route: Option<&'a [u8]>,
    /// Drop the first Route value (it named us).
    pub pop_route: bool,
    pub max_forwards: MaxForwards,
    /// New user part for the From URI.
    pub from_user: Option<&'a [u8]>,
    /// New user part for every P-Asserted-Identity URI.
    pub pai_user: Option<&'a [u8]>,
    /// Remove every header field of these names.
    pub strip: &'a [HeaderName],
    /// Appended after the existing header fields.
    pub extra_headers: &'a [(&'a str, &'a [u8])],
    /// Replaces the body; Content-Length follows.
    pub body: Option<&'a [u8]>,
}

/// The changes to make to a response being forwarded.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseRewrite<'a> {
    /// Remove the top Via value (ours; the caller matched its branch).
    pub pop_via: bool,
    pub body: Option<&'a [u8]>,
    pub strip: &'a [HeaderName],
}

/// Octets allowed in a user part we write (RFC 3261 25.1 `user`, `%` escapes included).
fn check_user(u: &[u8]) -> Result<(), Error> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-_.!~*'()%&=+$,;?/".contains(&b);
    if u.is_empty() || !u.iter().all(|&b| ok(b)) {
        return Err(Error::BadValue);
    }
    Ok(())
}

fn check_uri(u: &[u8]) -> Result<(), Error> {
    if u.is_empty()
        || u.iter()
            .any(|&b| b <= 0x20 || b >= 0x7f || b == b'<' || b == b'>')
    {
        return Err(Error::BadValue);
    }
    Ok(())
}

fn put_host(w: &mut Writer<'_>, host: &str) {
    if host.contains(':') && !host.starts_with('[') {
        w.put(b"[");
        w.put_str(host);
        w.put(b"]");
    } else {
        w.put_str(host);
    }
}

fn put_ip(w: &mut Writer<'_>, ip: IpAddr) {
    // Writer::write_str never fails; IpAddr's Display writes without allocating
    let _ = write!(w, "{ip}");
}

/// Writes the value(s) and suffix of field `e` with the user part of each URI replaced.
fn replace_users(
    w: &mut Writer<'_>,
    msg: &Message<'_>,
    e: &Entry,
    user: &[u8],
) -> Result<(), Error> {
    let buf = msg.buf;
    let mut cursor = usize::from(e.line_start);
    for el in CommaSplit::new(msg.entry_value(e)) {
        if el.is_empty() {
            continue;
        }
        let na = NameAddr::parse(el)?;
        let uri = Uri::parse(na.uri)?;
        let (from, to, insert) = match uri.user {
            Some(u) => (offset_in(buf, u), offset_in(buf, u) + u.len(), false),
            None => {
                // `sip:host` has no user: insert `user@` after the scheme
                let at = offset_in(buf, na.uri) + if uri.scheme == Scheme::Sips { 5 } else { 4 };
                (at, at, true)
            }
        };
        w.put(msg.slice(cursor..from));
        w.put(user);
        if insert {
            w.put(b"@");
        }
        cursor = to;
    }
    w.put(msg.slice(cursor..usize::from(e.value.end)));
    w.put(b"\r\n");
    Ok(())
}

/// Writes field `e` without its first list value; nothing when it had only one.
fn drop_first_value(w: &mut Writer<'_>, msg: &Message<'_>, e: &Entry) {
    if let Some(second) = second_element(msg.entry_value(e)) {
        w.put(msg.slice(usize::from(e.line_start)..usize::from(e.value.start)));
        w.put(msg.slice(offset_in(msg.buf, second)..usize::from(e.value.end)));
        w.put(b"\r\n");
    }
}

/// Writes the sender's (first) Via field with RFC 3581 / 18.2.1 `rport` and `received`.
fn stamp_via(
    w: &mut Writer<'_>,
    msg: &Message<'_>,
    e: &Entry,
    src: SocketAddr,
) -> Result<(), Error> {
    let buf = msg.buf;
    let top = CommaSplit::new(msg.entry_value(e)).next().unwrap_or(&[]);
    let via = Via::parse(top)?;
    let sent_by_is_src = core::str::from_utf8(via.host)
        .ok()
        .and_then(|h| h.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip == src.ip());
    let wants_rport = via.rport == Some(None);
    let mut need_received = wants_rport || !sent_by_is_src;
    let mut cursor = usize::from(e.line_start);
    for p in Params::new(via.params).map_while(Result::ok) {
        if p.name.eq_ignore_ascii_case(b"rport") && p.value.is_none() {
            let end = offset_in(buf, p.span) + p.span.len();
            w.put(msg.slice(cursor..end));
            w.put(b"=");
            w.put_u32(u32::from(src.port()));
            cursor = end;
        } else if p.name.eq_ignore_ascii_case(b"received") && need_received {
            if let Some(v) = p.value {
                let from = offset_in(buf, v);
                w.put(msg.slice(cursor..from));
                put_ip(w, src.ip());
                cursor = from + v.len();
                need_received = false;
            }
        }
    }
    let top_end = offset_in(buf, top) + top.len();
    w.put(msg.slice(cursor..top_end));
    if need_received {
        w.put(b";received=");
        put_ip(w, src.ip());
    }
    w.put(msg.slice(top_end..usize::from(e.value.end)));
    w.put(b"\r\n");
    Ok(())
}

fn put_content_length(w: &mut Writer<'_>, msg: &Message<'_>, e: &Entry, len: usize) {
    w.put(msg.slice(usize::from(e.line_start)..usize::from(e.value.start)));
    w.put_u32(len as u32);
    w.put(b"\r\n");
}

/// Copies request `msg` into `out` with the changes in `rw`; returns the length written.
/// Header fields keep their order and spelling; the new Via, Record-Route and (when inserted)
/// Max-Forwards come right after the request line; extra headers come last; a Content-Length
/// is added when the original had none.
pub fn rewrite_request(
    msg: &Message<'_>,
    rw: &RequestRewrite<'_>,
    out: &mut [u8],
) -> Result<usize, Error> {
    let StartLine::Request {
        method,
        uri,
        version,
    } = msg.start
    else {
        return Err(Error::BadStartLine);
    };
    if let Some(u) = rw.request_uri {
        check_uri(u)?;
    }
    if let Some(v) = &rw.via {
        check_token(v.transport.as_bytes())?;
        check_token(v.branch)?;
        check_uri(v.host.as_bytes())?;
    }
    if let Some(rr) = rw.record_route {
        check_uri(rr)?;
    }
    if let Some(u) = rw.from_user {
        check_user(u)?;
    }
    if let Some(u) = rw.pai_user {
        check_user(u)?;
    }
    let decrement = rw.max_forwards == MaxForwards::Decrement;
    let mf = if decrement { msg.max_forwards()? } else { None };
    if mf == Some(0) {
        return Err(Error::TooManyHops);
    }
    let body = rw.body.unwrap_or_else(|| msg.body());
    let mut w = Writer::new(out);
    w.put(msg.slice(method.range()));
    w.put(b" ");
    w.put(rw.request_uri.unwrap_or_else(|| msg.slice(uri.range())));
    w.put(b" ");
    w.put(msg.slice(version.range()));
    w.put(b"\r\n");
    if let Some(v) = &rw.via {
        w.put(b"Via: SIP/2.0/");
        w.put_str(v.transport);
        w.put(b" ");
        put_host(&mut w, v.host);
        w.put(b":");
        w.put_u32(u32::from(v.port));
        w.put(b";branch=");
        w.put(v.branch);
        w.put(b";rport\r\n");
    }
    if let Some(rr) = rw.record_route {
        w.put(b"Record-Route: <");
        w.put(rr);
        w.put(b">\r\n");
    }
    if decrement && mf.is_none() {
        w.put(b"Max-Forwards: 70\r\n");
    }
    let (mut seen_via, mut popped_route, mut has_cl) = (false, false, false);
    // Untouched fields are contiguous in the datagram: copy each run of them with one put.
    let mut run = Run::default();
    for (e, line_end) in msg.fields() {
        if rw.strip.contains(&e.name) {
            continue;
        }
        has_cl |= e.name == HeaderName::ContentLength;
        match e.name {
            HeaderName::Via if !seen_via => {
                seen_via = true;
                match rw.received_from {
                    Some(src) => {
                        run.flush(&mut w, msg);
                        stamp_via(&mut w, msg, e, src)?;
                    }
                    None => run.extend(&mut w, msg, usize::from(e.line_start), line_end),
                }
            }
            HeaderName::Route if rw.pop_route && !popped_route => {
                run.flush(&mut w, msg);
                popped_route = true;
                drop_first_value(&mut w, msg, e);
            }
            HeaderName::MaxForwards if decrement => {
                run.flush(&mut w, msg);
                w.put(msg.slice(usize::from(e.line_start)..usize::from(e.value.start)));
                w.put_u32(mf.unwrap_or(70).saturating_sub(1));
                w.put(msg.slice(usize::from(e.value.end)..line_end));
            }
            HeaderName::From if rw.from_user.is_some() => {
                run.flush(&mut w, msg);
                replace_users(&mut w, msg, e, rw.from_user.unwrap_or_default())?;
            }
            HeaderName::PAssertedIdentity if rw.pai_user.is_some() => {
                run.flush(&mut w, msg);
                replace_users(&mut w, msg, e, rw.pai_user.unwrap_or_default())?;
            }
            HeaderName::ContentLength if rw.body.is_some() => {
                run.flush(&mut w, msg);
                put_content_length(&mut w, msg, e, body.len());
            }
            _ => run.extend(&mut w, msg, usize::from(e.line_start), line_end),
        }
    }
    run.flush(&mut w, msg);
    if !has_cl {
        w.put(b"Content-Length: ");
        w.put_u32(body.len() as u32);
        w.put(b"\r\n");
    }
    put_extra_headers(&mut w, rw.extra_headers)?;
    w.put(msg.slice(msg.blank.range()));
    w.put(body);
    w.finish()
}

/// Copies response `msg` into `out` with the changes in `rw`; returns the length written.
pub fn rewrite_response(
    msg: &Message<'_>,
    rw: &ResponseRewrite<'_>,
    out: &mut [u8],
) -> Result<usize, Error> {
    if msg.is_request() {
        return Err(Error::BadStartLine);
    }
    let body = rw.body.unwrap_or_else(|| msg.body());
    let mut w = Writer::new(out);
    w.put(msg.slice(usize::from(msg.begin)..usize::from(msg.headers_start)));
    let (mut popped, mut has_cl) = (!rw.pop_via, false);
    let mut run = Run::default();
    for (e, line_end) in msg.fields() {
        if rw.strip.contains(&e.name) {
            continue;
        }
        match e.name {
            HeaderName::Via if !popped => {
                run.flush(&mut w, msg);
                popped = true;
                drop_first_value(&mut w, msg, e);
            }
            HeaderName::ContentLength if rw.body.is_some() => {
                run.flush(&mut w, msg);
                has_cl = true;
                put_content_length(&mut w, msg, e, body.len());
            }
            name => {
                has_cl |= name == HeaderName::ContentLength;
                run.extend(&mut w, msg, usize::from(e.line_start), line_end);
            }
        }
    }
    run.flush(&mut w, msg);
    if !popped {
        return Err(Error::MissingHeader);
    }
    if !has_cl && rw.body.is_some() {
        w.put(b"Content-Length: ");
        w.put_u32(body.len() as u32);
        w.put(b"\r\n");
    }
    w.put(msg.slice(msg.blank.range()));
    w.put(body);
    w.finish()
}

/// A run of untouched, adjacent header fields not yet copied (octet offsets in the datagram).
#[derive(Default)]
struct Run {
    start: usize,
    end: usize,
}

impl Run {
    /// Adds the field at `start..end`; a gap (a dropped field in between) flushes first.
    #[inline]
    fn extend(&mut self, w: &mut Writer<'_>, msg: &Message<'_>, start: usize, end: usize) {
        if self.start == self.end {
            *self = Run { start, end };
        } else if start == self.end {
            self.end = end;
        } else {
            self.flush(w, msg);
            *self = Run { start, end };
        }
    }

    #[inline]
    fn flush(&mut self, w: &mut Writer<'_>, msg: &Message<'_>) {
        if self.start != self.end {
            w.put(msg.slice(self.start..self.end));
        }
        self.start = self.end;
    }
}
