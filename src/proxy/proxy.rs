//! The proxy core: state, the public sans-IO API, output queues and timer dispatch.
//! Request handling is in `request.rs`, response handling in `response.rs`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::branch::{self, Branch, BranchKey};
use super::config::ProxyConfig;
use super::context::{Ctx, CtxKind, Key};
use super::dialog::{build_in_dialog, Call, InDialog};
use super::event::{EndReason, Event};
use super::limits::ProxyStats;
use super::options::Probes;
use super::slab::Slab;
use super::timers::{take_wake, Entity, TimerQueue};
use super::transaction::{ClientTimer, ClientTxn, ServerTimer};
use crate::media::{Forward, Leg, MediaEvent, PortBinder, Relay, SessionId};
use crate::rng::Rng;
use crate::route::{RoundRobin, TableReader};

/// A datagram to send: `len` bytes were written at the start of the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub dst: SocketAddr,
    pub len: usize,
    /// The local SIP address to send from: a response leaves from the socket its request
    /// arrived on (RFC 3261 18.2.2, RFC 3581). `None`: this core's own socket (`local`).
    pub local: Option<SocketAddr>,
}

/// One core's SIP proxy. See the module documentation.
pub struct Proxy<B: PortBinder> {
    pub(crate) cfg: ProxyConfig,
    /// Our Via sent-by host and Record-Route URI (`sip:IP:PORT;lr`).
    pub(crate) via_host: String,
    /// The ip of `local` as text (a Route naming it is ours too).
    pub(crate) local_host: String,
    pub(crate) rr_uri: Vec<u8>,
    pub(crate) table: TableReader,
    pub(crate) relay: Relay,
    pub(crate) binder: B,
    pub(crate) rng: Rng,
    pub(crate) rr: RoundRobin,
    pub(crate) timers: TimerQueue,
    pub(crate) ctxs: Slab<Ctx>,
    /// Settled contexts in the order they settled: the first to give way when the
    /// transaction cap is reached (may hold keys of contexts already gone).
    lingering: VecDeque<Key>,
    pub(crate) server_keys: HashMap<Box<[u8]>, Key>,
    pub(crate) calls: Slab<Call>,
    pub(crate) call_ids: HashMap<Box<[u8]>, Key>,
    pub(crate) sessions: HashMap<SessionId, Key>,
    pub(crate) probes: Probes,
    out: VecDeque<(SocketAddr, Option<SocketAddr>, Vec<u8>)>,
    /// The local address the datagram being handled arrived on.
    pub(crate) arrival: Option<SocketAddr>,
    pool: Vec<Vec<u8>>,
    pub(crate) events: VecDeque<Event>,
    pub(crate) stats: ProxyStats,
    /// Output scratch for whole messages, and for rewritten SDP bodies.
    pub(crate) scratch: Vec<u8>,
    pub(crate) sdp_buf: Vec<u8>,
    pub(crate) key_buf: Vec<u8>,
    pub(crate) draining: bool,
    /// Refusing new calls: SIP waits too long in the socket queue (overload control).
    pub(crate) overloaded: bool,
    next_call: u64,
    started: bool,
}

impl<B: PortBinder> Proxy<B> {
    pub fn new(cfg: ProxyConfig, table: TableReader, relay: Relay, binder: B, seed: u64) -> Self {
        let via_host = match cfg.public_address {
            std::net::IpAddr::V6(a) => format!("[{a}]"),
            a => a.to_string(),
        };
        let rr_uri = format!("sip:{}:{};lr", via_host, cfg.local.port()).into_bytes();
        let buf = cfg.max_message + 4096;
        Proxy {
            local_host: cfg.local.ip().to_string(),
            via_host,
            rr_uri,
            table,
            relay,
            binder,
            rng: Rng::new(seed),
            rr: RoundRobin::default(),
            timers: TimerQueue::new(),
            ctxs: Slab::default(),
            lingering: VecDeque::new(),
            server_keys: HashMap::new(),
            calls: Slab::default(),
            call_ids: HashMap::new(),
            sessions: HashMap::new(),
            probes: Probes::default(),
            out: VecDeque::new(),
            arrival: None,
            pool: Vec::new(),
            events: VecDeque::new(),
            stats: ProxyStats::default(),
            scratch: vec![0; buf],
            sdp_buf: vec![0; buf],
            key_buf: Vec::with_capacity(256),
            draining: false,
            overloaded: false,
            next_call: u64::from(cfg.core) << 48,
            started: false,
            cfg,
        }
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }

