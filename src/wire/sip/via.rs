//! The Via header value (RFC 3261 20.42, RFC 3581 rport).

use super::scan::{find_param, is_lws, is_token, parse_port, skip_lws, Params};
use super::uri::is_ipv6_literal;
use super::Error;

/// One Via value: `SIP/2.0/UDP host:port;branch=...;rport;received=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'b> {
    pub transport: &'b [u8],
    /// sent-by host, without the `[]` of an IPv6 reference.
    pub host: &'b [u8],
    pub port: Option<u16>,
    pub branch: Option<&'b [u8]>,
    /// `Some(None)`: `;rport` without a value (the sender asks for it, RFC 3581).
    pub rport: Option<Option<u16>>,
    pub received: Option<&'b [u8]>,
    /// All parameters from the first `;`, or empty.
    pub params: &'b [u8],
}

fn token(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().position(|&b| !is_token(b)).unwrap_or(s.len());
    (s.get(..n).unwrap_or(&[]), s.get(n..).unwrap_or(&[]))
}

fn slash(s: &[u8]) -> Result<&[u8], Error> {
    let s = skip_lws(s);
    if s.first() != Some(&b'/') {
        return Err(Error::BadVia);
    }
    Ok(skip_lws(s.get(1..).unwrap_or(&[])))
}

impl<'b> Via<'b> {
    /// Parses one Via value (already split from a comma-separated list). LWS is allowed
    /// around `/`, `:`, `;` and `=` as RFC 3261 permits.
    pub fn parse(s: &'b [u8]) -> Result<Self, Error> {
        let s = skip_lws(s);
        let (name, s) = token(s);
        let (version, s) = token(slash(s)?);
        let (transport, s) = token(slash(s)?);
        if !name.eq_ignore_ascii_case(b"SIP") || version != b"2.0" || transport.is_empty() {
            return Err(Error::BadVia);
        }
        if !s.first().copied().is_some_and(is_lws) {
            return Err(Error::BadVia);
        }
        let s = skip_lws(s);
        let (host, s) = if s.first() == Some(&b'[') {
            let close = memchr::memchr(b']', s).ok_or(Error::BadVia)?;
            let h = s.get(1..close).unwrap_or(&[]);
            if !is_ipv6_literal(h) {
                return Err(Error::BadVia);
            }
            (h, s.get(close + 1..).unwrap_or(&[]))
        } else {
            let n = s
                .iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
                .unwrap_or(s.len());
            (s.get(..n).unwrap_or(&[]), s.get(n..).unwrap_or(&[]))
        };
        if host.is_empty() {
            return Err(Error::BadVia);
        }
        let t = skip_lws(s);
        let (port, s) = if t.first() == Some(&b':') {
            let p = skip_lws(t.get(1..).unwrap_or(&[]));
            let n = p
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(p.len());
            let port = parse_port(p.get(..n).unwrap_or(&[])).ok_or(Error::BadVia)?;
            (Some(port), p.get(n..).unwrap_or(&[]))
        } else {
            (None, s)
        };
        let params = skip_lws(s);
        let (mut branch, mut rport, mut received) = (None, None, None);
        for p in Params::new(params) {
            let p = p.map_err(|()| Error::BadVia)?;
            if p.name.eq_ignore_ascii_case(b"branch") {
                branch = Some(p.value.ok_or(Error::BadVia)?);
            } else if p.name.eq_ignore_ascii_case(b"rport") {
                rport = Some(match p.value {
                    None => None,
                    Some(v) => Some(parse_port(v).ok_or(Error::BadVia)?),
                });
            } else if p.name.eq_ignore_ascii_case(b"received") {
                let v = p.value.ok_or(Error::BadVia)?;
                received = Some(
                    v.strip_prefix(b"[")
                        .and_then(|v| v.strip_suffix(b"]"))
                        .unwrap_or(v),
                );
            }
        }
        Ok(Via {
            transport,
            host,
            port,
            branch,
            rport,
            received,
            params,
        })
    }

    /// A Via parameter by name, case-insensitive.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'b [u8]>> {
        find_param(self.params, name)
    }

    /// Whether the branch carries the RFC 3261 magic cookie (`z9hG4bK`).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch.is_some_and(|b| b.starts_with(b"z9hG4bK"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_via() {
        let v = Via::parse(b"SIP/2.0/UDP 10.20.30.40:5060;branch=z9hG4bK776asdhds;rport").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, b"10.20.30.40");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch, Some(&b"z9hG4bK776asdhds"[..]));
        assert_eq!(v.rport, Some(None));
        assert_eq!(v.received, None);
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.params, b";branch=z9hG4bK776asdhds;rport");
    }

    #[test]
    fn tortuous_whitespace_and_ipv6() {
        let v =
            Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;rport;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, b"UDP");
        assert_eq!(v.host, b"192.0.2.2");
        assert_eq!(v.port, None);
        assert_eq!(v.branch, Some(&b"390skdjuw"[..]));
        let v = Via::parse(b"SIP/2.0/TLS [2001:db8::9:1] : 5061 ; branch = z9hG4bKas3-111 ;rport=5061;received=[2001:db8::9:255]").unwrap();
        assert_eq!(v.transport, b"TLS");
        assert_eq!(v.host, b"2001:db8::9:1");
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.rport, Some(Some(5061)));
        assert_eq!(v.received, Some(&b"2001:db8::9:255"[..]));
        let v = Via::parse(b"SIP/2.0/FOO lugh.example.com;branch=z9hG4bK; maddr=[::1]").unwrap();
        assert_eq!(v.transport, b"FOO");
        assert_eq!(v.param(b"maddr"), Some(Some(&b"[::1]"[..])));
    }

    #[test]
    fn bad_vias() {
        for bad in [
            &b"SIP/2.0/UDP 192.0.2.15;;"[..],
            b"SIP/2.0/UDP",
            b"SIP/2.0/UDP ",
            b"SIP/2.0/UDP192.0.2.1",
            b"SIP/3.0/UDP host",
            b"SIPS/2.0/UDP host",
            b"SIP/2.0 host",
            b"SIP/2.0/UDP host:",
            b"SIP/2.0/UDP host:70000",
            b"SIP/2.0/UDP [::1",
            b"SIP/2.0/UDP [zz::1]",
            b"SIP/2.0/UDP host;branch",
            b"SIP/2.0/UDP host;rport=x",
            b"SIP/2.0/UDP host junk",
            b"",
        ] {
            assert_eq!(
                Via::parse(bad),
                Err(Error::BadVia),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
