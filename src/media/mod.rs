//! The sans-IO RTP core: per-core port pairs, endpoint learning with strict source checks,
//! forwarding decisions, inactivity timeouts and RFC 3550 stream statistics.
//!
//! A call is a [`session`](Relay::create_session) with one or more streams (one per `m=`
//! line). Each stream has a port pair (RTP even, RTCP odd) on the caller-facing leg and one on
//! the callee-facing leg. A datagram arriving on leg A's local port from leg A's accepted
//! source leaves from leg B's matching local port toward leg B's endpoint; anything else is
//! dropped and counted by [`DropReason`]. The driver moves the bytes; this module only decides,
//! with the clock (`now`) and the random seed handed in, so it runs under virtual time in tests.

mod ports;
mod relay;
mod session;
mod stats;
mod stream;
mod timers;

pub use ports::PortRange;
pub use relay::{MediaTotals, Relay, RelayConfig};
pub use session::SessionId;
pub use stats::{LegStats, SessionStats, StreamStats};

use std::net::SocketAddr;

/// Which side of the call a port faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The trunk the INVITE came from.
    Caller,
    /// The trunk the INVITE was routed to.
    Callee,
}

impl Leg {
    /// The other side.
    pub fn peer(self) -> Leg {
        match self {
            Leg::Caller => Leg::Callee,
            Leg::Callee => Leg::Caller,
        }
    }

    fn index(self) -> usize {
        match self {
            Leg::Caller => 0,
            Leg::Callee => 1,
        }
    }
}

/// Binds and releases the UDP sockets of a port pair. The driver implements it; tests fake it.
pub trait PortBinder {
    /// Binds RTP on the even `rtp_port` and RTCP on `rtp_port + 1`. `AddrInUse` makes the relay
    /// try another pair; any other error fails the allocation.
    fn bind_pair(&mut self, rtp_port: u16) -> std::io::Result<()>;
    /// Closes both sockets of a pair bound earlier.
    fn release_pair(&mut self, rtp_port: u16);
}

/// What to do with one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Send the datagram unchanged from the local socket on `out_port` to `dst`.
    To { out_port: u16, dst: SocketAddr },
    /// Drop it; it was counted under this reason.
    Drop(DropReason),
}

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// No session owns the port it arrived on.
    UnknownPort,
    /// It came from an address other than the leg's accepted (SDP or latched) source.
    UnexpectedSource,
    /// The other leg has no endpoint yet (no answer, or on hold with no address).
    NoDestination,
    /// Not an RTP/RTCP version 2 packet.
    Malformed,
}

/// Something the owner of the relay must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// No RTP or RTCP arrived on any stream of either leg for `media_timeout`.
    Timeout(SessionId),
}

/// Why a media operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The core's port range has no free pair left (the new call gets 503).
    #[error("no free media port pair")]
    NoPorts,
    /// More streams than one session may have.
    #[error("too many media streams")]
    TooManyStreams,
    /// The session id is not (or no longer) live.
    #[error("unknown media session")]
    UnknownSession,
    /// Binding a pair failed with something other than `AddrInUse`.
    #[error("binding a media port failed: {0:?}")]
    Bind(std::io::ErrorKind),
}

#[cfg(test)]
mod tests;
