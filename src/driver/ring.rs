//! Ring construction with the flags this kernel accepts, best first.

use io_uring::IoUring;
use std::io;

/// What the worker's ring ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingMode {
    pub defer_taskrun: bool,
    pub no_iowait: bool,
    pub min_wait: bool,
}

/// One ring for the calling thread: SINGLE_ISSUER | DEFER_TASKRUN (completions run only when
/// this thread enters the kernel: no interrupts of the loop), falling back to COOP_TASKRUN, then
/// to no flags, on kernels that refuse them.
pub(crate) fn build(sq: u32, cq: u32) -> io::Result<(IoUring, RingMode)> {
    let attempts: [fn(&mut io_uring::Builder); 3] = [
        |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_submit_all();
        },
        |b| {
            b.setup_coop_taskrun().setup_submit_all();
        },
        |_| {},
    ];
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for (i, set) in attempts.iter().enumerate() {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq).setup_clamp();
        set(&mut b);
        match b.build(sq) {
            Ok(ring) => {
                let p = ring.params();
                let mode = RingMode {
                    defer_taskrun: i == 0,
                    no_iowait: p.is_feature_no_iowait(),
                    min_wait: p.is_feature_min_timeout(),
                };
                return Ok((ring, mode));
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}
