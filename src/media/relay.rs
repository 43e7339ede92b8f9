//! The [`Relay`]: sessions, the port -> stream table, forwarding decisions and timeouts.

use super::ports::{PortPool, PortRange};
use super::session::{Session, SessionId, Slot, MAX_SESSIONS};
use super::stats::{SessionStats, StreamStats};
use super::stream::{LegState, Stream};
use super::timers::Timers;
use super::{DropReason, Forward, Leg, MediaError, MediaEvent, PortBinder};
use crate::rng::Rng;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Most streams (`m=` lines) one session may have.
pub const MAX_STREAMS: usize = crate::wire::sdp::MAX_MEDIA;

/// One core's relay settings.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// The address the media sockets are bound to and SDP advertises.
    pub media_address: IpAddr,
    /// This core's slice of `media_ports`.
    pub ports: PortRange,
    /// No RTP/RTCP on a call this long -> [`MediaEvent::Timeout`] (sessions that ask for it).
    pub media_timeout: Duration,
    /// How long after each `set_remote` a latching leg may learn its source.
    pub latch_window: Duration,
}

/// Counters summed into `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaTotals {
    pub sessions_created: u64,
    pub sessions_closed: u64,
    pub sessions_active: u64,
    pub timeouts: u64,
    pub pairs_total: u64,
    pub pairs_in_use: u64,
    /// Session or stream set-ups refused for lack of ports (or a bind failure).
    pub allocation_failures: u64,
    /// Pairs skipped because another process held them (`EADDRINUSE`).
    pub bind_retries: u64,
    pub rtp_packets: u64,
    pub rtcp_packets: u64,
    pub forwarded_packets: u64,
    pub forwarded_bytes: u64,
    pub dropped_unknown_port: u64,
    pub dropped_unexpected_source: u64,
    pub dropped_no_destination: u64,
    pub dropped_malformed: u64,
}

impl MediaTotals {
    fn count_drop(&mut self, reason: DropReason) {
        match reason {
            DropReason::UnknownPort => self.dropped_unknown_port += 1,
            DropReason::UnexpectedSource => self.dropped_unexpected_source += 1,
            DropReason::NoDestination => self.dropped_no_destination += 1,
            DropReason::Malformed => self.dropped_malformed += 1,
        }
    }
}

/// Owner of one allocated pair, in the flat table indexed by pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortEntry {
    slot: u32,
    stream: u8,
    leg: u8,
}

const FREE: PortEntry = PortEntry {
    slot: u32::MAX,
    stream: 0,
    leg: 0,
};

/// What a datagram is, read from its first bytes.
enum Packet {
    Rtp {
        seq: u16,
        timestamp: u32,
        ssrc: u32,
        pt: u8,
    },
    Rtcp,
    Malformed,
}

/// RTCP packet types 192..=223 (RFC 5761 section 4: what tells muxed RTCP from RTP).
fn is_rtcp_header(bytes: &[u8]) -> bool {
    matches!(bytes, [b0, 192..=223, _, _, _, _, _, _, ..] if b0 >> 6 == 2)
}

fn classify(bytes: &[u8], rtcp_port: bool) -> Packet {
    if is_rtcp_header(bytes) {
        return Packet::Rtcp;
    }
    if rtcp_port {
        return Packet::Malformed;
    }
    match rtp_rs::RtpReader::new(bytes) {
        Ok(r) => Packet::Rtp {
            seq: r.sequence_number().into(),
            timestamp: r.timestamp(),
            ssrc: r.ssrc(),
            pt: r.payload_type(),
        },
        Err(_) => Packet::Malformed,
    }
}

/// The sans-IO media relay of one core.
#[derive(Debug)]
pub struct Relay {
    cfg: RelayConfig,
    rng: Rng,
    pool: PortPool,
    /// Pair index -> owner; O(1) dispatch of every packet.
    table: Vec<PortEntry>,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    timers: Timers,
    events: VecDeque<MediaEvent>,
    totals: MediaTotals,
}

impl Relay {
    pub fn new(cfg: RelayConfig, seed: u64) -> Relay {
        let pool = PortPool::new(cfg.ports);
        let pairs = pool.pairs() as usize;
        // A session takes at least two pairs (one per leg).
        let max_sessions = (pairs / 2).clamp(1, MAX_SESSIONS);
        let totals = MediaTotals {
            pairs_total: pairs as u64,
            ..MediaTotals::default()
        };
        Relay {
            cfg,
            rng: Rng::new(seed),
            pool,
            table: vec![FREE; pairs],
            slots: Vec::with_capacity(max_sessions),
            free_slots: Vec::with_capacity(max_sessions),
            timers: Timers::with_capacity(max_sessions),
            events: VecDeque::with_capacity(max_sessions.min(4096)),
            totals,
        }
    }

