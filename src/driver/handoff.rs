//! Cross-worker handoff of SIP datagrams: one single-producer single-consumer queue of
//! preallocated slots per (from, to) pair, so neither side ever takes a lock or allocates.

use std::cell::UnsafeCell;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

/// One handed-off datagram.
pub(crate) struct Slot {
    pub src: SocketAddr,
    pub local: SocketAddr,
    /// Kernel receive time (CLOCK_REALTIME ns), 0 when unknown.
    pub received_ns: u64,
    pub len: usize,
    pub data: Box<[u8]>,
}

#[repr(align(64))]
struct Padded(AtomicUsize);

/// Bounded SPSC ring. `head` is advanced by the consumer only, `tail` by the producer only.
pub(crate) struct Spsc {
    slots: Box<[UnsafeCell<Slot>]>,
    head: Padded,
    tail: Padded,
}

// SAFETY: a slot is written only by the single producer while it is outside [head, tail), and
// read only by the single consumer while inside; the release/acquire pairs on head and tail
// order those accesses. The worker code keeps to one producer and one consumer per queue.
unsafe impl Sync for Spsc {}
// SAFETY: as above; the slots own plain data.
unsafe impl Send for Spsc {}

impl Spsc {
    pub fn new(slots: usize, slot_size: usize) -> Spsc {
        let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        Spsc {
            slots: (0..slots.max(1))
                .map(|_| {
                    UnsafeCell::new(Slot {
                        src: unspecified,
                        local: unspecified,
                        received_ns: 0,
                        len: 0,
                        data: vec![0; slot_size].into_boxed_slice(),
                    })
                })
                .collect(),
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        }
    }

    /// Producer side: copies the datagram into the next free slot. False when full or when
    /// the datagram does not fit a slot.
    pub fn push(&self, src: SocketAddr, local: SocketAddr, received_ns: u64, bytes: &[u8]) -> bool {
        let tail = self.tail.0.load(Ordering::Relaxed);
        let head = self.head.0.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= self.slots.len() {
            return false;
        }
        let Some(cell) = self.slots.get(tail % self.slots.len()) else {
            return false;
        };
        // SAFETY: the slot at `tail` is outside [head, tail): the consumer does not read it
        // until the release store of tail below, and only this producer writes it.
        let slot = unsafe { &mut *cell.get() };
        let Some(dst) = slot.data.get_mut(..bytes.len()) else {
            return false;
        };
        dst.copy_from_slice(bytes);
        slot.len = bytes.len();
        slot.src = src;
        slot.local = local;
        slot.received_ns = received_ns;
        self.tail.0.store(tail.wrapping_add(1), Ordering::Release);
        true
    }

    /// Consumer side: hands the oldest datagram to `f` and frees its slot.
    pub fn pop_with(&self, f: impl FnOnce(&Slot)) -> bool {
        let head = self.head.0.load(Ordering::Relaxed);
        let tail = self.tail.0.load(Ordering::Acquire);
        if head == tail {
            return false;
        }
        let Some(cell) = self.slots.get(head % self.slots.len()) else {
            return false;
        };
        // SAFETY: the slot at `head` is inside [head, tail): the producer finished writing it
        // (acquire on tail) and does not touch it until the release store of head below.
        f(unsafe { &*cell.get() });
        self.head.0.store(head.wrapping_add(1), Ordering::Release);
        true
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.head.0.load(Ordering::Relaxed) == self.tail.0.load(Ordering::Acquire)
    }
}

/// How a worker is woken by the others.
pub(crate) struct WakeTarget {
    /// The worker's ring fd for IORING_OP_MSG_RING (-1 until its ring exists).
    pub ring_fd: AtomicI32,
    /// Read by a request armed in the worker's ring: stop/drain requests, and wake-ups where
    /// MSG_RING is missing.
    pub eventfd: OwnedFd,
    /// A wake-up is on its way and not yet seen: saves redundant ones.
    pub pending: AtomicBool,
}

impl WakeTarget {
    pub fn new() -> std::io::Result<WakeTarget> {
        // SAFETY: eventfd returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let eventfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(WakeTarget {
            ring_fd: AtomicI32::new(-1),
            eventfd,
            pending: AtomicBool::new(false),
        })
    }

    /// Wakes the worker through its eventfd (from any thread).
    pub fn kick(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local to an eventfd we own; failure (counter full)
        // still leaves the eventfd readable, which is all a wake-up needs.
        unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

/// The queues between every pair of workers: `queue(from, to)`.
pub(crate) struct Handoff {
    workers: usize,
    queues: Box<[Spsc]>,
}

impl Handoff {
    pub fn new(workers: usize, slots: usize, slot_size: usize) -> Handoff {
        let n = workers * workers;
        Handoff {
            workers,
            // Diagonal queues stay empty; one slot each keeps indexing trivial.
            queues: (0..n)
                .map(|i| {
                    let (from, to) = (i / workers, i % workers);
                    Spsc::new(
                        if from == to { 1 } else { slots },
                        if from == to { 0 } else { slot_size },
                    )
                })
                .collect(),
        }
    }

    pub fn queue(&self, from: usize, to: usize) -> Option<&Spsc> {
        if from >= self.workers || to >= self.workers {
            return None;
        }
        self.queues.get(from * self.workers + to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn fifo_bounded_and_size_checked() {
        let q = Spsc::new(2, 8);
        assert!(q.is_empty());
        assert!(q.push(a(1), a(2), 7, b"one"));
        assert!(q.push(a(3), a(4), 0, b"two"));
        assert!(!q.push(a(5), a(6), 0, b"full"));
        let mut seen = Vec::new();
        while q.pop_with(|s| seen.push((s.src, s.local, s.received_ns, s.data[..s.len].to_vec()))) {
        }
        assert_eq!(
            seen,
            vec![
                (a(1), a(2), 7, b"one".to_vec()),
                (a(3), a(4), 0, b"two".to_vec())
            ]
        );
        assert!(!q.push(a(1), a(1), 0, b"too long!"));
        assert!(q.is_empty());
    }

    #[test]
    fn threads_see_every_datagram_once_in_order() {
        let q = std::sync::Arc::new(Spsc::new(16, 8));
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut i = 0u32;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while i < 20_000 && std::time::Instant::now() < deadline {
                    if q.push(a(1), a(2), 0, &i.to_le_bytes()) {
                        i += 1;
                    } else {
                        // Full: let the consumer run (the test box may have fewer free cores
                        // than spinning threads).
                        std::thread::yield_now();
                    }
                }
                i
            })
        };
        let mut next = 0u32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while next < 20_000 && std::time::Instant::now() < deadline {
            let got = q.pop_with(|s| {
                let v = u32::from_le_bytes(s.data[..4].try_into().unwrap());
                assert_eq!(v, next);
                next += 1;
            });
            if !got {
                std::thread::yield_now();
            }
        }
        assert_eq!(producer.join().unwrap(), 20_000);
        assert_eq!(next, 20_000);
    }
}
