//! SDP (RFC 4566): a zero-copy view of what the media relay needs, and a one-pass rewrite that
//! anchors the media on the relay.
//!
//! The view reads the connection address (`c=`, media level over session level), each `m=`
//! line (kind, port, protocol, formats), `a=rtcp` (RFC 3605), `a=rtcp-mux` and the direction
//! attributes. The rewrite copies every line unchanged except: `c=` (both levels) becomes the
//! relay's address, each `m=` port becomes the port allocated for that stream (port 0, a
//! disabled stream, stays 0), `a=rtcp` is rewritten to the new RTP port + 1 and address, and the
//! ICE lines (`a=candidate`, `a=ice-*`, `a=remote-candidates`, `a=end-of-candidates`) are
//! dropped, since candidates would let the peers bypass the relay.
//!
//! Both CRLF and bare LF line ends are accepted and preserved line by line. Nothing allocates;
//! input size and the number of `m=` lines are bounded by [`MAX_BODY`] and [`MAX_MEDIA`].

use std::net::IpAddr;

/// Largest SDP body accepted (a UDP SIP datagram cannot carry much more anyway).
pub const MAX_BODY: usize = 32 * 1024;
/// Most `m=` lines accepted in one body.
pub const MAX_MEDIA: usize = 16;

/// Why an SDP body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    #[error("SDP body too large")]
    TooLarge,
    #[error("too many m= lines")]
    TooManyMedia,
    #[error("SDP must start with v=0")]
    BadVersion,
    #[error("malformed SDP line")]
    BadLine,
    #[error("malformed c= line")]
    BadConnection,
    #[error("malformed m= line")]
    BadMedia,
    #[error("malformed a=rtcp attribute")]
    BadRtcp,
    #[error("rewrite needs exactly one port per m= line")]
    PortCount,
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Media direction (RFC 4566 section 6 / RFC 3264 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attribute(a: &[u8]) -> Option<Direction> {
        match a {
            b"sendrecv" => Some(Direction::SendRecv),
            b"sendonly" => Some(Direction::SendOnly),
            b"recvonly" => Some(Direction::RecvOnly),
            b"inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// One `m=` line with what applies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media<'b> {
    /// `audio`, `video`, `image`, ...
    pub kind: &'b [u8],
    /// RTP port; 0 = stream disabled (RFC 3264 section 5.1).
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, `udptl`, ...
    pub proto: &'b [u8],
    /// Format list as written (payload types for RTP).
    pub formats: &'b [u8],
    /// Media-level `c=`, else the session-level one.
    pub connection: Option<IpAddr>,
    /// `a=rtcp:` port and optional address (RFC 3605).
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    /// `a=rtcp-mux` present (RFC 5761).
    pub rtcp_mux: bool,
    /// Media-level direction attribute, else the session-level one, else sendrecv.
    pub direction: Direction,
}

impl Media<'_> {
    const EMPTY: Media<'static> = Media {
        kind: &[],
        port: 0,
        proto: &[],
        formats: &[],
        connection: None,
        rtcp: None,
        rtcp_mux: false,
        direction: Direction::SendRecv,
    };

    /// Port 0: the stream is disabled or rejected.
    pub fn is_disabled(&self) -> bool {
        self.port == 0
    }
}

/// A validated view of an SDP body.
#[derive(Debug, Clone)]
pub struct Sdp<'b> {
    body: &'b [u8],
    session_connection: Option<IpAddr>,
    session_direction: Option<Direction>,
    media: [Media<'b>; MAX_MEDIA],
    media_count: usize,
}

