//! Responses arriving: matched to a client transaction by our Via branch, then absorbed,
//! forwarded upstream (our Via popped, SDP anchored) or acted on (failover, ACK, CANCEL).

use std::net::SocketAddr;
use std::time::Instant;

use super::branch;
use super::context::{better, CtxKind, Key};
use super::dialog::{build_in_dialog, contact_uri, raw, routes_toward_callee, InDialog};
use super::event::{EndReason, Event};
use super::proxy::Proxy;
use super::transaction::ClientOutcome;
use super::util::replace_status;
use crate::media::{Leg, PortBinder};
use crate::wire::sip::{build_ack, rewrite_response, HeaderName, Message, Method, ResponseRewrite};

impl<B: PortBinder> Proxy<B> {
    pub(crate) fn on_response(&mut self, now: Instant, _src: SocketAddr, msg: &Message<'_>) {
        let t = self.cfg.timers;
        let (Ok(via), Some(code), Ok(cseq)) = (msg.top_via(), msg.status(), msg.cseq()) else {
            self.stats.drop_stray_response += 1;
            return;
        };
        let branch = via.branch.unwrap_or_default();
        let Some((key, i)) = self.own_branch_key(branch) else {
            if (200..300).contains(&code)
                && cseq.method == Method::Invite
                && branch::is_ours(branch)
            {
                self.forward_late_2xx(now, msg);
            } else {
                self.stats.drop_stray_response += 1;
            }
            return;
        };
        let Some(ctx) = self.ctxs.get_mut(key.0, key.1) else {
            return;
        };
        let kind = ctx.kind;
        let Some(b) = ctx.branches.get_mut(i) else {
            return;
        };
        if cseq.method == Method::Cancel {
            if let Some(c) = b.cancel.as_mut() {
                c.txn.on_response(now, code, &t);
            }
            self.settle_ctx(now, key);
            return;
        }
        if b.txn.invite != (cseq.method == Method::Invite) {
            self.stats.drop_stray_response += 1;
            return;
        }
        let outcome = b.txn.on_response(now, code, &t);
        if let CtxKind::Probe(p, epoch) = kind {
            self.probe_answered(p, epoch);
            self.settle_ctx(now, key);
            return;
        }
        let abandoned = b.abandoned;
        let invite = b.txn.invite;
        if code < 200 {
            b.provisional = true;
            if b.cancel_wanted {
                self.send_cancel(now, key, i);
            }
        }
        if invite
            && code >= 300
            && matches!(
                outcome,
                ClientOutcome::Final | ClientOutcome::RetransmittedFinal
            )
        {
            self.send_ack(key, i, msg);
        }
        match outcome {
            ClientOutcome::Absorb | ClientOutcome::RetransmittedFinal => {}
            ClientOutcome::Provisional if !abandoned => self.on_provisional(now, key, msg, code),
            ClientOutcome::Provisional => {}
            ClientOutcome::Final if code < 300 => {
                self.on_2xx(now, key, i, msg, code, true, abandoned)
            }
            ClientOutcome::Final if !abandoned => self.on_failure(now, key, i, msg, code),
            ClientOutcome::Final => {}
            ClientOutcome::Retransmitted2xx => {
                self.on_2xx(now, key, i, msg, code, false, abandoned)
            }
        }
        self.settle_ctx(now, key);
    }

    /// ACK for a non-2xx final, hop by hop (RFC 3261 17.1.1.3).
    fn send_ack(&mut self, key: Key, i: usize, resp: &Message<'_>) {
        let Some(b) = self.ctxs.get(key.0, key.1).and_then(|c| c.branches.get(i)) else {
            return;
        };
        let dst = b.dst;
        let Ok(sent) = Message::parse(&b.request) else {
            return;
        };
        match build_ack(&sent, resp, &mut self.scratch) {
            Ok(n) => self.send_scratch(dst, n),
            Err(_) => self.stats.drop_unwritable += 1,
        }
    }

