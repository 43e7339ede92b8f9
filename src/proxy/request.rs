//! Requests arriving: validation, retransmission absorption, CANCEL, ACK, routing of new
//! calls (DESIGN section 5) and forwarding of requests inside a dialog.

use std::net::SocketAddr;
use std::time::Instant;

use super::branch::{self, new_tag};
use super::context::{Cancel, ClientBranch, Ctx, CtxKind, Key, Routing, Server};
use super::dialog::{contact_uri, other, raw, routes_toward_caller, Call};
use super::event::{EndReason, Event};
use super::proxy::Proxy;
use super::transaction::{ClientTxn, ServerTxn};
use super::util::{is_sdp, reason_phrase, server_key, text};
use crate::media::{Leg, PortBinder};
use crate::route::{Candidate, Decision, TrunkId};
use crate::wire::sdp::Sdp;
use crate::wire::sip::{
    build_cancel, build_response, rewrite_request, HeaderName, MaxForwards, Message, Method,
    OurVia, RequestRewrite, Uri, Via,
};

const ALLOW: &[u8] =
    b"INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, PRACK, NOTIFY, MESSAGE";
const DIAG_NO_ROUTE: &[u8] = b"12004;reason=\"Unable to find a route for the called number: none of the routes have a valid gateway\";source=\"intertrunk\"";
const REASON_NO_ROUTE: &[u8] = b"SIP;cause=403;text=\"No route\"";
const DIAG_NO_RULE: &[u8] =
    b"14010;reason=\"No matching rule has been found in the dial plan for the called number\";source=\"intertrunk\"";

impl<B: PortBinder> Proxy<B> {
    pub(crate) fn on_request(&mut self, now: Instant, src: SocketAddr, msg: &Message<'_>) {
        let Some(method) = msg.method() else {
            self.stats.drop_unparseable += 1;
            return;
        };
        let Ok(via) = msg.top_via() else {
            // No usable Via: no response can be routed back.
            self.stats.drop_unparseable += 1;
            return;
        };
        let valid = msg.call_id().is_ok()
            && msg.from().is_ok()
            && msg.to().is_ok()
            && msg.cseq().is_ok_and(|c| c.method == method);
        if !valid {
            if method == Method::Ack {
                self.stats.drop_unparseable += 1;
            } else {
                self.stats.bad_requests += 1;
                self.respond_stateless(msg, src, 400, "Bad Request", &[]);
            }
            return;
        }
        match method {
            Method::Cancel => return self.on_cancel(now, src, msg, &via),
            Method::Ack => return self.on_ack(now, src, msg, &via),
            _ => {}
        }
        let mut key = std::mem::take(&mut self.key_buf);
        server_key(msg, &via, method, &mut key);
        let existing = self.server_keys.get(key.as_slice()).copied();
        self.key_buf = key;
        if let Some(k) = existing {
            self.absorb_retransmission(k);
            return;
        }
        match msg.max_forwards() {
            Ok(Some(0)) => {
                self.stats.rejected_too_many_hops += 1;
                return self.respond_stateless(msg, src, 483, "Too Many Hops", &[]);
            }
            Err(_) => {
                self.stats.bad_requests += 1;
                return self.respond_stateless(msg, src, 400, "Bad Request", &[]);
            }
            _ => {}
        }
        if msg.to().is_ok_and(|t| t.tag.is_some()) {
            return self.on_in_dialog(now, src, msg, method);
        }
        let ruri = msg.request_uri().map(Uri::parse);
        let Some(Ok(ruri)) = ruri else {
            self.stats.bad_requests += 1;
            return self.respond_stateless(msg, src, 400, "Bad Request", &[]);
        };
        if method == Method::Options && ruri.user.is_none() {
            // Keep-alive addressed to the relay itself.
            self.stats.options_answered += 1;
            return self.respond_stateless(
                msg,
                src,
                200,
                "OK",
                &[("Allow", ALLOW), ("Accept", b"application/sdp")],
            );
        }
        let looped = msg.vias().filter_map(Result::ok).any(|v| {
            v.host == self.via_host.as_bytes()
                && v.branch.is_some_and(|b| b.starts_with(branch::OUR_PREFIX))
        });
        if looped {
            self.stats.rejected_loop += 1;
            return self.respond_stateless(msg, src, 482, "Loop Detected", &[]);
        }
        let Some(trunk) = self.table.current().trunk_by_source(src) else {
            // No open relay: only configured trunks may start calls.
            self.stats.rejected_unknown_source += 1;
            return self.respond_stateless(msg, src, 403, "Forbidden", &[]);
        };
        match method {
            Method::Invite | Method::Message | Method::Options => {
                self.on_new_request(now, src, msg, &via, method, trunk, &ruri)
            }
            _ => {
                self.stats.rejected_method += 1;
                self.respond_stateless(msg, src, 405, "Method Not Allowed", &[("Allow", ALLOW)]);
            }
        }
    }

