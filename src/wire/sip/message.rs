//! The message view: start line, a fixed-capacity header index and the body, all borrowed
//! from the datagram. Parsing never allocates.

use super::header::HeaderName;
use super::scan::{
    colon_probe, find_eol, is_lws, is_token, is_ws, parse_u32, token_len, trim_lws, visible_len,
    CommaSplit,
};
use super::uri::NameAddr;
use super::via::Via;
use super::Error;

/// Capacity of the header index. A Lync or CUBE INVITE carries 20-35 header fields.
pub const MAX_HEADERS: usize = 64;

/// Explicit bounds on what a peer may make the parser do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole datagram; spans are `u16`, so never more than 65535.
    pub max_message: usize,
    /// Header fields; never more than [`MAX_HEADERS`].
    pub max_headers: usize,
    /// The start line, or one header field with its folded continuation lines.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 65_535,
            max_headers: MAX_HEADERS,
            max_line: 8_192,
        }
    }
}

/// Parser options: strict by default; each leniency is named and off unless set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParseOptions {
    pub limits: Limits,
    /// Accept a bare LF as a line end (some test tools send it).
    pub allow_bare_lf: bool,
    /// Skip CRLFs before the start line (keep-alives glued to a message; RFC 3261 7.5 asks
    /// this of stream transports).
    pub skip_leading_crlf: bool,
    /// Accept several SP between the elements of the request line and status line.
    pub allow_start_line_extra_spaces: bool,
    /// Accept `SIP/2.0 200` with no SP before an empty reason phrase.
    pub allow_missing_reason_space: bool,
}

impl ParseOptions {
    /// Every leniency on.
    pub fn lenient() -> Self {
        ParseOptions {
            limits: Limits::default(),
            allow_bare_lf: true,
            skip_leading_crlf: true,
            allow_start_line_extra_spaces: true,
            allow_missing_reason_space: true,
        }
    }
}

/// A SIP method. Method names are case-sensitive (RFC 3261 7.1): `invite` is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method<'b> {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Update,
    Info,
    Refer,
    Message,
    Subscribe,
    Notify,
    Publish,
    Other(&'b [u8]),
}

impl<'b> Method<'b> {
    pub fn from_bytes(m: &'b [u8]) -> Method<'b> {
        match m {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            other => Method::Other(other),
        }
    }

    pub fn as_bytes(&self) -> &'b [u8] {
        match *self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Options => b"OPTIONS",
            Method::Register => b"REGISTER",
            Method::Prack => b"PRACK",
            Method::Update => b"UPDATE",
            Method::Info => b"INFO",
            Method::Refer => b"REFER",
            Method::Message => b"MESSAGE",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Notify => b"NOTIFY",
            Method::Publish => b"PUBLISH",
            Method::Other(m) => m,
        }
    }
}

/// One header field as it appears in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'b> {
    pub name: HeaderName,
    pub raw_name: &'b [u8],
    /// The value, trimmed; a folded value keeps its inner CRLF and indentation.
    pub value: &'b [u8],
}

/// `CSeq: 4711 INVITE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'b> {
    pub number: u32,
    pub method: Method<'b>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub start: u16,
    pub end: u16,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        // every offset is below max_message <= 65535, checked before indexing
        Span {
            start: start as u16,
            end: end as u16,
        }
    }
    pub(crate) fn range(self) -> core::ops::Range<usize> {
        usize::from(self.start)..usize::from(self.end)
    }
}

/// One indexed header field: its name, where its line starts and its trimmed value. Eight
/// octets: the field ends where the next one (or the empty line) starts, and the raw name is
/// the token run at its start, so neither is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Entry {
    pub name: HeaderName,
    pub line_start: u16,
    pub value: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request {
        method: Span,
        uri: Span,
        version: Span,
    },
    Response {
        version: Span,
        code: u16,
        reason: Span,
    },
}

