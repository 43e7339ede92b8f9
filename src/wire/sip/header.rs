//! Header field names: a canonical enum for the headers the relay uses, compact forms included,
//! matched case-insensitively (RFC 3261 7.3.1).

/// Case-insensitive equality of a canonical name (letters and '-') with a name of token
/// octets, eight octets at a time. OR-ing 0x20 lower-cases exactly the ASCII capitals and maps
/// no other token octet onto a letter or '-', so folding both sides compares correctly.
#[inline]
fn eq_folded(canon: &[u8], name: &[u8]) -> bool {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    if canon.len() != name.len() {
        return false;
    }
    let mut a = canon.chunks_exact(8);
    let mut b = name.chunks_exact(8);
    for (x, y) in a.by_ref().zip(b.by_ref()) {
        let wx = u64::from_le_bytes(x.try_into().unwrap_or([0; 8]));
        let wy = u64::from_le_bytes(y.try_into().unwrap_or([!0; 8]));
        if wx | FOLD != wy | FOLD {
            return false;
        }
    }
    a.remainder()
        .iter()
        .zip(b.remainder())
        .all(|(&x, &y)| x | 0x20 == y | 0x20)
}

/// The canonical name of a header field. Names the relay never looks at are `Other`; their
/// spelling stays available as `Header::raw_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HeaderName {
    /// Any other name (first, so an empty index entry is all zero octets).
    #[default]
    Other,
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    ContentEncoding,
    ContentDisposition,
    Contact,
    Route,
    RecordRoute,
    Supported,
    Require,
    ProxyRequire,
    Unsupported,
    Allow,
    AllowEvents,
    Accept,
    Subject,
    Event,
    ReferTo,
    ReferredBy,
    SessionExpires,
    MinSe,
    PAssertedIdentity,
    PPreferredIdentity,
    Privacy,
    HistoryInfo,
    Diversion,
    RetryAfter,
    Reason,
    Warning,
    UserAgent,
    Server,
    Expires,
    Date,
    Timestamp,
    RSeq,
    RAck,
    Identity,
    WwwAuthenticate,
    ProxyAuthenticate,
    Authorization,
    ProxyAuthorization,
    MsDiagnostics,
}

