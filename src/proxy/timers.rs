//! Timer queue over virtual `Instant`s: a binary heap with lazy deletion.
//!
//! Each timed entity (transaction context, call, trunk probe) keeps its own deadlines and a
//! `wake` marker: the instant of the earliest heap entry it owns. An entity is re-armed after
//! every change; a new entry is pushed only when its next deadline is earlier than the queued
//! one, and an entry that pops with an instant other than the entity's `wake` (or for a slot
//! reused since, by generation) is stale and skipped. So cancelling a timer costs nothing and
//! the heap holds O(entities + earlier-reschedules) entries.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// What a heap entry wakes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entity {
    /// A transaction context (server transaction and its client branches).
    Ctx(u32),
    /// A call (dialog-level timers: maximum duration).
    Call(u32),
    /// The OPTIONS keep-alive probe of a trunk.
    Probe(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Instant,
    seq: u64,
    entity: Entity,
    gen: u32,
}

#[derive(Debug, Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl TimerQueue {
    pub fn new() -> TimerQueue {
        TimerQueue::default()
    }

    /// Re-arms an entity whose earliest deadline is now `next`; `wake` is its marker.
    pub fn arm(
        &mut self,
        wake: &mut Option<Instant>,
        next: Option<Instant>,
        entity: Entity,
        gen: u32,
    ) {
        if let Some(n) = next {
            if wake.is_none_or(|w| n < w) {
                self.seq += 1;
                self.heap.push(Reverse(Entry {
                    at: n,
                    seq: self.seq,
                    entity,
                    gen,
                }));
                *wake = Some(n);
            }
        }
    }

    /// Earliest queued instant (possibly a stale entry: waking early is harmless).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.at)
    }

    /// Pops one entry due at `now`: `(instant, entity, generation)`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Entity, u32)> {
        if self.heap.peek().is_some_and(|e| e.0.at <= now) {
            self.heap.pop().map(|e| (e.0.at, e.0.entity, e.0.gen))
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops stale entries when they outnumber the live ones, keeping memory bounded.
    pub fn compact(&mut self, live: impl Fn(Entity, u32, Instant) -> bool) {
        let old = std::mem::take(&mut self.heap);
        self.heap = old
            .into_iter()
            .filter(|e| live(e.0.entity, e.0.gen, e.0.at))
            .collect();
    }
}

/// Checks a popped entry against the entity's marker; clears the marker when it matches.
pub fn take_wake(wake: &mut Option<Instant>, at: Instant) -> bool {
    if *wake == Some(at) {
        *wake = None;
        true
    } else {
        false
    }
}

/// The earliest of a set of optional deadlines.
pub fn earliest<I: IntoIterator<Item = Option<Instant>>>(it: I) -> Option<Instant> {
    it.into_iter().flatten().min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lazy_rearm_and_stale_entries() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        let mut wake = None;
        q.arm(
            &mut wake,
            Some(t0 + Duration::from_secs(10)),
            Entity::Ctx(1),
            0,
        );
        // A later deadline does not push.
        q.arm(
            &mut wake,
            Some(t0 + Duration::from_secs(20)),
            Entity::Ctx(1),
            0,
        );
        assert_eq!(q.len(), 1);
        // An earlier one does.
        q.arm(
            &mut wake,
            Some(t0 + Duration::from_secs(5)),
            Entity::Ctx(1),
            0,
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.next(), Some(t0 + Duration::from_secs(5)));
        assert!(q.pop_due(t0 + Duration::from_secs(4)).is_none());
        let (at, e, g) = q.pop_due(t0 + Duration::from_secs(30)).unwrap();
        assert_eq!((e, g), (Entity::Ctx(1), 0));
        assert!(take_wake(&mut wake, at));
        let (at2, _, _) = q.pop_due(t0 + Duration::from_secs(30)).unwrap();
        assert!(!take_wake(&mut wake, at2), "the superseded entry is stale");
        assert!(q.pop_due(t0 + Duration::from_secs(30)).is_none());
    }

    #[test]
    fn compact_drops_stale() {
        let t0 = Instant::now();
        let mut q = TimerQueue::new();
        for i in 0..10u32 {
            let mut w = None;
            q.arm(
                &mut w,
                Some(t0 + Duration::from_millis(u64::from(i))),
                Entity::Call(i),
                0,
            );
        }
        q.compact(|e, _, _| matches!(e, Entity::Call(i) if i % 2 == 0));
        assert_eq!(q.len(), 5);
        assert_eq!(earliest([None, Some(t0), None]), Some(t0));
    }
}
