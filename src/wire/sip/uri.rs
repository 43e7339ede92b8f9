//! URI views (`sip:`, `sips:`, `tel:`), name-addr / addr-spec values, and telephone numbers.

use super::scan::{find_param, is_lws, parse_port, quoted_len, skip_lws, trim_lws, Params};
use super::Error;

/// URI scheme the relay understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

/// A view of a SIP or tel URI (RFC 3261 19.1, RFC 3966).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'b> {
    pub scheme: Scheme,
    /// User part without the password (for `tel:` the number itself).
    pub user: Option<&'b [u8]>,
    /// Host without the `[]` of an IPv6 reference; empty for `tel:`.
    pub host: &'b [u8],
    pub port: Option<u16>,
    /// `;name=value...` including the leading `;`, or empty.
    pub params: &'b [u8],
    /// Everything after `?`, or empty.
    pub headers: &'b [u8],
}

fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

/// Characters allowed unescaped in a URI (RFC 3261 25.1, `uric` plus `[`, `]` of hosts).
fn is_uri_char(b: u8) -> bool {
    b.is_ascii_graphic()
        && !matches!(
            b,
            b'<' | b'>' | b'"' | b'{' | b'}' | b'|' | b'\\' | b'^' | b'`'
        )
}

impl<'b> Uri<'b> {
    /// Parses a URI. Unknown schemes give `UnsupportedScheme`; embedded whitespace, bad
    /// hosts, bad ports or bad `%` escapes give `BadUri`.
    pub fn parse(s: &'b [u8]) -> Result<Self, Error> {
        let colon = memchr::memchr(b':', s).ok_or(Error::BadUri)?;
        let scheme_bytes = s.get(..colon).unwrap_or(&[]);
        let first_alpha = scheme_bytes.first().is_some_and(u8::is_ascii_alphabetic);
        if !first_alpha
            || !scheme_bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(Error::BadUri);
        }
        let scheme = if scheme_bytes.eq_ignore_ascii_case(b"sip") {
            Scheme::Sip
        } else if scheme_bytes.eq_ignore_ascii_case(b"sips") {
            Scheme::Sips
        } else if scheme_bytes.eq_ignore_ascii_case(b"tel") {
            Scheme::Tel
        } else {
            return Err(Error::UnsupportedScheme);
        };
        let rest = s.get(colon + 1..).unwrap_or(&[]);
        if rest.is_empty() || !rest.iter().all(|&b| is_uri_char(b)) {
            return Err(Error::BadUri);
        }
        check_escapes(rest)?;
        // '@' is allowed nowhere but at the end of the userinfo (RFC 3261 25.1: not in
        // params, headers or host), while the user part may hold '?', ';', '/' and ':'.
        let (user, hostpart) = match memchr::memchr(b'@', rest) {
            Some(at) if scheme != Scheme::Tel => {
                let userinfo = rest.get(..at).unwrap_or(&[]);
                let user = match memchr::memchr(b':', userinfo) {
                    Some(c) => userinfo.get(..c).unwrap_or(&[]),
                    None => userinfo,
                };
                if user.is_empty() {
                    return Err(Error::BadUri);
                }
                (Some(user), rest.get(at + 1..).unwrap_or(&[]))
            }
            _ => (None, rest),
        };
        let (main, headers) = match memchr::memchr(b'?', hostpart) {
            Some(q) => (
                hostpart.get(..q).unwrap_or(&[]),
                hostpart.get(q + 1..).unwrap_or(&[]),
            ),
            None => (hostpart, &[][..]),
        };
        if scheme == Scheme::Tel {
            let semi = memchr::memchr(b';', main).unwrap_or(main.len());
            let number = main.get(..semi).unwrap_or(&[]);
            if number.is_empty() {
                return Err(Error::BadUri);
            }
            return Ok(Uri {
                scheme,
                user: Some(number),
                host: &[],
                port: None,
                params: main.get(semi..).unwrap_or(&[]),
                headers,
            });
        }
        let hostpart = main;
        let (host, after_host) = if hostpart.first() == Some(&b'[') {
            let close = memchr::memchr(b']', hostpart).ok_or(Error::BadUri)?;
            let h = hostpart.get(1..close).unwrap_or(&[]);
            if !is_ipv6_literal(h) {
                return Err(Error::BadUri);
            }
            (h, hostpart.get(close + 1..).unwrap_or(&[]))
        } else {
            let n = hostpart
                .iter()
                .position(|&b| !is_host_char(b))
                .unwrap_or(hostpart.len());
            (
                hostpart.get(..n).unwrap_or(&[]),
                hostpart.get(n..).unwrap_or(&[]),
            )
        };
        if host.is_empty() {
            return Err(Error::BadUri);
        }
        let (port, params) = if after_host.first() == Some(&b':') {
            let p = after_host.get(1..).unwrap_or(&[]);
            let n = p
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(p.len());
            let port = parse_port(p.get(..n).unwrap_or(&[])).ok_or(Error::BadUri)?;
            (Some(port), p.get(n..).unwrap_or(&[]))
        } else {
            (None, after_host)
        };
        if !params.is_empty() && params.first() != Some(&b';') {
            return Err(Error::BadUri);
        }
        if Params::new(params).any(|p| p.is_err()) {
            return Err(Error::BadUri);
        }
        Ok(Uri {
            scheme,
            user,
            host,
            port,
            params,
            headers,
        })
    }

    /// A URI parameter by name, case-insensitive: `Some(None)` for a flag such as `lr`.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'b [u8]>> {
        find_param(self.params, name)
    }

    /// The called number from the user part: `;phone-context` and other user parameters
    /// dropped, visual separators (`-` `.` `(` `)` and escaped spaces) removed, `%2B` etc.
    /// decoded. `None` when the user part is not a telephone number.
    pub fn called_number(&self) -> Option<Number> {
        let user = self.user?;
        let user = match memchr::memchr(b';', user) {
            Some(i) => user.get(..i)?,
            None => user,
        };
        let mut n = Number::EMPTY;
        let mut i = 0;
        while let Some(&b) = user.get(i) {
            let (c, step) = if b == b'%' {
                let hi = hex(*user.get(i + 1)?)?;
                let lo = hex(*user.get(i + 2)?)?;
                (hi << 4 | lo, 3)
            } else {
                (b, 1)
            };
            i += step;
            match c {
                b'-' | b'.' | b'(' | b')' | b' ' => {}
                b'+' if n.len == 0 => n.push(c)?,
                b'0'..=b'9' | b'*' | b'#' => n.push(c)?,
                _ => return None,
            }
        }
        (n.len > 0 && n.as_bytes() != b"+").then_some(n)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn check_escapes(s: &[u8]) -> Result<(), Error> {
    let mut i = 0;
    while let Some(j) = s.get(i..).and_then(|r| memchr::memchr(b'%', r)) {
        let at = i + j;
        match (
            s.get(at + 1).copied().and_then(hex),
            s.get(at + 2).copied().and_then(hex),
        ) {
            (Some(_), Some(_)) => i = at + 3,
            _ => return Err(Error::BadUri),
        }
    }
    Ok(())
}

/// An IPv6 address literal (RFC 4291 text form, with an optional trailing dotted quad).
pub(crate) fn is_ipv6_literal(h: &[u8]) -> bool {
    !h.is_empty()
        && h.contains(&b':')
        && core::str::from_utf8(h).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// A `name-addr` (`"Display" <uri>;params`) or `addr-spec` (`uri;params`) value, as in From,
/// To, Contact, Route, Record-Route, P-Asserted-Identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'b> {
    /// Display name: the inside of a quoted-string (escapes kept) or the token sequence.
    pub display: Option<&'b [u8]>,
    /// The URI, without `<>`. Not validated: call `Uri::parse` on it.
    pub uri: &'b [u8],
    /// The `tag` header parameter.
    pub tag: Option<&'b [u8]>,
    /// Header parameters after the URI (from the first `;`), or empty.
    pub params: &'b [u8],
}

impl<'b> NameAddr<'b> {
    /// Parses one name-addr / addr-spec element (already split from a list).
    pub fn parse(s: &'b [u8]) -> Result<Self, Error> {
        let s = trim_lws(s);
        let (display, uri, rest) = match s.first() {
            None => return Err(Error::BadNameAddr),
            Some(b'"') => {
                let n = quoted_len(s).ok_or(Error::BadNameAddr)?;
                let display = s.get(1..n - 1);
                let t = skip_lws(s.get(n..).unwrap_or(&[]));
                let (uri, rest) = angle(t)?;
                (display, uri, rest)
            }
            Some(_) => match memchr::memchr(b'<', s) {
                Some(lt) => {
                    let d = trim_lws(s.get(..lt).unwrap_or(&[]));
                    // an unquoted display name is a sequence of tokens
                    if !d.iter().all(|&b| super::scan::is_token(b) || is_lws(b)) {
                        return Err(Error::BadNameAddr);
                    }
                    let (uri, rest) = angle(s.get(lt..).unwrap_or(&[]))?;
                    ((!d.is_empty()).then_some(d), uri, rest)
                }
                None => {
                    // addr-spec: parameters after the URI belong to the header, and the URI
                    // itself may contain neither ',', '?' nor ';' (RFC 3261 20.10)
                    let end = s
                        .iter()
                        .position(|&b| b == b';' || is_lws(b))
                        .unwrap_or(s.len());
                    let uri = s.get(..end).unwrap_or(&[]);
                    if uri.contains(&b'?') || uri.contains(&b',') {
                        return Err(Error::BadNameAddr);
                    }
                    (None, uri, s.get(end..).unwrap_or(&[]))
                }
            },
        };
        if uri.is_empty() || uri.iter().any(|&b| is_lws(b)) {
            return Err(Error::BadNameAddr);
        }
        let params = skip_lws(rest);
        let mut tag = None;
        for p in Params::new(params) {
            let p = p.map_err(|()| Error::BadNameAddr)?;
            if p.name.eq_ignore_ascii_case(b"tag") {
                tag = p.value;
            }
        }
        Ok(NameAddr {
            display,
            uri,
            tag,
            params,
        })
    }

    /// A header parameter by name (case-insensitive).
    pub fn param(&self, name: &[u8]) -> Option<Option<&'b [u8]>> {
        find_param(self.params, name)
    }
}

