//! The per-core loop: wait for completions (batched), dispatch them to the core, queue the
//! sends and re-arms, submit everything in the next wait.

use super::binder::BinderAction;
use super::bufring::{BufRing, NAME_LEN, SIP_CONTROL_LEN};
use super::handoff::{Handoff, WakeTarget};
use super::{
    call_id_owner, preflight, ring, socket, Core, DriverConfig, DriverError, Forward, MediaBinder,
    Preflight, Stats, WorkerContext, WorkerStats,
};
use io_uring::types::{CancelBuilder, Fd, Fixed, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring, SubmissionQueue, Submitter};
use socket2::{SockAddr, Socket};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const RUN: u8 = 0;
const DRAIN: u8 = 1;
const STOP: u8 = 2;

const SIP_BGID: u16 = 1;
const MEDIA_BGID: u16 = 2;

/// user_data layout: kind in the top byte, a generation in the next three, an index below.
const K_RECV: u64 = 1;
const K_SEND: u64 = 2;
const K_EVENTFD: u64 = 3;
const K_WAKE: u64 = 4;
const K_IGNORE: u64 = 5;
const K_MSG_RING: u64 = 6;

fn token(kind: u64, gen: u32, idx: u32) -> u64 {
    (kind << 56) | (u64::from(gen & 0xff_ffff) << 32) | u64::from(idx)
}

fn untoken(t: u64) -> (u64, u32, u32) {
    (t >> 56, ((t >> 32) & 0xff_ffff) as u32, t as u32)
}

const NO_SLOT: u32 = u32::MAX;

/// CLOCK_REALTIME now, in ns since the epoch (the clock of the kernel's receive times).
fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// How long a datagram received at `received_ns` waited until `wall_ns`. `None` without a
/// receive time, or when the wall clock stepped (a wait of over a minute is a clock change,
/// not a queue: the socket buffers hold seconds at most).
fn queue_delay(received_ns: Option<u64>, wall_ns: u64) -> Option<Duration> {
    let waited = wall_ns.saturating_sub(received_ns?);
    (waited < 60_000_000_000).then(|| Duration::from_nanos(waited))
}

/// Hands a SIP datagram to the core, preceded by how long it waited when that is known.
fn deliver_sip<C: Core>(
    core: &mut C,
    now: Instant,
    wall_ns: u64,
    received_ns: Option<u64>,
    src: SocketAddr,
    local: SocketAddr,
    bytes: &[u8],
) {
    if let Some(delay) = queue_delay(received_ns, wall_ns) {
        core.handle_sip_queue_delay(now, delay);
    }
    core.handle_sip(now, src, local, bytes);
}

/// `deadline` rounded up to the next multiple of `grain` counted from `origin`, so deadlines
/// within one grain wake the worker once (and never early).
fn coarsen(deadline: Instant, origin: Instant, grain: Duration) -> Instant {
    let grain = grain.as_nanos().max(1);
    let since = deadline.saturating_duration_since(origin).as_nanos();
    let extra = (grain - since % grain) % grain;
    deadline + Duration::from_nanos(u64::try_from(extra).unwrap_or(0))
}

/// Longest single wait when the core has no timer (a drain or a stop kicks the ring anyway).
const IDLE_WAIT: Duration = Duration::from_secs(5);
/// Timer deadlines are rounded up to this grain so that the thousands of SIP and media timers
/// of a loaded worker (retransmissions, Timer K/D, probes, media timeouts, metrics) share
/// wake-ups instead of costing one each. The shortest of them is T1 (500 ms), so 10 ms late
/// is within RFC 3261's tolerance; a wake-up here costs tens of microseconds of CPU.
const TIMER_GRAIN: Duration = Duration::from_millis(10);
/// Media datagrams expected within the media window for batching wake-ups to be worth its delay.
const MEDIA_BATCH_WORTH: f64 = 2.0;

struct Shared {
    state: AtomicU8,
    wakes: Box<[WakeTarget]>,
    handoff: Handoff,
    msg_ring: bool,
}

/// The running workers. Dropping it stops them.
pub struct RunningWorkers {
    threads: Vec<JoinHandle<Result<(), DriverError>>>,
    shared: Arc<Shared>,
    stats: Stats,
    preflight: Preflight,
    worker_addresses: Vec<SocketAddr>,
}

impl std::fmt::Debug for RunningWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningWorkers")
            .field("workers", &self.worker_addresses.len())
            .field("preflight", &self.preflight)
            .finish()
    }
}

impl RunningWorkers {
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// What start-up found (open-file limit granted, kernel features).
    pub fn preflight(&self) -> &Preflight {
        &self.preflight
    }

    /// Each worker's own SIP address.
    pub fn worker_addresses(&self) -> &[SocketAddr] {
        &self.worker_addresses
    }

    /// Asks every worker to drain: `Core::start_drain`, then exit once idle or after the grace.
    pub fn drain(&self) {
        self.set_state(DRAIN);
    }

    /// Asks every worker to exit now.
    pub fn stop(&self) {
        self.set_state(STOP);
    }

    fn set_state(&self, s: u8) {
        self.shared.state.fetch_max(s, Ordering::SeqCst);
        for w in self.shared.wakes.iter() {
            w.kick();
        }
    }

    /// True once every worker has exited.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Waits for every worker; the first error wins.
    pub fn join(mut self) -> Result<(), DriverError> {
        join_all(&mut self.threads)
    }
}

