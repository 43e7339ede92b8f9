//! Start-up checks: the io_uring opcodes and features the loop uses, the memlock limit, and the
//! open-file limit raised to its hard cap (the media pool is sized from what was granted).

use super::{ring, DriverError};
use io_uring::{opcode, register::Probe};

/// What start-up found. The media port pool and the call cap must fit in
/// [`Preflight::media_socket_budget`].
#[derive(Debug, Clone)]
pub struct Preflight {
    /// RLIMIT_NOFILE after raising the soft limit to the hard one.
    pub nofile: u64,
    /// RLIMIT_MEMLOCK soft limit in bytes (`None` = unlimited).
    pub memlock: Option<u64>,
    /// The process may lock memory beyond RLIMIT_MEMLOCK (root / CAP_IPC_LOCK).
    pub memlock_exempt: bool,
    /// IORING_OP_MSG_RING is there (else cross-worker wake-ups go through an eventfd).
    pub msg_ring: bool,
    /// SINGLE_ISSUER | DEFER_TASKRUN accepted.
    pub defer_taskrun: bool,
    /// Waits can batch completions with a minimum wait.
    pub min_wait: bool,
    pub no_iowait: bool,
    /// Transparent huge pages are off for this process (see [`disable_transparent_huge_pages`]).
    pub thp_disabled: bool,
}

/// Files kept aside for everything that is not a media socket: SIP sockets, rings, eventfds,
/// the admin listener and its connections, config and log files.
const RESERVED_FILES: u64 = 256;

impl Preflight {
    /// Media sockets the whole process may open (RTP + RTCP per leg, 4 per call with media).
    pub fn media_socket_budget(&self) -> usize {
        usize::try_from(self.nofile.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX)
    }

    /// Concurrent calls with media the open-file limit allows.
    pub fn max_media_calls(&self) -> usize {
        self.media_socket_budget() / 4
    }
}

/// Probes the kernel, checks `memlock_needed` bytes can be locked, raises RLIMIT_NOFILE.
/// A missing opcode or feature the loop cannot do without is an error naming it.
pub fn preflight(memlock_needed: u64) -> Result<Preflight, DriverError> {
    // The probe ring lives on a thread of its own: closing a DEFER_TASKRUN ring queues task
    // work to the thread that made it, which would interrupt that thread's blocking calls.
    std::thread::scope(|s| {
        s.spawn(|| probe_and_limits(memlock_needed))
            .join()
            .unwrap_or_else(|_| {
                Err(DriverError::Unsupported(
                    "the io_uring probe panicked".into(),
                ))
            })
    })
}

fn probe_and_limits(memlock_needed: u64) -> Result<Preflight, DriverError> {
    let (ring, mode) = ring::build(8, 16).map_err(|e| {
        DriverError::Unsupported(format!(
            "cannot create an io_uring ({e}); is io_uring disabled (sysctl kernel.io_uring_disabled) or blocked by seccomp?"
        ))
    })?;
    if !ring.params().is_feature_ext_arg() {
        return Err(DriverError::Unsupported(
            "the kernel lacks IORING_FEAT_EXT_ARG (Linux 5.11+ needed)".into(),
        ));
    }
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| {
        DriverError::Unsupported(format!("io_uring probe failed ({e}); Linux 6.0+ needed"))
    })?;
    let required = [
        (opcode::RecvMsgMulti::CODE, "RECVMSG"),
        (opcode::Send::CODE, "SEND"),
        (opcode::Read::CODE, "READ"),
        (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    ];
    let missing: Vec<&str> = required
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(DriverError::Unsupported(format!(
            "io_uring opcodes missing: {}",
            missing.join(", ")
        )));
    }
    // Provided buffer rings (5.19+) and multishot receive (6.0+) have no probe bit: try one.
    check_buf_ring(&ring)?;
    let msg_ring = probe.is_supported(opcode::MsgRingData::CODE);
    drop(ring);

    let memlock = rlimit(libc::RLIMIT_MEMLOCK)?.0;
    let memlock = (memlock != libc::RLIM_INFINITY).then_some(memlock);
    let memlock_exempt = has_cap_ipc_lock();
    check_memlock(memlock, memlock_exempt, memlock_needed)?;
    let nofile = raise_nofile()?;
    let thp_disabled = disable_transparent_huge_pages();
    Ok(Preflight {
        nofile,
        memlock,
        memlock_exempt,
        msg_ring,
        defer_taskrun: mode.defer_taskrun,
        min_wait: mode.min_wait,
        no_iowait: mode.no_iowait,
        thp_disabled,
    })
}

