//! Media anchoring (DESIGN section 6): every SDP crossing the relay makes the sending leg's
//! media address known to the relay, and is rewritten so that the receiving leg sends its
//! RTP/RTCP to the relay's ports for that leg.

use std::net::SocketAddr;
use std::time::Instant;

use smallvec::SmallVec;

use super::context::Key;
use super::dialog::other;
use super::proxy::Proxy;
use crate::media::{Leg, PortBinder};
use crate::wire::sdp::{self, Sdp, SdpRewrite};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnchorError {
    /// The body is not SDP we can read.
    BadSdp,
    /// No media ports left (or the session could not grow).
    Ports,
    /// Output larger than the buffer.
    TooLarge,
}

impl<B: PortBinder> Proxy<B> {
    /// An SDP from `from` on call `ck`: learn `from`'s media addresses and rewrite the body for
    /// the other leg. `Ok(None)`: forward the body untouched (bypass, or no such call).
    pub(crate) fn anchor(
        &mut self,
        now: Instant,
        ck: Key,
        from: Leg,
        body: &[u8],
    ) -> Result<Option<usize>, AnchorError> {
        // A bypassed call's SDP is not looked at, not even parsed.
        if self.calls.get(ck.0, ck.1).is_none_or(|c| c.bypass) {
            return Ok(None);
        }
        // One parse serves both the learning and the port count of the rewrite.
        let sdp = Sdp::parse(body).map_err(|_| AnchorError::BadSdp)?;
        self.learn_sdp(now, ck, from, &sdp)?;
        self.rewrite_sdp(ck, other(from), body, sdp.media_count())
    }

    /// Sets `leg`'s remote media addresses from its SDP; nothing for a bypassed call.
    pub(crate) fn learn_sdp(
        &mut self,
        now: Instant,
        ck: Key,
        leg: Leg,
        sdp: &Sdp<'_>,
    ) -> Result<(), AnchorError> {
        let Some(call) = self.calls.get_mut(ck.0, ck.1).filter(|c| !c.bypass) else {
            return Ok(());
        };
        let n = sdp.media_count();
        let s = match call.session {
            Some(s) => s,
            None => {
                let inactivity = call.table.trunk(call.source).rtcp_active_calls;
                let s = self
                    .relay
                    .create_session(now, &mut self.binder, n.max(1), inactivity)
                    .map_err(|_| AnchorError::Ports)?;
                call.session = Some(s);
                self.sessions.insert(s, ck);
                s
            }
        };
        self.relay
            .ensure_streams(&mut self.binder, s, n)
            .map_err(|_| AnchorError::Ports)?;
        let latching = match leg {
            Leg::Caller => call.latch_caller,
            Leg::Callee => call.latch_callee,
        };
        for (i, m) in sdp.media().enumerate() {
            let rtp = m
                .connection
                .filter(|_| m.port != 0)
                .map(|ip| SocketAddr::new(ip, m.port));
            let rtcp = if m.rtcp_mux {
                rtp
            } else {
                match (m.rtcp, rtp) {
                    (Some((port, ip)), Some(r)) => {
                        Some(SocketAddr::new(ip.unwrap_or(r.ip()), port))
                    }
                    (None, Some(r)) => Some(SocketAddr::new(r.ip(), r.port().wrapping_add(1))),
                    _ => None,
                }
            };
            self.relay.set_remote(now, s, leg, i, rtp, rtcp, latching);
        }
        Ok(())
    }

    /// Rewrites an SDP body with `streams` m= lines for `toward` (ports where that leg must
    /// send) into `sdp_buf`.
    pub(crate) fn rewrite_sdp(
        &mut self,
        ck: Key,
        toward: Leg,
        body: &[u8],
        streams: usize,
    ) -> Result<Option<usize>, AnchorError> {
        let Some(call) = self.calls.get(ck.0, ck.1) else {
            return Ok(None);
        };
        let Some(s) = call.session.filter(|_| !call.bypass) else {
            return Ok(None);
        };
        let ports: SmallVec<[u16; 8]> = (0..streams)
            .map(|i| self.relay.local_port(s, toward, i).unwrap_or(0))
            .collect();
        let address = call.table.config().server.media_address;
        let rw = SdpRewrite {
            address,
            ports: &ports,
        };
        match sdp::rewrite(body, &rw, &mut self.sdp_buf) {
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(AnchorError::TooLarge),
        }
    }

    /// The callee leg's addresses are forgotten when a new branch starts (failover).
    pub(crate) fn reset_callee_media(&mut self, now: Instant, ck: Key) {
        let Some(s) = self.calls.get(ck.0, ck.1).and_then(|c| c.session) else {
            return;
        };
        let mut i = 0;
        while self.relay.local_port(s, Leg::Callee, i).is_some() && i < 64 {
            self.relay
                .set_remote(now, s, Leg::Callee, i, None, None, false);
            i += 1;
        }
    }
}
