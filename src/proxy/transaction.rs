//! RFC 3261 section 17 transaction state machines (UDP), pure: the proxy feeds them responses,
//! requests and time, and they say what to do (retransmit, time out, terminate).
//!
//! RFC 6026 is applied: a 2xx to INVITE moves both sides to `Accepted` for 64*T1, so that
//! retransmitted INVITEs are absorbed and retransmitted 2xx are forwarded upstream.

use std::time::{Duration, Instant};

use super::timers::earliest;

/// Timer base values (RFC 3261 table 4) and the proxy's own INVITE timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerValues {
    /// RTT estimate; retransmissions start here (A, E, G).
    pub t1: Duration,
    /// Cap on the retransmission interval of non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Maximum time a message stays in the network (K, I).
    pub t4: Duration,
    /// Timer C: a proxied INVITE branch with no final response this long is given up.
    pub timer_c: Duration,
    /// The fast-failover timer: no 18x/2xx this long -> next gateway (trunks that enable it).
    pub fast_failover: Duration,
}

impl Default for TimerValues {
    fn default() -> Self {
        TimerValues {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(180),
            fast_failover: Duration::from_secs(10),
        }
    }
}

impl TimerValues {
    /// 64*T1: Timers B, F, H, J, L, M (and D, which must be at least 32 s).
    pub fn t64(&self) -> Duration {
        self.t1 * 64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE: Calling; non-INVITE: Trying.
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

/// What a response means to a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOutcome {
    /// A provisional response to pass on (not 100: that one is hop by hop).
    Provisional,
    /// The first final response.
    Final,
    /// A 2xx retransmission (or a 2xx from another fork) in Accepted: forward it.
    Retransmitted2xx,
    /// A non-2xx final retransmission: re-send the ACK (INVITE) or absorb (non-INVITE).
    RetransmittedFinal,
    /// Nothing to do (100 Trying, late provisional, stray).
    Absorb,
}

/// What a client transaction timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTimer {
    /// Timer A or E: send the request again.
    Retransmit,
    /// Timer B or F: no response at all; the transaction is terminated.
    Timeout,
    /// Timer C: no final answer to a proxied INVITE.
    TimerC,
    /// The 10 s fast-failover timer (no 18x/2xx).
    FastFailover,
    /// Timer D, K or M: the transaction ends.
    Terminated,
}

#[derive(Debug, Clone)]
pub struct ClientTxn {
    pub invite: bool,
    pub state: ClientState,
    retransmit_at: Option<Instant>,
    interval: Duration,
    timeout_at: Option<Instant>,
    timer_c: Option<Instant>,
    fast_failover: Option<Instant>,
    linger_at: Option<Instant>,
}

impl ClientTxn {
    /// A transaction whose request was just sent at `now` over UDP.
    pub fn new(now: Instant, invite: bool, fast_failover: bool, t: &TimerValues) -> ClientTxn {
        ClientTxn {
            invite,
            state: ClientState::Calling,
            retransmit_at: Some(now + t.t1),
            interval: t.t1,
            timeout_at: Some(now + t.t64()),
            timer_c: invite.then(|| now + t.timer_c),
            fast_failover: (invite && fast_failover).then(|| now + t.fast_failover),
            linger_at: None,
        }
    }

