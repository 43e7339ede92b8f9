//! A transaction context (RFC 3261 16 "response context"): the server transaction of a
//! request we received plus the client transactions (branches) we sent for it, tried one after
//! the other (failover, never parallel forking). Requests we originate ourselves (BYE on
//! teardown, OPTIONS probes) are contexts without a server side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::branch::Branch;
use super::timers::earliest;
use super::transaction::{ClientState, ClientTxn, ServerState, ServerTxn};
use crate::media::Leg;
use crate::route::{Candidate, RouteTable, TrunkId};

pub(crate) type Key = (u32, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CtxKind {
    /// An INVITE that starts a call: routed, with failover.
    Invite,
    /// An out-of-dialog MESSAGE/OPTIONS to a number: routed, with failover.
    Routed,
    /// A request inside a dialog (re-INVITE, BYE, UPDATE, ...), following the route set.
    InDialog,
    /// A request we originate (BYE on teardown): no server side.
    Originated,
    /// OPTIONS keep-alive to a trunk (probe index, probe epoch).
    Probe(u32, u32),
}

/// The server transaction side: what we received and what we last answered.
#[derive(Debug)]
pub(crate) struct Server {
    pub txn: ServerTxn,
    /// Key in the server transaction map (branch, sent-by, method).
    pub key: Box<[u8]>,
    /// Where responses go: the source the request came from (RFC 3581 behaviour always).
    pub src: SocketAddr,
    /// The local address it arrived on (responses leave from there).
    pub local: Option<SocketAddr>,
    /// The request as received, to build our own responses from.
    pub request: Vec<u8>,
    /// The last response sent, re-sent on request retransmissions and by Timer G.
    pub last: Vec<u8>,
    /// Our To tag for responses we generate.
    pub to_tag: [u8; 16],
}

/// Our CANCEL for a branch (a non-INVITE client transaction of its own).
#[derive(Debug)]
pub(crate) struct Cancel {
    pub txn: ClientTxn,
    pub bytes: Vec<u8>,
}

/// One client transaction.
#[derive(Debug)]
pub(crate) struct ClientBranch {
    pub branch: Branch,
    pub txn: ClientTxn,
    pub dst: SocketAddr,
    /// The request as sent (retransmissions, CANCEL and ACK are built from it).
    pub request: Vec<u8>,
    /// The trunk this branch went to (response-code translation), if a routed branch.
    pub trunk: Option<TrunkId>,
    /// Given up (failover, CANCEL): its responses are absorbed, never forwarded.
    pub abandoned: bool,
    /// A provisional arrived: a CANCEL may be sent (RFC 3261 9.1).
    pub provisional: bool,
    /// CANCEL as soon as a provisional arrives.
    pub cancel_wanted: bool,
    pub cancel: Option<Cancel>,
}

impl ClientBranch {
    pub fn is_done(&self) -> bool {
        !self.txn.is_pending()
            && self.txn.next_deadline().is_none()
            && self
                .cancel
                .as_ref()
                .is_none_or(|c| c.txn.next_deadline().is_none())
    }
}

/// Routing state of a request that starts a dialog (or an out-of-dialog MESSAGE/OPTIONS).
pub(crate) struct Routing {
    /// The snapshot the call started with (a reload does not change a call in progress).
    pub table: Arc<RouteTable>,
    pub source: TrunkId,
    pub candidates: Vec<Candidate>,
    pub next: usize,
    pub tried: Vec<TrunkId>,
    pub attempts: u32,
}

pub(crate) struct Ctx {
    pub wake: Option<Instant>,
    pub kind: CtxKind,
    pub server: Option<Server>,
    pub branches: Vec<ClientBranch>,
    pub routing: Option<Routing>,
    /// The call this context belongs to, if any.
    pub call: Option<Key>,
    /// The leg that answers this context's requests (for SDP anchoring of responses).
    pub responder: Leg,
    pub cancelled: bool,
    /// Best final response so far (RFC 3261 16.7): translated code and the response.
    pub best: Option<(u16, Vec<u8>)>,
    /// Queued among the lingering contexts (settled, only absorbing retransmissions).
    pub lingering: bool,
}

impl Ctx {
    /// Every final answer is sent and no branch waits for one: what is left only absorbs
    /// retransmissions (Timers D, J, K, L), which a draining core need not wait for.
    pub fn is_settled(&self) -> bool {
        self.server
            .as_ref()
            .is_none_or(|s| !matches!(s.txn.state, ServerState::Trying | ServerState::Proceeding))
            && self.branches.iter().all(|b| !b.txn.is_pending())
    }

    /// A settled context lingers up to 64*T1 only to absorb retransmissions (Timers D, J,
    /// L, M): it keeps what that needs and frees the rest, so that lingering contexts cost a
    /// fraction of a live one (at 2,000 calls/s some 130,000 of them linger at any time).
    /// Kept: the last response of a server transaction that re-sends it (Proceeding is gone;
    /// Completed for INVITE until the ACK, and non-INVITE), and the request of an INVITE
    /// branch that may still have to ACK a retransmitted final (Completed, or an abandoned
    /// branch's 2xx). True only the first time, on a settled context: it then joins the
    /// proxy's lingering queue.
    pub fn start_lingering(&mut self) -> bool {
        if self.lingering || !self.is_settled() {
            return false;
        }
        self.lingering = true;
        self.routing = None;
        self.best = None;
        if let Some(s) = self.server.as_mut() {
            s.request = Vec::new();
            let resends = !s.txn.invite || s.txn.state == ServerState::Completed;
            if !resends {
                s.last = Vec::new();
            }
        }
        for b in &mut self.branches {
            let acks = b.txn.invite && (b.abandoned || b.txn.state == ClientState::Completed);
            if !acks {
                b.request = Vec::new();
            }
            if let Some(c) = b.cancel.as_mut() {
                if !c.txn.is_pending() {
                    c.bytes = Vec::new();
                }
            }
        }
        true
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let server = self.server.as_ref().and_then(|s| s.txn.next_deadline());
        let branches = self.branches.iter().flat_map(|b| {
            [
                b.txn.next_deadline(),
                b.cancel.as_ref().and_then(|c| c.txn.next_deadline()),
            ]
        });
        earliest(std::iter::once(server).chain(branches))
    }

    /// Nothing left to do: no timer will ever fire and nothing can be absorbed.
    pub fn is_done(&self) -> bool {
        self.server
            .as_ref()
            .is_none_or(|s| s.txn.state == ServerState::Terminated)
            && self.branches.iter().all(ClientBranch::is_done)
    }

    pub fn server_pending(&self) -> bool {
        self.server.as_ref().is_some_and(|s| !s.txn.has_final())
    }
}

/// RFC 3261 16.7 step 6: 6xx first, then the lowest class.
pub(crate) fn better(code: u16, than: Option<u16>) -> bool {
    let rank = |c: u16| if c >= 600 { 0 } else { c / 100 };
    than.is_none_or(|b| rank(code) < rank(b))
}

#[cfg(test)]
mod tests {
    use super::better;

    #[test]
    fn best_response_order() {
        assert!(better(503, None));
        assert!(better(486, Some(503)));
        assert!(better(603, Some(486)));
        assert!(!better(500, Some(503)), "same class keeps the first");
        assert!(!better(404, Some(603)));
        assert!(better(302, Some(404)));
    }
}
