//! Zero-copy views over datagrams and one-pass rewriting.
//!
//! Views borrow the datagram and never allocate; errors are small `Copy` enums; parsing is
//! strict by default, with leniency as named options.

pub mod sdp;
pub mod sip;