/// A parsed SIP message borrowing its datagram.
#[derive(Clone)]
pub struct Message<'b> {
    pub(crate) buf: &'b [u8],
    /// Offset of the start line (after CRLFs skipped by `skip_leading_crlf`).
    pub(crate) begin: u16,
    pub(crate) start: StartLine,
    /// Offset of the first header line (after the start line's line end).
    pub(crate) headers_start: u16,
    pub(crate) entries: [Entry; MAX_HEADERS],
    pub(crate) count: u8,
    /// The empty line that ends the header section.
    pub(crate) blank: Span,
    pub(crate) body: Span,
    pub(crate) content_length: Option<u32>,
}

impl core::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Message")
            .field("start", &self.start)
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("body_len", &self.body().len())
            .finish()
    }
}

enum LineEnd {
    Found { content_end: usize, next: usize },
    Missing,
    Bad,
}

#[inline]
fn find_line(buf: &[u8], pos: usize, bare_lf: bool) -> LineEnd {
    match find_eol(buf, pos) {
        None => LineEnd::Missing,
        Some(at) => {
            if buf.get(at) == Some(&b'\r') {
                match buf.get(at + 1) {
                    Some(b'\n') => LineEnd::Found {
                        content_end: at,
                        next: at + 2,
                    },
                    Some(_) => LineEnd::Bad,
                    None => LineEnd::Missing,
                }
            } else if bare_lf {
                LineEnd::Found {
                    content_end: at,
                    next: at + 1,
                }
            } else {
                LineEnd::Bad
            }
        }
    }
}

/// The line end at or after `from`: (end of the line's content, start of the next line).
#[inline]
fn line_end_from(buf: &[u8], from: usize, bare_lf: bool) -> Result<(usize, usize), Error> {
    let at = find_eol(buf, from).ok_or(Error::Truncated)?;
    if buf.get(at) == Some(&b'\r') {
        match buf.get(at + 1) {
            Some(b'\n') => Ok((at, at + 2)),
            Some(_) => Err(Error::BadHeader),
            None => Err(Error::Truncated),
        }
    } else if bare_lf {
        Ok((at, at + 1))
    } else {
        Err(Error::BadHeader)
    }
}

/// The error for a header line that is not `name: value`: a line that never ends is a
/// truncated message, any other a malformed field.
#[cold]
fn bad_field(buf: &[u8], pos: usize, bare_lf: bool) -> Error {
    match find_line(buf, pos, bare_lf) {
        LineEnd::Missing => Error::Truncated,
        LineEnd::Found { .. } | LineEnd::Bad => Error::BadHeader,
    }
}

fn is_sip_version(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"SIP/2.0")
}

/// `SIP/<digits>.<digits>`: a version we can name but do not speak.
fn looks_like_version(v: &[u8]) -> bool {
    let Some(rest) = v
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case(b"SIP/"))
        .and(v.get(4..))
    else {
        return false;
    };
    let mut parts = rest.splitn(2, |&b| b == b'.');
    let major = parts.next().unwrap_or(&[]);
    let minor = parts.next().unwrap_or(&[]);
    !major.is_empty()
        && !minor.is_empty()
        && major.iter().all(u8::is_ascii_digit)
        && minor.iter().all(u8::is_ascii_digit)
}

/// Whether `uri` passes as a Request-URI in a start line: `scheme ":"` and then visible octets
/// only. What a request built from a peer's URI must satisfy to parse again.
pub fn is_request_uri(uri: &[u8]) -> bool {
    visible_len(uri) == uri.len() && has_scheme(uri)
}

/// `scheme ":"` at the start (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`).
fn has_scheme(uri: &[u8]) -> bool {
    let len = uri
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        .count();
    uri.first().is_some_and(u8::is_ascii_alphabetic) && uri.get(len) == Some(&b':')
}