fn join_all(threads: &mut Vec<JoinHandle<Result<(), DriverError>>>) -> Result<(), DriverError> {
    let mut first = Ok(());
    for (i, t) in threads.drain(..).enumerate() {
        let r = t.join().unwrap_or(Err(DriverError::WorkerPanicked(i)));
        if first.is_ok() {
            first = r;
        }
    }
    first
}

impl Drop for RunningWorkers {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.set_state(STOP);
            let _ = join_all(&mut self.threads);
        }
    }
}

/// Starts the workers. `make_core` runs on each worker's thread once its ring and sockets are
/// ready. Returns once every worker is running, or the first start-up error.
pub fn run_workers<C, F>(cfg: DriverConfig, make_core: F) -> Result<RunningWorkers, DriverError>
where
    C: Core + 'static,
    F: Fn(WorkerContext) -> C + Send + Sync + 'static,
{
    let first = *cfg
        .sip_listen
        .first()
        .ok_or_else(|| DriverError::Config("no sip_listen address".into()))?;
    for (n, what) in [
        (cfg.sip_buffers, "sip_buffers"),
        (cfg.media_buffers, "media_buffers"),
    ] {
        if !n.is_power_of_two() || n > 32768 {
            return Err(DriverError::Config(format!(
                "{what} must be a power of two <= 32768"
            )));
        }
    }
    let workers = if cfg.workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.workers
    };
    let per_ring = u64::from(cfg.sq_entries) * 64
        + u64::from(cfg.cq_entries) * 16
        + (u64::from(cfg.sip_buffers) + u64::from(cfg.media_buffers)) * 16
        + 16384;
    let pre = preflight(per_ring * workers as u64)?;
    let media_budget = pre.media_socket_budget() / workers;
    let max_media = cfg.max_media_sockets.min(media_budget);

    let base = cfg.core_port_base.unwrap_or(first.port().wrapping_add(1));
    let mut worker_addresses = Vec::with_capacity(workers);
    for i in 0..workers {
        let port = u16::try_from(usize::from(base) + i)
            .ok()
            .filter(|&p| p != 0 && base != 0)
            .ok_or_else(|| DriverError::Config("per-worker SIP ports overflow".into()))?;
        worker_addresses.push(SocketAddr::new(first.ip(), port));
    }
    // Bind everything here so an address in use fails the start, not a worker.
    let mut sockets: Vec<Vec<(Socket, SocketAddr)>> = Vec::with_capacity(workers);
    for &own in &worker_addresses {
        let mut mine = Vec::with_capacity(cfg.sip_listen.len() + 1);
        for &addr in &cfg.sip_listen {
            let s = socket::sip_shared(addr, cfg.recv_buffer)
                .map_err(|e| DriverError::io(format!("binding SIP {addr}"), e))?;
            mine.push((s, addr));
        }
        let s = socket::sip_own(own, cfg.recv_buffer)
            .map_err(|e| DriverError::io(format!("binding worker SIP {own}"), e))?;
        mine.push((s, own));
        sockets.push(mine);
    }

    let wakes = (0..workers)
        .map(|_| WakeTarget::new())
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| DriverError::io("eventfd", e))?;
    let shared = Arc::new(Shared {
        state: AtomicU8::new(RUN),
        wakes: wakes.into_boxed_slice(),
        handoff: Handoff::new(workers, cfg.handoff_slots, cfg.sip_buffer_size),
        msg_ring: pre.msg_ring,
    });
    let stats: Stats = (0..workers).map(|_| WorkerStats::default()).collect();
    let cpus = if cfg.pin { allowed_cpus() } else { Vec::new() };
    let cfg = Arc::new(cfg);
    let make_core = Arc::new(make_core);
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::with_capacity(workers);
    for (index, socks) in sockets.into_iter().enumerate() {
        let setup = Setup {
            index,
            workers,
            cfg: cfg.clone(),
            shared: shared.clone(),
            stats: stats.clone(),
            sockets: socks,
            own: worker_addresses[index],
            max_media,
            cpu: (!cpus.is_empty()).then(|| cpus[index % cpus.len()]),
        };
        let make_core = make_core.clone();
        let ready = ready_tx.clone();
        let t = std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || worker_main(setup, &*make_core, ready))
            .map_err(|e| DriverError::io("spawning a worker", e))?;
        threads.push(t);
    }
    drop(ready_tx);
    let mut running = RunningWorkers {
        threads,
        shared,
        stats,
        preflight: pre,
        worker_addresses,
    };
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                running.stop();
                let _ = join_all(&mut running.threads);
                return Err(e);
            }
            Err(_) => {
                running.stop();
                let r = join_all(&mut running.threads);
                return Err(r.err().unwrap_or(DriverError::WorkerPanicked(0)));
            }
        }
    }
    Ok(running)
}

fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: builds a set with one CPU and applies it to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        // Pinning is an optimisation: a refusal (cgroup cpuset) leaves the thread floating.
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// SCHED_FIFO at `prio` for the calling thread.
fn set_realtime(prio: u8) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: i32::from(prio),
    };
    // SAFETY: `param` is a valid sched_param for the duration of the call; pid 0 is the
    // calling thread.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

struct Setup {
    index: usize,
    workers: usize,
    cfg: Arc<DriverConfig>,
    shared: Arc<Shared>,
    stats: Stats,
    sockets: Vec<(Socket, SocketAddr)>,
    own: SocketAddr,
    max_media: usize,
    cpu: Option<usize>,
}

