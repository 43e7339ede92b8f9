//! Counters and gauges for `GET /metrics` (Prometheus text format 0.0.4).
//!
//! The data path must not pay for observability: each worker core owns one cache-line aligned
//! block of `AtomicU64`s and is its only writer, so an increment is a relaxed load and a relaxed
//! store to a line no other core writes (no lock, no `lock`-prefixed read-modify-write, no false
//! sharing). The control thread reads every block with relaxed loads and sums them when
//! scraped; a scrape may see one worker's counters a few increments apart from another's,
//! which Prometheus tolerates by design.
//!
//! Control-plane counters (changes, reloads) are rare and use plain `fetch_add`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

macro_rules! metric_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => ($metric:literal, $help:literal),)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum $name { $($(#[$vm])* $v,)* }
        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];
            /// Number of variants.
            pub const COUNT: usize = $name::ALL.len();
            /// The Prometheus metric name.
            pub fn metric(self) -> &'static str {
                match self { $($name::$v => $metric,)* }
            }
            /// The `# HELP` text.
            pub fn help(self) -> &'static str {
                match self { $($name::$v => $help,)* }
            }
        }
    };
}

metric_enum! {
    /// Monotonic per-worker counters.
    Counter {
        SipDatagramsReceived => ("intertrunk_sip_datagrams_received_total", "SIP datagrams received"),
        SipDatagramsSent => ("intertrunk_sip_datagrams_sent_total", "SIP datagrams sent"),
        SipParseErrors => ("intertrunk_sip_parse_errors_total", "SIP datagrams dropped because they did not parse"),
        SipFromUnknownSource => ("intertrunk_sip_unknown_source_total", "Requests refused with 403 because no trunk has the source address"),
        InvitesReceived => ("intertrunk_invites_received_total", "Initial INVITEs received"),
        CallsRouted => ("intertrunk_calls_routed_total", "Initial INVITEs for which routing found candidates"),
        CallsNoRoute => ("intertrunk_calls_no_route_total", "Initial INVITEs refused with 403 (Lync 12004, no route)"),
        CallsNoMatchingRule => ("intertrunk_calls_no_matching_rule_total", "Initial INVITEs refused with 404 (Lync 14010, no dial-plan rule)"),
        CallsAnswered => ("intertrunk_calls_answered_total", "Calls that received a 2xx"),
        CallsFailed => ("intertrunk_calls_failed_total", "Calls that ended with a final non-2xx response"),
        Failovers => ("intertrunk_failovers_total", "Moves to the next candidate gateway (5xx, 408, transport error, fast-failover timer)"),
        Retransmissions => ("intertrunk_sip_retransmissions_total", "SIP retransmissions sent"),
        RejectedBusy => ("intertrunk_sip_rejected_busy_total", "Requests refused with 503: a state cap, media port exhaustion, draining or overload"),
        RejectedOverload => ("intertrunk_sip_rejected_overload_total", "New calls refused with 503 because SIP waited past sip_overload_queue_ms in the socket queue"),
        OverloadEpisodes => ("intertrunk_sip_overload_episodes_total", "Times a worker entered overload (SIP queueing delay past sip_overload_queue_ms)"),
        LingeringEvicted => ("intertrunk_sip_lingering_transactions_evicted_total", "Settled transactions ended before their linger timer to make room at the transaction cap"),
        RtpPacketsRelayed => ("intertrunk_rtp_packets_relayed_total", "RTP/RTCP packets relayed"),
        RtpBytesRelayed => ("intertrunk_rtp_bytes_relayed_total", "RTP/RTCP bytes relayed"),
        RtpPacketsDropped => ("intertrunk_rtp_packets_dropped_total", "RTP/RTCP packets dropped (unknown port, wrong source after latching, malformed)"),
        RtpDroppedUnknownPort => ("intertrunk_rtp_dropped_unknown_port_total", "Media datagrams dropped: no call owns the port they arrived on"),
        RtpDroppedUnexpectedSource => ("intertrunk_rtp_dropped_unexpected_source_total", "Media datagrams dropped: sent from an address other than the leg's SDP or latched one"),
        RtpDroppedNoDestination => ("intertrunk_rtp_dropped_no_destination_total", "Media datagrams dropped: the other leg has no media address yet (no answer, or on hold)"),
        RtpDroppedMalformed => ("intertrunk_rtp_dropped_malformed_total", "Media datagrams dropped: not RTP/RTCP version 2"),
        MediaTimeouts => ("intertrunk_media_timeouts_total", "Calls ended because no RTP/RTCP arrived for media_timeout_s"),
    }
}