fn parse_start_line(
    buf: &[u8],
    from: usize,
    to: usize,
    opts: &ParseOptions,
) -> Result<StartLine, Error> {
    let line = buf.get(from..to).ok_or(Error::Truncated)?;
    // Split at SP; with the leniency, runs of SP count as one separator.
    let next_sp = |i: usize| memchr::memchr(b' ', line.get(i..).unwrap_or(&[])).map(|j| i + j);
    let skip_sp = |mut i: usize| {
        if opts.allow_start_line_extra_spaces {
            while line.get(i) == Some(&b' ') {
                i += 1;
            }
        }
        i
    };
    let first_end = next_sp(0).ok_or(Error::BadStartLine)?;
    let first = line.get(..first_end).unwrap_or(&[]);
    let second_start = skip_sp(first_end + 1);
    if first.len() >= 4
        && first
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        if !is_sip_version(first) {
            return Err(if looks_like_version(first) {
                Error::BadVersion
            } else {
                Error::BadStartLine
            });
        }
        let code_bytes = line.get(second_start..).unwrap_or(&[]);
        let digits = code_bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits != 3 {
            return Err(Error::BadStatus);
        }
        let code = parse_u32(code_bytes.get(..3).unwrap_or(&[])).ok_or(Error::BadStatus)?;
        if !(100..=699).contains(&code) {
            return Err(Error::BadStatus);
        }
        let after = second_start + 3;
        let reason_start = match line.get(after) {
            Some(b' ') => skip_sp(after + 1),
            None if opts.allow_missing_reason_space => after,
            _ => return Err(Error::BadStatus),
        };
        // the reason phrase is UTF-8 text; control octets other than HT end nothing but are
        // not allowed
        let reason = line.get(reason_start..).unwrap_or(&[]);
        if reason.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(Error::BadStartLine);
        }
        return Ok(StartLine::Response {
            version: Span::new(from, from + first_end),
            code: code as u16,
            reason: Span::new(from + reason_start, to),
        });
    }
    if first.is_empty() || !first.iter().all(|&b| is_token(b)) {
        return Err(Error::BadStartLine);
    }
    // a Request-URI is `scheme ":" ...` with no whitespace or control octets: it runs over
    // visible octets to the SP before the version
    let uri_end = second_start + visible_len(line.get(second_start..).unwrap_or(&[]));
    if line.get(uri_end) != Some(&b' ') {
        return Err(Error::BadStartLine);
    }
    if !has_scheme(line.get(second_start..uri_end).unwrap_or(&[])) {
        return Err(Error::BadStartLine);
    }
    let version_start = skip_sp(uri_end + 1);
    let version = line.get(version_start..).unwrap_or(&[]);
    if !is_sip_version(version) {
        return Err(if looks_like_version(version) {
            Error::BadVersion
        } else {
            Error::BadStartLine
        });
    }
    Ok(StartLine::Request {
        method: Span::new(from, from + first_end),
        uri: Span::new(from + second_start, from + uri_end),
        version: Span::new(from + version_start, to),
    })
}

/// The name and colon of a header line whose name the relay knows, found from the
/// colon among the line's first sixteen octets; `None` sends the line to the general path.
#[inline]
fn known_name(buf: &[u8], pos: usize) -> Option<(HeaderName, usize)> {
    let (colon_at, ends) = colon_probe(buf.get(pos..)?)?;
    // a CR would fold onto '-' in the name compare: only lines without one before the colon
    if ends & ((1 << colon_at) - 1) != 0 {
        return None;
    }
    let colon = pos + colon_at as usize;
    let mut name_end = colon;
    while name_end > pos && buf.get(name_end - 1).copied().is_some_and(is_ws) {
        name_end -= 1;
    }
    if name_end == pos {
        return None;
    }
    // a known name is made of token octets (letters and '-'), as the general path requires
    let name = HeaderName::classify(buf.get(pos..)?, name_end - pos);
    (name != HeaderName::Other).then_some((name, colon))
}

/// What indexing the header section found.
struct HeaderSection {
    count: usize,
    blank: Span,
    content_length: Option<u32>,
}