impl<'b> Sdp<'b> {
    /// Parses and validates `body`. Every line must be `<letter>=<value>`; the first one `v=0`.
    pub fn parse(body: &'b [u8]) -> Result<Self, Error> {
        let mut sdp = Sdp {
            body,
            session_connection: None,
            session_direction: None,
            media: [Media::EMPTY; MAX_MEDIA],
            media_count: 0,
        };
        // The media being filled; its own c= and direction, resolved when it ends.
        let mut cur: Option<(Media<'b>, Option<IpAddr>, Option<Direction>)> = None;
        for line in scan(body)? {
            let line = line?;
            match line.kind {
                Kind::Connection => {
                    let ip = parse_connection(line.value)?;
                    match cur.as_mut() {
                        Some((_, c, _)) => *c = Some(ip),
                        None => sdp.session_connection = Some(ip),
                    }
                }
                Kind::Media => {
                    if let Some(m) = cur.take() {
                        sdp.push(m)?;
                    }
                    let m = parse_media(line.value)?;
                    cur = Some((m, None, None));
                }
                Kind::Attribute => {
                    let a = line.value;
                    if let Some(d) = Direction::from_attribute(a) {
                        match cur.as_mut() {
                            Some((_, _, dir)) => *dir = Some(d),
                            None => sdp.session_direction = Some(d),
                        }
                    } else if let Some(v) = a.strip_prefix(b"rtcp:") {
                        // Validated at session level too, where it is ignored (RFC 3605 puts it
                        // on media), so that parse and rewrite accept the same bodies.
                        let rtcp = parse_rtcp(v)?;
                        if let Some((m, _, _)) = cur.as_mut() {
                            m.rtcp = Some(rtcp);
                        }
                    } else if let (b"rtcp-mux", Some((m, _, _))) = (a, cur.as_mut()) {
                        m.rtcp_mux = true;
                    }
                }
                Kind::Other | Kind::Empty => {}
            }
        }
        if let Some(m) = cur.take() {
            sdp.push(m)?;
        }
        Ok(sdp)
    }

    fn push(
        &mut self,
        (mut m, c, d): (Media<'b>, Option<IpAddr>, Option<Direction>),
    ) -> Result<(), Error> {
        m.connection = c.or(self.session_connection);
        m.direction = d.or(self.session_direction).unwrap_or_default();
        let slot = self
            .media
            .get_mut(self.media_count)
            .ok_or(Error::TooManyMedia)?;
        *slot = m;
        self.media_count += 1;
        Ok(())
    }

    /// The body this view borrows.
    pub fn as_bytes(&self) -> &'b [u8] {
        self.body
    }

    /// The `m=` lines in order.
    pub fn media(&self) -> impl Iterator<Item = Media<'b>> + '_ {
        self.media.iter().take(self.media_count).copied()
    }

    /// Number of `m=` lines.
    pub fn media_count(&self) -> usize {
        self.media_count
    }

    /// Session-level `c=` address.
    pub fn session_connection(&self) -> Option<IpAddr> {
        self.session_connection
    }

    /// Session-level direction attribute, if any.
    pub fn session_direction(&self) -> Option<Direction> {
        self.session_direction
    }
}

/// What [`rewrite`] puts in.
#[derive(Debug, Clone, Copy)]
pub struct SdpRewrite<'a> {
    /// The relay's media address: every `c=` and `a=rtcp` address.
    pub address: IpAddr,
    /// The relay's RTP port for each `m=` line, in order; RTCP is that port + 1.
    pub ports: &'a [u16],
}

