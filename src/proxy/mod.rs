//! The sans-IO SIP core: a transaction-stateful proxy (RFC 3261 sections 16 and 17) doing
//! Lync-style intertrunk routing (DESIGN section 5), with failover, dialogs and media
//! anchoring (DESIGN section 6).
//!
//! No sockets, no clock, no RNG it was not handed: input is `handle_*(now, ..)`, output is
//! pulled with `poll_*`, so the whole core runs in a simulated network with virtual time
//! (see `tests`).
//!
//! Shape: a *context* is a server transaction with the client transactions (branches) sent
//! for it, tried one after the other; a *call* is the dialog state and media session of an
//! INVITE. Every timed thing re-arms one lazy timer-queue entry. Our Via branch encodes this
//! core and the context slot, so a response finds its transaction without a lookup.

mod anchor;
pub mod branch;
mod config;
mod context;
mod dialog;
mod event;
mod limits;
mod options;
#[allow(clippy::module_inception)]
mod proxy;
mod request;
mod response;
mod slab;
pub mod timers;
pub mod transaction;
mod util;

pub use config::{ProxyConfig, TimerValues};
pub use event::{EndReason, Event};
pub use limits::ProxyStats;
pub use proxy::{Proxy, Transmit};

#[cfg(test)]
mod tests;