fn worker_main<C: Core, F: Fn(WorkerContext) -> C>(
    setup: Setup,
    make_core: &F,
    ready: mpsc::Sender<Result<(), DriverError>>,
) -> Result<(), DriverError> {
    if let Some(cpu) = setup.cpu {
        pin_to(cpu);
    }
    if let Some(prio) = setup.cfg.realtime_priority.filter(|&p| p > 0) {
        if let Err(e) = set_realtime(prio) {
            tracing::warn!(
                worker = setup.index,
                priority = prio,
                error = %e,
                "realtime_priority refused (needs root or CAP_SYS_NICE); the worker runs under the normal scheduler"
            );
        }
    }
    let (ring, mode) = match ring::build(setup.cfg.sq_entries, setup.cfg.cq_entries) {
        Ok(r) => r,
        Err(e) => {
            let err = DriverError::io("creating the worker ring", e);
            let _ = ready.send(Err(DriverError::io(
                "creating the worker ring",
                io::Error::other(err.to_string()),
            )));
            return Err(err);
        }
    };
    let mut w = match Worker::new(ring, mode, setup, make_core) {
        Ok(w) => w,
        Err(e) => {
            let _ = ready.send(Err(DriverError::Unsupported(e.to_string())));
            return Err(e);
        }
    };
    let _ = ready.send(Ok(()));
    w.run()
}

enum BufRef {
    Media(u16),
    Tx(u32),
}

struct SendSlot {
    buf: BufRef,
    dst: SockAddr,
    dst_std: SocketAddr,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    Sip(SocketAddr),
    Media(u16),
}

/// The msghdr each multishot `RecvMsg` lays its buffers out by: SIP buffers also hold the
/// kernel receive time (control data), media buffers only the source address.
struct RecvHeaders {
    sip: Box<libc::msghdr>,
    media: Box<libc::msghdr>,
}

impl RecvHeaders {
    fn of(&self, kind: SlotKind) -> &libc::msghdr {
        match kind {
            SlotKind::Sip(_) => &self.sip,
            SlotKind::Media(_) => &self.media,
        }
    }
}

struct SockSlot {
    sock: Option<Socket>,
    kind: SlotKind,
    gen: u32,
    armed: bool,
    closing: bool,
}

/// Everything a worker owns. Field order is drop order: the ring is closed first, so the kernel
/// no longer uses the buffers, headers and sockets below when they are freed.
struct Worker<C> {
    ring: IoUring,
    st: State<C>,
}

struct State<C> {
    index: usize,
    workers: usize,
    core: C,
    binder: MediaBinder,
    shared: Arc<Shared>,
    stats: Stats,
    cfg: Arc<DriverConfig>,
    no_iowait: bool,
    min_wait: bool,
    sip_ring: BufRing,
    media_ring: BufRing,
    recv_headers: RecvHeaders,
    sockets: Vec<SockSlot>,
    free_slots: VecDeque<u32>,
    sip_slots: Vec<u32>,
    own_slot: u32,
    port_slot: Box<[u32]>,
    sends: Box<[SendSlot]>,
    free_sends: Vec<u32>,
    tx_bufs: Box<[Box<[u8]>]>,
    free_tx: Vec<u32>,
    rearm: VecDeque<u32>,
    cqes: Vec<(u64, i32, u32)>,
    eventfd_buf: Box<u64>,
    wake_needed: Vec<bool>,
    saw_sip: bool,
    /// CLOCK_REALTIME at the start of the turn, in ns: SIP receive times are on that clock.
    wall_ns: u64,
    /// Media datagrams reaped this turn, and a smoothed media arrival rate (per second) that
    /// decides whether holding a wake-up for the media window is worth it.
    turn_media: u32,
    media_rate: f64,
    last_turn: Instant,
    /// The origin of the timer grain.
    started: Instant,
    draining: Option<Instant>,
    pending_closes: Vec<u32>,
}

/// The submission side: pushes, flushing to the kernel when the queue is full. An entry is
/// never dropped: one that still finds the queue full (the kernel refused the flush) waits in
/// `backlog` and goes in before anything newer.
struct Io<'a> {
    sub: Submitter<'a>,
    sq: SubmissionQueue<'a>,
    backlog: VecDeque<squeue::Entry>,
}

impl Io<'_> {
    /// # Safety
    /// Every pointer in `e` must stay valid until its completion (all of them point into the
    /// worker's `State`, which outlives the ring).
    unsafe fn push(&mut self, e: &squeue::Entry) {
        if self.backlog.is_empty() {
            // SAFETY: forwarded from the caller.
            if unsafe { self.sq.push(e) }.is_ok() {
                return;
            }
            self.flush();
        }
        self.backlog.push_back(e.clone());
        // SAFETY: the backlog holds entries pushed under this same contract.
        unsafe { self.drain_backlog() };
    }

    /// Moves backlogged entries into the queue, flushing it to the kernel when full.
    ///
    /// # Safety
    /// As for `push`.
    unsafe fn drain_backlog(&mut self) {
        // Bounded: a kernel refusing every flush leaves the rest for the next turn.
        for _ in 0..4 {
            while let Some(e) = self.backlog.front() {
                // SAFETY: forwarded from the caller.
                if unsafe { self.sq.push(e) }.is_err() {
                    break;
                }
                self.backlog.pop_front();
            }
            if self.backlog.is_empty() {
                return;
            }
            self.flush();
        }
    }

    /// Hands every queued entry to the kernel now. Sends on UDP complete inline: their
    /// completions are in the CQ when this returns.
    fn flush(&mut self) {
        self.sq.sync();
        let _ = self.sub.submit();
        self.sq.sync();
    }
}