/// `<uri>` at the start of `t`: the URI and what follows `>`.
fn angle(t: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    if t.first() != Some(&b'<') {
        return Err(Error::BadNameAddr);
    }
    let gt = memchr::memchr(b'>', t).ok_or(Error::BadNameAddr)?;
    Ok((t.get(1..gt).unwrap_or(&[]), t.get(gt + 1..).unwrap_or(&[])))
}

/// A telephone number held inline (no allocation): an optional leading `+`, then digits, `*`,
/// `#`; at most 32 octets.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Number {
    buf: [u8; Number::CAPACITY],
    len: u8,
}

impl Number {
    /// The longest number held (E.164 allows 15 digits; 32 leaves room for private plans).
    pub const CAPACITY: usize = 32;
    const EMPTY: Number = Number {
        buf: [0; Number::CAPACITY],
        len: 0,
    };

    fn push(&mut self, c: u8) -> Option<()> {
        let slot = self.buf.get_mut(usize::from(self.len))?;
        *slot = c;
        self.len += 1;
        Some(())
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..usize::from(self.len)).unwrap_or(&[])
    }

    pub fn as_str(&self) -> &str {
        // only ASCII is ever stored
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl TryFrom<&[u8]> for Number {
    type Error = Error;
    fn try_from(s: &[u8]) -> Result<Number, Error> {
        let mut n = Number::EMPTY;
        for (i, &c) in s.iter().enumerate() {
            match c {
                b'+' if i == 0 => {}
                b'0'..=b'9' | b'*' | b'#' => {}
                _ => return Err(Error::BadNumber),
            }
            n.push(c).ok_or(Error::BadNumber)?;
        }
        if n.is_empty() || n.as_bytes() == b"+" {
            return Err(Error::BadNumber);
        }
        Ok(n)
    }
}

impl TryFrom<&str> for Number {
    type Error = Error;
    fn try_from(s: &str) -> Result<Number, Error> {
        Number::try_from(s.as_bytes())
    }
}

impl core::fmt::Debug for Number {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Number({})", self.as_str())
    }
}