    pub fn config(&self) -> &RelayConfig {
        &self.cfg
    }

    /// A session with `streams` streams (port pairs on both legs). All or nothing: on failure
    /// every pair taken so far is released.
    pub fn create_session(
        &mut self,
        now: Instant,
        binder: &mut dyn PortBinder,
        streams: usize,
        inactivity_teardown: bool,
    ) -> Result<SessionId, MediaError> {
        if streams > MAX_STREAMS {
            return Err(MediaError::TooManyStreams);
        }
        let index = match self.free_slots.pop() {
            Some(i) => i as usize,
            None if self.slots.len() < MAX_SESSIONS => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
            None => {
                self.totals.allocation_failures += 1;
                return Err(MediaError::NoPorts);
            }
        };
        let mut list: SmallVec<[Stream; 1]> = SmallVec::new();
        if let Err(e) = self.allocate_streams(binder, &mut list, streams) {
            self.free_slots.push(index as u32);
            return Err(e);
        }
        let Some(slot) = self.slots.get_mut(index) else {
            // Unreachable: the index came from the slab. Undo rather than panic.
            for s in &list {
                for leg in &s.legs {
                    self.pool.release(leg.pair, binder);
                }
            }
            return Err(MediaError::UnknownSession);
        };
        slot.session = Some(Session {
            started: now,
            last_activity: now,
            inactivity_teardown,
            timed_out: false,
            streams: list,
        });
        if inactivity_teardown && !slot.armed {
            slot.armed = true;
            self.timers.push(now + self.cfg.media_timeout, index as u32);
        }
        let id = SessionId::new(index, slot.generation);
        self.index_streams(index, 0);
        self.totals.sessions_created += 1;
        self.totals.sessions_active += 1;
        Ok(id)
    }

