//! RFC 3550 receive statistics: loss from sequence gaps (appendix A.1, with wrap-around and
//! restarts), interarrival jitter (A.8, integer form), SSRC changes, packet/byte and drop
//! counters. One [`Receiver`] per leg and stream counts what that leg sends to the relay.

use super::DropReason;

/// RFC 3550 A.1 constants.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: u32 = 1 << 16;

/// What one leg of one stream sent to the relay, reported at call end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegStats {
    /// RTP packets and bytes accepted from this leg.
    pub packets: u64,
    pub bytes: u64,
    /// RTCP packets and bytes accepted (on the RTCP port, or multiplexed on the RTP port).
    pub rtcp_packets: u64,
    pub rtcp_bytes: u64,
    /// Packets lost, from sequence gaps (RFC 3550 A.3), summed over every SSRC seen.
    pub lost: u64,
    /// Interarrival jitter of the current source, in RTP timestamp units (RFC 3550 A.8).
    pub jitter: u32,
    /// The clock rate `jitter` is in (8000 unless the payload type says otherwise).
    pub clock_rate: u32,
    /// Times the SSRC changed (after the first).
    pub ssrc_changes: u32,
    /// Packets from a source other than the accepted one.
    pub dropped_source: u64,
    /// Packets that were not RTP/RTCP version 2.
    pub dropped_malformed: u64,
    /// Packets accepted but not forwarded because the other leg had no endpoint.
    pub dropped_no_destination: u64,
}

impl LegStats {
    /// Jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        if self.clock_rate == 0 {
            0.0
        } else {
            f64::from(self.jitter) * 1000.0 / f64::from(self.clock_rate)
        }
    }
}

/// One stream (`m=` line) of a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub caller: LegStats,
    pub callee: LegStats,
}

/// Everything a call's media did, returned by [`Relay::close_session`](super::Relay::close_session).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub streams: Vec<StreamStats>,
}

impl SessionStats {
    /// One line for the call record: per leg, RTP packets, lost and jitter (ms) summed or
    /// maxed over the streams.
    pub fn summary(&self) -> String {
        let leg = |f: fn(&StreamStats) -> &LegStats| {
            let (mut packets, mut lost, mut dropped, mut jitter_ms) = (0u64, 0u64, 0u64, 0f64);
            for s in &self.streams {
                let l = f(s);
                packets += l.packets;
                lost += l.lost;
                dropped += l.dropped_source;
                jitter_ms = jitter_ms.max(l.jitter_ms());
            }
            format!("{packets} pkts, {lost} lost, {jitter_ms:.1} ms jitter, {dropped} dropped")
        };
        format!(
            "caller: {}; callee: {}",
            leg(|s| &s.caller),
            leg(|s| &s.callee)
        )
    }
}

/// Per-leg receive state: the counters plus the sequence and jitter trackers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Receiver {
    pub(crate) stats: LegStats,
    /// No RTP seen yet from the current source.
    fresh: bool,
    ssrc: u32,
    max_seq: u16,
    /// Wrap count, shifted (RFC 3550 `cycles`).
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    received: u32,
    /// Loss counted for earlier sources / before restarts.
    lost_before: u64,
    /// Previous relative transit time and jitter * 16.
    transit: u32,
    jitter_q4: u32,
}

/// RTP clock rate by static payload type (RFC 3551 table 4/5); dynamic ones are assumed 8 kHz,
/// which is right for telephony codecs and telephone-event.
fn clock_rate(pt: u8) -> u32 {
    match pt {
        10 | 11 => 44_100,
        14 | 25 | 26 | 28 | 31..=34 => 90_000,
        6 => 16_000,
        16 => 11_025,
        17 => 22_050,
        _ => 8_000,
    }
}

impl Receiver {
    pub(crate) fn new() -> Receiver {
        Receiver {
            fresh: true,
            ..Receiver::default()
        }
    }

    /// An accepted RTP packet. `arrival_us` is its arrival in microseconds on any fixed epoch.
    pub(crate) fn on_rtp(
        &mut self,
        seq: u16,
        timestamp: u32,
        ssrc: u32,
        pt: u8,
        len: usize,
        arrival_us: u64,
    ) {
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        if !self.fresh && ssrc != self.ssrc {
            self.stats.ssrc_changes = self.stats.ssrc_changes.saturating_add(1);
            self.lost_before += self.current_lost();
            self.fresh = true;
        }
        let rate = clock_rate(pt);
        // Arrival in the RTP clock; only differences matter, so wrapping is fine.
        let arrival = ((u128::from(arrival_us) * u128::from(rate)) / 1_000_000) as u32;
        let transit = arrival.wrapping_sub(timestamp);
        if self.fresh {
            self.fresh = false;
            self.ssrc = ssrc;
            self.init_seq(seq);
            self.received = 1;
            self.transit = transit;
            self.jitter_q4 = 0;
            self.stats.clock_rate = rate;
        } else {
            if self.update_seq(seq) {
                self.received = self.received.saturating_add(1);
            }
            if rate == self.stats.clock_rate {
                let d = (transit.wrapping_sub(self.transit) as i32).unsigned_abs();
                self.transit = transit;
                // J += (|D| - J) / 16, kept as J * 16 (RFC 3550 A.8).
                self.jitter_q4 = self
                    .jitter_q4
                    .wrapping_add(d)
                    .wrapping_sub((self.jitter_q4 + 8) >> 4);
            } else {
                // Another clock (e.g. a second payload type): restart the transit reference.
                self.transit = transit;
            }
        }
        self.stats.jitter = self.jitter_q4 >> 4;
        self.stats.lost = self.lost_before + self.current_lost();
    }