    /// A response built from `msg` and sent back to `src`, with no transaction kept.
    pub(crate) fn respond_stateless(
        &mut self,
        msg: &Message<'_>,
        src: SocketAddr,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        let tag = new_tag(&mut self.rng);
        let to_tag = (code > 100).then_some(&tag[..]);
        match build_response(msg, code, reason, to_tag, extra, &mut self.scratch) {
            Ok(n) => self.send_scratch_from(src, self.arrival, n),
            Err(_) => self.stats.drop_unwritable += 1,
        }
    }

    /// A response of ours on a server transaction (recorded for retransmissions).
    pub(crate) fn respond_ctx(
        &mut self,
        now: Instant,
        key: Key,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        self.respond_ctx_to(now, key, None, code, reason, extra);
    }

    /// Same, with the request already parsed (`req` is the server transaction's request).
    fn respond_ctx_to(
        &mut self,
        now: Instant,
        key: Key,
        req: Option<&Message<'_>>,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        let t = self.cfg.timers;
        let Some(s) = self
            .ctxs
            .get_mut(key.0, key.1)
            .and_then(|c| c.server.as_mut())
        else {
            return;
        };
        if s.txn.has_final() && code >= 200 {
            return;
        }
        let parsed;
        let req = match req {
            Some(r) => r,
            None => match Message::parse(&s.request) {
                Ok(r) => {
                    parsed = r;
                    &parsed
                }
                Err(_) => return,
            },
        };
        let to_tag = (code > 100).then_some(&s.to_tag[..]);
        let n = match build_response(req, code, reason, to_tag, extra, &mut self.scratch) {
            Ok(n) => n,
            Err(_) => {
                self.stats.drop_unwritable += 1;
                return;
            }
        };
        if !s.txn.on_send(now, code, &t) {
            return;
        }
        s.last.clear();
        s.last.extend_from_slice(&self.scratch[..n]);
        let (dst, local) = (s.src, s.local);
        self.send_scratch_from(dst, local, n);
    }

    fn absorb_retransmission(&mut self, key: Key) {
        self.stats.retransmissions_absorbed += 1;
        let Some(s) = self.ctxs.get(key.0, key.1).and_then(|c| c.server.as_ref()) else {
            return;
        };
        if s.txn.on_retransmission() && !s.last.is_empty() {
            let (dst, local, last) = (s.src, s.local, s.last.clone());
            self.send_from(dst, local, &last);
        }
    }

    fn reject_busy(&mut self, msg: &Message<'_>, src: SocketAddr, code: u16) {
        let retry = self.cfg.retry_after_s.to_string();
        self.respond_stateless(
            msg,
            src,
            code,
            reason_phrase(code),
            &[("Retry-After", retry.as_bytes())],
        );
    }

