//! A small seeded PRNG (wyrand) for the sans-IO cores: SIP branches, tags and Call-IDs in
//! `proxy`, random port pairs in `media`.
//!
//! The cores never read a clock or an OS RNG: the driver hands in a seed, so a simulated run
//! replays exactly. Identifiers and ports need to be unguessable by an off-path peer and cost
//! nothing, not cryptographic strength.

/// wyrand: 64-bit state, one multiply per output, passes BigCrush.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Mix the seed so that seeds 0, 1, 2 do not give related streams.
        let mut r = Rng(seed ^ 0x2d35_8dcc_aa6c_78a5);
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift (bias is negligible for small n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_distinct() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let mut c = Rng::new(8);
        let xa: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
        let mut s = xa.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 8);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(1);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let v = r.below(5) as usize;
            assert!(v < 5);
            seen[v] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn below_spreads_evenly_and_zero_gives_zero() {
        let mut r = Rng::new(7);
        let mut hits = [0u32; 10];
        for _ in 0..10_000 {
            hits[r.below(10) as usize] += 1;
        }
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
        assert_eq!(r.below(0), 0);
    }
}
