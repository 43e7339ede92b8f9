//! One stream (`m=` line) of a call: on each leg, the local port pair, the endpoint from the SDP,
//! the latched source, and the receive statistics.
//!
//! Source rules (the defence against RTP bleed and injection, cf. RTPproxy CVE-2017-14114 and
//! rtpengine ES2025-01, where a relay learned or kept accepting whoever sent first):
//! - without latching only the exact SDP `address:port` is accepted;
//! - with latching, during `latch_window` after each `set_remote` the first source is learned,
//!   and a later one that matches the SDP better (same address and port, then same address)
//!   replaces it; after the window only the learned source is accepted (or the exact SDP one if
//!   nothing was learned). Each `set_remote` opens a new window; a changed SDP endpoint forgets
//!   the learned source.

use super::stats::Receiver;
use std::net::SocketAddr;
use std::time::Instant;

/// The address a leg's media is expected from and sent to, for RTP or for RTCP.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Endpoint {
    /// From the SDP; `None` before it is known or while on hold with no address.
    pub(crate) sdp: Option<SocketAddr>,
    /// Learned from traffic (latching only).
    pub(crate) learned: Option<SocketAddr>,
}

/// How well a source matches the SDP endpoint; latching prefers higher.
fn rank(src: SocketAddr, sdp: Option<SocketAddr>) -> u8 {
    match sdp {
        Some(s) if s == src => 2,
        Some(s) if s.ip() == src.ip() => 1,
        _ => 0,
    }
}

impl Endpoint {
    /// Where to send to this leg.
    pub(crate) fn destination(&self) -> Option<SocketAddr> {
        self.learned.or(self.sdp)
    }

    fn set_sdp(&mut self, sdp: Option<SocketAddr>) {
        if self.sdp != sdp {
            self.learned = None;
        }
        self.sdp = sdp;
    }

    /// Whether `src` may send on this leg; learns it when the window allows.
    fn admit(&mut self, src: SocketAddr, window_open: bool) -> bool {
        if self.learned == Some(src) {
            return true;
        }
        if window_open {
            // Nothing to prefer without an SDP endpoint (e.g. hold with no address): learn nothing.
            if self.sdp.is_none() {
                return false;
            }
            let better = match self.learned {
                None => true,
                Some(l) => rank(src, self.sdp) > rank(l, self.sdp),
            };
            if better {
                self.learned = Some(src);
            }
            return better;
        }
        self.learned.is_none() && self.sdp == Some(src)
    }
}

/// One leg of one stream.
#[derive(Debug, Clone)]
pub(crate) struct LegState {
    /// Pair index in the port pool (RTP port = base + 2 * pair).
    pub(crate) pair: u32,
    pub(crate) rtp: Endpoint,
    pub(crate) rtcp: Endpoint,
    /// Latching on, and when its window closes.
    pub(crate) latching: bool,
    pub(crate) latch_until: Option<Instant>,
    pub(crate) rx: Receiver,
}

impl LegState {
    pub(crate) fn new(pair: u32) -> LegState {
        LegState {
            pair,
            rtp: Endpoint::default(),
            rtcp: Endpoint::default(),
            latching: false,
            latch_until: None,
            rx: Receiver::new(),
        }
    }

    /// New endpoints from an offer or answer. An unspecified address or port 0 means none
    /// (RFC 3264 hold with `c=0.0.0.0`, a disabled stream). RTCP defaults to RTP port + 1.
    pub(crate) fn set_remote(
        &mut self,
        now: Instant,
        latch_window: std::time::Duration,
        rtp: Option<SocketAddr>,
        rtcp: Option<SocketAddr>,
        latching: bool,
    ) {
        let usable =
            |a: Option<SocketAddr>| a.filter(|a| !a.ip().is_unspecified() && a.port() != 0);
        let rtp = usable(rtp);
        let rtcp = usable(rtcp).or_else(|| {
            rtp.and_then(|a| a.port().checked_add(1).map(|p| SocketAddr::new(a.ip(), p)))
        });
        self.rtp.set_sdp(rtp);
        self.rtcp.set_sdp(rtcp);
        self.latching = latching;
        if !latching {
            self.rtp.learned = None;
            self.rtcp.learned = None;
        }
        self.latch_until = latching.then(|| now + latch_window);
    }

    /// Source check for a packet this leg sent to the relay.
    pub(crate) fn admit(&mut self, now: Instant, src: SocketAddr, rtcp: bool) -> bool {
        let window_open = self.latching && self.latch_until.is_some_and(|t| now < t);
        let ep = if rtcp { &mut self.rtcp } else { &mut self.rtp };
        ep.admit(src, window_open)
    }
}

/// One `m=` line: the caller-facing and callee-facing legs.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    pub(crate) legs: [LegState; 2],
}
