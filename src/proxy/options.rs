//! OPTIONS keep-alive probing of trunks (`options_keepalive_s`): a trunk that leaves a probe
//! unanswered (Timer F) is marked down and routing skips it; any response marks it up again.
//!
//! Health is kept per trunk address, so it survives a reload that renumbers trunks. Each core
//! probes on its own (the state is per core, like everything on the datapath).

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::branch::{new_call_id, new_tag};
use super::context::CtxKind;
use super::event::Event;
use super::proxy::Proxy;
use super::timers::{take_wake, Entity};
use crate::media::PortBinder;
use crate::route::TrunkId;

#[derive(Debug)]
pub(crate) struct Probe {
    pub addr: SocketAddr,
    pub trunk: TrunkId,
    pub interval: Duration,
    pub next_at: Option<Instant>,
    pub wake: Option<Instant>,
    pub up: bool,
    pub outstanding: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Probes {
    pub list: Vec<Probe>,
    /// Bumped on every table change: timer entries and probe contexts of an older list are
    /// stale.
    pub epoch: u32,
    table: usize,
}

impl Probes {
    pub fn is_down(&self, addr: SocketAddr) -> bool {
        self.list.iter().any(|p| p.addr == addr && !p.up)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_armed(&self, i: u32, gen: u32, at: Instant) -> bool {
        gen == self.epoch
            && self
                .list
                .get(i as usize)
                .is_some_and(|p| p.wake == Some(at))
    }
}

impl<B: PortBinder> Proxy<B> {
    /// Follows the routing table: one probe per trunk with keep-alive on.
    pub(crate) fn sync_probes(&mut self, now: Instant) {
        let table = Arc::clone(self.table.current());
        let ptr = Arc::as_ptr(&table) as usize;
        if self.probes.table == ptr {
            return;
        }
        self.probes.table = ptr;
        self.probes.epoch = self.probes.epoch.wrapping_add(1);
        let old = std::mem::take(&mut self.probes.list);
        for (id, t) in table.trunks() {
            let Some(interval) = t.options_keepalive.filter(|d| !d.is_zero()) else {
                continue;
            };
            let up = old
                .iter()
                .find(|p| p.addr == t.address)
                .is_none_or(|p| p.up);
            // Spread first probes over the interval so trunks are not probed in lockstep.
            let jitter = self.rng.below(interval.as_millis().max(1) as u64);
            self.probes.list.push(Probe {
                addr: t.address,
                trunk: id,
                interval,
                next_at: Some(now + Duration::from_millis(jitter)),
                wake: None,
                up,
                outstanding: false,
            });
        }
        for i in 0..self.probes.list.len() {
            self.arm_probe(i as u32);
        }
    }

    fn arm_probe(&mut self, i: u32) {
        let epoch = self.probes.epoch;
        if let Some(p) = self.probes.list.get_mut(i as usize) {
            self.timers
                .arm(&mut p.wake, p.next_at, Entity::Probe(i), epoch);
        }
    }

    pub(crate) fn probe_timeout(&mut self, now: Instant, i: u32, epoch: u32, at: Instant) {
        if epoch != self.probes.epoch {
            return;
        }
        let Some(p) = self.probes.list.get_mut(i as usize) else {
            return;
        };
        if !take_wake(&mut p.wake, at) {
            return;
        }
        if p.next_at.is_some_and(|n| n <= now) {
            p.next_at = Some(now + p.interval);
            if !p.outstanding {
                p.outstanding = true;
                let addr = p.addr;
                self.send_probe(now, i, addr);
            }
        }
        self.arm_probe(i);
    }

    fn send_probe(&mut self, now: Instant, i: u32, addr: SocketAddr) {
        let ctx = self.ctxs.next_key();
        let branch = self.new_branch(ctx, 0);
        let call_id = new_call_id(&mut self.rng, &self.via_host, self.cfg.core, self.cfg.cores);
        let tag = new_tag(&mut self.rng);
        let mut req = Vec::with_capacity(400);
        let host = &self.via_host;
        let port = self.cfg.local.port();
        let _ = write!(
            req,
            "OPTIONS sip:{addr} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {host}:{port};branch={};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:keepalive@{host}:{port}>;tag={}\r\n\
             To: <sip:{addr}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            branch.as_str(),
            std::str::from_utf8(&tag).unwrap_or("0"),
        );
        self.stats.probes_sent += 1;
        let kind = CtxKind::Probe(i, self.probes.epoch);
        self.originate(now, kind, addr, branch, req, false);
    }

    pub(crate) fn probe_answered(&mut self, i: u32, epoch: u32) {
        if epoch != self.probes.epoch {
            return;
        }
        if let Some(p) = self.probes.list.get_mut(i as usize) {
            p.outstanding = false;
            if !p.up {
                p.up = true;
                self.events.push_back(Event::TrunkUp(p.trunk));
            }
        }
    }

    pub(crate) fn probe_failed(&mut self, i: u32, epoch: u32) {
        if epoch != self.probes.epoch {
            return;
        }
        if let Some(p) = self.probes.list.get_mut(i as usize) {
            p.outstanding = false;
            if p.up {
                p.up = false;
                self.events.push_back(Event::TrunkDown(p.trunk));
            }
        }
    }
}