impl HeaderName {
    /// The canonical spelling (the long form), e.g. `Call-ID`; `""` for `Other`.
    pub const fn as_str(self) -> &'static str {
        use HeaderName::*;
        match self {
            Via => "Via",
            From => "From",
            To => "To",
            CallId => "Call-ID",
            CSeq => "CSeq",
            MaxForwards => "Max-Forwards",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            ContentEncoding => "Content-Encoding",
            ContentDisposition => "Content-Disposition",
            Contact => "Contact",
            Route => "Route",
            RecordRoute => "Record-Route",
            Supported => "Supported",
            Require => "Require",
            ProxyRequire => "Proxy-Require",
            Unsupported => "Unsupported",
            Allow => "Allow",
            AllowEvents => "Allow-Events",
            Accept => "Accept",
            Subject => "Subject",
            Event => "Event",
            ReferTo => "Refer-To",
            ReferredBy => "Referred-By",
            SessionExpires => "Session-Expires",
            MinSe => "Min-SE",
            PAssertedIdentity => "P-Asserted-Identity",
            PPreferredIdentity => "P-Preferred-Identity",
            Privacy => "Privacy",
            HistoryInfo => "History-Info",
            Diversion => "Diversion",
            RetryAfter => "Retry-After",
            Reason => "Reason",
            Warning => "Warning",
            UserAgent => "User-Agent",
            Server => "Server",
            Expires => "Expires",
            Date => "Date",
            Timestamp => "Timestamp",
            RSeq => "RSeq",
            RAck => "RAck",
            Identity => "Identity",
            WwwAuthenticate => "WWW-Authenticate",
            ProxyAuthenticate => "Proxy-Authenticate",
            Authorization => "Authorization",
            ProxyAuthorization => "Proxy-Authorization",
            MsDiagnostics => "ms-diagnostics",
            Other => "",
        }
    }

    /// Classifies a header field name (token octets, as the parser guarantees),
    /// case-insensitively, long or compact form
    /// (`i f t v m l c k s e o r u x y`, plus `b` for Referred-By, RFC 3892).
    pub fn parse(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        if let [c] = name {
            return match c.to_ascii_lowercase() {
                b'i' => CallId,
                b'f' => From,
                b't' => To,
                b'v' => Via,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'k' => Supported,
                b's' => Subject,
                b'e' => ContentEncoding,
                b'o' => Event,
                b'r' => ReferTo,
                b'u' => AllowEvents,
                b'x' => SessionExpires,
                b'y' => Identity,
                b'b' => ReferredBy,
                _ => Other,
            };
        }
        // One candidate per (length, lower-cased first octet), a second octet separating the
        // four pairs that share both; then a single word-wise case-insensitive comparison.
        let first = name.first().map_or(0, u8::to_ascii_lowercase);
        let fold = |n: &[u8], i: usize| n.get(i).map_or(0, |b| b | 0x20);
        let candidate = match (name.len(), first) {
            (2, b't') => To,
            (3, b'v') => Via,
            (4, b'c') => CSeq,
            (4, b'd') => Date,
            (4, b'f') => From,
            (4, b'r') => match fold(name, 1) {
                b's' => RSeq,
                _ => RAck,
            },
            (5, b'a') => Allow,
            (5, b'e') => Event,
            (5, b'r') => Route,
            (6, b'a') => Accept,
            (6, b'm') => MinSe,
            (6, b'r') => Reason,
            (6, b's') => Server,
            (7, b'c') => match fold(name, 1) {
                b'a' => CallId,
                _ => Contact,
            },
            (7, b'e') => Expires,
            (7, b'p') => Privacy,
            (7, b'r') => Require,
            (7, b's') => Subject,
            (7, b'w') => Warning,
            (8, b'i') => Identity,
            (8, b'r') => ReferTo,
            (9, b'd') => Diversion,
            (9, b's') => Supported,
            (9, b't') => Timestamp,
            (10, b'u') => UserAgent,
            (11, b'r') => match fold(name, 2) {
                b'f' => ReferredBy,
                _ => RetryAfter,
            },
            (11, b'u') => Unsupported,
            (12, b'a') => AllowEvents,
            (12, b'c') => ContentType,
            (12, b'h') => HistoryInfo,
            (12, b'm') => MaxForwards,
            (12, b'r') => RecordRoute,
            (13, b'a') => Authorization,
            (13, b'p') => ProxyRequire,
            (14, b'c') => ContentLength,
            (14, b'm') => MsDiagnostics,
            (15, b's') => SessionExpires,
            (16, b'c') => ContentEncoding,
            (16, b'w') => WwwAuthenticate,
            (18, b'p') => ProxyAuthenticate,
            (19, b'c') => ContentDisposition,
            (19, b'p') => match fold(name, 1) {
                b'-' => PAssertedIdentity,
                _ => ProxyAuthorization,
            },
            (20, b'p') => PPreferredIdentity,
            _ => return Other,
        };
        if eq_folded(candidate.as_str().as_bytes(), name) {
            candidate
        } else {
            Other
        }
    }

    /// Whether values of this header are comma-separated lists that may be split
    /// (RFC 3261 7.3.1); free-text headers such as Date or Subject are not.
    pub const fn is_list(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Via | Contact
                | Route
                | RecordRoute
                | Supported
                | Require
                | ProxyRequire
                | Unsupported
                | Allow
                | AllowEvents
                | Accept
                | PAssertedIdentity
                | PPreferredIdentity
                | Privacy
                | HistoryInfo
                | Diversion
                | Reason
                | Warning
        )
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName::{self, *};

    #[test]
    fn long_forms_case_insensitive() {
        assert_eq!(HeaderName::parse(b"via"), Via);
        assert_eq!(HeaderName::parse(b"CALL-ID"), CallId);
        assert_eq!(HeaderName::parse(b"call-id"), CallId);
        assert_eq!(HeaderName::parse(b"cSeQ"), CSeq);
        assert_eq!(HeaderName::parse(b"max-forwards"), MaxForwards);
        assert_eq!(HeaderName::parse(b"P-ASSERTED-IDENTITY"), PAssertedIdentity);
        assert_eq!(HeaderName::parse(b"Ms-Diagnostics"), MsDiagnostics);
        assert_eq!(HeaderName::parse(b"Min-SE"), MinSe);
        assert_eq!(HeaderName::parse(b"X-Cisco-Trace"), Other);
        assert_eq!(HeaderName::parse(b""), Other);
        assert_eq!(HeaderName::parse("Vía".as_bytes()), Other);
    }

    #[test]
    fn compact_forms() {
        let cases = [
            (b"i", CallId),
            (b"f", From),
            (b"t", To),
            (b"v", Via),
            (b"m", Contact),
            (b"l", ContentLength),
            (b"c", ContentType),
            (b"k", Supported),
            (b"s", Subject),
            (b"e", ContentEncoding),
            (b"o", Event),
            (b"r", ReferTo),
            (b"u", AllowEvents),
            (b"x", SessionExpires),
            (b"y", Identity),
        ];
        for (n, h) in cases {
            assert_eq!(HeaderName::parse(n), h);
            assert_eq!(HeaderName::parse(&[n[0].to_ascii_uppercase()]), h);
        }
        assert_eq!(HeaderName::parse(b"z"), Other);
    }

    #[test]
    fn every_long_form_round_trips() {
        let all = [
            Via,
            From,
            To,
            CallId,
            CSeq,
            MaxForwards,
            ContentLength,
            ContentType,
            ContentEncoding,
            ContentDisposition,
            Contact,
            Route,
            RecordRoute,
            Supported,
            Require,
            ProxyRequire,
            Unsupported,
            Allow,
            AllowEvents,
            Accept,
            Subject,
            Event,
            ReferTo,
            ReferredBy,
            SessionExpires,
            MinSe,
            PAssertedIdentity,
            PPreferredIdentity,
            Privacy,
            HistoryInfo,
            Diversion,
            RetryAfter,
            Reason,
            Warning,
            UserAgent,
            Server,
            Expires,
            Date,
            Timestamp,
            RSeq,
            RAck,
            Identity,
            WwwAuthenticate,
            ProxyAuthenticate,
            Authorization,
            ProxyAuthorization,
            MsDiagnostics,
        ];
        for h in all {
            assert_eq!(
                HeaderName::parse(h.as_str().as_bytes()),
                h,
                "{}",
                h.as_str()
            );
            let lower = h.as_str().to_ascii_lowercase();
            assert_eq!(HeaderName::parse(lower.as_bytes()), h);
        }
    }
}