    /// A request that starts a dialog (INVITE) or an out-of-dialog MESSAGE/OPTIONS to a
    /// number, from trunk `trunk`: route it (DESIGN 5) and send the first branch.
    #[allow(clippy::too_many_arguments)]
    fn on_new_request(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &Message<'_>,
        via: &Via<'_>,
        method: Method<'_>,
        trunk: TrunkId,
        ruri: &Uri<'_>,
    ) {
        let invite = method == Method::Invite;
        if self.draining {
            self.stats.rejected_draining += 1;
            return self.reject_busy(msg, src, 503);
        }
        if self.overloaded {
            self.stats.rejected_overload += 1;
            return self.reject_busy(msg, src, 503);
        }
        if !self.make_room(now, self.cfg.new_call_reserve())
            || (invite && self.calls.len() >= self.cfg.max_calls)
        {
            self.stats.rejected_capacity += 1;
            return self.reject_busy(msg, src, 503);
        }
        let call_id = msg.call_id().unwrap_or_default();
        if invite && self.call_ids.contains_key(call_id) {
            // Merged request (RFC 3261 8.2.2.2): the same call arriving twice.
            self.stats.rejected_loop += 1;
            return self.respond_stateless(msg, src, 482, "Loop Detected", &[]);
        }
        let table = self.table.current().clone();
        let Some(called) = ruri.called_number() else {
            self.stats.rejected_no_matching_rule += 1;
            return self.respond_stateless(msg, src, 404, "Not Found", &[]);
        };
        let from = msg.from().ok();
        let calling = from
            .and_then(|f| Uri::parse(f.uri).ok())
            .and_then(|u| u.user)
            .map(text)
            .unwrap_or_default();
        let routed = match table.decide(trunk, called.as_str(), &calling, &mut self.rr) {
            Decision::NoMatchingRule => {
                self.stats.rejected_no_matching_rule += 1;
                return self.respond_stateless(
                    msg,
                    src,
                    404,
                    "No matching rule",
                    &[("ms-diagnostics", DIAG_NO_RULE)],
                );
            }
            Decision::NoRoute => None,
            Decision::Route(r) => Some(r),
        };
        let normalized = routed
            .as_ref()
            .map_or_else(|| called.as_str().to_string(), |r| r.normalized.clone());
        let candidates: Vec<Candidate> = routed
            .map(|r| r.candidates)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !self.probes.is_down(table.trunk(c.trunk).address))
            .collect();
        if candidates.is_empty() {
            self.stats.rejected_no_route += 1;
            return self.respond_stateless(
                msg,
                src,
                403,
                "Forbidden",
                &[
                    ("ms-diagnostics", DIAG_NO_ROUTE),
                    ("Reason", REASON_NO_ROUTE),
                ],
            );
        }
        let source = table.trunk(trunk);
        // Media: one session for the whole call, kept across failover. The offer is parsed
        // only when the relay anchors media: a bypassed call's SDP passes untouched.
        let mut session = None;
        let anchored = invite
            && !(source.enable_bypass
                && candidates
                    .iter()
                    .all(|c| table.trunk(c.trunk).enable_bypass));
        let offer = (anchored && is_sdp(msg)).then(|| Sdp::parse(msg.body()));
        if anchored {
            let streams = match &offer {
                Some(Ok(s)) => s.media_count(),
                Some(Err(_)) => {
                    self.stats.rejected_bad_sdp += 1;
                    return self.respond_stateless(msg, src, 488, "Not Acceptable Here", &[]);
                }
                None => 0,
            };
            match self.relay.create_session(
                now,
                &mut self.binder,
                streams.max(1),
                source.rtcp_active_calls,
            ) {
                Ok(s) => session = Some(s),
                Err(_) => {
                    self.stats.rejected_ports += 1;
                    return self.reject_busy(msg, src, 503);
                }
            }
        }
        let mut key = std::mem::take(&mut self.key_buf);
        server_key(msg, via, method, &mut key);
        let server_key_bytes: Box<[u8]> = key.as_slice().into();
        self.key_buf = key;
        let ctx_key = self.ctxs.next_key();
        let call_key = if invite {
            let id = self.next_call_id();
            let call = Call {
                id,
                wake: None,
                call_id: call_id.into(),
                table: table.clone(),
                source: trunk,
                target: None,
                invite_ctx: Some(ctx_key),
                caller_addr: src,
                caller_local: self.arrival,
                callee_addr: None,
                caller_tag: from.and_then(|f| f.tag).unwrap_or_default().to_vec(),
                early_tags: Vec::new(),
                callee_tag: None,
                session,
                bypass: false,
                latch_caller: source.enable_rtp_latching,
                latch_callee: false,
                answered: None,
                end_at: None,
                caller_from: raw(msg, HeaderName::From),
                callee_from: Vec::new(),
                callee_to: Vec::new(),
                caller_contact: contact_uri(msg),
                callee_contact: Vec::new(),
                caller_routes: routes_toward_caller(msg),
                callee_routes: Vec::new(),
                caller_cseq: msg.cseq().map(|c| c.number).unwrap_or(0),
                callee_cseq: 0,
            };
            let ck = self.calls.insert(call);
            self.call_ids.insert(call_id.into(), ck);
            self.stats.calls_started += 1;
            self.events.push_back(Event::CallStarted {
                call: id,
                source: trunk,
                called: normalized,
                calling,
            });
            if let Some(s) = session {
                self.sessions.insert(s, ck);
                if let Some(Ok(sdp)) = &offer {
                    // The offer tells where the caller receives.
                    if self.learn_sdp(now, ck, Leg::Caller, sdp).is_err() {
                        self.stats.rejected_bad_sdp += 1;
                        self.end_call(now, ck, EndReason::Failed, 488);
                        return self.respond_stateless(msg, src, 488, "Not Acceptable Here", &[]);
                    }
                }
            }
            Some(ck)
        } else {
            None
        };
        let ctx = Ctx {
            wake: None,
            kind: if invite {
                CtxKind::Invite
            } else {
                CtxKind::Routed
            },
            server: Some(Server {
                txn: ServerTxn::new(invite),
                key: server_key_bytes.clone(),
                src,
                local: self.arrival,
                request: msg.as_bytes().to_vec(),
                last: Vec::new(),
                to_tag: new_tag(&mut self.rng),
            }),
            branches: Vec::new(),
            routing: Some(Routing {
                table,
                source: trunk,
                candidates,
                next: 0,
                tried: Vec::new(),
                attempts: 0,
            }),
            call: call_key,
            responder: Leg::Callee,
            cancelled: false,
            best: None,
            lingering: false,
        };
        let key = self.ctxs.insert(ctx);
        debug_assert_eq!(key, ctx_key);
        self.server_keys.insert(server_key_bytes, key);
        // The INVITE toward the callee goes out first and the 100 right after it, in the same
        // turn: the 100 only stops the caller's retransmissions, and sending it first would
        // put its delivery (and the caller's wake-up) into the setup time. If routing already
        // answered with a final response, the transaction refuses the late 100.
        self.next_branch_with(now, key, Some(msg));
        if invite {
            self.respond_ctx_to(now, key, Some(msg), 100, "Trying", &[]);
        }
        self.settle_ctx(now, key);
    }

    /// Sends the request to the next candidate not tried and not marked down; with none
    /// left, answers the best response (RFC 3261 16.7).
    pub(crate) fn next_branch(&mut self, now: Instant, key: Key) {
        self.next_branch_with(now, key, None);
    }

    /// Same, with the server transaction's request already parsed.
    fn next_branch_with(&mut self, now: Instant, key: Key, req: Option<&Message<'_>>) {
        for _ in 0..64 {
            let picked = {
                let Some(ctx) = self.ctxs.get_mut(key.0, key.1) else {
                    return;
                };
                let Some(r) = ctx.routing.as_mut() else {
                    return;
                };
                let mut found = None;
                while let Some(c) = r.candidates.get(r.next) {
                    r.next += 1;
                    let addr = r.table.trunk(c.trunk).address;
                    if r.tried.contains(&c.trunk) || self.probes.is_down(addr) {
                        continue;
                    }
                    found = Some(c.clone());
                    break;
                }
                found
            };
            let Some(cand) = picked else {
                return self.finish_failed(now, key);
            };
            if self.send_branch(now, key, &cand, req) {
                return;
            }
        }
        self.finish_failed(now, key);
    }

    fn send_branch(
        &mut self,
        now: Instant,
        key: Key,
        cand: &Candidate,
        req: Option<&Message<'_>>,
    ) -> bool {
        let t = self.cfg.timers;
        let Some(ctx) = self.ctxs.get_mut(key.0, key.1) else {
            return false;
        };
        let (Some(server), Some(routing)) = (ctx.server.as_ref(), ctx.routing.as_mut()) else {
            return false;
        };
        routing.tried.push(cand.trunk);
        routing.attempts += 1;
        let attempt = routing.attempts;
        let source_id = routing.source;
        let table = routing.table.clone();
        // Re-parse the stored request only when it was not handed in (a failover).
        let request = if req.is_some() {
            Vec::new()
        } else {
            server.request.clone()
        };
        let server_src = server.src;
        let call = ctx.call;
        let index = ctx.branches.len();
        let parsed;
        let msg = match req {
            Some(m) => m,
            None => match Message::parse(&request) {
                Ok(m) => {
                    parsed = m;
                    &parsed
                }
                Err(_) => return false,
            },
        };
        let invite = msg.method() == Some(Method::Invite);
        let target = table.trunk(cand.trunk);
        let source = table.trunk(source_id);
        let dst = target.address;
        let bypass = source.enable_bypass && target.enable_bypass;
        let branch = self.new_branch(key, index);
        let mut body = None;
        if let Some(ck) = call {
            if let Some(c) = self.calls.get_mut(ck.0, ck.1) {
                c.target = Some(cand.trunk);
                c.callee_addr = Some(dst);
                c.early_tags.clear();
                c.bypass = bypass;
                c.latch_callee = target.enable_rtp_latching;
            }
            if index > 0 {
                self.reset_callee_media(now, ck);
            }
            let streams = if !bypass && is_sdp(msg) {
                Sdp::parse(msg.body()).map(|s| s.media_count()).ok()
            } else {
                None
            };
            if let Some(streams) = streams {
                match self.rewrite_sdp(ck, Leg::Callee, msg.body(), streams) {
                    Ok(b) => body = b,
                    Err(_) => {
                        self.stats.drop_unwritable += 1;
                        return false;
                    }
                }
            }
        }
        let anonymous: &[u8] = b"anonymous";
        // With caller ID suppressed, `calling` is the route's alternate caller ID, if any.
        let from_user = match (cand.calling.as_deref(), cand.suppress_caller_id) {
            (Some(c), _) => Some(c.as_bytes()),
            (None, true) => Some(anonymous),
            (None, false) => None,
        };
        let mut strip = [HeaderName::Other; 3];
        let mut n_strip = 0;
        if !target.forward_pai {
            strip[n_strip] = HeaderName::PAssertedIdentity;
            n_strip += 1;
        }
        if !target.forward_call_history {
            strip[n_strip] = HeaderName::HistoryInfo;
            strip[n_strip + 1] = HeaderName::Diversion;
            n_strip += 2;
        }
        let privacy: [(&str, &[u8]); 1] = [("Privacy", b"id")];
        let pop_route = msg
            .routes()
            .next()
            .and_then(Result::ok)
            .is_some_and(|r| self.is_our_uri(r.uri));
        let rw = RequestRewrite {
            request_uri: Some(cand.request_uri.as_bytes()),
            via: Some(OurVia {
                transport: "UDP",
                host: &self.via_host,
                port: self.cfg.local.port(),
                branch: branch.as_bytes(),
            }),
            received_from: Some(server_src),
            record_route: invite.then_some(self.rr_uri.as_slice()),
            pop_route,
            max_forwards: MaxForwards::Decrement,
            from_user,
            pai_user: from_user,
            strip: &strip[..n_strip],
            extra_headers: if cand.suppress_caller_id {
                &privacy
            } else {
                &[]
            },
            body: body.map(|n| &self.sdp_buf[..n]),
        };
        let n = match rewrite_request(msg, &rw, &mut self.scratch) {
            Ok(n) => n,
            Err(_) => {
                self.stats.drop_unwritable += 1;
                return false;
            }
        };
        let sent = self.scratch[..n].to_vec();
        self.send(dst, &sent);
        if let Some(ck) = call {
            let from = Message::parse(&sent).map(|m| raw(&m, HeaderName::From));
            if let (Some(c), Ok(from)) = (self.calls.get_mut(ck.0, ck.1), from) {
                c.callee_from = from;
                let id = c.id;
                self.events.push_back(Event::CallRouted {
                    call: id,
                    target: cand.trunk,
                    attempt,
                });
            }
        }
        let txn = ClientTxn::new(now, invite, invite && target.enable_fast_failover_timer, &t);
        if let Some(ctx) = self.ctxs.get_mut(key.0, key.1) {
            ctx.branches.push(ClientBranch {
                branch,
                txn,
                dst,
                request: sent,
                trunk: Some(cand.trunk),
                abandoned: false,
                provisional: false,
                cancel_wanted: false,
                cancel: None,
            });
        }
        true
    }

    /// Every candidate failed: the best final response stored, else 408.
    fn finish_failed(&mut self, now: Instant, key: Key) {
        let Some(ctx) = self.ctxs.get_mut(key.0, key.1) else {
            return;
        };
        if !ctx.server_pending() {
            return;
        }
        let call = ctx.call;
        let code = match ctx.best.take() {
            Some((code, bytes)) => {
                match Message::parse(&bytes) {
                    Ok(resp) => self.forward_upstream(now, key, &resp, code, false),
                    Err(_) => self.respond_ctx(now, key, code, reason_phrase(code), &[]),
                }
                code
            }
            None => {
                self.respond_ctx(now, key, 408, "Request Timeout", &[]);
                408
            }
        };
        if let Some(ck) = call {
            self.end_call(now, ck, EndReason::Failed, code);
        }
    }

    pub(crate) fn is_our_uri(&self, uri: &[u8]) -> bool {
        Uri::parse(uri).is_ok_and(|u| {
            u.host == self.via_host.as_bytes() || u.host == self.local_host.as_bytes()
        })
    }

    fn on_cancel(&mut self, now: Instant, src: SocketAddr, msg: &Message<'_>, via: &Via<'_>) {
        let mut key = std::mem::take(&mut self.key_buf);
        server_key(msg, via, Method::Invite, &mut key);
        let found = self.server_keys.get(key.as_slice()).copied();
        self.key_buf = key;
        let Some(ctx) = found.filter(|k| {
            self.ctxs
                .get(k.0, k.1)
                .is_some_and(|c| c.server.as_ref().is_some_and(|s| s.txn.invite))
        }) else {
            self.stats.cancel_unmatched += 1;
            return self.respond_stateless(msg, src, 481, "Call/Transaction Does Not Exist", &[]);
        };
        self.respond_stateless(msg, src, 200, "OK", &[]);
        if self.ctxs.get(ctx.0, ctx.1).is_some_and(Ctx::server_pending) {
            self.cancel_call(now, ctx, 487, EndReason::Cancelled);
        }
        self.settle_ctx(now, ctx);
    }

    /// Gives up an INVITE context: CANCEL every pending branch, answer `code` upstream, end
    /// the call.
    pub(crate) fn cancel_call(&mut self, now: Instant, key: Key, code: u16, reason: EndReason) {
        let Some(ctx) = self.ctxs.get_mut(key.0, key.1) else {
            return;
        };
        ctx.cancelled = true;
        let call = ctx.call;
        let pending: Vec<usize> = ctx
            .branches
            .iter()
            .enumerate()
            .filter(|(_, b)| b.txn.is_pending() && !b.abandoned)
            .map(|(i, _)| i)
            .collect();
        for i in pending {
            self.abandon_branch(now, key, i);
        }
        self.respond_ctx(now, key, code, reason_phrase(code), &[]);
        if let Some(ck) = call {
            self.end_call(now, ck, reason, code);
        }
    }

    /// A branch we give up: stop it, CANCEL it once it has a provisional (RFC 3261 9.1).
    pub(crate) fn abandon_branch(&mut self, now: Instant, key: Key, i: usize) {
        let t = self.cfg.timers;
        let Some(b) = self
            .ctxs
            .get_mut(key.0, key.1)
            .and_then(|c| c.branches.get_mut(i))
        else {
            return;
        };
        b.abandoned = true;
        b.txn.abandon(now, &t);
        if !b.txn.is_pending() {
            return;
        }
        if b.provisional {
            self.send_cancel(now, key, i);
        } else {
            b.cancel_wanted = true;
        }
    }

    pub(crate) fn send_cancel(&mut self, now: Instant, key: Key, i: usize) {
        let t = self.cfg.timers;
        let Some(b) = self
            .ctxs
            .get_mut(key.0, key.1)
            .and_then(|c| c.branches.get_mut(i))
        else {
            return;
        };
        if b.cancel.is_some() {
            return;
        }
        let Ok(sent) = Message::parse(&b.request) else {
            return;
        };
        let n = match build_cancel(&sent, &mut self.scratch) {
            Ok(n) => n,
            Err(_) => {
                self.stats.drop_unwritable += 1;
                return;
            }
        };
        b.cancel = Some(Cancel {
            txn: ClientTxn::new(now, false, false, &t),
            bytes: self.scratch[..n].to_vec(),
        });
        let dst = b.dst;
        self.send_scratch(dst, n);
    }

    /// A branch failed without a final response (Timer B/F, Timer C, fast failover,
    /// transport error): CANCEL it if asked and move on.
    pub(crate) fn branch_failed(&mut self, now: Instant, key: Key, i: usize, cancel: bool) {
        let Some(ctx) = self.ctxs.get_mut(key.0, key.1) else {
            return;
        };
        let kind = ctx.kind;
        let Some(b) = ctx.branches.get_mut(i) else {
            return;
        };
        if b.abandoned {
            return;
        }
        if cancel {
            self.abandon_branch(now, key, i);
        } else {
            b.abandoned = true;
        }
        let Some(ctx) = self.ctxs.get(key.0, key.1) else {
            return;
        };
        match kind {
            CtxKind::Probe(p, epoch) => self.probe_failed(p, epoch),
            CtxKind::Originated => {}
            CtxKind::Invite | CtxKind::Routed if !ctx.cancelled && ctx.server_pending() => {
                self.stats.failovers += 1;
                self.next_branch(now, key);
            }
            _ => {
                if ctx.server_pending() {
                    self.respond_ctx(now, key, 408, "Request Timeout", &[]);
                }
            }
        }
    }

    fn on_ack(&mut self, now: Instant, src: SocketAddr, msg: &Message<'_>, via: &Via<'_>) {
        let t = self.cfg.timers;
        let mut key = std::mem::take(&mut self.key_buf);
        server_key(msg, via, Method::Ack, &mut key);
        let found = self.server_keys.get(key.as_slice()).copied();
        self.key_buf = key;
        if let Some(k) = found {
            let absorbed = self
                .ctxs
                .get_mut(k.0, k.1)
                .and_then(|c| c.server.as_mut())
                .is_some_and(|s| s.txn.on_ack(now, &t));
            if absorbed {
                // ACK for a non-2xx final is hop by hop: it ends here.
                self.settle_ctx(now, k);
                return;
            }
        }
        if msg.to().is_ok_and(|t| t.tag.is_some()) {
            self.on_in_dialog(now, src, msg, Method::Ack);
        } else {
            self.stats.drop_stray_ack += 1;
        }
    }

    /// A request inside a dialog: follows the route set (our Route popped), never re-routed.
    fn on_in_dialog(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &Message<'_>,
        method: Method<'_>,
    ) {
        let t = self.cfg.timers;
        let is_ack = method == Method::Ack;
        let call_id = msg.call_id().unwrap_or_default();
        let from_tag = msg.from().ok().and_then(|f| f.tag).unwrap_or_default();
        let to_tag = msg.to().ok().and_then(|f| f.tag).unwrap_or_default();
        // The dialog's tags, and the address the leg is known at: a third party that learnt
        // the Call-ID and tags still cannot end or change the call.
        let found = self.call_ids.get(call_id).copied().and_then(|ck| {
            let c = self.calls.get(ck.0, ck.1)?;
            let leg = c.leg_of(from_tag, to_tag)?;
            (c.addr_of(leg)?.ip() == src.ip()).then_some(())?;
            Some((ck, leg, c.addr_of(other(leg))?))
        });
        let Some((ck, leg, dst)) = found else {
            if is_ack {
                self.stats.drop_stray_ack += 1;
            } else {
                self.stats.rejected_no_dialog += 1;
                self.respond_stateless(msg, src, 481, "Call/Transaction Does Not Exist", &[]);
            }
            return;
        };
        let cseq = msg.cseq().map(|c| c.number).unwrap_or(0);
        if let Some(c) = self.calls.get_mut(ck.0, ck.1) {
            let seen = match leg {
                Leg::Caller => &mut c.caller_cseq,
                Leg::Callee => &mut c.callee_cseq,
            };
            *seen = (*seen).max(cseq);
        }
        let carries_sdp = matches!(
            method,
            Method::Invite | Method::Ack | Method::Update | Method::Prack
        ) && is_sdp(msg);
        let body = if carries_sdp {
            match self.anchor(now, ck, leg, msg.body()) {
                Ok(b) => b,
                Err(_) if is_ack => {
                    self.stats.drop_unwritable += 1;
                    return;
                }
                Err(_) => {
                    self.stats.rejected_bad_sdp += 1;
                    return self.respond_stateless(msg, src, 488, "Not Acceptable Here", &[]);
                }
            }
        } else {
            None
        };
        if !is_ack && !self.make_room(now, self.cfg.max_transactions) {
            self.stats.rejected_capacity += 1;
            return self.reject_busy(msg, src, 503);
        }
        let ctx_key = self.ctxs.next_key();
        // ACK for 2xx is stateless: its branch matches no context, as nothing answers it.
        let branch = self.new_branch(if is_ack { (u32::MAX, 0) } else { ctx_key }, 0);
        let pop_route = msg
            .routes()
            .next()
            .and_then(Result::ok)
            .is_some_and(|r| self.is_our_uri(r.uri));
        let rw = RequestRewrite {
            via: Some(OurVia {
                transport: "UDP",
                host: &self.via_host,
                port: self.cfg.local.port(),
                branch: branch.as_bytes(),
            }),
            received_from: Some(src),
            pop_route,
            max_forwards: MaxForwards::Decrement,
            body: body.map(|n| &self.sdp_buf[..n]),
            ..RequestRewrite::default()
        };
        let n = match rewrite_request(msg, &rw, &mut self.scratch) {
            Ok(n) => n,
            Err(_) => {
                self.stats.drop_unwritable += 1;
                return;
            }
        };
        if is_ack {
            self.send_scratch(dst, n);
            return;
        }
        let sent = self.scratch[..n].to_vec();
        self.send(dst, &sent);
        let invite = method == Method::Invite;
        let via = msg.top_via();
        let mut key = std::mem::take(&mut self.key_buf);
        if let Ok(v) = &via {
            server_key(msg, v, method, &mut key);
        }
        let server_key_bytes: Box<[u8]> = key.as_slice().into();
        self.key_buf = key;
        let ctx = Ctx {
            wake: None,
            kind: CtxKind::InDialog,
            server: Some(Server {
                txn: ServerTxn::new(invite),
                key: server_key_bytes.clone(),
                src,
                local: self.arrival,
                request: msg.as_bytes().to_vec(),
                last: Vec::new(),
                to_tag: new_tag(&mut self.rng),
            }),
            branches: vec![ClientBranch {
                branch,
                txn: ClientTxn::new(now, invite, false, &t),
                dst,
                request: sent,
                trunk: None,
                abandoned: false,
                provisional: false,
                cancel_wanted: false,
                cancel: None,
            }],
            routing: None,
            call: Some(ck),
            responder: other(leg),
            cancelled: false,
            best: None,
            lingering: false,
        };
        let key = self.ctxs.insert(ctx);
        debug_assert_eq!(key, ctx_key);
        self.server_keys.insert(server_key_bytes, key);
        if invite {
            self.respond_ctx_to(now, key, Some(msg), 100, "Trying", &[]);
        }
        if method == Method::Bye {
            let reason = match leg {
                Leg::Caller => EndReason::ByeFromCaller,
                Leg::Callee => EndReason::ByeFromCallee,
            };
            self.end_call(now, ck, reason, 200);
        }
        self.settle_ctx(now, key);
    }
}
