//! Inactivity deadlines: a min-heap with at most one entry per session slot, re-checked lazily.
//!
//! Packets only store `last_activity` in their session (O(1), no heap operation). When an
//! entry comes due, the session's real deadline (`last_activity + timeout`) is computed: past
//! -> the session timed out; future -> the entry is pushed back once. So the heap work is
//! O(log n) per session per timeout period, not per packet, and the heap never outgrows the
//! slot count (its capacity is reserved up front).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u32)>>,
}

impl Timers {
    pub(crate) fn with_capacity(n: usize) -> Timers {
        Timers {
            heap: BinaryHeap::with_capacity(n),
        }
    }

    pub(crate) fn push(&mut self, deadline: Instant, slot: u32) {
        self.heap.push(Reverse((deadline, slot)));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// The next entry due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<u32> {
        match self.heap.peek() {
            Some(Reverse((t, _))) if *t <= now => self.heap.pop().map(|Reverse((_, s))| s),
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
