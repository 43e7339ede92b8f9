//! SIP messages (RFC 3261): zero-copy views, one-pass rewriting, response building.
//!
//! [`Message::parse`] indexes a datagram without allocating: the start line, up to
//! [`MAX_HEADERS`] header fields (canonical name + raw value span) and the body bounded by
//! Content-Length. Typed accessors parse on demand. [`rewrite_request`] and
//! [`rewrite_response`] copy a message into a caller's buffer in one pass, changing only what
//! the relay must; [`build_response`], [`build_cancel`] and [`build_ack`] write the messages a
//! proxy originates.

mod build;
mod error;
mod header;
mod message;
mod rewrite;
mod scan;
mod uri;
mod via;

pub use build::{build_ack, build_cancel, build_response, Writer};
pub use error::Error;
pub use header::HeaderName;
pub use message::{
    is_request_uri, CSeq, Header, Limits, Message, Method, ParseOptions, MAX_HEADERS,
};
pub use rewrite::{
    rewrite_request, rewrite_response, MaxForwards, OurVia, RequestRewrite, ResponseRewrite,
};
pub use uri::{NameAddr, Number, Scheme, Uri};
pub use via::Via;

#[cfg(test)]
mod tests;