impl<C: Core> Worker<C> {
    fn new<F: Fn(WorkerContext) -> C>(
        ring: IoUring,
        mode: ring::RingMode,
        setup: Setup,
        make_core: &F,
    ) -> Result<Worker<C>, DriverError> {
        let cfg = setup.cfg.clone();
        let sub = ring.submitter();
        let sip_ring = BufRing::new(
            &sub,
            SIP_BGID,
            cfg.sip_buffers,
            cfg.sip_buffer_size + super::bufring::PAYLOAD_OFFSET + SIP_CONTROL_LEN,
        )
        .map_err(|e| DriverError::io("registering the SIP buffer ring", e))?;
        let media_ring = BufRing::new(
            &sub,
            MEDIA_BGID,
            cfg.media_buffers,
            cfg.media_buffer_size + super::bufring::PAYLOAD_OFFSET,
        )
        .map_err(|e| DriverError::io("registering the media buffer ring", e))?;
        let nslots = setup.sockets.len() + setup.max_media;
        let nslots32 =
            u32::try_from(nslots).map_err(|_| DriverError::Config("too many sockets".into()))?;
        sub.register_files_sparse(nslots32)
            .map_err(|e| DriverError::io(format!("registering {nslots} fixed files"), e))?;

        // SAFETY: msghdr is plain data; only the name and control lengths matter to a
        // multishot RecvMsg, the kernel writes the rest into the provided buffer.
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_namelen = NAME_LEN as libc::socklen_t;
        // SIP datagrams also carry their kernel receive time (room for SCM_TIMESTAMPNS).
        let mut sip_msghdr = msghdr.clone();
        sip_msghdr.msg_controllen = SIP_CONTROL_LEN;

        let mut sockets = Vec::with_capacity(nslots);
        let mut sip_slots = Vec::new();
        for (i, (s, addr)) in setup.sockets.into_iter().enumerate() {
            sub.register_files_update(i as u32, &[s.as_raw_fd()])
                .map_err(|e| DriverError::io("registering a SIP socket", e))?;
            sip_slots.push(i as u32);
            sockets.push(SockSlot {
                sock: Some(s),
                kind: SlotKind::Sip(addr),
                gen: 0,
                armed: false,
                closing: false,
            });
        }
        let own_slot = sip_slots.last().copied().unwrap_or(0);
        let first_media = sockets.len();
        for _ in first_media..nslots {
            sockets.push(SockSlot {
                sock: None,
                kind: SlotKind::Media(0),
                gen: 0,
                armed: false,
                closing: false,
            });
        }
        let nsends = usize::from(cfg.media_buffers) + cfg.tx_buffers;
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let sends: Box<[SendSlot]> = (0..nsends)
            .map(|_| SendSlot {
                buf: BufRef::Tx(0),
                dst: SockAddr::from(unspecified),
                dst_std: unspecified,
            })
            .collect();
        let binder = MediaBinder::new(cfg.media_address, cfg.media_recv_buffer, setup.max_media);
        let stats = setup.stats.clone();
        let core = make_core(WorkerContext {
            index: setup.index,
            workers: setup.workers,
            local_sip: setup.own,
            binder: binder.clone(),
        });
        let state = State {
            index: setup.index,
            workers: setup.workers,
            core,
            binder,
            shared: setup.shared,
            stats,
            no_iowait: mode.no_iowait,
            min_wait: mode.min_wait,
            sip_ring,
            media_ring,
            recv_headers: RecvHeaders {
                sip: sip_msghdr,
                media: msghdr,
            },
            sockets,
            free_slots: (first_media as u32..nslots32).collect(),
            sip_slots,
            own_slot,
            port_slot: vec![NO_SLOT; 65536].into_boxed_slice(),
            sends,
            free_sends: (0..nsends as u32).rev().collect(),
            tx_bufs: (0..cfg.tx_buffers)
                .map(|_| vec![0u8; cfg.sip_buffer_size].into_boxed_slice())
                .collect(),
            free_tx: (0..cfg.tx_buffers as u32).rev().collect(),
            rearm: VecDeque::with_capacity(nslots),
            cqes: Vec::with_capacity(cfg.cq_entries as usize * 2),
            eventfd_buf: Box::new(0),
            wake_needed: vec![false; setup.workers],
            saw_sip: false,
            wall_ns: 0,
            turn_media: 0,
            media_rate: 0.0,
            last_turn: Instant::now(),
            started: Instant::now(),
            draining: None,
            pending_closes: Vec::with_capacity(nslots),
            cfg,
        };
        Ok(Worker { ring, st: state })
    }

    fn run(&mut self) -> Result<(), DriverError> {
        let Worker { ring, st } = self;
        let ring_fd = ring.as_raw_fd();
        let (mut sub, sq, mut cq) = ring.split();
        // Saves the fd lookup on every enter; harmless when refused.
        let _ = sub.register_ring_fd();
        let mut io = Io {
            sub,
            sq,
            backlog: VecDeque::new(),
        };
        if let Some(w) = st.shared.wakes.get(st.index) {
            w.ring_fd.store(ring_fd, Ordering::SeqCst);
        }
        for slot in st.sip_slots.clone() {
            st.arm(&mut io, slot);
        }
        st.arm_eventfd(&mut io);
        // Pairs the core bound while it was being made.
        st.apply_binder(&mut io);
        let result = st.run_loop(&mut io, &mut cq);
        if let Some(w) = st.shared.wakes.get(st.index) {
            w.ring_fd.store(-1, Ordering::SeqCst);
        }
        // Nothing may still write into our buffers once they are freed.
        io.sq.sync();
        let _ = io.sub.submit();
        let _ = io
            .sub
            .register_sync_cancel(Some(Timespec::new().sec(1)), CancelBuilder::any());
        st.sip_ring.unregister(&io.sub);
        st.media_ring.unregister(&io.sub);
        // The ring's own teardown after close runs asynchronously and would keep the
        // registered sockets (and so their ports) bound for a while after the process exits:
        // a restart would find its ports in use. Unregistering drops those references now.
        let _ = io.sub.unregister_files();
        result
    }
}

