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

/// Every named header, for the classification tables.
const ALL: [HeaderName; 47] = {
    use HeaderName::*;
    [
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
    ]
};

/// Longest canonical name (P-Preferred-Identity).
const MAX_NAME: usize = 20;

/// Candidates by name length and low five bits of the first octet (a letter's position in
/// the alphabet, either case). At most two names share a slot.
static CANDIDATES: [[[HeaderName; 2]; 32]; MAX_NAME + 1] = {
    let mut t = [[[HeaderName::Other; 2]; 32]; MAX_NAME + 1];
    let mut i = 0;
    while i < ALL.len() {
        let h = ALL[i];
        let s = h.as_str().as_bytes();
        let slot = &mut t[s.len()][(s[0] & 0x1f) as usize];
        if matches!(slot[0], HeaderName::Other) {
            slot[0] = h;
        } else if matches!(slot[1], HeaderName::Other) {
            slot[1] = h;
        } else {
            panic!("three header names share a classification slot");
        }
        i += 1;
    }
    t
};

/// A canonical name lower-cased into little-endian words, zero after its end, with the mask
/// of the octets it covers (a mask of zero: no more words).
#[derive(Clone, Copy)]
struct Folded {
    words: [u64; 3],
    masks: [u64; 3],
}

static FOLDED: [Folded; ALL.len() + 1] = {
    let mut t = [Folded {
        words: [0; 3],
        masks: [0; 3],
    }; ALL.len() + 1];
    let mut i = 0;
    while i < ALL.len() {
        let h = ALL[i];
        let s = h.as_str().as_bytes();
        let mut k = 0;
        while k < s.len() {
            t[h as usize].words[k / 8] |= ((s[k] | 0x20) as u64) << (8 * (k % 8));
            t[h as usize].masks[k / 8] |= 0xff << (8 * (k % 8));
            k += 1;
        }
        i += 1;
    }
    t
};

/// Whether `text[..len]` spells `h` (a candidate of that length), case-insensitively (see
/// `eq_folded` for why OR-ing 0x20 is exact on token octets). Reads whole words past the name
/// when `text` has them.
#[inline]
fn is_named(h: HeaderName, text: &[u8], len: usize) -> bool {
    const FOLD: u64 = 0x2020_2020_2020_2020;
    let Some(f) = FOLDED.get(h as usize) else {
        return false;
    };
    let word = |at: usize| {
        text.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(|w| u64::from_le_bytes(w) | FOLD)
    };
    // names are 2-20 octets: one to three words, unrolled
    let [w0, w1, w2] = f.words;
    let [m0, m1, m2] = f.masks;
    let Some(x0) = word(0) else {
        return slow_is_named(h, text, len);
    };
    if x0 & m0 != w0 {
        return false;
    }
    if len <= 8 {
        return true;
    }
    let Some(x1) = word(8) else {
        return slow_is_named(h, text, len);
    };
    if x1 & m1 != w1 {
        return false;
    }
    if len <= 16 {
        return true;
    }
    let Some(x2) = word(16) else {
        return slow_is_named(h, text, len);
    };
    x2 & m2 == w2
}

/// `is_named` when the name ends the text: octet by octet.
#[cold]
fn slow_is_named(h: HeaderName, text: &[u8], len: usize) -> bool {
    text.get(..len)
        .is_some_and(|n| eq_folded(h.as_str().as_bytes(), n))
}

/// Compact forms (RFC 3261 7.3.3; `b` is RFC 3892's Referred-By).
#[inline]
fn compact(c: u8) -> HeaderName {
    use HeaderName::*;
    match c | 0x20 {
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
    }
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
        Self::classify(name, name.len())
    }

    /// Classifies `text[..len]`; the octets after the name (the rest of the field, in the
    /// parser) let the comparison read whole words.
    #[inline]
    pub(crate) fn classify(text: &[u8], len: usize) -> HeaderName {
        let Some(&first) = text.first() else {
            return HeaderName::Other;
        };
        if len == 1 {
            return compact(first);
        }
        // one or two candidates per (length, first octet), then one folded comparison
        let slot = usize::from(first & 0x1f);
        let Some(&[a, b]) = CANDIDATES.get(len).and_then(|row| row.get(slot)) else {
            return HeaderName::Other;
        };
        if a == HeaderName::Other || is_named(a, text, len) {
            return a;
        }
        if b != HeaderName::Other && is_named(b, text, len) {
            return b;
        }
        HeaderName::Other
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