    pub fn on_response(&mut self, now: Instant, code: u16, t: &TimerValues) -> ClientOutcome {
        use ClientState::*;
        match (self.state, code) {
            (Terminated, _) => ClientOutcome::Absorb,
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                if self.invite {
                    // Proceeding: no more retransmissions, Timer B no longer applies.
                    self.retransmit_at = None;
                    self.timeout_at = None;
                    if code > 100 {
                        self.timer_c = self.timer_c.map(|_| now + t.timer_c);
                    }
                    if code >= 180 {
                        self.fast_failover = None;
                    }
                } else if self.retransmit_at.is_some() {
                    // Non-INVITE Proceeding: keep retransmitting at T2.
                    self.interval = t.t2;
                }
                if code == 100 {
                    ClientOutcome::Absorb
                } else {
                    ClientOutcome::Provisional
                }
            }
            (Calling | Proceeding, _) => {
                self.retransmit_at = None;
                self.timeout_at = None;
                self.timer_c = None;
                self.fast_failover = None;
                if self.invite && (200..300).contains(&code) {
                    self.state = Accepted;
                    self.linger_at = Some(now + t.t64());
                } else {
                    self.state = Completed;
                    self.linger_at = Some(now + if self.invite { t.t64() } else { t.t4 });
                }
                ClientOutcome::Final
            }
            (Accepted, 200..=299) => ClientOutcome::Retransmitted2xx,
            (Completed, 200..=699) if self.invite && code >= 300 => {
                ClientOutcome::RetransmittedFinal
            }
            (Completed, 200..=699) => ClientOutcome::Absorb,
            _ => ClientOutcome::Absorb,
        }
    }

    /// Stops retransmitting and every failover timer of an abandoned branch; the transaction
    /// lives 64*T1 more to absorb (and ACK) the final answer the CANCEL provokes.
    pub fn abandon(&mut self, now: Instant, t: &TimerValues) {
        self.retransmit_at = None;
        self.timer_c = None;
        self.fast_failover = None;
        if matches!(self.state, ClientState::Calling | ClientState::Proceeding) {
            self.timeout_at = Some(now + t.t64());
        }
    }

    /// A transport error on this branch: it ends at once.
    pub fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.retransmit_at = None;
        self.timeout_at = None;
        self.timer_c = None;
        self.fast_failover = None;
        self.linger_at = None;
    }

    pub fn is_pending(&self) -> bool {
        matches!(self.state, ClientState::Calling | ClientState::Proceeding)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        earliest([
            self.retransmit_at,
            self.timeout_at,
            self.timer_c,
            self.fast_failover,
            self.linger_at,
        ])
    }

    /// One due timer at `now`, if any; call until `None`.
    pub fn poll(&mut self, now: Instant, t: &TimerValues) -> Option<ClientTimer> {
        let due = |d: Option<Instant>| d.is_some_and(|d| d <= now);
        if due(self.timeout_at) {
            self.terminate();
            return Some(ClientTimer::Timeout);
        }
        if due(self.timer_c) {
            self.timer_c = None;
            self.fast_failover = None;
            return Some(ClientTimer::TimerC);
        }
        if due(self.fast_failover) {
            self.fast_failover = None;
            return Some(ClientTimer::FastFailover);
        }
        if due(self.linger_at) {
            self.terminate();
            return Some(ClientTimer::Terminated);
        }
        if let Some(at) = self.retransmit_at.filter(|&a| a <= now) {
            self.interval = if self.invite {
                self.interval * 2
            } else {
                (self.interval * 2).min(t.t2)
            };
            self.retransmit_at = Some(at + self.interval);
            return Some(ClientTimer::Retransmit);
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE only: nothing sent yet.
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// What a server transaction timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTimer {
    /// Timer G: send the last (non-2xx final) response again.
    Retransmit,
    /// Timer H: the ACK never came.
    NoAck,
    /// Timer I, J or L: the transaction ends.
    Terminated,
}

#[derive(Debug, Clone)]
pub struct ServerTxn {
    pub invite: bool,
    pub state: ServerState,
    retransmit_at: Option<Instant>,
    interval: Duration,
    timeout_at: Option<Instant>,
    linger_at: Option<Instant>,
}

impl ServerTxn {
    pub fn new(invite: bool) -> ServerTxn {
        ServerTxn {
            invite,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            retransmit_at: None,
            interval: Duration::ZERO,
            timeout_at: None,
            linger_at: None,
        }
    }

    /// Records a response sent upstream; returns false if the state forbids it (a second
    /// final), in which case it must not be sent.
    pub fn on_send(&mut self, now: Instant, code: u16, t: &TimerValues) -> bool {
        use ServerState::*;
        match self.state {
            Trying | Proceeding => {
                if code < 200 {
                    self.state = Proceeding;
                } else if self.invite && code < 300 {
                    self.state = Accepted;
                    self.linger_at = Some(now + t.t64());
                } else if self.invite {
                    self.state = Completed;
                    self.interval = t.t1;
                    self.retransmit_at = Some(now + t.t1);
                    self.timeout_at = Some(now + t.t64());
                } else {
                    self.state = Completed;
                    self.linger_at = Some(now + t.t64());
                }
                true
            }
            // Further 2xx (other forks, retransmissions from the callee) pass in Accepted.
            Accepted => (200..300).contains(&code),
            _ => false,
        }
    }

    /// A retransmission of the request arrived: should the last response be sent again?
    pub fn on_retransmission(&self) -> bool {
        matches!(self.state, ServerState::Proceeding | ServerState::Completed)
    }

    /// An ACK matched this INVITE transaction: true when it is absorbed here (non-2xx).
    pub fn on_ack(&mut self, now: Instant, t: &TimerValues) -> bool {
        match self.state {
            ServerState::Completed => {
                self.state = ServerState::Confirmed;
                self.retransmit_at = None;
                self.timeout_at = None;
                self.linger_at = Some(now + t.t4);
                true
            }
            ServerState::Confirmed => true,
            _ => false,
        }
    }

    pub fn has_final(&self) -> bool {
        !matches!(self.state, ServerState::Trying | ServerState::Proceeding)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        earliest([self.retransmit_at, self.timeout_at, self.linger_at])
    }

    pub fn poll(&mut self, now: Instant, t: &TimerValues) -> Option<ServerTimer> {
        let due = |d: Option<Instant>| d.is_some_and(|d| d <= now);
        if due(self.timeout_at) {
            self.state = ServerState::Terminated;
            self.retransmit_at = None;
            self.timeout_at = None;
            self.linger_at = None;
            return Some(ServerTimer::NoAck);
        }
        if due(self.linger_at) {
            self.state = ServerState::Terminated;
            self.retransmit_at = None;
            self.linger_at = None;
            return Some(ServerTimer::Terminated);
        }
        if let Some(at) = self.retransmit_at.filter(|&a| a <= now) {
            self.interval = (self.interval * 2).min(t.t2);
            self.retransmit_at = Some(at + self.interval);
            return Some(ServerTimer::Retransmit);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_client(c: &mut ClientTxn, now: Instant, t: &TimerValues) -> Vec<ClientTimer> {
        let mut v = Vec::new();
        while let Some(e) = c.poll(now, t) {
            v.push(e);
            if v.len() > 16 {
                break;
            }
        }
        v
    }

    #[test]
    fn invite_client_timer_a_doubles_then_timer_b() {
        let t = TimerValues::default();
        let t0 = Instant::now();
        let mut c = ClientTxn::new(t0, true, false, &t);
        let mut sends = Vec::new();
        let mut now = t0;
        while let Some(d) = c.next_deadline() {
            now = d;
            for e in drain_client(&mut c, now, &t) {
                sends.push((now - t0, e));
            }
            if c.state == ClientState::Terminated {
                break;
            }
        }
        let retrans: Vec<u64> = sends
            .iter()
            .filter(|(_, e)| *e == ClientTimer::Retransmit)
            .map(|(d, _)| d.as_millis() as u64)
            .collect();
        // A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; B at 32 s.
        assert_eq!(retrans, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(sends.last().map(|s| s.1), Some(ClientTimer::Timeout));
        assert_eq!(now - t0, Duration::from_secs(32));
    }

    #[test]
    fn invite_client_provisional_stops_a_and_b_final_lingers_d() {
        let t = TimerValues::default();
        let t0 = Instant::now();
        let mut c = ClientTxn::new(t0, true, true, &t);
        assert_eq!(c.on_response(t0, 100, &t), ClientOutcome::Absorb);
        assert_eq!(c.state, ClientState::Proceeding);
        // 100 does not stop fast failover.
        assert_eq!(c.next_deadline(), Some(t0 + t.fast_failover));
        assert_eq!(c.on_response(t0, 180, &t), ClientOutcome::Provisional);
        assert_eq!(c.next_deadline(), Some(t0 + t.timer_c));
        assert_eq!(c.on_response(t0, 486, &t), ClientOutcome::Final);
        assert_eq!(c.state, ClientState::Completed);
        assert_eq!(
            c.on_response(t0, 486, &t),
            ClientOutcome::RetransmittedFinal
        );
        let end = c.next_deadline().unwrap();
        assert_eq!(end - t0, Duration::from_secs(32));
        assert_eq!(c.poll(end, &t), Some(ClientTimer::Terminated));
    }

    #[test]
    fn fast_failover_fires_without_18x() {
        let t = TimerValues::default();
        let t0 = Instant::now();
        let mut c = ClientTxn::new(t0, true, true, &t);
        c.on_response(t0, 100, &t);
        assert_eq!(
            c.poll(t0 + Duration::from_secs(10), &t),
            Some(ClientTimer::FastFailover)
        );
        assert_eq!(c.poll(t0 + Duration::from_secs(10), &t), None);
    }

    #[test]
    fn invite_client_2xx_accepted_forwards_retransmissions() {
        let t = TimerValues::default();
        let t0 = Instant::now();
        let mut c = ClientTxn::new(t0, true, false, &t);
        assert_eq!(c.on_response(t0, 200, &t), ClientOutcome::Final);
        assert_eq!(c.on_response(t0, 200, &t), ClientOutcome::Retransmitted2xx);
        assert_eq!(c.poll(t0 + t.t64(), &t), Some(ClientTimer::Terminated));
    }

    #[test]
    fn non_invite_client_e_caps_at_t2_then_f() {
        let t = TimerValues::default();
        let t0 = Instant::now();
        let mut c = ClientTxn::new(t0, false, false, &t);
        let mut at = Vec::new();
        while let Some(d) = c.next_deadline() {
            match c.poll(d, &t) {
                Some(ClientTimer::Retransmit) => at.push((d - t0).as_millis() as u64),
                Some(ClientTimer::Timeout) => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(&at[..5], &[500, 1500, 3500, 7500, 11500]);
        assert_eq!(c.state, ClientState::Terminated);
        let mut c = ClientTxn::new(t0, false, false, &t);
        assert_eq!(c.on_response(t0, 200, &t), ClientOutcome::Final);
        assert_eq!(c.on_response(t0, 200, &t), ClientOutcome::Absorb);
        assert_eq!(c.next_deadline(), Some(t0 + t.t4));
    }

    #[test]
    fn invite_server_g_h_and_ack() {
        let t = TimerValues::default();
        let t0 = Instant::now();
        let mut s = ServerTxn::new(true);
        assert!(s.on_send(t0, 100, &t));
        assert!(s.on_retransmission());
        assert!(s.on_send(t0, 486, &t));
        assert!(!s.on_send(t0, 200, &t), "no second final");
        assert_eq!(s.poll(t0 + t.t1, &t), Some(ServerTimer::Retransmit));
        assert_eq!(s.next_deadline(), Some(t0 + t.t1 * 3));
        assert!(s.on_ack(t0 + t.t1, &t));
        assert_eq!(s.state, ServerState::Confirmed);
        assert_eq!(s.poll(t0 + t.t1 + t.t4, &t), Some(ServerTimer::Terminated));

        let mut s = ServerTxn::new(true);
        s.on_send(t0, 503, &t);
        let mut n = 0;
        loop {
            let d = s.next_deadline().unwrap();
            match s.poll(d, &t) {
                Some(ServerTimer::Retransmit) => n += 1,
                Some(ServerTimer::NoAck) => break,
                other => panic!("{other:?}"),
            }
        }
        assert!(n >= 7);
    }

    #[test]
    fn invite_server_accepted_absorbs() {
        let t = TimerValues::default();
        let t0 = Instant::now();
        let mut s = ServerTxn::new(true);
        assert!(s.on_send(t0, 200, &t));
        assert!(!s.on_retransmission());
        assert!(s.on_send(t0, 200, &t), "2xx retransmissions pass");
        assert!(!s.on_ack(t0, &t), "ACK for 2xx is end to end");
        let mut n = ServerTxn::new(false);
        assert!(!n.on_retransmission());
        n.on_send(t0, 200, &t);
        assert!(n.on_retransmission());
        assert_eq!(n.poll(t0 + t.t64(), &t), Some(ServerTimer::Terminated));
    }
}