impl<C: Core> State<C> {
    fn stats(&self) -> &WorkerStats {
        &self.stats[self.index]
    }

    fn arm(&mut self, io: &mut Io<'_>, slot: u32) {
        let Some(s) = self.sockets.get_mut(slot as usize) else {
            return;
        };
        if s.armed || s.closing || s.sock.is_none() {
            return;
        }
        let bgid = match s.kind {
            SlotKind::Sip(_) => self.sip_ring.bgid(),
            SlotKind::Media(_) => self.media_ring.bgid(),
        };
        s.armed = true;
        let e = opcode::RecvMsgMulti::new(Fixed(slot), self.recv_headers.of(s.kind), bgid)
            .build()
            .user_data(token(K_RECV, s.gen, slot));
        // SAFETY: both msghdrs are boxed in State (recv_headers) and outlive the ring.
        unsafe { io.push(&e) };
    }

    fn arm_eventfd(&mut self, io: &mut Io<'_>) {
        let Some(w) = self.shared.wakes.get(self.index) else {
            return;
        };
        let e = opcode::Read::new(
            Fd(w.eventfd.as_raw_fd()),
            (&mut *self.eventfd_buf as *mut u64).cast(),
            8,
        )
        .build()
        .user_data(token(K_EVENTFD, 0, 0));
        // SAFETY: the 8-byte target is boxed in State and outlives the ring.
        unsafe { io.push(&e) };
    }

    fn run_loop(
        &mut self,
        io: &mut Io<'_>,
        cq: &mut io_uring::CompletionQueue<'_>,
    ) -> Result<(), DriverError> {
        loop {
            self.wait(io)?;
            let now = Instant::now();
            self.wall_ns = wall_clock_ns();
            self.stats().turns.fetch_add(1, Ordering::Relaxed);
            self.saw_sip = false;
            self.turn_media = 0;
            self.reap(io, cq, now);
            // A datagram handed to its owner leaves now, not after this turn's own work:
            // the owner's wake-up is already the longer part of its setup time.
            if self.wake_owners(io) {
                io.flush();
            }
            self.update_media_rate(now);
            self.drain_handoff(now);
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
            self.apply_binder(io);
            self.transmit(io);
            // Submit this turn's sends now and reap their (inline) completions, so their
            // buffers go back to the ring before the receives are re-armed and before the
            // wait: a buffer is out for one turn, not two.
            if !io.sq.is_empty() || !io.backlog.is_empty() {
                io.flush();
                // SAFETY: the backlog holds entries pushed under Io::push's contract.
                unsafe { io.drain_backlog() };
                self.reap(io, cq, now);
            }
            self.finish_turn(io);
            let st = &self.stats[self.index];
            st.media_buffers_out
                .store(self.media_ring.held() as u64, Ordering::Relaxed);
            st.sip_buffers_out
                .store(self.sip_ring.held() as u64, Ordering::Relaxed);
            st.cq_overflows
                .store(u64::from(cq.overflow()), Ordering::Relaxed);
            match self.shared.state.load(Ordering::SeqCst) {
                STOP => return Ok(()),
                DRAIN if self.draining.is_none() => {
                    self.core.start_drain(now);
                    self.draining = Some(now + self.cfg.drain_grace);
                    self.transmit(io);
                }
                _ => {}
            }
            if let Some(deadline) = self.draining {
                let sends_idle = self.free_tx.len() == self.tx_bufs.len();
                if (self.core.is_idle() && sends_idle) || now >= deadline {
                    return Ok(());
                }
            }
        }
    }