    /// Takes pairs for `count` more streams into `list`; on failure releases what it took.
    fn allocate_streams(
        &mut self,
        binder: &mut dyn PortBinder,
        list: &mut SmallVec<[Stream; 1]>,
        count: usize,
    ) -> Result<(), MediaError> {
        let keep = list.len();
        let mut pending: Option<u32> = None;
        let mut result = Ok(());
        for _ in 0..count * 2 {
            match self.pool.allocate(&mut self.rng, binder) {
                Ok(pair) => match pending.take() {
                    None => pending = Some(pair),
                    Some(first) => list.push(Stream {
                        legs: [LegState::new(first), LegState::new(pair)],
                    }),
                },
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.totals.bind_retries = self.pool.bind_retries;
        if result.is_err() {
            self.totals.allocation_failures += 1;
            if let Some(p) = pending {
                self.pool.release(p, binder);
            }
            for s in list.drain(keep..) {
                for leg in &s.legs {
                    self.pool.release(leg.pair, binder);
                }
            }
        }
        self.totals.pairs_in_use = self.totals.pairs_total - self.pool.free_count() as u64;
        result
    }

    /// Points the table entries of streams `from..` of the session in `index` at it.
    fn index_streams(&mut self, index: usize, from: usize) {
        let Some(Some(session)) = self.slots.get(index).map(|s| s.session.as_ref()) else {
            return;
        };
        for (i, s) in session.streams.iter().enumerate().skip(from) {
            for (l, leg) in s.legs.iter().enumerate() {
                if let Some(e) = self.table.get_mut(leg.pair as usize) {
                    *e = PortEntry {
                        slot: index as u32,
                        stream: i as u8,
                        leg: l as u8,
                    };
                }
            }
        }
    }

    fn session(&self, s: SessionId) -> Option<&Session> {
        let slot = self.slots.get(s.index())?;
        if slot.generation != s.generation() {
            return None;
        }
        slot.session.as_ref()
    }

    fn session_mut(&mut self, s: SessionId) -> Option<&mut Session> {
        let slot = self.slots.get_mut(s.index())?;
        if slot.generation != s.generation() {
            return None;
        }
        slot.session.as_mut()
    }

    /// Grows the session to `streams` streams (a re-INVITE adding `m=` lines). Streams are never
    /// removed: a dropped `m=` line stays as a disabled one (RFC 3264 section 8.2).
    pub fn ensure_streams(
        &mut self,
        binder: &mut dyn PortBinder,
        s: SessionId,
        streams: usize,
    ) -> Result<(), MediaError> {
        if streams > MAX_STREAMS {
            return Err(MediaError::TooManyStreams);
        }
        let have = self
            .session(s)
            .ok_or(MediaError::UnknownSession)?
            .streams
            .len();
        if streams <= have {
            return Ok(());
        }
        let mut list = match self.session_mut(s) {
            Some(session) => std::mem::take(&mut session.streams),
            None => return Err(MediaError::UnknownSession),
        };
        let result = self.allocate_streams(binder, &mut list, streams - have);
        if let Some(session) = self.session_mut(s) {
            session.streams = list;
        }
        if result.is_ok() {
            self.index_streams(s.index(), have);
        }
        result
    }

    /// The relay port a leg must send that stream's RTP to (RTCP: +1); it goes into the SDP
    /// sent to that leg.
    pub fn local_port(&self, s: SessionId, leg: Leg, stream: usize) -> Option<u16> {
        let l = self
            .session(s)?
            .streams
            .get(stream)?
            .legs
            .get(leg.index())?;
        Some(self.pool.rtp_port(l.pair))
    }

    /// Number of streams of a live session.
    pub fn stream_count(&self, s: SessionId) -> Option<usize> {
        self.session(s).map(|x| x.streams.len())
    }

    /// The endpoints from a leg's latest SDP (offer or answer); opens a latching window when
    /// `latching`. `None`, an unspecified address or port 0 mean no endpoint (hold, disabled).
    /// Unknown session or stream: ignored.
    #[allow(clippy::too_many_arguments)]
    pub fn set_remote(
        &mut self,
        now: Instant,
        s: SessionId,
        leg: Leg,
        stream: usize,
        rtp: Option<SocketAddr>,
        rtcp: Option<SocketAddr>,
        latching: bool,
    ) {
        let window = self.cfg.latch_window;
        if let Some(l) = self
            .session_mut(s)
            .and_then(|x| x.streams.get_mut(stream))
            .and_then(|st| st.legs.get_mut(leg.index()))
        {
            l.set_remote(now, window, rtp, rtcp, latching);
        }
    }

    /// Ends a session: every pair is released through `binder`; returns what its media did.
    /// An unknown or already closed id returns empty statistics.
    pub fn close_session(&mut self, binder: &mut dyn PortBinder, s: SessionId) -> SessionStats {
        let Some(slot) = self.slots.get_mut(s.index()) else {
            return SessionStats::default();
        };
        if slot.generation != s.generation() {
            return SessionStats::default();
        }
        let Some(session) = slot.session.take() else {
            return SessionStats::default();
        };
        slot.generation = slot.generation.wrapping_add(1) & 0xfff;
        let mut stats = SessionStats {
            streams: Vec::with_capacity(session.streams.len()),
        };
        for st in &session.streams {
            for leg in &st.legs {
                if let Some(e) = self.table.get_mut(leg.pair as usize) {
                    *e = FREE;
                }
                self.pool.release(leg.pair, binder);
            }
            stats.streams.push(StreamStats {
                caller: st.legs[0].rx.stats,
                callee: st.legs[1].rx.stats,
            });
        }
        self.free_slots.push(s.index() as u32);
        self.totals.sessions_closed += 1;
        self.totals.sessions_active = self.totals.sessions_active.saturating_sub(1);
        self.totals.pairs_in_use = self.totals.pairs_total - self.pool.free_count() as u64;
        stats
    }

    /// Statistics of a live session so far.
    pub fn session_stats(&self, s: SessionId) -> Option<SessionStats> {
        let session = self.session(s)?;
        Some(SessionStats {
            streams: session
                .streams
                .iter()
                .map(|st| StreamStats {
                    caller: st.legs[0].rx.stats,
                    callee: st.legs[1].rx.stats,
                })
                .collect(),
        })
    }

    /// Decides the fate of one datagram that arrived on `local_port` from `src`. O(1), no
    /// allocation: port -> pair -> (session, stream, leg) through a flat table.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        local_port: u16,
        src: SocketAddr,
        bytes: &[u8],
    ) -> Forward {
        let verdict = self.decide(now, local_port, src, bytes);
        match verdict {
            Forward::To { .. } => {
                self.totals.forwarded_packets += 1;
                self.totals.forwarded_bytes += bytes.len() as u64;
            }
            Forward::Drop(r) => self.totals.count_drop(r),
        }
        verdict
    }

    fn decide(&mut self, now: Instant, local_port: u16, src: SocketAddr, bytes: &[u8]) -> Forward {
        let Some((pair, rtcp_port)) = self.pool.pair_of(local_port) else {
            return Forward::Drop(DropReason::UnknownPort);
        };
        let entry = match self.table.get(pair as usize) {
            Some(e) if *e != FREE => *e,
            _ => return Forward::Drop(DropReason::UnknownPort),
        };
        let base = self.pool.base();
        let Some(session) = self
            .slots
            .get_mut(entry.slot as usize)
            .and_then(|s| s.session.as_mut())
        else {
            return Forward::Drop(DropReason::UnknownPort);
        };
        let started = session.started;
        let Some(stream) = session.streams.get_mut(usize::from(entry.stream)) else {
            return Forward::Drop(DropReason::UnknownPort);
        };
        let [caller, callee] = &mut stream.legs;
        let (from, to) = if entry.leg == 0 {
            (caller, callee)
        } else {
            (callee, caller)
        };

        let packet = classify(bytes, rtcp_port);
        if let Packet::Malformed = packet {
            from.rx.on_drop(DropReason::Malformed);
            return Forward::Drop(DropReason::Malformed);
        }
        if !from.admit(now, src, rtcp_port) {
            from.rx.on_drop(DropReason::UnexpectedSource);
            return Forward::Drop(DropReason::UnexpectedSource);
        }
        match packet {
            Packet::Rtp {
                seq,
                timestamp,
                ssrc,
                pt,
            } => {
                let arrival_us = u64::try_from(now.saturating_duration_since(started).as_micros())
                    .unwrap_or(u64::MAX);
                from.rx
                    .on_rtp(seq, timestamp, ssrc, pt, bytes.len(), arrival_us);
                self.totals.rtp_packets += 1;
            }
            Packet::Rtcp | Packet::Malformed => {
                from.rx.on_rtcp(bytes.len());
                self.totals.rtcp_packets += 1;
            }
        }
        session.last_activity = now;

        let (dst, out_port) = if rtcp_port {
            (
                to.rtcp.destination(),
                base.wrapping_add((to.pair as u16).wrapping_mul(2))
                    .wrapping_add(1),
            )
        } else {
            (
                to.rtp.destination(),
                base.wrapping_add((to.pair as u16).wrapping_mul(2)),
            )
        };
        match dst {
            Some(dst) => Forward::To { out_port, dst },
            None => {
                from.rx.on_drop(DropReason::NoDestination);
                Forward::Drop(DropReason::NoDestination)
            }
        }
    }

    /// Fires the timeouts due at `now` (one [`MediaEvent::Timeout`] per silent session).
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.cfg.media_timeout;
        // Each live slot has at most one entry, so this loop is bounded by the heap size.
        let mut budget = self.timers.len();
        while budget > 0 {
            budget -= 1;
            let Some(index) = self.timers.pop_due(now) else {
                break;
            };
            let Some(slot) = self.slots.get_mut(index as usize) else {
                continue;
            };
            slot.armed = false;
            let generation = slot.generation;
            let Some(session) = slot.session.as_mut() else {
                continue;
            };
            if !session.inactivity_teardown || session.timed_out {
                continue;
            }
            let deadline = session.last_activity + timeout;
            if deadline <= now {
                session.timed_out = true;
                self.totals.timeouts += 1;
                self.events.push_back(MediaEvent::Timeout(SessionId::new(
                    index as usize,
                    generation,
                )));
            } else {
                slot.armed = true;
                self.timers.push(deadline, index);
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should run next (possibly early: deadlines
    /// are re-checked lazily).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The next event for a session that is still live.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        while let Some(ev) = self.events.pop_front() {
            let MediaEvent::Timeout(id) = ev;
            if self.session(id).is_some() {
                return Some(ev);
            }
        }
        None
    }

    pub fn totals(&self) -> &MediaTotals {
        &self.totals
    }

    /// Live sessions.
    pub fn session_count(&self) -> usize {
        self.totals.sessions_active as usize
    }

    /// Free port pairs.
    pub fn free_pairs(&self) -> usize {
        self.pool.free_count()
    }
}