impl core::fmt::Display for Number {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_parts() {
        let u = Uri::parse(b"sip:+12065550100;phone-context=example.com@gw1.example.net:5061;user=phone;transport=udp?Subject=x").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some(&b"+12065550100;phone-context=example.com"[..]));
        assert_eq!(u.host, b"gw1.example.net");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params, b";user=phone;transport=udp");
        assert_eq!(u.headers, b"Subject=x");
        assert_eq!(u.param(b"USER"), Some(Some(&b"phone"[..])));
        assert_eq!(u.param(b"lr"), None);
        assert_eq!(u.called_number().unwrap().as_str(), "+12065550100");
    }

    #[test]
    fn ipv6_hosts_and_passwords() {
        let u = Uri::parse(b"sips:alice:secret@[2001:db8::10]:5061;lr").unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user, Some(&b"alice"[..]));
        assert_eq!(u.host, b"2001:db8::10");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param(b"lr"), Some(None));
        assert_eq!(u.called_number(), None);
        let u = Uri::parse(b"SIP:[::ffff:192.0.2.1]").unwrap();
        assert_eq!(u.host, b"::ffff:192.0.2.1");
        assert_eq!(Uri::parse(b"sip:[2001:db8::zz]"), Err(Error::BadUri));
        assert_eq!(Uri::parse(b"sip:[2001:db8::1"), Err(Error::BadUri));
    }

    #[test]
    fn tel_uri_and_numbers() {
        let u = Uri::parse(b"tel:+1-206-555-0100;phone-context=+1").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.host, b"");
        assert_eq!(u.called_number().unwrap().as_str(), "+12065550100");
        let u = Uri::parse(b"sip:(206)%20555.0100@pbx").unwrap();
        assert_eq!(u.called_number().unwrap().as_str(), "2065550100");
        let u = Uri::parse(b"sip:%2B4930123@pbx").unwrap();
        assert_eq!(u.called_number().unwrap().as_str(), "+4930123");
        assert_eq!(
            Uri::parse(b"sip:*72#@pbx")
                .unwrap()
                .called_number()
                .unwrap()
                .as_str(),
            "*72#"
        );
        assert_eq!(Uri::parse(b"sip:alice@pbx").unwrap().called_number(), None);
        assert_eq!(Uri::parse(b"sip:pbx").unwrap().called_number(), None);
        assert_eq!(Uri::parse(b"sip:1+2@pbx").unwrap().called_number(), None);
        let long = b"sip:123456789012345678901234567890123@pbx";
        assert_eq!(Uri::parse(long).unwrap().called_number(), None);
        assert_eq!(Number::try_from("+12065550100").unwrap().len(), 12);
        assert_eq!(Number::try_from("12-34"), Err(Error::BadNumber));
        assert_eq!(Number::try_from("+"), Err(Error::BadNumber));
        assert_eq!(Number::try_from(""), Err(Error::BadNumber));
        assert_eq!(format!("{}", Number::try_from("*99").unwrap()), "*99");
    }

    #[test]
    fn bad_uris() {
        assert_eq!(
            Uri::parse(b"http://example.com"),
            Err(Error::UnsupportedScheme)
        );
        assert_eq!(Uri::parse(b"sip:user@example.com; lr"), Err(Error::BadUri));
        assert_eq!(Uri::parse(b"<sip:user@example.com>"), Err(Error::BadUri));
        assert_eq!(Uri::parse(b"sip:user@"), Err(Error::BadUri));
        assert_eq!(Uri::parse(b"sip:@host"), Err(Error::BadUri));
        assert_eq!(Uri::parse(b"sip:host:99999"), Err(Error::BadUri));
        assert_eq!(Uri::parse(b"sip:host:"), Err(Error::BadUri));
        assert_eq!(Uri::parse(b"sip:us%zzer@host"), Err(Error::BadUri));
        assert_eq!(Uri::parse(b"sip:host;;"), Err(Error::BadUri));
        assert_eq!(Uri::parse(b"sip:"), Err(Error::BadUri));
        assert_eq!(Uri::parse(b"tel:;x"), Err(Error::BadUri));
        assert_eq!(Uri::parse(b"nocolon"), Err(Error::BadUri));
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(b"\"Doe, John \\\"JD\\\"\" <sip:+12065550100@lync.contoso.com;user=phone>;tag=9a8b7c;epid=01").unwrap();
        assert_eq!(n.display, Some(&b"Doe, John \\\"JD\\\""[..]));
        assert_eq!(n.uri, b"sip:+12065550100@lync.contoso.com;user=phone");
        assert_eq!(n.tag, Some(&b"9a8b7c"[..]));
        assert_eq!(n.param(b"epid"), Some(Some(&b"01"[..])));
        let n = NameAddr::parse(b"Anonymous   <sip:anonymous@anonymous.invalid>").unwrap();
        assert_eq!(n.display, Some(&b"Anonymous"[..]));
        let n = NameAddr::parse(b"sip:2065550100@10.0.0.5;tag=as5f3e").unwrap();
        assert_eq!(n.uri, b"sip:2065550100@10.0.0.5");
        assert_eq!(n.tag, Some(&b"as5f3e"[..]));
        let n = NameAddr::parse(b"<sip:[2001:db8::5]:5060;lr>").unwrap();
        assert_eq!(n.uri, b"sip:[2001:db8::5]:5060;lr");
        assert_eq!(n.tag, None);
        assert_eq!(
            NameAddr::parse(b"\"unterminated <sip:a@b>"),
            Err(Error::BadNameAddr)
        );
        assert_eq!(NameAddr::parse(b"<sip:a@b"), Err(Error::BadNameAddr));
        assert_eq!(NameAddr::parse(b""), Err(Error::BadNameAddr));
        assert_eq!(NameAddr::parse(b"Bob sip:bob@b"), Err(Error::BadNameAddr));
        assert_eq!(NameAddr::parse(b"<sip:a@b>;;tag"), Err(Error::BadNameAddr));
        assert_eq!(NameAddr::parse(b"\"a\"<>"), Err(Error::BadNameAddr));
    }
}