/// Indexes the header fields from `next_line` to the empty line; kept out of `parse_with` so
/// the per-field loop has the registers to itself.
#[inline(never)]
fn index_headers(
    buf: &[u8],
    mut next_line: usize,
    opts: &ParseOptions,
    entries: &mut [Entry; MAX_HEADERS],
) -> Result<HeaderSection, Error> {
    let lim = &opts.limits;
    let max_headers = lim.max_headers.min(MAX_HEADERS);
    let bare_lf = opts.allow_bare_lf;
    let mut content_length = None;
    let mut count = 0usize;
    let blank = loop {
        let pos = next_line;
        // the empty line that ends the header section
        match buf.get(pos) {
            Some(b'\r') if buf.get(pos + 1) == Some(&b'\n') => {
                break Span::new(pos, pos + 2);
            }
            Some(b'\n') if bare_lf => {
                break Span::new(pos, pos + 1);
            }
            _ => {}
        }
        // A known name is found from its colon: the first sixteen octets give the colon, the
        // (length, first octet) table one candidate and a word compare the answer, with no
        // octet-by-octet scan. Anything else takes the general path: token octets, optional
        // white space, the colon (a line starting with white space here has no field to
        // continue).
        let (name, colon) = match known_name(buf, pos) {
            Some(found) => found,
            None => {
                let mut i = pos + token_len(buf.get(pos..).unwrap_or(&[]));
                let name_end = i;
                while buf.get(i).copied().is_some_and(is_ws) {
                    i += 1;
                }
                if name_end == pos || buf.get(i) != Some(&b':') {
                    return Err(bad_field(buf, pos, bare_lf));
                }
                let name = HeaderName::classify(buf.get(pos..).unwrap_or(&[]), name_end - pos);
                (name, i)
            }
        };
        let mut i = colon + 1;
        while buf.get(i).copied().is_some_and(is_ws) {
            i += 1;
        }
        let text = i;
        let (content_end, next) = line_end_from(buf, text, bare_lf)?;
        // continuation lines (RFC 3261 7.3.1 folding) extend the value
        let mut value_end = content_end;
        let mut line_end = next;
        while matches!(buf.get(line_end), Some(b' ' | b'\t')) {
            (value_end, line_end) = line_end_from(buf, line_end, bare_lf)?;
            if line_end - pos > lim.max_line {
                return Err(Error::LineTooLong);
            }
        }
        if line_end - pos > lim.max_line {
            return Err(Error::LineTooLong);
        }
        let value = if text < content_end {
            // the usual field: text on its first line, so only the end needs trimming
            let mut end = value_end;
            while end > text && buf.get(end - 1).copied().is_some_and(is_lws) {
                end -= 1;
            }
            Span::new(text, end)
        } else {
            // empty first line: the value (if any) starts on a continuation line
            let v = trim_lws(buf.get(colon + 1..value_end).unwrap_or(&[]));
            let start = if v.is_empty() {
                value_end
            } else {
                super::scan::offset_in(buf, v)
            };
            Span::new(start, start + v.len())
        };
        if count == max_headers {
            return Err(Error::TooManyHeaders);
        }
        if name == HeaderName::ContentLength {
            let cl =
                parse_u32(buf.get(value.range()).unwrap_or(&[])).ok_or(Error::BadContentLength)?;
            if content_length.is_some_and(|c| c != cl) {
                return Err(Error::BadContentLength);
            }
            content_length = Some(cl);
        }
        if let Some(e) = entries.get_mut(count) {
            *e = Entry {
                name,
                line_start: pos as u16,
                value,
            };
        }
        count += 1;
        next_line = line_end;
    };
    Ok(HeaderSection {
        count,
        blank,
        content_length,
    })
}

impl<'b> Message<'b> {
    /// Parses one datagram with the strict default options.
    pub fn parse(buf: &'b [u8]) -> Result<Self, Error> {
        Self::parse_with(buf, &ParseOptions::default())
    }

