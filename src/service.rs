//! The relay process: configuration -> routing table -> control plane -> one worker per core.
//!
//! [`Relay::start`] assembles the parts: it compiles the routing table and publishes it in a
//! [`LiveTable`], starts the control plane (admin API, `/metrics`, SIGHUP), and starts the
//! io_uring workers, each driving its own [`Proxy`] (with its own media relay on its slice of
//! `media_ports`). [`run`] is `intertrunk run`: the same, in the foreground until SIGTERM or
//! SIGINT, then a graceful drain.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, Diagnostic, DEFAULT_CONFIG};
use crate::control::calls::{unix_ms_now, CallState, CallTable, NewCall};
use crate::control::metrics::{Counter, Gauge, Metrics, WorkerMetrics};
use crate::control::ControlHandle;
use crate::driver::{self, DriverConfig, MediaBinder, RunningWorkers, WorkerContext};
use crate::media::{self, RelayConfig};
use crate::proxy::{Event, Proxy, ProxyConfig};
use crate::route::{LiveTable, RouteTable, TableReader, TrunkId};

/// How long after each offer/answer a latching leg may learn its real source.
const LATCH_WINDOW: Duration = Duration::from_secs(3);

/// How often a worker copies its cores' counters into its `/metrics` block.
const METRICS_PERIOD: Duration = Duration::from_millis(250);

/// Loads the configuration: the file, or the built-in default when there is none.
pub fn load_config(path: Option<&Path>) -> Result<Config, Vec<Diagnostic>> {
    match path {
        Some(p) => Config::load(p),
        None => Config::from_toml(DEFAULT_CONFIG),
    }
}

/// A running relay: workers and control plane.
pub struct Relay {
    workers: RunningWorkers,
    control: Option<ControlHandle>,
    live: LiveTable,
    metrics: Arc<Metrics>,
    calls: Arc<CallTable>,
}