    /// A SIP datagram arrived on `local` from `src`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        src: SocketAddr,
        local: SocketAddr,
        bytes: &[u8],
    ) {
        self.arrival = Some(local);
        self.start(now);
        self.stats.datagrams_in += 1;
        if bytes.len() > self.cfg.max_message {
            self.stats.drop_too_large += 1;
            return;
        }
        let Ok(msg) = crate::wire::sip::Message::parse(bytes) else {
            self.stats.drop_unparseable += 1;
            return;
        };
        if msg.is_request() {
            self.on_request(now, src, &msg);
        } else {
            self.on_response(now, src, &msg);
        }
    }

    /// Sending to `dst` failed (ICMP unreachable, send error): its pending branches fail over,
    /// a probe to it counts as unanswered.
    pub fn handle_transport_error(&mut self, now: Instant, dst: SocketAddr) {
        self.start(now);
        let hit: Vec<(Key, usize)> = self
            .ctxs
            .iter()
            .flat_map(|(i, g, c)| {
                c.branches
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.dst == dst && b.txn.is_pending() && !b.abandoned)
                    .map(move |(n, _)| ((i, g), n))
            })
            .collect();
        for (key, n) in hit {
            if let Some(b) = self
                .ctxs
                .get_mut(key.0, key.1)
                .and_then(|c| c.branches.get_mut(n))
            {
                b.txn.terminate();
            }
            self.branch_failed(now, key, n, false);
            self.settle_ctx(now, key);
        }
    }

    /// An RTP/RTCP datagram arrived on media port `local_port`.
    pub fn handle_media(
        &mut self,
        now: Instant,
        local_port: u16,
        src: SocketAddr,
        bytes: &[u8],
    ) -> Forward {
        self.relay.handle_packet(now, local_port, src, bytes)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.start(now);
        self.sync_probes(now);
        self.relay.handle_timeout(now);
        while let Some(ev) = self.relay.poll_event() {
            match ev {
                MediaEvent::Timeout(s) => {
                    if let Some(&call) = self.sessions.get(&s) {
                        self.teardown(now, call, EndReason::MediaTimeout);
                    }
                }
            }
        }
        // Bounded per turn: an entity re-armed at `now` must not spin forever.
        for _ in 0..100_000 {
            let Some((at, entity, gen)) = self.timers.pop_due(now) else {
                break;
            };
            match entity {
                Entity::Ctx(i) => self.ctx_timeout(now, (i, gen), at),
                Entity::Call(i) => self.call_timeout(now, (i, gen), at),
                Entity::Probe(i) => self.probe_timeout(now, i, gen, at),
            }
        }
        let live = self.ctxs.len() + self.calls.len() + self.probes.len();
        if self.timers.len() > 4 * live + 1024 {
            let (ctxs, calls) = (&self.ctxs, &self.calls);
            let probes = &self.probes;
            self.timers.compact(|e, gen, at| match e {
                Entity::Ctx(i) => ctxs.get(i, gen).is_some_and(|c| c.wake == Some(at)),
                Entity::Call(i) => calls.get(i, gen).is_some_and(|c| c.wake == Some(at)),
                Entity::Probe(i) => probes.is_armed(i, gen, at),
            });
        }
    }

    /// Writes the next datagram into `buf`.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        while let Some((dst, local, bytes)) = self.out.pop_front() {
            let len = bytes.len();
            let ok = match buf.get_mut(..len) {
                Some(b) => {
                    b.copy_from_slice(&bytes);
                    true
                }
                None => false,
            };
            self.recycle(bytes);
            if ok {
                self.stats.datagrams_out += 1;
                return Some(Transmit { dst, len, local });
            }
            self.stats.drop_transmit_buffer += 1;
        }
        None
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timers.next(), self.relay.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn binder_mut(&mut self) -> &mut B {
        &mut self.binder
    }

    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// The next datagram waited `delay` in the socket queue (and hand-off) before reaching
    /// this core. Once one has waited `overload_queue_delay`, new calls are refused with 503
    /// (cheaply: no routing, no state) until one has waited a quarter of that or less: the
    /// queue has drained. Measured past capacity, this kept retransmissions near zero where
    /// refusing only the datagrams that waited past the mark (no hysteresis), or waiting for
    /// the queue to stand for a while first (CoDel's interval), let retransmission storms
    /// start.
    pub fn handle_queue_delay(&mut self, delay: Duration) {
        let Some(mark) = self.cfg.overload_queue_delay else {
            return;
        };
        if !self.overloaded && delay >= mark {
            self.overloaded = true;
            self.stats.overload_episodes += 1;
        } else if self.overloaded && delay <= mark / 4 {
            self.overloaded = false;
        }
    }

    /// Refusing new calls because SIP waits too long in the queue.
    pub fn is_overloaded(&self) -> bool {
        self.overloaded
    }

    /// Stop taking new calls (503 with Retry-After); calls in progress continue.
    pub fn start_drain(&mut self, now: Instant) {
        self.start(now);
        self.draining = true;
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Calls in setup or established.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// No call, and no transaction but keep-alive probes and settled ones (only absorbing
    /// retransmissions): a draining core may stop.
    pub fn is_idle(&self) -> bool {
        self.calls.len() == 0
            && self
                .ctxs
                .iter()
                .all(|(_, _, c)| matches!(c.kind, CtxKind::Probe(..)) || c.is_settled())
    }

    /// Transaction contexts alive (server transactions with their branches, our own requests).
    pub fn active_transactions(&self) -> usize {
        self.ctxs.len()
    }

    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }

    // ----- internals shared by request and response handling -----

    fn start(&mut self, now: Instant) {
        if !self.started {
            self.started = true;
            self.sync_probes(now);
        }
    }

    /// Sends a request of ours (from this core's own socket).
    pub(crate) fn send(&mut self, dst: SocketAddr, bytes: &[u8]) {
        self.send_from(dst, None, bytes);
    }

    /// Sends from a given local address (responses: the one their request arrived on).
    pub(crate) fn send_from(&mut self, dst: SocketAddr, local: Option<SocketAddr>, bytes: &[u8]) {
        let mut v = self.pool.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(bytes);
        self.out.push_back((dst, local, v));
    }

    /// Sends `scratch[..len]`.
    pub(crate) fn send_scratch(&mut self, dst: SocketAddr, len: usize) {
        self.send_scratch_from(dst, None, len);
    }

    pub(crate) fn send_scratch_from(
        &mut self,
        dst: SocketAddr,
        local: Option<SocketAddr>,
        len: usize,
    ) {
        let mut v = self.pool.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(&self.scratch[..len]);
        self.out.push_back((dst, local, v));
    }

    fn recycle(&mut self, v: Vec<u8>) {
        if self.pool.len() < 256 && v.capacity() <= 2 * self.cfg.max_message {
            self.pool.push(v);
        }
    }

    pub(crate) fn new_branch(&mut self, ctx: Key, index: usize) -> Branch {
        Branch::new(
            BranchKey {
                core: self.cfg.core,
                slot: ctx.0,
                gen: ctx.1,
                index: index.min(255) as u8,
            },
            &mut self.rng,
        )
    }

    pub(crate) fn next_call_id(&mut self) -> u64 {
        self.next_call += 1;
        self.next_call
    }

    /// Re-arms a context's timer and removes it when it is done.
    pub(crate) fn settle_ctx(&mut self, now: Instant, key: Key) {
        let Some(ctx) = self.ctxs.get_mut(key.0, key.1) else {
            return;
        };
        if ctx.is_done() {
            self.remove_ctx(now, key);
            return;
        }
        let started_lingering = ctx.start_lingering();
        let next = ctx.next_deadline();
        self.timers
            .arm(&mut ctx.wake, next, Entity::Ctx(key.0), key.1);
        if started_lingering {
            self.lingering.push_back(key);
            // Keys of contexts that ended on their own pile up behind a live front: drop
            // them once the queue is twice the table.
            if self.lingering.len() > 2 * self.cfg.max_transactions + 1024 {
                let ctxs = &self.ctxs;
                self.lingering
                    .retain(|k| ctxs.get(k.0, k.1).is_some_and(|c| c.lingering));
            }
        }
    }

    /// Makes room for a new transaction context below `limit` by ending the longest-settled
    /// lingering ones first (they only absorb retransmissions; calls are never touched).
    /// True when there is room.
    pub(crate) fn make_room(&mut self, now: Instant, limit: usize) -> bool {
        while self.ctxs.len() >= limit {
            let Some(key) = self.lingering.pop_front() else {
                return false;
            };
            if self.ctxs.get(key.0, key.1).is_some_and(|c| c.lingering) {
                self.stats.lingering_evicted += 1;
                self.remove_ctx(now, key);
            }
        }
        true
    }

    fn remove_ctx(&mut self, now: Instant, key: Key) {
        let Some(ctx) = self.ctxs.remove(key.0, key.1) else {
            return;
        };
        if let Some(s) = &ctx.server {
            self.server_keys.remove(&s.key);
        }
        if ctx.kind == CtxKind::Invite {
            if let Some(ck) = ctx.call {
                let orphan = match self.calls.get_mut(ck.0, ck.1) {
                    Some(call) if call.invite_ctx == Some(key) => {
                        call.invite_ctx = None;
                        !call.is_answered()
                    }
                    _ => false,
                };
                // Never leave an unanswered call without its INVITE transaction.
                if orphan {
                    self.end_call(now, ck, EndReason::Failed, 408);
                }
            }
        }
    }

    pub(crate) fn settle_call(&mut self, key: Key) {
        if let Some(call) = self.calls.get_mut(key.0, key.1) {
            self.timers
                .arm(&mut call.wake, call.end_at, Entity::Call(key.0), key.1);
        }
    }

    /// Removes a call: frees its media ports and reports it.
    pub(crate) fn end_call(&mut self, now: Instant, key: Key, reason: EndReason, status: u16) {
        let Some(call) = self.calls.remove(key.0, key.1) else {
            return;
        };
        self.call_ids.remove(&call.call_id);
        let media = call.session.map(|s| {
            self.sessions.remove(&s);
            self.relay.close_session(&mut self.binder, s)
        });
        self.stats.calls_ended += 1;
        self.events.push_back(Event::CallEnded {
            call: call.id,
            reason,
            status,
            duration: call.answered.map_or(std::time::Duration::ZERO, |a| {
                now.saturating_duration_since(a)
            }),
            media,
        });
    }

    /// Ends an established call from the middle: BYE to both legs (media timeout, maximum
    /// duration). A call still ringing is left alone: silence before the answer is normal,
    /// and setup has its own timers (B, C, fast failover).
    pub(crate) fn teardown(&mut self, now: Instant, key: Key, reason: EndReason) {
        let Some(call) = self.calls.get(key.0, key.1) else {
            return;
        };
        if !call.is_answered() {
            return;
        }
        let text: &[u8] = match reason {
            EndReason::MediaTimeout => b"SIP;cause=408;text=\"Media timeout\"",
            _ => b"SIP;cause=408;text=\"Maximum call duration\"",
        };
        for leg in [Leg::Caller, Leg::Callee] {
            self.originate_bye(now, key, leg, Some(text));
        }
        self.end_call(now, key, reason, 200);
    }

    /// A BYE we originate toward one leg of an established call.
    pub(crate) fn originate_bye(
        &mut self,
        now: Instant,
        call: Key,
        leg: Leg,
        reason: Option<&[u8]>,
    ) {
        let Some(c) = self.calls.get_mut(call.0, call.1) else {
            return;
        };
        let Some(dst) = c.addr_of(leg) else {
            return;
        };
        let cseq = match leg {
            Leg::Caller => {
                c.callee_cseq = c.callee_cseq.saturating_add(1);
                c.callee_cseq
            }
            Leg::Callee => {
                c.caller_cseq = c.caller_cseq.saturating_add(1);
                c.caller_cseq
            }
        };
        let (ruri, routes, from, to) = match leg {
            Leg::Caller => (
                c.caller_contact.clone(),
                c.caller_routes.clone(),
                c.callee_to.clone(),
                c.caller_from.clone(),
            ),
            Leg::Callee => (
                c.callee_contact.clone(),
                c.callee_routes.clone(),
                c.callee_from.clone(),
                c.callee_to.clone(),
            ),
        };
        // No usable Contact from that leg: address the BYE to where its messages come from.
        let ruri = if ruri.is_empty() {
            format!("sip:{dst}").into_bytes()
        } else {
            ruri
        };
        let call_id = c.call_id.clone();
        let ctx = self.ctxs.next_key();
        let branch = self.new_branch(ctx, 0);
        let r = InDialog {
            method: b"BYE",
            request_uri: &ruri,
            via_host: &self.via_host,
            via_port: self.cfg.local.port(),
            branch: branch.as_bytes(),
            routes: &routes,
            from: &from,
            to: &to,
            call_id: &call_id,
            cseq,
            reason,
        };
        match build_in_dialog(&r, &mut self.scratch) {
            Ok(n) => {
                let bytes = self.scratch[..n].to_vec();
                self.originate(now, CtxKind::Originated, dst, branch, bytes, false);
            }
            Err(_) => self.stats.drop_unwritable += 1,
        }
    }

    /// Sends a request of our own as a client transaction in a context without server side.
    /// `branch` must have been made for `self.ctxs.next_key()`.
    pub(crate) fn originate(
        &mut self,
        now: Instant,
        kind: CtxKind,
        dst: SocketAddr,
        branch: Branch,
        bytes: Vec<u8>,
        invite: bool,
    ) {
        self.send(dst, &bytes);
        let ctx = Ctx {
            wake: None,
            kind,
            server: None,
            branches: vec![super::context::ClientBranch {
                branch,
                txn: ClientTxn::new(now, invite, false, &self.cfg.timers),
                dst,
                request: bytes,
                trunk: None,
                abandoned: false,
                provisional: false,
                cancel_wanted: false,
                cancel: None,
            }],
            routing: None,
            call: None,
            responder: Leg::Callee,
            cancelled: false,
            best: None,
            lingering: false,
        };
        let key = self.ctxs.insert(ctx);
        self.settle_ctx(now, key);
    }

    fn ctx_timeout(&mut self, now: Instant, key: Key, at: Instant) {
        let t = self.cfg.timers;
        let Some(ctx) = self.ctxs.get_mut(key.0, key.1) else {
            return;
        };
        if !take_wake(&mut ctx.wake, at) {
            return;
        }
        // Server side: Timer G re-sends the last response; H, I, J, L end it.
        let mut resend_last = None;
        if let Some(s) = ctx.server.as_mut() {
            while let Some(ev) = s.txn.poll(now, &t) {
                if ev == ServerTimer::Retransmit {
                    resend_last = Some((s.src, s.local));
                }
            }
        }
        if let Some((dst, local)) = resend_last {
            let last = self
                .ctxs
                .get(key.0, key.1)
                .and_then(|c| c.server.as_ref())
                .map(|s| s.last.clone())
                .unwrap_or_default();
            if !last.is_empty() {
                self.stats.retransmissions_sent += 1;
                self.send_from(dst, local, &last);
            }
        }
        // Client side, branch by branch (a failover may append branches meanwhile).
        let n = self.ctxs.get(key.0, key.1).map_or(0, |c| c.branches.len());
        for i in 0..n {
            let mut events = Vec::new();
            let mut cancel_resend = false;
            if let Some(b) = self
                .ctxs
                .get_mut(key.0, key.1)
                .and_then(|c| c.branches.get_mut(i))
            {
                while let Some(ev) = b.txn.poll(now, &t) {
                    events.push(ev);
                    if events.len() > 8 {
                        break;
                    }
                }
                if let Some(c) = b.cancel.as_mut() {
                    while let Some(ev) = c.txn.poll(now, &t) {
                        if ev == ClientTimer::Retransmit {
                            cancel_resend = true;
                        }
                    }
                }
            }
            if cancel_resend {
                if let Some((dst, bytes)) = self
                    .branch_ref(key, i)
                    .and_then(|b| b.cancel.as_ref().map(|c| (b.dst, c.bytes.clone())))
                {
                    self.stats.retransmissions_sent += 1;
                    self.send(dst, &bytes);
                }
            }
            for ev in events {
                match ev {
                    ClientTimer::Retransmit => {
                        if let Some((dst, bytes)) =
                            self.branch_ref(key, i).map(|b| (b.dst, b.request.clone()))
                        {
                            self.stats.retransmissions_sent += 1;
                            self.send(dst, &bytes);
                        }
                    }
                    ClientTimer::Timeout => self.branch_failed(now, key, i, false),
                    ClientTimer::TimerC | ClientTimer::FastFailover => {
                        self.branch_failed(now, key, i, true)
                    }
                    ClientTimer::Terminated => {}
                }
            }
        }
        self.settle_ctx(now, key);
    }

    pub(crate) fn branch_ref(&self, key: Key, i: usize) -> Option<&super::context::ClientBranch> {
        self.ctxs.get(key.0, key.1).and_then(|c| c.branches.get(i))
    }

    fn call_timeout(&mut self, now: Instant, key: Key, at: Instant) {
        let Some(call) = self.calls.get_mut(key.0, key.1) else {
            return;
        };
        if !take_wake(&mut call.wake, at) {
            return;
        }
        if call.end_at.is_some_and(|e| e <= now) {
            call.end_at = None;
            self.teardown(now, key, EndReason::MaxDuration);
        } else {
            self.settle_call(key);
        }
    }

    /// The branch for an in-dialog or originated request's next hop never answered etc.
    pub(crate) fn own_branch_key(&self, branch: &[u8]) -> Option<(Key, usize)> {
        let k = branch::decode(branch)?;
        if k.core != self.cfg.core {
            return None;
        }
        let ctx = self.ctxs.get(k.slot, k.gen)?;
        let b = ctx.branches.get(usize::from(k.index))?;
        (b.branch.as_bytes() == branch).then_some(((k.slot, k.gen), usize::from(k.index)))
    }
}
