//! A call's media state and its handle.

use super::stream::Stream;
use smallvec::SmallVec;
use std::time::Instant;

/// Handle of a media session: slot index and a generation, so a stale handle never reaches the
/// call that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(u32);

const INDEX_BITS: u32 = 20;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// Sessions one core can hold (its ports run out long before).
pub(crate) const MAX_SESSIONS: usize = 1 << INDEX_BITS;

impl SessionId {
    pub(crate) fn new(index: usize, generation: u16) -> SessionId {
        SessionId((u32::from(generation & 0xfff) << INDEX_BITS) | (index as u32 & INDEX_MASK))
    }

    pub(crate) fn index(self) -> usize {
        (self.0 & INDEX_MASK) as usize
    }

    pub(crate) fn generation(self) -> u16 {
        (self.0 >> INDEX_BITS) as u16
    }

    /// The raw value (for logs and call records).
    pub fn as_u32(self) -> u32 {
        self.0
    }
}

/// One call's media. Streams live inline for the common one- or two-stream call.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) started: Instant,
    /// Last accepted RTP or RTCP from either leg on any stream.
    pub(crate) last_activity: Instant,
    pub(crate) inactivity_teardown: bool,
    /// The timeout event was emitted; it is emitted once.
    pub(crate) timed_out: bool,
    pub(crate) streams: SmallVec<[Stream; 1]>,
}

/// A slab slot: its generation outlives the session in it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slot {
    pub(crate) generation: u16,
    /// The slot has an entry in the timer heap (at most one, whatever the generation).
    pub(crate) armed: bool,
    pub(crate) session: Option<Session>,
}