    /// Folds this turn's media count into the arrival-rate estimate (EWMA over turns, weighted
    /// by the turn's length so that short busy turns and long idle ones both count right).
    fn update_media_rate(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last_turn).as_secs_f64();
        self.last_turn = now;
        if dt <= 0.0 {
            return;
        }
        let instant = f64::from(self.turn_media) / dt;
        // Time constant ~10 ms: follows a load change within a few tens of milliseconds.
        let alpha = (dt / 0.010).min(1.0);
        self.media_rate += alpha * (instant - self.media_rate);
    }

    /// How long the next wait may hold a ready completion. Batching pays only when several
    /// media datagrams are expected within the media window; otherwise (idle media, a lone
    /// SIP request, a turn that carried SIP) the short signaling window keeps setup latency
    /// low.
    fn batch_window(&self) -> Duration {
        let media = self.cfg.media_min_wait;
        let expected = self.media_rate * media.as_secs_f64();
        if self.saw_sip || expected < MEDIA_BATCH_WORTH {
            self.cfg.sip_min_wait.min(media)
        } else {
            media
        }
    }

    /// Handles every completion in the CQ.
    fn reap(&mut self, io: &mut Io<'_>, cq: &mut io_uring::CompletionQueue<'_>, now: Instant) {
        cq.sync();
        self.cqes.clear();
        for c in &mut *cq {
            self.cqes.push((c.user_data(), c.result(), c.flags()));
        }
        cq.sync();
        for i in 0..self.cqes.len() {
            let Some(&(ud, res, flags)) = self.cqes.get(i) else {
                break;
            };
            self.complete(io, now, ud, res, flags);
        }
    }

    fn wait(&mut self, io: &mut Io<'_>) -> Result<(), DriverError> {
        // SAFETY: the backlog holds entries pushed under Io::push's contract.
        unsafe { io.drain_backlog() };
        let now = Instant::now();
        let mut deadline = self.core.poll_timeout().map(|d| {
            if d > now {
                coarsen(d, self.started, TIMER_GRAIN)
            } else {
                d
            }
        });
        if let Some(d) = self.draining {
            deadline = Some(deadline.map_or(d, |t| t.min(d)));
        }
        io.sq.sync();
        let flags = if self.no_iowait {
            io_uring::EnterFlags::NO_IOWAIT
        } else {
            io_uring::EnterFlags::empty()
        };
        let r = match deadline {
            Some(d) if d <= now => io.sub.submit(),
            _ => {
                // The overall timeout is the core's next timer. Without one, a long idle cap
                // stands in: with no overall timeout the kernel treats the min-wait as a plain
                // timeout and an idle loop would wake every min-wait.
                let left = deadline.map_or(IDLE_WAIT, |d| (d - now).min(IDLE_WAIT));
                let ts = Timespec::new()
                    .sec(left.as_secs())
                    .nsec(left.subsec_nanos());
                let mut args = SubmitArgs::new().timespec(&ts);
                let window = self.batch_window();
                // Batch wake-ups: ask for `wait_batch` completions, but return once the
                // min-wait has passed and one is ready, or at the first completion after it
                // (kernel semantics of IORING_ENTER_EXT_ARG min_wait_usec when the overall
                // timeout is longer). So a ready completion waits at most the min-wait.
                let want = if self.min_wait && !window.is_zero() && window < left {
                    args =
                        args.min_wait_usec(u32::try_from(window.as_micros()).unwrap_or(u32::MAX));
                    self.cfg.wait_batch.max(1) as usize
                } else {
                    1
                };
                io.sub.submit_with_args_and_flags(want, &args, flags)
            }
        };
        io.sq.sync();
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(DriverError::io("io_uring_enter", e)),
        }
    }

    fn complete(&mut self, io: &mut Io<'_>, now: Instant, ud: u64, res: i32, flags: u32) {
        let (kind, gen, idx) = untoken(ud);
        match kind {
            K_RECV => self.complete_recv(io, now, gen, idx, res, flags),
            K_SEND => self.complete_send(now, idx, res),
            K_EVENTFD => self.arm_eventfd(io),
            // The wake-up could not be posted: fall back to the eventfd.
            K_MSG_RING if res < 0 => {
                if let Some(w) = self.shared.wakes.get(idx as usize) {
                    w.kick();
                }
            }
            // K_WAKE: handoff queues are drained every turn; K_IGNORE: cancels.
            _ => {}
        }
    }

    fn complete_recv(
        &mut self,
        io: &mut Io<'_>,
        now: Instant,
        gen: u32,
        slot: u32,
        res: i32,
        flags: u32,
    ) {
        let Some(s) = self.sockets.get_mut(slot as usize) else {
            return;
        };
        let bid = cqueue::buffer_select(flags);
        let stale = s.gen & 0xff_ffff != gen || s.sock.is_none();
        let kind = s.kind;
        if !stale && !cqueue::more(flags) {
            s.armed = false;
            if s.closing {
                self.pending_closes.push(slot);
            } else {
                if res == -libc::ENOBUFS {
                    self.stats().enobufs_rearms.fetch_add(1, Ordering::Relaxed);
                }
                self.rearm.push_back(slot);
            }
        }
        let closing = stale || self.sockets.get(slot as usize).is_none_or(|s| s.closing);
        let Some(bid) = bid else { return };
        let ring = match kind {
            SlotKind::Sip(_) => &mut self.sip_ring,
            SlotKind::Media(_) => &mut self.media_ring,
        };
        if !ring.claim(bid) {
            // A bid we already hold (or out of range): handing it out twice would corrupt
            // the ring; count it and leave the buffer with its first user.
            self.stats[self.index]
                .buffer_errors
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if res <= 0 || closing {
            ring.recycle(bid);
            return;
        }
        let Some(buf) = ring.buf(bid) else { return };
        let len = (res as usize).min(buf.len());
        let base = buf.as_ptr() as usize;
        let parsed = buf
            .get(..len)
            .and_then(|b| RecvMsgOut::parse(b, self.recv_headers.of(kind)).ok());
        let Some(out) = parsed else {
            ring.recycle(bid);
            return;
        };
        if out.is_payload_truncated() || out.is_name_data_truncated() {
            self.stats[self.index]
                .truncated
                .fetch_add(1, Ordering::Relaxed);
            ring.recycle(bid);
            return;
        }
        let Some(src) = socket::parse_sockaddr(out.name_data()) else {
            ring.recycle(bid);
            return;
        };
        let payload = out.payload_data();
        match kind {
            SlotKind::Sip(local) => {
                self.saw_sip = true;
                let st = &self.stats[self.index];
                st.sip_received.fetch_add(1, Ordering::Relaxed);
                let received = socket::receive_time_ns(out.control_data());
                let owner = call_id_owner(payload, self.workers).unwrap_or(self.index);
                if owner == self.index {
                    deliver_sip(
                        &mut self.core,
                        now,
                        self.wall_ns,
                        received,
                        src,
                        local,
                        payload,
                    );
                } else if let Some(q) = self.shared.handoff.queue(self.index, owner) {
                    if q.push(src, local, received.unwrap_or(0), payload) {
                        st.handoff_out.fetch_add(1, Ordering::Relaxed);
                        if let Some(w) = self.wake_needed.get_mut(owner) {
                            *w = true;
                        }
                    } else {
                        st.handoff_full.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.sip_ring.recycle(bid);
            }
            SlotKind::Media(port) => {
                self.turn_media += 1;
                let st = &self.stats[self.index];
                st.media_received.fetch_add(1, Ordering::Relaxed);
                let offset = payload.as_ptr() as usize - base;
                let plen = payload.len();
                let fwd = self.core.handle_media(now, port, src, payload);
                let Forward::To { out_port, dst } = fwd else {
                    st.media_dropped.fetch_add(1, Ordering::Relaxed);
                    self.media_ring.recycle(bid);
                    return;
                };
                let out_slot = self
                    .port_slot
                    .get(usize::from(out_port))
                    .copied()
                    .unwrap_or(NO_SLOT);
                let usable = self
                    .sockets
                    .get(out_slot as usize)
                    .is_some_and(|s| !s.closing && s.sock.is_some());
                let si = if usable { self.free_sends.pop() } else { None };
                let Some(si) = si else {
                    st.media_dropped.fetch_add(1, Ordering::Relaxed);
                    self.media_ring.recycle(bid);
                    return;
                };
                let Some(send) = self.sends.get_mut(si as usize) else {
                    self.media_ring.recycle(bid);
                    return;
                };
                send.buf = BufRef::Media(bid);
                send.dst = SockAddr::from(dst);
                send.dst_std = dst;
                // SAFETY: offset + plen lies inside buffer `bid` (RecvMsgOut bounds it).
                let ptr = unsafe { self.media_ring.ptr(bid).add(offset) };
                let e = opcode::Send::new(Fixed(out_slot), ptr, plen as u32)
                    .dest_addr(send.dst.as_ptr())
                    .dest_addr_len(send.dst.len())
                    .build()
                    .user_data(token(K_SEND, 0, si));
                // SAFETY: the buffer stays ours until this send completes (recycled in
                // complete_send), and the address lives in the send slot until then.
                unsafe { io.push(&e) };
            }
        }
    }

    fn complete_send(&mut self, now: Instant, si: u32, res: i32) {
        let Some(send) = self.sends.get(si as usize) else {
            return;
        };
        let st = &self.stats[self.index];
        match send.buf {
            BufRef::Media(bid) => {
                if !self.media_ring.recycle(bid) {
                    st.buffer_errors.fetch_add(1, Ordering::Relaxed);
                }
                let c = if res < 0 {
                    &st.media_send_errors
                } else {
                    &st.media_forwarded
                };
                c.fetch_add(1, Ordering::Relaxed);
            }
            BufRef::Tx(ti) => {
                self.free_tx.push(ti);
                if res < 0 {
                    st.sip_send_errors.fetch_add(1, Ordering::Relaxed);
                    let kind = io::Error::from_raw_os_error(-res).kind();
                    let dst = send.dst_std;
                    self.core.handle_send_error(now, dst, kind);
                } else {
                    st.sip_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.free_sends.push(si);
    }

    fn drain_handoff(&mut self, now: Instant) {
        if self.workers <= 1 {
            return;
        }
        if let Some(w) = self.shared.wakes.get(self.index) {
            w.pending.store(false, Ordering::SeqCst);
        }
        // Pairs with the producer's fence: a datagram pushed before it saw `pending` set is
        // visible here.
        fence(Ordering::SeqCst);
        for from in 0..self.workers {
            if from == self.index {
                continue;
            }
            let Some(q) = self.shared.handoff.queue(from, self.index) else {
                continue;
            };
            // Bounded: a busy producer cannot starve the rest of the turn.
            for _ in 0..self.cfg.handoff_slots {
                let core = &mut self.core;
                let wall_ns = self.wall_ns;
                let got = q.pop_with(|s| {
                    if let Some(bytes) = s.data.get(..s.len) {
                        let received = (s.received_ns != 0).then_some(s.received_ns);
                        deliver_sip(core, now, wall_ns, received, s.src, s.local, bytes);
                    }
                });
                if !got {
                    break;
                }
                self.saw_sip = true;
                self.stats[self.index]
                    .handoff_in
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn apply_binder(&mut self, io: &mut Io<'_>) {
        while let Some(action) = self.binder.next_action() {
            match action {
                BinderAction::Bound {
                    rtp_port,
                    rtp,
                    rtcp,
                } => {
                    for (port, sock) in [(rtp_port, rtp), (rtp_port.wrapping_add(1), rtcp)] {
                        let Some(slot) = self.free_slots.pop_front() else {
                            continue;
                        };
                        if io
                            .sub
                            .register_files_update(slot, &[sock.as_raw_fd()])
                            .is_err()
                        {
                            self.free_slots.push_back(slot);
                            continue;
                        }
                        if let Some(s) = self.sockets.get_mut(slot as usize) {
                            s.sock = Some(sock);
                            s.kind = SlotKind::Media(port);
                            s.closing = false;
                            s.armed = false;
                        }
                        if let Some(p) = self.port_slot.get_mut(usize::from(port)) {
                            *p = slot;
                        }
                        self.stats().media_sockets.fetch_add(1, Ordering::Relaxed);
                        self.arm(io, slot);
                    }
                }
                BinderAction::Released { rtp_port } => {
                    for port in [rtp_port, rtp_port.wrapping_add(1)] {
                        let Some(p) = self.port_slot.get_mut(usize::from(port)) else {
                            continue;
                        };
                        let slot = std::mem::replace(p, NO_SLOT);
                        let Some(s) = self.sockets.get_mut(slot as usize) else {
                            continue;
                        };
                        s.closing = true;
                        if s.armed {
                            let e = opcode::AsyncCancel::new(token(K_RECV, s.gen, slot))
                                .build()
                                .user_data(token(K_IGNORE, 0, 0));
                            // SAFETY: no pointers.
                            unsafe { io.push(&e) };
                        } else {
                            self.pending_closes.push(slot);
                        }
                    }
                }
            }
        }
    }

    fn transmit(&mut self, io: &mut Io<'_>) {
        while let Some(&ti) = self.free_tx.last() {
            let Some(buf) = self.tx_bufs.get_mut(ti as usize) else {
                break;
            };
            let Some(t) = self.core.poll_transmit(buf) else {
                break;
            };
            self.free_tx.pop();
            let len = t.len.min(buf.len());
            let ptr = buf.as_ptr();
            let slot = t
                .local
                .and_then(|l| {
                    self.sip_slots.iter().copied().find(|&s| {
                        self.sockets
                            .get(s as usize)
                            .is_some_and(|x| x.kind == SlotKind::Sip(l))
                    })
                })
                .unwrap_or(self.own_slot);
            let Some(si) = self.free_sends.pop() else {
                self.free_tx.push(ti);
                break;
            };
            let Some(send) = self.sends.get_mut(si as usize) else {
                break;
            };
            send.buf = BufRef::Tx(ti);
            send.dst = SockAddr::from(t.dst);
            send.dst_std = t.dst;
            let e = opcode::Send::new(Fixed(slot), ptr, len as u32)
                .dest_addr(send.dst.as_ptr())
                .dest_addr_len(send.dst.len())
                .build()
                .user_data(token(K_SEND, 0, si));
            // SAFETY: the tx buffer and the address stay untouched until the send completes
            // (the buffer returns to free_tx in complete_send).
            unsafe { io.push(&e) };
        }
    }

    fn finish_turn(&mut self, io: &mut Io<'_>) {
        // Sockets whose receive ended: close them now that nothing of theirs is in flight.
        if !self.pending_closes.is_empty() {
            // Flush sends still queued from this turn before their file slot changes.
            io.sq.sync();
            let _ = io.sub.submit();
            while let Some(slot) = self.pending_closes.pop() {
                let _ = io.sub.register_files_update(slot, &[-1]);
                if let Some(s) = self.sockets.get_mut(slot as usize) {
                    if s.sock.take().is_some() {
                        self.stats[self.index]
                            .media_sockets
                            .fetch_sub(1, Ordering::Relaxed);
                    }
                    s.gen = s.gen.wrapping_add(1) & 0xff_ffff;
                    s.closing = false;
                    s.armed = false;
                    self.free_slots.push_back(slot);
                }
            }
        }
        // Re-arm receives ended by an empty ring once buffers are back, oldest first, no more
        // per ring than it has free buffers: a socket with a backlog takes at least one at
        // once, and re-arming every starved socket into an empty ring only buys another
        // ENOBUFS each (the storm that follows a stall).
        self.sip_ring.publish();
        self.media_ring.publish();
        let mut sip_budget = self.sip_ring.available();
        let mut media_budget = self.media_ring.available();
        for _ in 0..self.rearm.len() {
            let Some(slot) = self.rearm.pop_front() else {
                break;
            };
            let budget = match self.sockets.get(slot as usize).map(|s| s.kind) {
                Some(SlotKind::Sip(_)) => &mut sip_budget,
                Some(SlotKind::Media(_)) => &mut media_budget,
                None => continue,
            };
            if *budget > 0 {
                *budget -= 1;
                self.arm(io, slot);
            } else {
                self.rearm.push_back(slot);
            }
        }
        self.wake_owners(io);
    }

    /// Wakes the owners this turn handed datagrams to (IORING_OP_MSG_RING, or their eventfd).
    /// Returns whether a wake-up was queued on this ring.
    fn wake_owners(&mut self, io: &mut Io<'_>) -> bool {
        let mut any = false;
        let mut queued = false;
        for to in 0..self.workers {
            if !self.wake_needed.get(to).copied().unwrap_or(false) {
                continue;
            }
            if let Some(w) = self.wake_needed.get_mut(to) {
                *w = false;
            }
            if !any {
                fence(Ordering::SeqCst);
                any = true;
            }
            let Some(target) = self.shared.wakes.get(to) else {
                continue;
            };
            if target.pending.swap(true, Ordering::SeqCst) {
                continue;
            }
            let fd = target.ring_fd.load(Ordering::SeqCst);
            if self.shared.msg_ring && fd >= 0 {
                let e = opcode::MsgRingData::new(Fd(fd), 0, token(K_WAKE, 0, 0), None)
                    .build()
                    .flags(squeue::Flags::SKIP_SUCCESS)
                    .user_data(token(K_MSG_RING, 0, to as u32));
                // SAFETY: no pointers; the target ring fd stays open while its worker runs,
                // and a closed one fails the request (then the eventfd is used).
                unsafe { io.push(&e) };
                queued = true;
            } else {
                target.kick();
            }
        }
        queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarsened_deadlines_share_a_grain_and_are_never_early() {
        let origin = Instant::now();
        let ms = Duration::from_millis(1);
        let at = |us: u64| origin + Duration::from_micros(us);
        // Everything due within (1 ms, 2 ms] wakes at 2 ms.
        for us in [1001, 1500, 1999, 2000] {
            assert_eq!(coarsen(at(us), origin, ms), at(2000), "{us} us");
        }
        assert_eq!(coarsen(at(2001), origin, ms), at(3000));
        assert_eq!(coarsen(origin, origin, ms), origin);
        // A deadline before the origin is left alone rather than moved early.
        assert!(coarsen(origin, at(500), ms) >= origin);
    }
}
