//! A provided buffer ring: the kernel picks a buffer per received datagram, we hand it back
//! when we are done (for a forwarded packet: when its send completed).

use io_uring::types::BufRingEntry;
use io_uring::Submitter;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

/// Room in front of the payload of a multishot `RecvMsg` buffer: the `io_uring_recvmsg_out`
/// header then the source address field (sized for IPv6).
pub(crate) const RECV_HEADER: usize = 16;
pub(crate) const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();
pub(crate) const PAYLOAD_OFFSET: usize = RECV_HEADER + NAME_LEN;
/// Control data room of a SIP buffer: one `SCM_TIMESTAMPNS` message (`cmsghdr` + `timespec`).
pub(crate) const SIP_CONTROL_LEN: usize =
    std::mem::size_of::<libc::cmsghdr>() + std::mem::size_of::<libc::timespec>();

/// Anonymous page-aligned memory, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping; no file, no aliasing; checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and nothing refers to it any more (the
        // ring is unregistered, or its io_uring closed, before the BufRing is dropped).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

pub(crate) struct BufRing {
    entries: Mapping,
    bufs: Mapping,
    buf_size: usize,
    count: u16,
    mask: u16,
    /// Our copy of the tail; published to the kernel by `publish`.
    tail: u16,
    bgid: u16,
    /// Which buffers the kernel has handed us and we have not returned yet: a second return
    /// of one buffer would publish a duplicate entry and overwrite one the kernel has not
    /// consumed yet, losing that buffer for good.
    out: Box<[bool]>,
    /// How many of `out` are set.
    held: usize,
    registered: bool,
}

impl BufRing {
    /// `count` buffers (a power of two, at most 32768) of `buf_size` bytes, all given to the
    /// kernel under group `bgid`.
    pub fn new(
        submitter: &Submitter<'_>,
        bgid: u16,
        count: u16,
        buf_size: usize,
    ) -> io::Result<Self> {
        if !count.is_power_of_two() || count > 32768 || buf_size <= PAYLOAD_OFFSET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad buffer ring size",
            ));
        }
        let entries = Mapping::new(usize::from(count) * std::mem::size_of::<BufRingEntry>())?;
        let bufs = Mapping::new(usize::from(count) * buf_size)?;
        let mut ring = BufRing {
            entries,
            bufs,
            buf_size,
            count,
            mask: count - 1,
            tail: 0,
            bgid,
            out: vec![false; usize::from(count)].into_boxed_slice(),
            held: 0,
            registered: false,
        };
        // SAFETY: the entry array is page aligned, `count` entries long, and lives until
        // `unregister` or until the io_uring is closed (the worker drops the ring first).
        unsafe {
            submitter.register_buf_ring_with_flags(ring.entries.ptr as u64, count, bgid, 0)?;
        }
        ring.registered = true;
        for bid in 0..count {
            ring.push_entry(bid);
        }
        ring.publish();
        Ok(ring)
    }

    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// A completion handed us buffer `bid`: it is ours until `recycle`. False for a bid out of
    /// range or one we already hold (neither can come from a sane kernel; the caller drops it).
    pub fn claim(&mut self, bid: u16) -> bool {
        match self.out.get_mut(usize::from(bid)) {
            Some(o) if !*o => {
                *o = true;
                self.held += 1;
                true
            }
            _ => false,
        }
    }

    /// The bytes of a buffer we claimed.
    pub fn buf(&mut self, bid: u16) -> Option<&mut [u8]> {
        if !self.out.get(usize::from(bid)).copied().unwrap_or(false) {
            return None;
        }
        // SAFETY: bid < count, so the range is inside the mapping; the kernel wrote it before
        // posting the completion and does not touch it again until we recycle it.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                self.bufs.ptr.add(usize::from(bid) * self.buf_size),
                self.buf_size,
            )
        })
    }

    /// The bytes of a buffer we hold (for sends that borrow it).
    pub fn ptr(&self, bid: u16) -> *const u8 {
        // SAFETY: callers pass a bid they got from a completion, so bid < count.
        unsafe {
            self.bufs
                .ptr
                .add(usize::from(bid % self.count) * self.buf_size)
        }
    }

    /// Gives buffer `bid` back (visible to the kernel after `publish`). A buffer we do not hold
    /// is ignored and reported (false).
    pub fn recycle(&mut self, bid: u16) -> bool {
        match self.out.get_mut(usize::from(bid)) {
            Some(o) if *o => {
                *o = false;
                self.held -= 1;
            }
            _ => return false,
        }
        self.push_entry(bid);
        true
    }

    fn push_entry(&mut self, bid: u16) {
        let idx = usize::from(self.tail & self.mask);
        // SAFETY: idx < count, inside the entry mapping; the kernel only reads entries between
        // its head and the published tail, and this one is past the published tail (at most
        // `count` buffers are ever outside `out`, so the tail never laps the kernel's head).
        let entry = unsafe { &mut *self.entries.ptr.cast::<BufRingEntry>().add(idx) };
        entry.set_addr(self.ptr(bid) as u64);
        entry.set_len(self.buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes the recycled buffers to the kernel.
    pub fn publish(&self) {
        // SAFETY: the tail field lives inside entry 0 of our mapping, 2-byte aligned; the kernel
        // reads it with acquire semantics, we store with release.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.ptr.cast::<BufRingEntry>()).cast_mut();
            AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
        }
    }

    /// Buffers currently with the kernel (free for receives), once published.
    pub fn available(&self) -> usize {
        usize::from(self.count) - self.held
    }

    /// Buffers we hold (taken by a receive, not yet recycled).
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn unregister(&mut self, submitter: &Submitter<'_>) {
        if self.registered {
            let _ = submitter.unregister_buf_ring(self.bgid);
            self.registered = false;
        }
    }
}
