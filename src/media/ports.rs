//! The per-core pool of port pairs: RTP on an even port, RTCP on the next odd one.
//!
//! Pairs are taken uniformly at random from the free set (never sequentially, so a peer cannot
//! guess the next call's ports), in O(1) with a swap-remove free list.

use super::{MediaError, PortBinder};
use crate::rng::Rng;
use std::io::ErrorKind;

/// The configuration's inclusive port range; the relay gets this core's slice of `media_ports`.
pub use crate::config::PortRange;

/// How many `AddrInUse` pairs one allocation skips before giving up.
const MAX_BIND_ATTEMPTS: usize = 16;

#[derive(Debug)]
pub(crate) struct PortPool {
    /// The first even port of the range; pair `i` is `base + 2 * i`.
    base: u16,
    pairs: u32,
    /// Free pair indices, in no particular order.
    free: Vec<u32>,
    /// Pairs another process holds (`AddrInUse`), parked for the current allocation only.
    busy: Vec<u32>,
    pub(crate) bind_retries: u64,
}

impl PortPool {
    pub(crate) fn new(range: PortRange) -> PortPool {
        let base = range.first.saturating_add(range.first & 1);
        // A pair needs both its ports inside the range.
        let pairs = if range.last > base {
            (u32::from(range.last) - u32::from(base)).div_ceil(2)
        } else {
            0
        };
        PortPool {
            base,
            pairs,
            free: (0..pairs).collect(),
            busy: Vec::with_capacity(MAX_BIND_ATTEMPTS),
            bind_retries: 0,
        }
    }

    pub(crate) fn base(&self) -> u16 {
        self.base
    }

    pub(crate) fn pairs(&self) -> u32 {
        self.pairs
    }

    pub(crate) fn free_count(&self) -> usize {
        self.free.len()
    }

    pub(crate) fn rtp_port(&self, pair: u32) -> u16 {
        // pair < pairs, so this stays inside the range.
        self.base.wrapping_add((pair as u16).wrapping_mul(2))
    }

    /// The pair index of `port` (RTP or RTCP) and whether it is the RTCP one.
    pub(crate) fn pair_of(&self, port: u16) -> Option<(u32, bool)> {
        let off = port.checked_sub(self.base)?;
        let pair = u32::from(off / 2);
        (pair < self.pairs).then_some((pair, off & 1 == 1))
    }

    /// Takes a random free pair and binds it. `AddrInUse` -> another pair.
    pub(crate) fn allocate(
        &mut self,
        rng: &mut Rng,
        binder: &mut dyn PortBinder,
    ) -> Result<u32, MediaError> {
        let result = loop {
            if self.free.is_empty() {
                break Err(MediaError::NoPorts);
            }
            if self.busy.len() >= MAX_BIND_ATTEMPTS {
                break Err(MediaError::Bind(ErrorKind::AddrInUse));
            }
            let i = rng.below(self.free.len() as u64) as usize;
            let pair = self.free.swap_remove(i);
            match binder.bind_pair(self.rtp_port(pair)) {
                Ok(()) => break Ok(pair),
                Err(e) if e.kind() == ErrorKind::AddrInUse => {
                    self.bind_retries += 1;
                    self.busy.push(pair);
                }
                Err(e) => {
                    self.free.push(pair);
                    break Err(MediaError::Bind(e.kind()));
                }
            }
        };
        // The other process may let go of them later: they stay candidates.
        self.free.append(&mut self.busy);
        result
    }

    /// Unbinds a pair and returns it to the free set.
    pub(crate) fn release(&mut self, pair: u32, binder: &mut dyn PortBinder) {
        debug_assert!(pair < self.pairs && !self.free.contains(&pair));
        binder.release_pair(self.rtp_port(pair));
        self.free.push(pair);
    }
}
