//! The generator's timer queue: a few FIFO lanes, with a heap for what fits none.
//!
//! Almost every timer is `now + a constant` (Timer A/E at T1, the hold, the transaction
//! expiry), so the deadlines of one kind arrive already sorted. A lane takes an entry whose
//! deadline is not before its last one (first fit), which sorts each delay class into a lane of
//! its own after a few entries; push and pop are O(lanes). A binary heap of hundreds of
//! thousands of entries (10,000 calls/s with 32 s expiries) cost a tenth of the generator's CPU
//! in cache misses. An entry that fits no lane (a retransmission backoff, say) goes to a heap,
//! so the order is exact whatever the pattern.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

/// (deadline, slot, call number, kind).
pub type Entry = (Instant, u32, u64, u8);

const LANES: usize = 8;

#[derive(Default)]
pub struct Timers {
    lanes: Vec<VecDeque<Entry>>,
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    pub fn new() -> Self {
        Timers::default()
    }

    pub fn push(&mut self, e: Entry) {
        for lane in &mut self.lanes {
            if lane.back().is_none_or(|b| b.0 <= e.0) {
                lane.push_back(e);
                return;
            }
        }
        if self.lanes.len() < LANES {
            self.lanes.push(VecDeque::from([e]));
        } else {
            self.heap.push(Reverse(e));
        }
    }

    /// Where the earliest entry is: `Some(lane)`, or `None` for the heap.
    fn earliest(&self) -> Option<(Option<usize>, Entry)> {
        let mut best: Option<(Option<usize>, Entry)> = self.heap.peek().map(|r| (None, r.0));
        for (i, lane) in self.lanes.iter().enumerate() {
            if let Some(&f) = lane.front() {
                if best.is_none_or(|(_, b)| f < b) {
                    best = Some((Some(i), f));
                }
            }
        }
        best
    }

    pub fn peek(&self) -> Option<Entry> {
        self.earliest().map(|(_, e)| e)
    }

    pub fn pop(&mut self) -> Option<Entry> {
        let (from, e) = self.earliest()?;
        match from {
            Some(i) => {
                self.lanes.get_mut(i).and_then(VecDeque::pop_front);
            }
            None => {
                self.heap.pop();
            }
        }
        Some(e)
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty() && self.lanes.iter().all(VecDeque::is_empty)
    }

    pub fn clear(&mut self) {
        self.lanes.clear();
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Same order as a plain heap, for delay classes, backoffs and out-of-order pushes
    /// interleaved with pops (more classes than lanes, so the heap is used too).
    #[test]
    fn pops_in_deadline_order_like_a_heap() {
        let t0 = Instant::now();
        let mut ours = Timers::new();
        let mut heap = BinaryHeap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut now = t0;
        for n in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now += Duration::from_micros(x % 300);
            let delay = match x % 13 {
                0 => Duration::from_micros(x % 5_000_000),
                k => Duration::from_millis(500 * k),
            };
            let e = (now + delay, (x % 1000) as u32, n, (x % 3) as u8);
            ours.push(e);
            heap.push(Reverse(e));
            if x % 3 == 0 {
                assert_eq!(ours.pop(), heap.pop().map(|r| r.0));
            }
        }
        assert!(
            !ours.heap.is_empty(),
            "the test must reach the heap fallback"
        );
        while let Some(Reverse(e)) = heap.pop() {
            assert_eq!(ours.peek(), Some(e));
            assert_eq!(ours.pop(), Some(e));
        }
        assert!(ours.is_empty());
        assert_eq!(ours.pop(), None);
    }
}
