//! FNV-1a, the one non-keyed hash of the project: the driver's and the proxy's Call-ID
//! dispatch (both sides must agree), the route matcher's prefix table (hashed one digit at a
//! time), and maps keyed by the operator's own config (no network input, so a keyed SipHash
//! buys nothing there).

use std::hash::{BuildHasherDefault, Hasher};

pub const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
pub const PRIME: u64 = 0x0000_0100_0000_01b3;

/// One octet more into hash `h`.
#[inline]
pub fn step(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(PRIME)
}

/// The hash of `bytes`.
#[inline]
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(OFFSET, |h, &b| step(h, b))
}

/// FNV-1a as a [`Hasher`] for maps over trusted keys.
pub struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(OFFSET)
    }
}

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = bytes.iter().fold(self.0, |h, &b| step(h, b));
    }
}

pub type BuildFnv = BuildHasherDefault<FnvHasher>;

#[cfg(test)]
mod tests {
    #[test]
    fn known_vectors() {
        // Published FNV-1a 64-bit test vectors.
        assert_eq!(super::hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::hash(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