metric_enum! {
    /// Per-worker gauges; the exported value is the sum over workers.
    Gauge {
        ActiveCalls => ("intertrunk_active_calls", "Calls in progress (early or confirmed dialogs)"),
        MediaSessions => ("intertrunk_media_sessions", "Media sessions holding port pairs"),
        MediaPortPairsInUse => ("intertrunk_media_port_pairs_in_use", "RTP/RTCP port pairs bound for calls"),
        MediaPortPairsTotal => ("intertrunk_media_port_pairs_total", "RTP/RTCP port pairs in the media_ports range (all workers)"),
        TrunksDown => ("intertrunk_trunks_down", "Trunks marked down by OPTIONS probing (as seen by each worker, summed)"),
    }
}

metric_enum! {
    /// Control-plane counters.
    ControlCounter {
        ConfigChanges => ("intertrunk_config_changes_total", "Configuration changes applied through the admin API"),
        ConfigChangesRejected => ("intertrunk_config_changes_rejected_total", "Configuration changes refused (validation, conflict, I/O)"),
        Reloads => ("intertrunk_config_reloads_total", "Configuration file reloads applied (SIGHUP or POST /reload)"),
        ReloadsFailed => ("intertrunk_config_reloads_failed_total", "Configuration file reloads refused; the running table was kept"),
        AdminRequests => ("intertrunk_admin_requests_total", "Admin API requests served"),
    }
}

/// One worker's counters: written by that worker only.
#[repr(align(64))]
pub struct WorkerMetrics {
    counters: [AtomicU64; Counter::COUNT],
    gauges: [AtomicI64; Gauge::COUNT],
}

impl WorkerMetrics {
    fn new() -> Self {
        WorkerMetrics {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            gauges: std::array::from_fn(|_| AtomicI64::new(0)),
        }
    }

    /// Sets a counter to `v`, for a worker that keeps its own totals and copies them here
    /// now and then. Only the owning worker calls this; `v` never decreases.
    #[inline]
    pub fn store(&self, c: Counter, v: u64) {
        self.counters[c as usize].store(v, Relaxed);
    }

    /// Adds `n`. Only the owning worker calls this (single writer: load + store, no RMW).
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        let slot = &self.counters[c as usize];
        slot.store(slot.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self, c: Counter) {
        self.add(c, 1);
    }

    /// Sets a gauge to this worker's current value.
    #[inline]
    pub fn set(&self, g: Gauge, v: i64) {
        self.gauges[g as usize].store(v, Relaxed);
    }

    /// This worker's value of a counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize].load(Relaxed)
    }

    /// This worker's value of a gauge.
    pub fn gauge(&self, g: Gauge) -> i64 {
        self.gauges[g as usize].load(Relaxed)
    }
}

/// The registry: one block per worker plus the control plane's own counters.
pub struct Metrics {
    workers: Box<[WorkerMetrics]>,
    /// More families rendered at scrape time (e.g. the io_uring runtime's own counters).
    sources: std::sync::Mutex<Vec<Source>>,
    control: [AtomicU64; ControlCounter::COUNT],
    table_generation: AtomicU64,
}

impl Metrics {
    /// A registry for `workers` worker cores (at least one block is always allocated).
    pub fn new(workers: usize) -> Self {
        Metrics {
            workers: (0..workers.max(1)).map(|_| WorkerMetrics::new()).collect(),
            sources: std::sync::Mutex::new(Vec::new()),
            control: std::array::from_fn(|_| AtomicU64::new(0)),
            table_generation: AtomicU64::new(0),
        }
    }

    /// Worker `i`'s block (the worker keeps the reference for its lifetime).
    /// Indices past the end share the last block rather than panic.
    pub fn worker(&self, i: usize) -> &WorkerMetrics {
        let last = self.workers.len() - 1;
        &self.workers[i.min(last)]
    }

