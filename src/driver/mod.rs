//! The io_uring runtime: one pinned thread per core, each with its own ring, feeding a sans-IO
//! [`Core`] (the SIP proxy and the media relay) with borrowed datagrams.
//!
//! This is the only module with syscalls and `unsafe`. Per worker:
//!
//! - one ring (SINGLE_ISSUER | DEFER_TASKRUN when the kernel has them), a large CQ, the ring fd
//!   registered;
//! - an SO_REUSEPORT socket on every `sip_listen` address plus the worker's own SIP socket
//!   (listen port + 1 + worker index), all served by multishot `RecvMsg` over a provided buffer
//!   ring of SIP-sized buffers;
//! - the media sockets of the calls the worker owns, bound synchronously through the
//!   [`MediaBinder`] handed to its core, served over a second buffer ring of small buffers; a
//!   forwarded packet leaves from the buffer it arrived in and the buffer goes back to the ring
//!   when its send completes;
//! - sends batched and submitted with the next wait, in one kernel entry.
//!
//! A SIP datagram belongs to the worker `call_id_owner(..)` names; one landing elsewhere is
//! copied into a lock-free single-producer queue of the owner and the owner's ring is woken
//! (IORING_OP_MSG_RING, or an eventfd where the kernel lacks it).

mod binder;
mod bufring;
mod callid;
mod handoff;
mod probe;
mod ring;
pub mod signals;
mod socket;
mod worker;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use binder::MediaBinder;
pub use callid::{call_id_hash, call_id_owner, find_call_id};
pub use probe::{preflight, Preflight};
pub use worker::{run_workers, RunningWorkers};

/// The media core's port binder; the driver's implementation is [`MediaBinder`].
pub use crate::media::PortBinder;

/// What to do with a media datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// Send the datagram unchanged from the socket bound on `out_port` to `dst`.
    To { out_port: u16, dst: SocketAddr },
    /// Drop it (the core counts why).
    Drop,
}

/// A SIP datagram the core wrote into the buffer handed to [`Core::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub dst: SocketAddr,
    /// Bytes written at the start of the buffer.
    pub len: usize,
    /// The local SIP address to send from: a response goes out of the socket its request came
    /// in on (RFC 3261 18.2.2, RFC 3581). `None` (or an address the worker does not serve) sends
    /// from the worker's own SIP socket.
    pub local: Option<SocketAddr>,
}

/// The sans-IO core one worker drives. Created on the worker's thread, so it need not be `Send`.
pub trait Core {
    /// A SIP datagram this worker owns arrived from `src` on the local SIP address `local`.
    fn handle_sip(&mut self, now: Instant, src: SocketAddr, local: SocketAddr, bytes: &[u8]);
    /// A datagram arrived on the media socket bound on `local_port`.
    fn handle_media(
        &mut self,
        now: Instant,
        local_port: u16,
        src: SocketAddr,
        bytes: &[u8],
    ) -> Forward;
    /// The SIP datagram handed to [`Core::handle_sip`] next waited `delay` between the kernel
    /// receiving it and this worker reading it (queue and hand-off): the load signal for
    /// overload control. Not called when the kernel gave no receive time.
    fn handle_sip_queue_delay(&mut self, now: Instant, delay: Duration) {
        let _ = (now, delay);
    }
    /// Called once `now` has reached [`Core::poll_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// The next SIP datagram to send, written into `buf`.
    fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<Transmit>;
    /// When [`Core::handle_timeout`] must next be called.
    fn poll_timeout(&self) -> Option<Instant>;
    /// A SIP send failed (e.g. ECONNREFUSED after an ICMP port unreachable): the proxy treats it
    /// as a transport error of the transaction toward `dst`.
    fn handle_send_error(&mut self, now: Instant, dst: SocketAddr, error: io::ErrorKind) {
        let _ = (now, dst, error);
    }
    /// Shutdown was asked: refuse new calls, let those in progress finish.
    fn start_drain(&mut self, now: Instant);
    /// Nothing left in progress: a draining worker may exit.
    fn is_idle(&self) -> bool;
}

/// What a worker is handed when its core is made (on the worker's own thread).
#[derive(Debug)]
pub struct WorkerContext {
    /// This worker's index, `0..workers`.
    pub index: usize,
    pub workers: usize,
    /// The worker's own SIP address (listen port + 1 + index): its Via sent-by and
    /// Record-Route.
    pub local_sip: SocketAddr,
    /// Binds this worker's media sockets; hand it to the media core.
    pub binder: MediaBinder,
}

