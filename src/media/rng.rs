//! A tiny seeded PRNG (wyrand): port choice must be unpredictable to a peer, reproducible in
//! tests, and cost nothing. It is not a cryptographic generator; the seed comes from outside.

#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is < n / 2^64), 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_spreads() {
        let mut r = Rng::new(7);
        let mut hits = [0u32; 10];
        for _ in 0..10_000 {
            let i = r.below(10);
            hits[i] += 1;
        }
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
        assert_eq!(r.below(0), 0);
    }
}