    /// Number of worker blocks.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Counts a control-plane event (any thread).
    pub fn control_inc(&self, c: ControlCounter) {
        self.control[c as usize].fetch_add(1, Relaxed);
    }

    /// A control-plane counter.
    pub fn control_get(&self, c: ControlCounter) -> u64 {
        self.control[c as usize].load(Relaxed)
    }

    /// Adds metric families written at each scrape by `source` (with [`write_metric`]). Scrapes
    /// are rare, so a lock here costs the data path nothing.
    pub fn add_source(&self, source: impl Fn(&mut String) + Send + Sync + 'static) {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(source));
    }

    /// Counts one more published routing table.
    pub fn table_published(&self) {
        self.table_generation.fetch_add(1, Relaxed);
    }

    /// A counter summed over workers.
    pub fn total(&self, c: Counter) -> u64 {
        self.workers
            .iter()
            .fold(0u64, |acc, w| acc.wrapping_add(w.get(c)))
    }

    /// A gauge summed over workers.
    pub fn gauge_total(&self, g: Gauge) -> i64 {
        self.workers
            .iter()
            .fold(0i64, |acc, w| acc.wrapping_add(w.gauge(g)))
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for &c in Counter::ALL {
            write_metric(&mut out, c.metric(), c.help(), "counter", self.total(c));
        }
        for &g in Gauge::ALL {
            write_metric(&mut out, g.metric(), g.help(), "gauge", self.gauge_total(g));
        }
        for &c in ControlCounter::ALL {
            write_metric(
                &mut out,
                c.metric(),
                c.help(),
                "counter",
                self.control_get(c),
            );
        }
        write_metric(
            &mut out,
            "intertrunk_route_table_generation",
            "Routing tables published since start (1 = the one loaded at start)",
            "gauge",
            self.table_generation.load(Relaxed),
        );
        write_metric(
            &mut out,
            "intertrunk_workers",
            "Worker cores",
            "gauge",
            self.workers.len(),
        );
        for source in self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            source(&mut out);
        }
        out
    }
}

type Source = Box<dyn Fn(&mut String) + Send + Sync>;

/// Writes one metric family with a single sample in the Prometheus text format.
pub fn write_metric(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    v: impl std::fmt::Display,
) {
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counters_sum_over_workers_and_render() {
        let m = Metrics::new(3);
        m.worker(0).inc(Counter::InvitesReceived);
        m.worker(1).add(Counter::InvitesReceived, 4);
        m.worker(2).set(Gauge::ActiveCalls, 7);
        m.worker(0).set(Gauge::ActiveCalls, 2);
        m.control_inc(ControlCounter::Reloads);
        m.table_published();
        assert_eq!(m.total(Counter::InvitesReceived), 5);
        assert_eq!(m.gauge_total(Gauge::ActiveCalls), 9);
        let text = m.render();
        assert!(text.contains("\nintertrunk_invites_received_total 5\n"));
        assert!(text.contains("# TYPE intertrunk_active_calls gauge\nintertrunk_active_calls 9\n"));
        assert!(text.contains("\nintertrunk_config_reloads_total 1\n"));
        assert!(text.contains("\nintertrunk_route_table_generation 1\n"));
        assert!(text.contains("\nintertrunk_workers 3\n"));
        // Every sample line is `name value` and follows its HELP/TYPE lines.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut it = line.split(' ');
            let (name, value) = (it.next().unwrap(), it.next().unwrap());
            assert!(name.starts_with("intertrunk_"));
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(text.contains(&format!("# TYPE {name} ")));
        }
        assert!(std::mem::align_of::<WorkerMetrics>() >= 64);
    }

    #[test]
    fn one_writer_per_block_loses_nothing() {
        let m = Arc::new(Metrics::new(2));
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        m.worker(w).inc(Counter::RtpPacketsRelayed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(m.total(Counter::RtpPacketsRelayed), 200_000);
        // Out-of-range worker index does not panic.
        m.worker(99).inc(Counter::Failovers);
        assert_eq!(m.worker(1).get(Counter::Failovers), 1);
    }
}