/// Runtime settings. [`DriverConfig::new`] gives the defaults the measurements here support.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Shared SIP addresses; every worker has its own SO_REUSEPORT socket on each.
    pub sip_listen: Vec<SocketAddr>,
    /// Worker threads; 0 = one per available CPU.
    pub workers: usize,
    /// First port of the per-worker SIP sockets (on the first listen address);
    /// `None` = first listen port + 1.
    pub core_port_base: Option<u16>,
    /// Address the media sockets are bound on.
    pub media_address: IpAddr,
    /// Pin worker `i` to the i-th CPU the process may run on.
    pub pin: bool,
    pub sq_entries: u32,
    pub cq_entries: u32,
    /// Provided buffers for SIP (power of two) and their size (payload room, in bytes).
    pub sip_buffers: u16,
    pub sip_buffer_size: usize,
    /// Provided buffers for media (power of two) and their size.
    pub media_buffers: u16,
    pub media_buffer_size: usize,
    /// Buffers the core writes SIP sends into.
    pub tx_buffers: usize,
    /// Most media sockets one worker holds (2 per bound pair).
    pub max_media_sockets: usize,
    /// Slots of each cross-worker queue.
    pub handoff_slots: usize,
    /// SO_RCVBUF of the SIP sockets (the kernel caps it at rmem_max): large, to ride out stalls.
    pub recv_buffer: usize,
    /// SO_RCVBUF of each media socket. Small on purpose: a voice stream needs a few hundred
    /// milliseconds of slack at most, a larger queue only holds stale media after an overload
    /// (seconds of added delay), and thousands of media sockets with megabytes each would let
    /// a flood pin gigabytes of kernel memory.
    pub media_recv_buffer: usize,
    /// Completions a wait asks for before `min_wait` ends it early (batching wake-ups).
    pub wait_batch: u32,
    /// Minimum wait once a completion is ready, after a turn that saw only media.
    pub media_min_wait: Duration,
    /// The same after a turn that saw SIP (latency of signaling matters more).
    pub sip_min_wait: Duration,
    /// Longest a draining worker waits for its core to become idle.
    pub drain_grace: Duration,
    /// SCHED_FIFO priority of the worker threads (`None`: the normal scheduler).
    pub realtime_priority: Option<u8>,
}

impl DriverConfig {
    pub fn new(sip_listen: Vec<SocketAddr>) -> DriverConfig {
        DriverConfig {
            sip_listen,
            workers: 0,
            core_port_base: None,
            media_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            pin: true,
            sq_entries: 4096,
            cq_entries: 16384,
            sip_buffers: 512,
            sip_buffer_size: 8192,
            media_buffers: 2048,
            media_buffer_size: 1536,
            tx_buffers: 256,
            max_media_sockets: 4096,
            handoff_slots: 256,
            recv_buffer: 4 << 20,
            media_recv_buffer: 32 << 10,
            wait_batch: 64,
            media_min_wait: Duration::from_micros(300),
            sip_min_wait: Duration::from_micros(50),
            drain_grace: Duration::from_secs(32),
            realtime_priority: None,
        }
    }
}

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("io_uring is unusable here: {0}")]
    Unsupported(String),
    #[error("invalid driver configuration: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("worker {0} panicked")]
    WorkerPanicked(usize),
}

impl DriverError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> DriverError {
        DriverError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Counters of one worker, updated with relaxed atomics (read by `/metrics`).
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub sip_received: AtomicU64,
    pub sip_sent: AtomicU64,
    pub sip_send_errors: AtomicU64,
    pub media_received: AtomicU64,
    pub media_forwarded: AtomicU64,
    pub media_dropped: AtomicU64,
    pub media_send_errors: AtomicU64,
    /// Datagrams handed to another worker, and received from others.
    pub handoff_out: AtomicU64,
    pub handoff_in: AtomicU64,
    /// Datagrams dropped because the owner's queue was full.
    pub handoff_full: AtomicU64,
    /// Multishot receives ended by an empty buffer ring and re-armed.
    pub enobufs_rearms: AtomicU64,
    /// Datagrams larger than a buffer (dropped).
    pub truncated: AtomicU64,
    /// Media sockets currently open.
    pub media_sockets: AtomicU64,
    /// Provided buffers taken by a receive and not yet given back to the kernel (media, SIP),
    /// as of the end of the last turn. Zero on an idle worker; a value that only grows is a leak.
    pub media_buffers_out: AtomicU64,
    pub sip_buffers_out: AtomicU64,
    /// Buffer ids a completion handed us while we already held them, or returned twice (a bug
    /// if ever non-zero; the ring stays consistent).
    pub buffer_errors: AtomicU64,
    /// Completions the kernel dropped because the completion queue was full (should stay 0).
    pub cq_overflows: AtomicU64,
    /// Loop turns (kernel entries that returned).
    pub turns: AtomicU64,
}

impl WorkerStats {
    /// A consistent-enough copy for reporting.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Shared handle to every worker's counters.
pub type Stats = Arc<[WorkerStats]>;