    /// Parses one datagram. Octets after the body (as bounded by Content-Length) are ignored;
    /// without Content-Length the body runs to the end of the datagram (RFC 3261 18.3).
    pub fn parse_with(buf: &'b [u8], opts: &ParseOptions) -> Result<Self, Error> {
        let lim = &opts.limits;
        if buf.len() > lim.max_message.min(u16::MAX as usize) {
            return Err(Error::TooLarge);
        }
        let bare_lf = opts.allow_bare_lf;
        let mut pos = 0;
        if opts.skip_leading_crlf {
            while matches!(buf.get(pos), Some(b'\r' | b'\n')) {
                pos += 1;
            }
        }
        let (start_end, pos2) = match find_line(buf, pos, bare_lf) {
            LineEnd::Found { content_end, next } => (content_end, next),
            LineEnd::Missing => return Err(Error::Truncated),
            LineEnd::Bad => return Err(Error::BadStartLine),
        };
        if start_end - pos > lim.max_line {
            return Err(Error::LineTooLong);
        }
        let start = parse_start_line(buf, pos, start_end, opts)?;
        let headers_start = pos2;

        let mut msg = Message {
            buf,
            begin: pos as u16,
            start,
            headers_start: headers_start as u16,
            entries: [Entry::default(); MAX_HEADERS],
            count: 0,
            blank: Span::default(),
            body: Span::default(),
            content_length: None,
        };
        let section = index_headers(buf, headers_start, opts, &mut msg.entries)?;
        msg.count = section.count as u8;
        msg.blank = section.blank;
        msg.content_length = section.content_length;
        let body_start = usize::from(section.blank.end);
        let available = buf.len() - body_start;
        let body_len = match msg.content_length {
            Some(cl) if cl as usize > available => return Err(Error::BadContentLength),
            Some(cl) => cl as usize,
            None => available,
        };
        msg.body = Span::new(body_start, body_start + body_len);
        Ok(msg)
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        self.entries.get(..usize::from(self.count)).unwrap_or(&[])
    }