    pub(crate) fn on_rtcp(&mut self, len: usize) {
        self.stats.rtcp_packets += 1;
        self.stats.rtcp_bytes += len as u64;
    }

    pub(crate) fn on_drop(&mut self, reason: DropReason) {
        match reason {
            DropReason::UnexpectedSource => self.stats.dropped_source += 1,
            DropReason::Malformed => self.stats.dropped_malformed += 1,
            DropReason::NoDestination => self.stats.dropped_no_destination += 1,
            DropReason::UnknownPort => {}
        }
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
    }

    /// RFC 3550 A.1 `update_seq` without probation (the source is already vetted). Returns
    /// whether the packet counts as received.
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
            // A very large jump: two in a row (seq then seq+1) mean the sender restarted.
            if u32::from(seq) == self.bad_seq {
                self.lost_before += self.current_lost();
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
                return false;
            }
        }
        // else: duplicate or reordered packet, counted as received (RFC 3550 does the same).
        true
    }

    fn current_lost(&self) -> u64 {
        if self.fresh && self.received == 0 {
            return 0;
        }
        let extended_max = u64::from(self.cycles) + u64::from(self.max_seq);
        let expected = (extended_max + 1).saturating_sub(u64::from(self.base_seq));
        // Duplicates can make received exceed expected; loss is never negative here.
        expected.saturating_sub(u64::from(self.received))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(r: &mut Receiver, seqs: impl IntoIterator<Item = u16>) {
        for (i, s) in seqs.into_iter().enumerate() {
            r.on_rtp(s, (i as u32) * 160, 1, 0, 172, i as u64 * 20_000);
        }
    }

    #[test]
    fn counts_gaps() {
        let mut r = Receiver::new();
        feed(&mut r, [1, 2, 3, 5, 6, 9, 10]);
        assert_eq!(r.stats.lost, 3);
        assert_eq!(r.stats.packets, 7);
        assert_eq!(r.stats.bytes, 7 * 172);
    }

    #[test]
    fn wraps_around() {
        let mut r = Receiver::new();
        feed(&mut r, [65533, 65534, 65535, 0, 2, 3]);
        assert_eq!(r.stats.lost, 1);
        assert_eq!(r.cycles, SEQ_MOD);
    }

    #[test]
    fn reordering_is_not_loss() {
        let mut r = Receiver::new();
        feed(&mut r, [10, 12, 11, 13, 14]);
        assert_eq!(r.stats.lost, 0);
    }

    #[test]
    fn one_wild_jump_is_ignored_two_restart() {
        let mut r = Receiver::new();
        feed(&mut r, [100, 101, 30000, 102]);
        assert_eq!(r.stats.lost, 0);
        assert_eq!(r.stats.packets, 4);
        let mut r = Receiver::new();
        feed(&mut r, [100, 101, 102, 30000, 30001, 30003]);
        assert_eq!(r.stats.lost, 1);
    }

    #[test]
    fn ssrc_change_keeps_earlier_loss() {
        let mut r = Receiver::new();
        feed(&mut r, [1, 3]);
        r.on_rtp(5000, 0, 2, 0, 172, 100_000);
        r.on_rtp(5002, 320, 2, 0, 172, 140_000);
        assert_eq!(r.stats.ssrc_changes, 1);
        assert_eq!(r.stats.lost, 2);
    }

    #[test]
    fn jitter_zero_for_perfect_pacing_and_grows_with_variation() {
        let mut r = Receiver::new();
        for i in 0..100u32 {
            r.on_rtp(i as u16, i * 160, 7, 8, 172, u64::from(i) * 20_000);
        }
        assert_eq!(r.stats.jitter, 0);
        let mut r = Receiver::new();
        for i in 0..200u32 {
            // Alternate 0 / 10 ms late: |D| = 80 timestamp units every packet.
            let late = if i % 2 == 0 { 0 } else { 10_000 };
            r.on_rtp(i as u16, i * 160, 7, 8, 172, u64::from(i) * 20_000 + late);
        }
        assert!((70..=80).contains(&r.stats.jitter), "{}", r.stats.jitter);
        assert!((r.stats.jitter_ms() - 10.0).abs() < 1.5);
    }
}