    fn on_provisional(&mut self, now: Instant, key: Key, msg: &Message<'_>, code: u16) {
        let Some(ctx) = self.ctxs.get(key.0, key.1) else {
            return;
        };
        if !ctx.server_pending() {
            return;
        }
        if let (CtxKind::Invite, Some(ck)) = (ctx.kind, ctx.call) {
            let tag = msg.to().ok().and_then(|t| t.tag);
            if let (Some(c), Some(tag)) = (self.calls.get_mut(ck.0, ck.1), tag) {
                if !c.early_tags.iter().any(|e| e == tag) {
                    let cap = c
                        .target
                        .map_or(u32::MAX, |t| c.table.trunk(t).max_early_dialogs)
                        as usize;
                    if c.early_tags.len() >= cap.max(1) {
                        self.stats.drop_early_dialog_cap += 1;
                        return;
                    }
                    c.early_tags.push(tag.to_vec());
                }
            }
        }
        self.forward_upstream(now, key, msg, code, true);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_2xx(
        &mut self,
        now: Instant,
        key: Key,
        i: usize,
        msg: &Message<'_>,
        code: u16,
        first: bool,
        abandoned: bool,
    ) {
        let Some(ctx) = self.ctxs.get(key.0, key.1) else {
            return;
        };
        let kind = ctx.kind;
        let call = ctx.call;
        let invite = ctx.branches.get(i).is_some_and(|b| b.txn.invite);
        if !invite {
            if matches!(kind, CtxKind::Originated | CtxKind::Probe(..)) {
                return;
            }
            return self.forward_upstream(now, key, msg, code, true);
        }
        let accepts = ctx.server.as_ref().is_some_and(|s| {
            !s.txn.has_final() || s.txn.state == super::transaction::ServerState::Accepted
        });
        if abandoned || !accepts || kind == CtxKind::Originated {
            // A 2xx on a branch given up (CANCEL crossed it): end that dialog ourselves.
            return self.dispose_2xx(now, key, i, msg, first);
        }
        if first && kind == CtxKind::Invite {
            if let Some(ck) = call {
                self.establish(now, ck, msg);
            }
        }
        self.forward_upstream(now, key, msg, code, true);
        if first && kind == CtxKind::Invite {
            if let Some(c) = call.and_then(|ck| self.calls.get(ck.0, ck.1)) {
                let (id, target) = (c.id, c.target);
                if let Some(target) = target {
                    self.events
                        .push_back(Event::CallAnswered { call: id, target });
                }
            }
            if let Some(ck) = call {
                self.settle_call(ck);
            }
        }
    }

    /// The dialog is confirmed: remember what we need to end it ourselves.
    fn establish(&mut self, now: Instant, ck: Key, msg: &Message<'_>) {
        let ours = |u: &[u8]| self.is_our_uri(u);
        let routes = routes_toward_callee(msg, ours);
        let max = self.cfg.max_call_duration;
        let Some(c) = self.calls.get_mut(ck.0, ck.1) else {
            return;
        };
        if c.answered.is_some() {
            return;
        }
        c.answered = Some(now);
        c.end_at = Some(now + max);
        c.callee_tag = msg.to().ok().and_then(|t| t.tag).map(<[u8]>::to_vec);
        c.callee_to = raw(msg, HeaderName::To);
        c.callee_contact = contact_uri(msg);
        c.callee_routes = routes;
        self.stats.calls_answered += 1;
    }

    fn on_failure(&mut self, now: Instant, key: Key, i: usize, msg: &Message<'_>, code: u16) {
        let Some(ctx) = self.ctxs.get_mut(key.0, key.1) else {
            return;
        };
        let trunk = ctx.branches.get(i).and_then(|b| b.trunk);
        let translated = match (&ctx.routing, trunk) {
            (Some(r), Some(t)) => r.table.translate_response_code(t, code),
            _ => code,
        };
        let failover = translated == 408 || (500..600).contains(&translated);
        if ctx.routing.is_some() && !ctx.cancelled && ctx.server_pending() && failover {
            if better(translated, ctx.best.as_ref().map(|b| b.0)) {
                ctx.best = Some((translated, msg.as_bytes().to_vec()));
            }
            self.stats.failovers += 1;
            return self.next_branch(now, key);
        }
        let (kind, call, cancelled) = (ctx.kind, ctx.call, ctx.cancelled);
        self.forward_upstream(now, key, msg, translated, false);
        if kind == CtxKind::Invite {
            if let Some(ck) = call {
                let reason = if cancelled {
                    EndReason::Cancelled
                } else {
                    EndReason::Failed
                };
                self.end_call(now, ck, reason, translated);
            }
        }
    }

    /// Sends a response up the server transaction: our Via popped, SDP anchored (from the
    /// responding leg), status translated when `code` differs.
    pub(crate) fn forward_upstream(
        &mut self,
        now: Instant,
        key: Key,
        msg: &Message<'_>,
        code: u16,
        anchor: bool,
    ) {
        let t = self.cfg.timers;
        let Some(ctx) = self.ctxs.get(key.0, key.1) else {
            return;
        };
        let Some(s) = ctx.server.as_ref() else {
            return;
        };
        if s.txn.has_final() && !(s.txn.invite && (200..300).contains(&code)) {
            return;
        }
        let (call, responder) = (ctx.call, ctx.responder);
        let body = match call {
            Some(ck) if anchor && super::util::is_sdp(msg) => {
                match self.anchor(now, ck, responder, msg.body()) {
                    Ok(b) => b,
                    Err(_) => {
                        self.stats.rejected_bad_sdp += 1;
                        None
                    }
                }
            }
            _ => None,
        };
        let rw = ResponseRewrite {
            pop_via: true,
            body: body.map(|n| &self.sdp_buf[..n]),
            strip: &[],
        };
        let mut n = match rewrite_response(msg, &rw, &mut self.scratch) {
            Ok(n) => n,
            Err(_) => {
                self.stats.drop_unwritable += 1;
                return;
            }
        };
        if msg.status() != Some(code) {
            match replace_status(&mut self.scratch, n, code) {
                Some(m) => n = m,
                None => {
                    self.stats.drop_unwritable += 1;
                    return;
                }
            }
        }
        let Some(s) = self
            .ctxs
            .get_mut(key.0, key.1)
            .and_then(|c| c.server.as_mut())
        else {
            return;
        };
        if !s.txn.on_send(now, code, &t) {
            return;
        }
        s.last.clear();
        s.last.extend_from_slice(&self.scratch[..n]);
        let (dst, local) = (s.src, s.local);
        self.send_scratch_from(dst, local, n);
    }

    /// A 2xx whose INVITE context is gone (a late retransmission): forwarded to the caller
    /// of its call, SDP anchored as before; dropped when the call is gone too.
    fn forward_late_2xx(&mut self, now: Instant, msg: &Message<'_>) {
        let call_id = msg.call_id().unwrap_or_default();
        let from_tag = msg.from().ok().and_then(|f| f.tag).unwrap_or_default();
        let Some(ck) = self.call_ids.get(call_id).copied() else {
            self.stats.drop_stray_response += 1;
            return;
        };
        let Some(c) = self.calls.get(ck.0, ck.1) else {
            return;
        };
        if c.caller_tag.as_slice() != from_tag {
            self.stats.drop_stray_response += 1;
            return;
        }
        let (dst, local) = (c.caller_addr, c.caller_local);
        let body = if super::util::is_sdp(msg) {
            self.anchor(now, ck, Leg::Callee, msg.body()).ok().flatten()
        } else {
            None
        };
        let rw = ResponseRewrite {
            pop_via: true,
            body: body.map(|n| &self.sdp_buf[..n]),
            strip: &[],
        };
        match rewrite_response(msg, &rw, &mut self.scratch) {
            Ok(n) => self.send_scratch_from(dst, local, n),
            Err(_) => self.stats.drop_unwritable += 1,
        }
    }

    /// ACK (and, the first time, BYE) for a 2xx nobody upstream will take.
    fn dispose_2xx(&mut self, now: Instant, key: Key, i: usize, msg: &Message<'_>, first: bool) {
        let Some(b) = self.branch_ref(key, i) else {
            return;
        };
        let dst = b.dst;
        let Ok(sent) = Message::parse(&b.request) else {
            return;
        };
        let from = raw(&sent, HeaderName::From);
        let to = raw(msg, HeaderName::To);
        let call_id = msg.call_id().unwrap_or_default().to_vec();
        let cseq = sent.cseq().map(|c| c.number).unwrap_or(1);
        let mut target = contact_uri(msg);
        if target.is_empty() {
            target = sent.request_uri().unwrap_or_default().to_vec();
        }
        let ours = |u: &[u8]| self.is_our_uri(u);
        let routes = routes_toward_callee(msg, ours);
        let ack_branch = self.new_branch((u32::MAX, 0), 0);
        let via_host = self.via_host.clone();
        let ctx = self.ctxs.next_key();
        let bye_branch = self.new_branch(ctx, 0);
        let mut req = InDialog {
            method: b"ACK",
            request_uri: &target,
            via_host: &via_host,
            via_port: self.cfg.local.port(),
            branch: ack_branch.as_bytes(),
            routes: &routes,
            from: &from,
            to: &to,
            call_id: &call_id,
            cseq,
            reason: None,
        };
        match build_in_dialog(&req, &mut self.scratch) {
            Ok(n) => self.send_scratch(dst, n),
            Err(_) => self.stats.drop_unwritable += 1,
        }
        if !first {
            return;
        }
        req.method = b"BYE";
        req.branch = bye_branch.as_bytes();
        req.cseq = cseq.saturating_add(1);
        req.reason = Some(b"SIP;cause=200;text=\"Call completed elsewhere\"");
        match build_in_dialog(&req, &mut self.scratch) {
            Ok(n) => {
                let bytes = self.scratch[..n].to_vec();
                self.originate(now, CtxKind::Originated, dst, bye_branch, bytes, false);
            }
            Err(_) => self.stats.drop_unwritable += 1,
        }
    }
}