/// Opts the process out of transparent huge pages. The allocator asks for huge pages on its
/// arenas, so while the call state grows, the request that first touches a new 2 MiB region
/// pays for zeroing all of it inside the kernel's fault handler: measured here as a 3-6 ms
/// stall of the worker (and of every INVITE queued behind it). With 4 KiB pages the same
/// growth costs microseconds per fault, spread over many requests. The working set is a few
/// tens of MiB, so the TLB reach given up is small. Returns whether the kernel accepted it.
fn disable_transparent_huge_pages() -> bool {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and changes a flag of this
    // process's memory map; no memory is passed to the kernel.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
}

fn check_memlock(limit: Option<u64>, exempt: bool, needed: u64) -> Result<(), DriverError> {
    match limit {
        Some(limit) if !exempt && limit < needed => Err(DriverError::Unsupported(format!(
            "RLIMIT_MEMLOCK is {limit} bytes, the rings need about {needed}: raise it \
             (systemd: LimitMEMLOCK=, shell: ulimit -l) or run with CAP_IPC_LOCK"
        ))),
        _ => Ok(()),
    }
}

fn check_buf_ring(ring: &io_uring::IoUring) -> Result<(), DriverError> {
    let mut br = super::bufring::BufRing::new(&ring.submitter(), 0x7fff, 8, 64).map_err(|e| {
        DriverError::Unsupported(format!(
            "io_uring provided buffer rings unavailable ({e}); Linux 6.0+ needed"
        ))
    })?;
    br.unregister(&ring.submitter());
    Ok(())
}

fn rlimit(resource: libc::__rlimit_resource_t) -> Result<(u64, u64), DriverError> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 {
        return Err(DriverError::io(
            "getrlimit",
            std::io::Error::last_os_error(),
        ));
    }
    Ok((r.rlim_cur, r.rlim_max))
}

/// Raises the soft open-file limit to the hard one and returns what is in force.
fn raise_nofile() -> Result<u64, DriverError> {
    let (cur, max) = rlimit(libc::RLIMIT_NOFILE)?;
    if cur < max {
        let r = libc::rlimit {
            rlim_cur: max,
            rlim_max: max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            return Ok(cur);
        }
    }
    Ok(rlimit(libc::RLIMIT_NOFILE)?.0)
}

/// CAP_IPC_LOCK in the effective set (root has it), from /proc/self/status.
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflight_passes_here_and_reports_limits() {
        let p = preflight(1 << 20).expect("this machine runs io_uring");
        assert!(p.nofile >= 1024);
        assert_eq!(p.max_media_calls(), p.media_socket_budget() / 4);
        // The soft limit now equals the hard one.
        let (cur, max) = rlimit(libc::RLIMIT_NOFILE).unwrap();
        assert_eq!(cur, max);
        // Huge pages are off for the whole process, as the kernel reports it back.
        assert!(p.thp_disabled);
        // SAFETY: PR_GET_THP_DISABLE takes and returns integers only.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) },
            1
        );
    }

    #[test]
    fn memlock_below_need_is_refused_unless_exempt() {
        let err = check_memlock(Some(8 << 20), false, 9 << 20).unwrap_err();
        assert!(err.to_string().contains("RLIMIT_MEMLOCK"), "{err}");
        assert!(check_memlock(Some(8 << 20), true, 9 << 20).is_ok());
        assert!(check_memlock(None, false, u64::MAX).is_ok());
        assert!(check_memlock(Some(8 << 20), false, 8 << 20).is_ok());
    }
}
