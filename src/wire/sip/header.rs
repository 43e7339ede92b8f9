//! Header field names: a canonical enum for the headers the relay uses, compact forms included,
//! matched case-insensitively (RFC 3261 7.3.1).

/// The canonical name of a header field. Names the relay never looks at are `Other`; their
/// spelling stays available as `Header::raw_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HeaderName {
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
    #[default]
    Other,
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

    /// Classifies a header field name, case-insensitively, long or compact form
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
        // Candidates are grouped by length so a name costs at most a few comparisons.
        let candidates: &[HeaderName] = match name.len() {
            2 => &[To],
            3 => &[Via],
            4 => &[From, CSeq, Date, RSeq, RAck],
            5 => &[Route, Allow, Event],
            6 => &[Accept, Reason, Server, MinSe],
            7 => &[Contact, CallId, Require, Subject, Privacy, Warning, Expires],
            8 => &[ReferTo, Identity],
            9 => &[Supported, Diversion, Timestamp],
            10 => &[UserAgent],
            11 => &[RetryAfter, Unsupported, ReferredBy],
            12 => &[
                MaxForwards,
                ContentType,
                RecordRoute,
                AllowEvents,
                HistoryInfo,
            ],
            13 => &[ProxyRequire, Authorization],
            14 => &[ContentLength, MsDiagnostics],
            15 => &[SessionExpires],
            16 => &[ContentEncoding, WwwAuthenticate],
            18 => &[ProxyAuthenticate],
            19 => &[ContentDisposition, PAssertedIdentity, ProxyAuthorization],
            20 => &[PPreferredIdentity],
            _ => &[],
        };
        for &c in candidates {
            if c.as_str().as_bytes().eq_ignore_ascii_case(name) {
                return c;
            }
        }
        Other
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