impl Relay {
    /// Compiles `config`, starts the control plane and the workers. `config_path` is where
    /// admin changes are written back (None: in memory only).
    pub fn start(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<Relay> {
        let table = RouteTable::build(Arc::new(config)).map_err(|diags| {
            anyhow::anyhow!(
                "invalid configuration:\n{}",
                diags
                    .iter()
                    .map(|d| format!("  {d}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
        let table = Arc::new(table);
        let config = Arc::clone(table.config());
        let live = LiveTable::new(table);
        let server = &config.server;

        let workers = if server.workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            server.workers
        };
        let metrics = Arc::new(Metrics::new(workers));
        let calls = Arc::new(CallTable::new(workers));

        let mut dcfg = DriverConfig::new(server.sip_listen.iter().map(|l| l.addr).collect());
        dcfg.workers = workers;
        dcfg.media_address = server.media_address;
        // The media pool is bounded by the open-files limit the runtime was granted (4 sockets
        // per call with media), not by a fixed per-worker count.
        dcfg.max_media_sockets = usize::MAX;
        if let Some(us) = server.media_batch_wait_us {
            dcfg.media_min_wait = Duration::from_micros(u64::from(us));
        }
        if let Some(us) = server.sip_batch_wait_us {
            dcfg.sip_min_wait = Duration::from_micros(u64::from(us));
        }
        dcfg.realtime_priority = server.realtime_priority;
        let slices = media_slices(server.media_ports.first, server.media_ports.last, workers);
        let media_timeout = Duration::from_secs(u64::from(server.media_timeout_s.max(1)));
        let media_address = server.media_address;

        let control = crate::control::spawn(
            live.clone(),
            config_path,
            Arc::clone(&metrics),
            calls.clone() as Arc<dyn crate::control::calls::CallRegistry>,
        )?;

        let (live_w, metrics_w, calls_w) = (live.clone(), Arc::clone(&metrics), calls.clone());
        let seed = boot_seed();
        let workers = driver::run_workers(dcfg, move |ctx: WorkerContext| {
            let index = ctx.index;
            let slice = slices.get(index).copied().unwrap_or((0, 0));
            let relay = media::Relay::new(
                RelayConfig {
                    media_address,
                    ports: media::PortRange {
                        first: slice.0,
                        last: slice.1,
                    },
                    media_timeout,
                    latch_window: LATCH_WINDOW,
                },
                seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let reader = live_w.reader();
            let table = live_w.load();
            let pcfg = ProxyConfig::for_core(
                table.config(),
                ctx.local_sip,
                index as u16,
                ctx.workers as u16,
            );
            Worker::new(
                Proxy::new(
                    pcfg,
                    reader,
                    relay,
                    ctx.binder,
                    seed.rotate_left(index as u32 + 1),
                ),
                index as u16,
                live_w.reader(),
                Arc::clone(&metrics_w),
                calls_w.clone(),
            )
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        register_runtime_metrics(&metrics, workers.stats().clone());
        let pre = workers.preflight();
        tracing::info!(
            workers = workers.worker_addresses().len(),
            worker_sip = ?workers.worker_addresses(),
            open_files = pre.nofile,
            media_calls = pre.max_media_calls(),
            msg_ring = pre.msg_ring,
            defer_taskrun = pre.defer_taskrun,
            thp_disabled = pre.thp_disabled,
            "relay started"
        );
        Ok(Relay {
            workers,
            control: Some(control),
            live,
            metrics,
            calls,
        })
    }

    /// The admin API's address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.control.as_ref().map(|c| c.admin_addr())
    }

    /// Each worker's own SIP address (Via, Record-Route).
    pub fn worker_addresses(&self) -> &[SocketAddr] {
        self.workers.worker_addresses()
    }

    pub fn live(&self) -> &LiveTable {
        &self.live
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn calls_in_progress(&self) -> usize {
        self.calls.len()
    }

    /// Stops taking new calls; workers exit once their calls are over (or the grace ends).
    pub fn drain(&self) {
        self.workers.drain();
    }

    pub fn is_finished(&self) -> bool {
        self.workers.is_finished()
    }

    /// Waits for the workers, then stops the control plane.
    pub fn join(mut self) -> anyhow::Result<()> {
        let result = self.workers.join();
        if let Some(c) = self.control.take() {
            c.shutdown();
        }
        result.map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// `intertrunk run [--config FILE]`.
pub fn run(config_path: Option<PathBuf>) -> ExitCode {
    init_logging();
    let config = match load_config(config_path.as_deref()) {
        Ok(c) => c,
        Err(diags) => {
            let what = config_path
                .as_deref()
                .map_or("the built-in configuration".to_string(), |p| {
                    p.display().to_string()
                });
            eprintln!("intertrunk: {what} is invalid:");
            for d in diags {
                eprintln!("  {d}");
            }
            return ExitCode::from(2);
        }
    };
    // Signals first, so that a SIGTERM during start-up is not lost.
    let signals = match driver::signals::TerminationSignals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("intertrunk: cannot install signal handling: {e}");
            return ExitCode::from(1);
        }
    };
    let relay = match Relay::start(config, config_path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("intertrunk: {e:#}");
            return ExitCode::from(1);
        }
    };
    loop {
        match signals.wait(Duration::from_millis(500)) {
            Ok(Some(sig)) => {
                tracing::info!(
                    signal = sig,
                    calls = relay.calls_in_progress(),
                    "stopping: new calls get 503, calls in progress may finish"
                );
                relay.drain();
                break;
            }
            Ok(None) if relay.is_finished() => break,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "signal wait failed; draining");
                relay.drain();
                break;
            }
        }
    }
    match relay.join() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("intertrunk: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The io_uring runtime's own counters in `/metrics`, summed over workers at scrape time.
fn register_runtime_metrics(metrics: &Metrics, stats: driver::Stats) {
    use crate::control::metrics::write_metric;
    use crate::driver::WorkerStats;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    type Field = fn(&WorkerStats) -> &AtomicU64;
    const FAMILIES: &[(&str, &str, &str, Field)] = &[
        (
            "intertrunk_driver_enobufs_rearms_total",
            "Multishot receives ended by an empty buffer ring and re-armed",
            "counter",
            |w| &w.enobufs_rearms,
        ),
        (
            "intertrunk_driver_truncated_total",
            "Datagrams larger than a receive buffer (dropped)",
            "counter",
            |w| &w.truncated,
        ),
        (
            "intertrunk_driver_handoffs_total",
            "SIP datagrams handed to the worker that owns their Call-ID",
            "counter",
            |w| &w.handoff_out,
        ),
        (
            "intertrunk_driver_handoff_full_total",
            "SIP datagrams dropped because the owning worker's queue was full",
            "counter",
            |w| &w.handoff_full,
        ),
        (
            "intertrunk_driver_sip_send_errors_total",
            "SIP sends that failed",
            "counter",
            |w| &w.sip_send_errors,
        ),
        (
            "intertrunk_driver_media_send_errors_total",
            "Media sends that failed",
            "counter",
            |w| &w.media_send_errors,
        ),
        (
            "intertrunk_driver_loop_turns_total",
            "Kernel entries of the workers' event loops that returned (wake-ups)",
            "counter",
            |w| &w.turns,
        ),
        (
            "intertrunk_driver_media_received_total",
            "Media datagrams received by the runtime",
            "counter",
            |w| &w.media_received,
        ),
        (
            "intertrunk_driver_buffer_errors_total",
            "Provided buffers returned twice or unknown (must stay 0)",
            "counter",
            |w| &w.buffer_errors,
        ),
        (
            "intertrunk_driver_cq_overflows_total",
            "Completion queue overflows seen",
            "counter",
            |w| &w.cq_overflows,
        ),
        (
            "intertrunk_driver_media_buffers_out",
            "Media receive buffers not yet returned to the ring",
            "gauge",
            |w| &w.media_buffers_out,
        ),
        (
            "intertrunk_driver_media_sockets",
            "Media sockets open",
            "gauge",
            |w| &w.media_sockets,
        ),
    ];
    metrics.add_source(move |out| {
        for (name, help, kind, field) in FAMILIES {
            let sum: u64 = stats.iter().map(|w| field(w).load(Relaxed)).sum();
            write_metric(out, name, help, kind, sum);
        }
    });
}

/// Logs to stderr (systemd's journal takes it from there); `RUST_LOG` filters.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Splits the media port range into one slice per worker, each starting on an even port.
fn media_slices(first: u16, last: u16, workers: usize) -> Vec<(u16, u16)> {
    let first = u32::from(first) + u32::from(first) % 2;
    let last = u32::from(last);
    let pairs = if last > first {
        (last - first).div_ceil(2)
    } else {
        0
    };
    let per = pairs / workers.max(1) as u32;
    (0..workers as u32)
        .map(|i| {
            let a = first + i * per * 2;
            let b = a + per * 2 - 1;
            (
                u16::try_from(a).unwrap_or(u16::MAX),
                u16::try_from(b.max(a)).unwrap_or(u16::MAX),
            )
        })
        .collect()
}

/// A per-start seed for branches, tags and port choice: unpredictable across restarts.
fn boot_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let stack = &t as *const u64 as u64;
    t ^ stack.rotate_left(32) ^ u64::from(std::process::id()).wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// One worker's core: the proxy (with its media relay), reporting to `/metrics` and the call
/// registry.
struct Worker {
    proxy: Proxy<MediaBinder>,
    index: u16,
    /// For trunk identities in the call registry (events carry ids).
    table: TableReader,
    metrics: Arc<Metrics>,
    calls: Arc<CallTable>,
    next_metrics: Option<Instant>,
}

impl Worker {
    fn new(
        proxy: Proxy<MediaBinder>,
        index: u16,
        table: TableReader,
        metrics: Arc<Metrics>,
        calls: Arc<CallTable>,
    ) -> Worker {
        Worker {
            proxy,
            index,
            table,
            metrics,
            calls,
            next_metrics: None,
        }
    }

    fn block(&self) -> &WorkerMetrics {
        self.metrics.worker(self.index as usize)
    }

    fn trunk_identity(&mut self, id: TrunkId) -> String {
        let table = self.table.current();
        table
            .trunks()
            .find(|(t, _)| *t == id)
            .map(|(_, info)| info.identity.clone())
            .unwrap_or_else(|| format!("trunk#{}", id.0))
    }

    /// Events into the call registry and logs; counters into `/metrics` now and then.
    fn after(&mut self, now: Instant) {
        while let Some(event) = self.proxy.poll_event() {
            self.report(event);
        }
        if self.next_metrics.is_none_or(|t| now >= t) {
            self.next_metrics = Some(now + METRICS_PERIOD);
            self.sync_metrics();
        }
    }

    fn report(&mut self, event: Event) {
        match event {
            Event::CallStarted {
                call,
                source,
                called,
                calling,
            } => {
                let source_trunk = self.trunk_identity(source);
                tracing::debug!(call, %source_trunk, %called, %calling, "call started");
                self.calls.started(
                    self.index,
                    call,
                    NewCall {
                        source_trunk,
                        called,
                        calling,
                        started_unix_ms: unix_ms_now(),
                    },
                );
            }
            Event::CallRouted {
                call,
                target,
                attempt,
            } => {
                let target = self.trunk_identity(target);
                tracing::debug!(call, %target, attempt, "call routed");
                self.calls
                    .update(self.index, call, CallState::Trying, Some(target));
            }
            Event::CallAnswered { call, target } => {
                let target = self.trunk_identity(target);
                self.calls
                    .update(self.index, call, CallState::Confirmed, Some(target));
            }
            Event::CallEnded {
                call,
                reason,
                status,
                duration,
                media,
            } => {
                tracing::info!(
                    call,
                    ?reason,
                    status,
                    duration_ms = duration.as_millis() as u64,
                    media = ?media.as_ref().map(|m| m.summary()),
                    "call ended"
                );
                self.calls.ended(self.index, call);
            }
            Event::TrunkDown(id) => {
                let t = self.trunk_identity(id);
                tracing::warn!(trunk = %t, "trunk down (no answer to OPTIONS); routing skips it");
            }
            Event::TrunkUp(id) => {
                let t = self.trunk_identity(id);
                tracing::info!(trunk = %t, "trunk up again");
            }
        }
    }

    fn sync_metrics(&self) {
        let s = self.proxy.stats();
        let m = self.proxy.relay().totals();
        let b = self.block();
        b.store(Counter::SipDatagramsReceived, s.datagrams_in);
        b.store(Counter::SipDatagramsSent, s.datagrams_out);
        b.store(Counter::SipParseErrors, s.drop_unparseable + s.bad_requests);
        b.store(Counter::SipFromUnknownSource, s.rejected_unknown_source);
        b.store(
            Counter::InvitesReceived,
            s.calls_started
                + s.rejected_unknown_source
                + s.rejected_no_route
                + s.rejected_no_matching_rule
                + s.rejected_capacity
                + s.rejected_draining
                + s.rejected_overload
                + s.rejected_ports,
        );
        b.store(Counter::CallsRouted, s.calls_started);
        b.store(Counter::CallsNoRoute, s.rejected_no_route);
        b.store(Counter::CallsNoMatchingRule, s.rejected_no_matching_rule);
        b.store(Counter::CallsAnswered, s.calls_answered);
        b.store(
            Counter::CallsFailed,
            s.calls_started
                .saturating_sub(s.calls_answered + self.proxy.active_calls() as u64),
        );
        b.store(Counter::Failovers, s.failovers);
        b.store(Counter::Retransmissions, s.retransmissions_sent);
        b.store(
            Counter::RejectedBusy,
            s.rejected_capacity + s.rejected_draining + s.rejected_overload + s.rejected_ports,
        );
        b.store(Counter::RejectedOverload, s.rejected_overload);
        b.store(Counter::OverloadEpisodes, s.overload_episodes);
        b.store(Counter::LingeringEvicted, s.lingering_evicted);
        b.store(Counter::RtpPacketsRelayed, m.forwarded_packets);
        b.store(Counter::RtpBytesRelayed, m.forwarded_bytes);
        b.store(
            Counter::RtpPacketsDropped,
            m.dropped_unknown_port
                + m.dropped_unexpected_source
                + m.dropped_no_destination
                + m.dropped_malformed,
        );
        b.store(Counter::RtpDroppedUnknownPort, m.dropped_unknown_port);
        b.store(
            Counter::RtpDroppedUnexpectedSource,
            m.dropped_unexpected_source,
        );
        b.store(Counter::RtpDroppedNoDestination, m.dropped_no_destination);
        b.store(Counter::RtpDroppedMalformed, m.dropped_malformed);
        b.store(Counter::MediaTimeouts, m.timeouts);
        b.set(Gauge::ActiveCalls, self.proxy.active_calls() as i64);
        b.set(Gauge::MediaSessions, m.sessions_active as i64);
        b.set(Gauge::MediaPortPairsInUse, m.pairs_in_use as i64);
        b.set(Gauge::MediaPortPairsTotal, m.pairs_total as i64);
    }
}

impl driver::Core for Worker {
    fn handle_sip(&mut self, now: Instant, src: SocketAddr, local: SocketAddr, bytes: &[u8]) {
        self.proxy.handle_datagram(now, src, local, bytes);
        self.after(now);
    }

    fn handle_media(
        &mut self,
        now: Instant,
        local_port: u16,
        src: SocketAddr,
        bytes: &[u8],
    ) -> driver::Forward {
        match self.proxy.handle_media(now, local_port, src, bytes) {
            media::Forward::To { out_port, dst } => driver::Forward::To { out_port, dst },
            media::Forward::Drop(_) => driver::Forward::Drop,
        }
    }

    fn handle_sip_queue_delay(&mut self, _now: Instant, delay: std::time::Duration) {
        self.proxy.handle_queue_delay(delay);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.proxy.handle_timeout(now);
        self.after(now);
    }

    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<driver::Transmit> {
        self.proxy.poll_transmit(buf).map(|t| driver::Transmit {
            dst: t.dst,
            len: t.len,
            local: t.local,
        })
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let metrics = self.next_metrics;
        match (self.proxy.poll_timeout(), metrics) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_send_error(&mut self, now: Instant, dst: SocketAddr, _error: std::io::ErrorKind) {
        self.proxy.handle_transport_error(now, dst);
        self.after(now);
    }

    fn start_drain(&mut self, now: Instant) {
        self.proxy.start_drain(now);
    }

    fn is_idle(&self) -> bool {
        self.proxy.is_idle()
    }
}

#[cfg(test)]
mod tests {
    use super::media_slices;

    #[test]
    fn media_slices_are_disjoint_even_aligned_and_inside_the_range() {
        let s = media_slices(30000, 39999, 2);
        assert_eq!(s, vec![(30000, 34999), (35000, 39999)]);
        let s = media_slices(30001, 30010, 3);
        for (a, b) in &s {
            assert_eq!(a % 2, 0);
            assert!(*a >= 30002 && *b <= 30010 && b > a);
        }
        for w in s.windows(2) {
            assert!(w[0].1 < w[1].0);
        }
    }
}