/// Rewrites `body` into `out` (see the module docs) and returns the length written.
/// `rw.ports` must have exactly one entry per `m=` line.
pub fn rewrite(body: &[u8], rw: &SdpRewrite<'_>, out: &mut [u8]) -> Result<usize, Error> {
    let mut w = Out { buf: out, len: 0 };
    let mut media_index: Option<usize> = None;
    // Whether the current m= line keeps a port (not disabled).
    let mut media_active = false;
    for line in scan(body)? {
        let line = line?;
        match line.kind {
            Kind::Connection => {
                parse_connection(line.value)?;
                w.put(b"c=IN ")?;
                w.put(if rw.address.is_ipv4() {
                    b"IP4 "
                } else {
                    b"IP6 "
                })?;
                w.put_ip(rw.address)?;
                w.put(line.eol)?;
            }
            Kind::Media => {
                let m = parse_media(line.value)?;
                let i = media_index.map_or(0, |i| i + 1);
                if i >= MAX_MEDIA {
                    return Err(Error::TooManyMedia);
                }
                media_index = Some(i);
                let port = if m.port == 0 {
                    0
                } else {
                    *rw.ports.get(i).ok_or(Error::PortCount)?
                };
                media_active = port != 0;
                w.put(b"m=")?;
                w.put(m.kind)?;
                w.put(b" ")?;
                w.put_u16(port)?;
                w.put(b" ")?;
                w.put(m.proto)?;
                if !m.formats.is_empty() {
                    w.put(b" ")?;
                    w.put(m.formats)?;
                }
                w.put(line.eol)?;
            }
            Kind::Attribute if is_ice(line.value) => {}
            Kind::Attribute if line.value.starts_with(b"rtcp:") => {
                parse_rtcp(line.value.get(5..).unwrap_or_default())?;
                // RFC 3605 a=rtcp is media-level only; a session-level one or one on a
                // disabled stream would only leak the peer's address, so it goes.
                if let (Some(i), true) = (media_index, media_active) {
                    let port = *rw.ports.get(i).ok_or(Error::PortCount)?;
                    w.put(b"a=rtcp:")?;
                    w.put_u16(port.wrapping_add(1))?;
                    w.put(if rw.address.is_ipv4() {
                        b" IN IP4 "
                    } else {
                        b" IN IP6 "
                    })?;
                    w.put_ip(rw.address)?;
                    w.put(line.eol)?;
                }
            }
            _ => {
                w.put(line.raw)?;
            }
        }
    }
    let count = media_index.map_or(0, |i| i + 1);
    if count != rw.ports.len() {
        return Err(Error::PortCount);
    }
    Ok(w.len)
}

fn is_ice(a: &[u8]) -> bool {
    a.starts_with(b"candidate:")
        || a.starts_with(b"ice-")
        || a.starts_with(b"remote-candidates")
        || a == b"end-of-candidates"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connection,
    Media,
    Attribute,
    Other,
    Empty,
}

#[derive(Debug, Clone, Copy)]
struct Line<'b> {
    kind: Kind,
    /// After `x=`, without the line end.
    value: &'b [u8],
    /// `\r\n`, `\n`, or empty on an unterminated last line.
    eol: &'b [u8],
    /// The whole line including its end.
    raw: &'b [u8],
}

/// Checks the size limit, then yields validated lines: first non-empty one `v=0`, every other
/// one `<lowercase letter>=...`, no stray CR, no NUL.
fn scan(body: &[u8]) -> Result<Lines<'_>, Error> {
    if body.len() > MAX_BODY {
        return Err(Error::TooLarge);
    }
    Ok(Lines {
        rest: body,
        seen_version: false,
    })
}

struct Lines<'b> {
    rest: &'b [u8],
    seen_version: bool,
}

impl<'b> Iterator for Lines<'b> {
    type Item = Result<Line<'b>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let (raw, rest) = match memchr::memchr(b'\n', self.rest) {
            Some(i) => self.rest.split_at(i + 1),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        let (content, eol) = if let Some(c) = raw.strip_suffix(b"\r\n") {
            (c, &raw[c.len()..])
        } else if let Some(c) = raw.strip_suffix(b"\n") {
            (c, &raw[c.len()..])
        } else {
            (raw, &raw[raw.len()..])
        };
        Some(self.classify(content, eol, raw))
    }
}

