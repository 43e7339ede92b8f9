//! The error of every SIP view, rewrite and builder: small and `Copy` so the datapath can count
//! it or turn it into a response without allocating.

/// What was wrong with a SIP message (or with the room given to write one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The datagram exceeds `Limits::max_message` (or 65535, the span width).
    #[error("message larger than the configured limit")]
    TooLarge,
    /// More header fields than `Limits::max_headers`.
    #[error("too many header fields")]
    TooManyHeaders,
    /// The start line or one header field (folded lines included) exceeds `Limits::max_line`.
    #[error("line longer than the configured limit")]
    LineTooLong,
    /// The request line or status line is malformed.
    #[error("malformed start line")]
    BadStartLine,
    /// The SIP version is not SIP/2.0.
    #[error("unsupported SIP version")]
    BadVersion,
    /// The status code is not three digits in 100..=699.
    #[error("malformed status code")]
    BadStatus,
    /// A header field line is malformed (no colon, bad name, stray CR).
    #[error("malformed header field")]
    BadHeader,
    /// Content-Length is not a number, disagrees with itself, or exceeds the datagram.
    #[error("bad Content-Length")]
    BadContentLength,
    /// The message ends before the empty line that closes the header section.
    #[error("message truncated")]
    Truncated,
    /// A header the operation needs is absent.
    #[error("missing mandatory header")]
    MissingHeader,
    /// A single-valued header (Call-ID, CSeq, From, To, Max-Forwards) appears more than once.
    #[error("single-valued header repeated")]
    DuplicateHeader,
    /// A Via value is malformed.
    #[error("malformed Via")]
    BadVia,
    /// CSeq is malformed, out of range, or its method differs from the request's.
    #[error("malformed CSeq")]
    BadCSeq,
    /// Call-ID is empty or contains whitespace.
    #[error("malformed Call-ID")]
    BadCallId,
    /// A URI is malformed.
    #[error("malformed URI")]
    BadUri,
    /// A URI scheme other than sip, sips or tel (answer 416).
    #[error("unsupported URI scheme")]
    UnsupportedScheme,
    /// A name-addr / addr-spec (From, To, Contact, Route) is malformed.
    #[error("malformed name-addr")]
    BadNameAddr,
    /// Max-Forwards is not a number in 0..=255.
    #[error("malformed Max-Forwards")]
    BadMaxForwards,
    /// Max-Forwards is 0 and the request was to be forwarded (answer 483).
    #[error("Max-Forwards exhausted")]
    TooManyHops,
    /// A telephone number is empty, too long or has characters other than `+`, digits, `*`, `#`.
    #[error("malformed telephone number")]
    BadNumber,
    /// A value handed to a builder would break the message framing (CR, LF, bad token).
    #[error("value not allowed in a header")]
    BadValue,
    /// The output buffer is too small for the message being written.
    #[error("output buffer too small")]
    BufferTooSmall,
}
