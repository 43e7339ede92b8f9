//! Counters for every outcome the network can provoke, drops included: nothing the core does
//! with a datagram goes unaccounted (exposed by `Proxy::stats`, summed into /metrics).

/// Monotonic counters of one proxy core.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    /// Datagrams that are not SIP or too malformed to answer.
    pub drop_unparseable: u64,
    /// Requests answered 400 (parsed, but a mandatory header is broken).
    pub bad_requests: u64,
    /// Datagrams larger than `max_message`.
    pub drop_too_large: u64,
    /// Responses whose top Via is not ours or matches no transaction.
    pub drop_stray_response: u64,
    /// ACKs that match neither a transaction nor a dialog.
    pub drop_stray_ack: u64,
    /// CANCELs matching nothing (answered 481).
    pub cancel_unmatched: u64,
    /// Messages we could not write (output larger than the buffer, bad field).
    pub drop_unwritable: u64,
    /// Outgoing datagrams dropped because the driver's buffer was too small.
    pub drop_transmit_buffer: u64,
    /// Retransmitted requests absorbed by a server transaction.
    pub retransmissions_absorbed: u64,
    /// Our own retransmissions (Timers A, E, G).
    pub retransmissions_sent: u64,
    pub rejected_unknown_source: u64,
    pub rejected_loop: u64,
    pub rejected_too_many_hops: u64,
    pub rejected_no_route: u64,
    pub rejected_no_matching_rule: u64,
    pub rejected_capacity: u64,
    /// Settled transactions ended before their linger timer (D, J, K, L, M) to make room
    /// for new ones at the transaction cap: a retransmission they would have absorbed is
    /// then handled afresh (481, or forwarded again).
    pub lingering_evicted: u64,
    pub rejected_draining: u64,
    /// New calls refused with 503 while the SIP queueing delay was past the overload mark.
    pub rejected_overload: u64,
    /// Times the core entered overload.
    pub overload_episodes: u64,
    pub rejected_ports: u64,
    pub rejected_bad_sdp: u64,
    pub rejected_method: u64,
    pub rejected_no_dialog: u64,
    /// 18x with a new To tag beyond the trunk's max_early_dialogs (not forwarded).
    pub drop_early_dialog_cap: u64,
    pub failovers: u64,
    pub calls_started: u64,
    pub calls_answered: u64,
    pub calls_ended: u64,
    pub options_answered: u64,
    pub probes_sent: u64,
}