impl<'b> Lines<'b> {
    fn classify(
        &mut self,
        content: &'b [u8],
        eol: &'b [u8],
        raw: &'b [u8],
    ) -> Result<Line<'b>, Error> {
        if content.is_empty() {
            // Tolerated: some equipment ends the body with an extra blank line.
            return Ok(Line {
                kind: Kind::Empty,
                value: content,
                eol,
                raw,
            });
        }
        if memchr::memchr2(b'\r', 0, content).is_some() {
            return Err(Error::BadLine);
        }
        let (t, value) = match content {
            [t @ b'a'..=b'z', b'=', value @ ..] => (*t, value),
            _ => return Err(Error::BadLine),
        };
        if !self.seen_version {
            if t != b'v' || value != b"0" {
                return Err(Error::BadVersion);
            }
            self.seen_version = true;
            return Ok(Line {
                kind: Kind::Other,
                value,
                eol,
                raw,
            });
        }
        let kind = match t {
            b'c' => Kind::Connection,
            b'm' => Kind::Media,
            b'a' => Kind::Attribute,
            _ => Kind::Other,
        };
        Ok(Line {
            kind,
            value,
            eol,
            raw,
        })
    }
}

fn trim_end(s: &[u8]) -> &[u8] {
    let mut s = s;
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `IN IP4 <addr>[/ttl[/n]]` or `IN IP6 <addr>[/n]`. Host names are refused: the relay
/// needs an address it can send to without resolving.
fn parse_connection(v: &[u8]) -> Result<IpAddr, Error> {
    let v = trim_end(v);
    let mut f = v.split(|&b| b == b' ');
    let (Some(b"IN"), Some(family), Some(addr), None) = (f.next(), f.next(), f.next(), f.next())
    else {
        return Err(Error::BadConnection);
    };
    let addr = addr.split(|&b| b == b'/').next().unwrap_or(addr);
    parse_address(family, addr).ok_or(Error::BadConnection)
}

fn parse_address(family: &[u8], addr: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(addr).ok()?;
    match family {
        b"IP4" => s.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
        b"IP6" => s.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        _ => None,
    }
}

fn parse_port(s: &[u8]) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = s.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok()
}

/// `<media> <port>[/<count>] <proto> [<fmt> ...]`.
fn parse_media(v: &[u8]) -> Result<Media<'_>, Error> {
    let v = trim_end(v);
    let mut f = v.splitn(4, |&b| b == b' ');
    let (Some(kind), Some(port), Some(proto)) = (f.next(), f.next(), f.next()) else {
        return Err(Error::BadMedia);
    };
    let formats = f.next().unwrap_or(&[]);
    if kind.is_empty() || proto.is_empty() {
        return Err(Error::BadMedia);
    }
    // A port count (`49170/2`) is accepted on read; the rewrite anchors one pair and drops it.
    let mut p = port.splitn(2, |&b| b == b'/');
    let port = p.next().and_then(parse_port).ok_or(Error::BadMedia)?;
    if let Some(count) = p.next() {
        parse_port(count)
            .filter(|&c| c > 0)
            .ok_or(Error::BadMedia)?;
    }
    Ok(Media {
        kind,
        port,
        proto,
        formats,
        ..Media::EMPTY
    })
}

/// RFC 3605: `<port> [IN IP4|IP6 <addr>]` (the value after `a=rtcp:`).
fn parse_rtcp(v: &[u8]) -> Result<(u16, Option<IpAddr>), Error> {
    let v = trim_end(v);
    let mut f = v.split(|&b| b == b' ');
    let port = f.next().and_then(parse_port).ok_or(Error::BadRtcp)?;
    match (f.next(), f.next(), f.next(), f.next()) {
        (None, ..) => Ok((port, None)),
        (Some(b"IN"), Some(family), Some(addr), None) => Ok((
            port,
            Some(parse_address(family, addr).ok_or(Error::BadRtcp)?),
        )),
        _ => Err(Error::BadRtcp),
    }
}