    /// Each field with the offset after its line end (continuation lines included).
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&Entry, usize)> + '_ {
        let ends = self
            .entries()
            .iter()
            .skip(1)
            .map(|e| usize::from(e.line_start))
            .chain(core::iter::once(usize::from(self.blank.start)));
        self.entries().iter().zip(ends)
    }

    pub(crate) fn slice(&self, r: core::ops::Range<usize>) -> &'b [u8] {
        self.buf.get(r).unwrap_or(&[])
    }

    pub(crate) fn entry_value(&self, e: &Entry) -> &'b [u8] {
        self.slice(e.value.range())
    }

    /// The message, from its start line to the end of its body (trailing octets excluded).
    pub fn as_bytes(&self) -> &'b [u8] {
        self.slice(usize::from(self.begin)..usize::from(self.body.end))
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<Method<'b>> {
        match self.start {
            StartLine::Request { method, .. } => {
                Some(Method::from_bytes(self.slice(method.range())))
            }
            StartLine::Response { .. } => None,
        }
    }

    pub fn request_uri(&self) -> Option<&'b [u8]> {
        match self.start {
            StartLine::Request { uri, .. } => Some(self.slice(uri.range())),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase, possibly empty.
    pub fn reason(&self) -> Option<&'b [u8]> {
        match self.start {
            StartLine::Response { reason, .. } => Some(self.slice(reason.range())),
            StartLine::Request { .. } => None,
        }
    }

    /// Every header field in message order.
    pub fn headers(&self) -> impl Iterator<Item = Header<'b>> + '_ {
        self.entries().iter().map(move |e| Header {
            name: e.name,
            raw_name: {
                let rest = self.slice(usize::from(e.line_start)..self.buf.len());
                rest.get(..token_len(rest)).unwrap_or(&[])
            },
            value: self.entry_value(e),
        })
    }

    /// The number of header fields.
    pub fn header_count(&self) -> usize {
        usize::from(self.count)
    }

    /// The value of the first header field of that name.
    pub fn header(&self, name: HeaderName) -> Option<&'b [u8]> {
        self.entries()
            .iter()
            .find(|e| e.name == name)
            .map(|e| self.entry_value(e))
    }

    /// Every comma-separated value of every header field of that name, in order. Commas inside
    /// quoted strings and `<...>` do not split; empty elements are yielded (as `b""`).
    pub fn header_values(&self, name: HeaderName) -> impl Iterator<Item = &'b [u8]> + '_ {
        self.entries()
            .iter()
            .filter(move |e| e.name == name)
            .flat_map(move |e| CommaSplit::new(self.entry_value(e)))
    }

    /// The only header field of that name: `MissingHeader` or `DuplicateHeader` otherwise.
    fn single(&self, name: HeaderName) -> Result<&'b [u8], Error> {
        let mut it = self.entries().iter().filter(|e| e.name == name);
        let e = it.next().ok_or(Error::MissingHeader)?;
        if it.next().is_some() {
            return Err(Error::DuplicateHeader);
        }
        Ok(self.entry_value(e))
    }

    pub fn top_via(&self) -> Result<Via<'b>, Error> {
        let v = self
            .header_values(HeaderName::Via)
            .next()
            .ok_or(Error::MissingHeader)?;
        Via::parse(v)
    }

    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'b>, Error>> + '_ {
        self.header_values(HeaderName::Via).map(Via::parse)
    }

    pub fn call_id(&self) -> Result<&'b [u8], Error> {
        let v = self.single(HeaderName::CallId)?;
        if v.is_empty() || v.iter().any(|&b| b <= 0x20 || b == 0x7f) {
            return Err(Error::BadCallId);
        }
        Ok(v)
    }

    /// CSeq; for a request its method must be the request's (RFC 3261 8.1.1.5) and its
    /// number below 2**31.
    pub fn cseq(&self) -> Result<CSeq<'b>, Error> {
        let v = self.single(HeaderName::CSeq)?;
        let n = v.iter().take_while(|b| b.is_ascii_digit()).count();
        let number = parse_u32(v.get(..n).unwrap_or(&[])).ok_or(Error::BadCSeq)?;
        if number >= 1 << 31 {
            return Err(Error::BadCSeq);
        }
        let rest = v.get(n..).unwrap_or(&[]);
        if !rest.first().copied().is_some_and(super::scan::is_lws) {
            return Err(Error::BadCSeq);
        }
        let m = trim_lws(rest);
        if m.is_empty() || !m.iter().all(|&b| is_token(b)) {
            return Err(Error::BadCSeq);
        }
        let method = Method::from_bytes(m);
        if let Some(req) = self.method() {
            if req != method {
                return Err(Error::BadCSeq);
            }
        }
        Ok(CSeq { number, method })
    }

    pub fn from(&self) -> Result<NameAddr<'b>, Error> {
        NameAddr::parse(self.single(HeaderName::From)?)
    }

    pub fn to(&self) -> Result<NameAddr<'b>, Error> {
        NameAddr::parse(self.single(HeaderName::To)?)
    }

    /// Max-Forwards, `None` when absent; values above 255 are malformed.
    pub fn max_forwards(&self) -> Result<Option<u32>, Error> {
        match self.single(HeaderName::MaxForwards) {
            Err(Error::MissingHeader) => Ok(None),
            Err(e) => Err(e),
            Ok(v) => match parse_u32(v) {
                Some(n) if n <= 255 => Ok(Some(n)),
                _ => Err(Error::BadMaxForwards),
            },
        }
    }

    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'b>, Error>> + '_ {
        self.header_values(HeaderName::Route).map(NameAddr::parse)
    }

    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'b>, Error>> + '_ {
        self.header_values(HeaderName::RecordRoute)
            .map(NameAddr::parse)
    }

    /// The first Contact value.
    pub fn contact(&self) -> Option<Result<NameAddr<'b>, Error>> {
        self.header_values(HeaderName::Contact)
            .next()
            .map(NameAddr::parse)
    }

    pub fn content_type(&self) -> Option<&'b [u8]> {
        self.header(HeaderName::ContentType)
    }

    /// The body: Content-Length octets, or the rest of the datagram without Content-Length.
    pub fn body(&self) -> &'b [u8] {
        self.slice(self.body.range())
    }
}
