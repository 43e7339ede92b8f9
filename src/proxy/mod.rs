//! The sans-IO SIP core: a transaction-stateful proxy (RFC 3261 sections 16 and 17) doing
//! Lync-style intertrunk routing, with failover, dialogs and media anchoring.
//!
//! No sockets, no clock, no RNG it was not handed: input is `handle_*(now, ..)`, output is
//! pulled with `poll_*`, so the whole core runs in a simulated network with virtual time.

pub mod branch;
mod rng;
pub mod timers;
pub mod transaction;

pub use rng::Rng;