/// Bounded cursor over the caller's buffer.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Out<'_> {
    fn put(&mut self, s: &[u8]) -> Result<(), Error> {
        let end = self.len.checked_add(s.len()).ok_or(Error::BufferTooSmall)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(Error::BufferTooSmall)?
            .copy_from_slice(s);
        self.len = end;
        Ok(())
    }

    fn put_u16(&mut self, n: u16) -> Result<(), Error> {
        let mut b = itoa::Buffer::new();
        self.put(b.format(n).as_bytes())
    }

    fn put_ip(&mut self, ip: IpAddr) -> Result<(), Error> {
        use std::io::Write;
        // 45 bytes hold the longest textual IPv6 address.
        let mut tmp = [0u8; 48];
        let mut c = std::io::Cursor::new(&mut tmp[..]);
        write!(c, "{ip}").map_err(|_| Error::BufferTooSmall)?;
        let n = usize::try_from(c.position()).map_err(|_| Error::BufferTooSmall)?;
        self.put(tmp.get(..n).ok_or(Error::BufferTooSmall)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A Cisco CUBE style offer: session c=, two streams, telephone-event.
    const CUBE_OFFER: &[u8] = b"v=0\r\n\
o=CiscoSystemsSIP-GW-UserAgent 3814 5766 IN IP4 10.20.0.5\r\n\
s=SIP Call\r\n\
c=IN IP4 10.20.0.5\r\n\
t=0 0\r\n\
m=audio 17018 RTP/AVP 8 0 101\r\n\
c=IN IP4 10.20.0.6\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=rtcp:17019\r\n\
a=ptime:20\r\n\
m=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n";

    /// A Lync Mediation Server style offer with ICE lines and RFC 3605 a=rtcp with address.
    const LYNC_OFFER: &[u8] = b"v=0\r\n\
o=- 0 1 IN IP4 192.168.10.20\r\n\
s=session\r\n\
c=IN IP4 192.168.10.20\r\n\
b=CT:1000\r\n\
t=0 0\r\n\
a=sendonly\r\n\
m=audio 52380 RTP/AVP 0 8 101\r\n\
a=ice-ufrag:Yt4r\r\n\
a=ice-pwd:bHJb1M9p8Xz0Qm6fXv0w3YtR\r\n\
a=candidate:1 1 UDP 2130706431 192.168.10.20 52380 typ host \r\n\
a=candidate:1 2 UDP 2130705918 192.168.10.20 52381 typ host \r\n\
a=remote-candidates:1 10.0.0.1 4000 2 10.0.0.1 4001\r\n\
a=end-of-candidates\r\n\
a=rtcp:52381 IN IP4 192.168.10.20\r\n\
a=label:main-audio\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n";

    #[test]
    fn parses_cube_offer() {
        let s = Sdp::parse(CUBE_OFFER).unwrap();
        assert_eq!(s.media_count(), 2);
        let m: Vec<_> = s.media().collect();
        assert_eq!(m[0].kind, b"audio");
        assert_eq!(m[0].port, 17018);
        assert_eq!(m[0].proto, b"RTP/AVP");
        assert_eq!(m[0].formats, b"8 0 101");
        assert_eq!(
            m[0].connection,
            Some(IpAddr::V4(Ipv4Addr::new(10, 20, 0, 6)))
        );
        assert_eq!(m[0].rtcp, Some((17019, None)));
        assert_eq!(m[0].direction, Direction::SendRecv);
        assert_eq!(m[1].kind, b"video");
        assert!(m[1].is_disabled());
        assert_eq!(
            m[1].connection,
            Some(IpAddr::V4(Ipv4Addr::new(10, 20, 0, 5)))
        );
        assert_eq!(m[1].rtcp, None);
    }

    #[test]
    fn parses_lync_offer_session_direction_and_rtcp_address() {
        let s = Sdp::parse(LYNC_OFFER).unwrap();
        let m = s.media().next().unwrap();
        assert_eq!(m.direction, Direction::SendOnly);
        assert_eq!(s.session_direction(), Some(Direction::SendOnly));
        assert_eq!(
            m.rtcp,
            Some((52381, Some(IpAddr::V4(Ipv4Addr::new(192, 168, 10, 20)))))
        );
    }

    #[test]
    fn media_direction_overrides_session_and_each_kind_parses() {
        for (attr, d) in [
            (&b"sendrecv"[..], Direction::SendRecv),
            (b"sendonly", Direction::SendOnly),
            (b"recvonly", Direction::RecvOnly),
            (b"inactive", Direction::Inactive),
        ] {
            let mut body =
                b"v=0\nc=IN IP4 1.2.3.4\na=inactive\nm=audio 4000 RTP/AVP 0\na=".to_vec();
            body.extend_from_slice(attr);
            body.extend_from_slice(b"\nm=audio 4002 RTP/AVP 0\n");
            let s = Sdp::parse(&body).unwrap();
            let m: Vec<_> = s.media().collect();
            assert_eq!(m[0].direction, d);
            assert_eq!(m[1].direction, Direction::Inactive);
        }
    }

    #[test]
    fn rewrites_cube_offer() {
        let mut out = [0u8; 1024];
        let rw = SdpRewrite {
            address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            ports: &[30000, 30002],
        };
        let n = rewrite(CUBE_OFFER, &rw, &mut out).unwrap();
        let expected = b"v=0\r\n\
o=CiscoSystemsSIP-GW-UserAgent 3814 5766 IN IP4 10.20.0.5\r\n\
s=SIP Call\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 8 0 101\r\n\
c=IN IP4 127.0.0.1\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=rtcp:30001 IN IP4 127.0.0.1\r\n\
a=ptime:20\r\n\
m=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n";
        assert_eq!(
            std::str::from_utf8(&out[..n]).unwrap(),
            std::str::from_utf8(expected).unwrap()
        );
    }

    #[test]
    fn rewrite_drops_ice_and_fixes_rtcp() {
        let mut out = [0u8; 2048];
        let rw = SdpRewrite {
            address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
            ports: &[31000],
        };
        let n = rewrite(LYNC_OFFER, &rw, &mut out).unwrap();
        let text = std::str::from_utf8(&out[..n]).unwrap();
        assert!(!text.contains("candidate"), "{text}");
        assert!(!text.contains("ice-"), "{text}");
        assert!(!text.contains("192.168.10.20\r\nb="), "{text}");
        assert!(text.contains("a=rtcp:31001 IN IP4 127.0.0.1\r\n"));
        assert!(text.contains("m=audio 31000 RTP/AVP 0 8 101\r\n"));
        assert!(text.contains("a=label:main-audio\r\n"));
        let s = Sdp::parse(&out[..n]).unwrap();
        let m = s.media().next().unwrap();
        assert_eq!(m.connection, Some(rw.address));
        assert_eq!(m.rtcp, Some((31001, Some(rw.address))));
        assert_eq!(m.direction, Direction::SendOnly);
    }

    #[test]
    fn ipv6_and_bare_lf_preserved() {
        let body = b"v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\nm=audio 5004 RTP/AVP 0\na=rtcp:5005 IN IP6 2001:db8::1\n";
        let s = Sdp::parse(body).unwrap();
        let m = s.media().next().unwrap();
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(m.connection, Some(IpAddr::V6(v6)));
        let mut out = [0u8; 512];
        let rw = SdpRewrite {
            address: "::1".parse().unwrap(),
            ports: &[40000],
        };
        let n = rewrite(body, &rw, &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &b"v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 ::1\nt=0 0\nm=audio 40000 RTP/AVP 0\na=rtcp:40001 IN IP6 ::1\n"[..]
        );
        // IPv6 peer anchored on an IPv4 relay address: the family follows the new address.
        let rw = SdpRewrite {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: &[40000],
        };
        let n = rewrite(body, &rw, &mut out).unwrap();
        assert!(std::str::from_utf8(&out[..n])
            .unwrap()
            .contains("\nc=IN IP4 127.0.0.1\n"));
    }

    #[test]
    fn mixed_line_ends_and_unterminated_last_line() {
        let body = b"v=0\r\nc=IN IP4 10.0.0.1/127\nm=audio 6000/2 RTP/AVP 0\r\na=ptime:20";
        let s = Sdp::parse(body).unwrap();
        assert_eq!(s.media().next().unwrap().port, 6000);
        let mut out = [0u8; 256];
        let rw = SdpRewrite {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: &[30010],
        };
        let n = rewrite(body, &rw, &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &b"v=0\r\nc=IN IP4 127.0.0.1\nm=audio 30010 RTP/AVP 0\r\na=ptime:20"[..]
        );
    }

    #[test]
    fn disabled_stream_keeps_port_zero_and_loses_rtcp() {
        let body = b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\na=rtcp:9\r\nm=audio 7000 RTP/AVP 0\r\n";
        let mut out = [0u8; 256];
        let rw = SdpRewrite {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: &[30000, 30002],
        };
        let n = rewrite(body, &rw, &mut out).unwrap();
        assert_eq!(
            &out[..n],
            &b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\nm=audio 30002 RTP/AVP 0\r\n"[..]
        );
    }

    #[test]
    fn errors() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(Sdp::parse(b"").map(|s| s.media_count()), Ok(0));
        assert_eq!(Sdp::parse(b"o=x\r\n").unwrap_err(), Error::BadVersion);
        assert_eq!(Sdp::parse(b"v=1\r\n").unwrap_err(), Error::BadVersion);
        assert_eq!(Sdp::parse(b"v=0\r\nbogus\r\n").unwrap_err(), Error::BadLine);
        assert_eq!(Sdp::parse(b"v=0\r\nA=x\r\n").unwrap_err(), Error::BadLine);
        assert_eq!(
            Sdp::parse(b"v=0\r\na=x\ry\r\n").unwrap_err(),
            Error::BadLine
        );
        assert_eq!(
            Sdp::parse(b"v=0\r\nc=IN IP4 host.example\r\n").unwrap_err(),
            Error::BadConnection
        );
        assert_eq!(
            Sdp::parse(b"v=0\r\nc=IN IP4 ::1\r\n").unwrap_err(),
            Error::BadConnection
        );
        assert_eq!(
            Sdp::parse(b"v=0\r\nc=IN IP6 1.2.3.4\r\n").unwrap_err(),
            Error::BadConnection
        );
        assert_eq!(
            Sdp::parse(b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n").unwrap_err(),
            Error::BadMedia
        );
        assert_eq!(
            Sdp::parse(b"v=0\r\nm=audio 7000\r\n").unwrap_err(),
            Error::BadMedia
        );
        assert_eq!(
            Sdp::parse(b"v=0\r\nm=audio 7000/0 RTP/AVP 0\r\n").unwrap_err(),
            Error::BadMedia
        );
        assert_eq!(
            Sdp::parse(b"v=0\r\nm=audio 7000 RTP/AVP 0\r\na=rtcp:x\r\n").unwrap_err(),
            Error::BadRtcp
        );
        let mut many = b"v=0\r\n".to_vec();
        for _ in 0..=MAX_MEDIA {
            many.extend_from_slice(b"m=audio 7000 RTP/AVP 0\r\n");
        }
        assert_eq!(Sdp::parse(&many).unwrap_err(), Error::TooManyMedia);
        assert_eq!(
            Sdp::parse(&vec![b'a'; MAX_BODY + 1]).unwrap_err(),
            Error::TooLarge
        );

        let body = b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 7000 RTP/AVP 0\r\n";
        let mut out = [0u8; 256];
        let none = SdpRewrite {
            address: lo,
            ports: &[],
        };
        assert_eq!(rewrite(body, &none, &mut out), Err(Error::PortCount));
        let two = SdpRewrite {
            address: lo,
            ports: &[1, 2],
        };
        assert_eq!(rewrite(body, &two, &mut out), Err(Error::PortCount));
        let one = SdpRewrite {
            address: lo,
            ports: &[30000],
        };
        assert_eq!(
            rewrite(body, &one, &mut out[..20]),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn rewrite_fits_exactly_and_every_shorter_buffer_fails() {
        let rw = SdpRewrite {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: &[30000, 30002],
        };
        let mut out = [0u8; 1024];
        let n = rewrite(CUBE_OFFER, &rw, &mut out).unwrap();
        for len in 0..n {
            assert_eq!(
                rewrite(CUBE_OFFER, &rw, &mut out[..len]),
                Err(Error::BufferTooSmall)
            );
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn line() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                Just(b"c=IN IP4 10.1.2.3".to_vec()),
                Just(b"c=IN IP6 fe80::1".to_vec()),
                (0u16..=65535).prop_map(|p| format!("m=audio {p} RTP/AVP 0 8").into_bytes()),
                Just(b"m=video 0 RTP/AVP 96".to_vec()),
                (1u16..=65535).prop_map(|p| format!("a=rtcp:{p}").into_bytes()),
                Just(b"a=rtcp:9 IN IP4 10.9.9.9".to_vec()),
                Just(b"a=candidate:1 1 UDP 1 10.0.0.1 9 typ host".to_vec()),
                Just(b"a=ice-ufrag:abc".to_vec()),
                Just(b"a=end-of-candidates".to_vec()),
                Just(b"a=sendonly".to_vec()),
                Just(b"a=inactive".to_vec()),
                "[a-z]=[ -~]{0,20}".prop_map(String::into_bytes),
            ]
        }

        proptest! {
            /// The rewrite output parses, with the relay's address and ports in every active
            /// stream, disabled streams intact, and no ICE lines left.
            #[test]
            fn rewrite_then_parse(lines in proptest::collection::vec(line(), 0..20), crlf: bool) {
                let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
                let mut body = b"v=0".to_vec();
                body.extend_from_slice(eol);
                for l in &lines {
                    body.extend_from_slice(l);
                    body.extend_from_slice(eol);
                }
                let Ok(before) = Sdp::parse(&body) else { return Ok(()); };
                let ports: Vec<u16> = (0..before.media_count()).map(|i| 30000 + 2 * i as u16).collect();
                let rw = SdpRewrite { address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)), ports: &ports };
                let mut out = vec![0u8; body.len() + 64 * (lines.len() + 1)];
                let n = rewrite(&body, &rw, &mut out).unwrap();
                let after = Sdp::parse(&out[..n]).unwrap();
                prop_assert_eq!(after.media_count(), before.media_count());
                for ((a, b), p) in after.media().zip(before.media()).zip(&ports) {
                    prop_assert_eq!(a.kind, b.kind);
                    prop_assert_eq!(a.direction, b.direction);
                    if b.port == 0 {
                        prop_assert_eq!(a.port, 0);
                        prop_assert_eq!(a.rtcp, None);
                    } else {
                        prop_assert_eq!(a.port, *p);
                        if b.rtcp.is_some() {
                            prop_assert_eq!(a.rtcp, Some((p + 1, Some(rw.address))));
                        }
                    }
                    if b.connection.is_some() {
                        prop_assert_eq!(a.connection, Some(rw.address));
                    }
                }
                for line in out[..n].split(|&b| b == b'\n') {
                    prop_assert!(!line.starts_with(b"a=candidate:") && !line.starts_with(b"a=ice-"));
                }
            }

            #[test]
            fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = Sdp::parse(&body);
                let mut out = [0u8; 512];
                let rw = SdpRewrite { address: IpAddr::V4(Ipv4Addr::LOCALHOST), ports: &[30000] };
                let _ = rewrite(&body, &rw, &mut out);
            }
        }
    }
}
