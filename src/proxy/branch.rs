//! Our Via branch, To tags and Call-IDs.
//!
//! Our branch is `z9hG4bK` (RFC 3261 8.1.1.7) + `it` + fixed-width hex fields:
//! the owner core, the transaction slot and its generation, the branch index inside the
//! transaction, and random bits. A response is matched to its client transaction by decoding
//! the slot (no hash lookup), then comparing the whole branch (the random bits make a forged
//! response miss). Any core can read the owner core without state, so a response that lands
//! on the wrong core is handed to its owner.

use crate::rng::Rng;

/// RFC 3261 magic cookie plus our own mark: a Via carrying it was written by this relay.
pub const OUR_PREFIX: &[u8] = b"z9hG4bKit";
/// Length of every branch we generate.
pub const BRANCH_LEN: usize = OUR_PREFIX.len() + 4 + 8 + 8 + 2 + 12;

/// A branch we generated (inline, `Copy`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Branch([u8; BRANCH_LEN]);

/// What a branch of ours encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchKey {
    pub core: u16,
    pub slot: u32,
    pub gen: u32,
    pub index: u8,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

fn get_hex(s: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

impl Branch {
    pub fn new(key: BranchKey, rng: &mut Rng) -> Branch {
        let mut b = [0u8; BRANCH_LEN];
        let p = OUR_PREFIX.len();
        b[..p].copy_from_slice(OUR_PREFIX);
        put_hex(&mut b[p..p + 4], u64::from(key.core));
        put_hex(&mut b[p + 4..p + 12], u64::from(key.slot));
        put_hex(&mut b[p + 12..p + 20], u64::from(key.gen));
        put_hex(&mut b[p + 20..p + 22], u64::from(key.index));
        put_hex(&mut b[p + 22..p + 34], rng.next_u64() & 0xffff_ffff_ffff);
        Branch(b)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into it.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::fmt::Debug for Branch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Is this branch one of ours (any core)?
pub fn is_ours(branch: &[u8]) -> bool {
    branch.len() == BRANCH_LEN && branch.starts_with(OUR_PREFIX)
}

/// Decodes a branch of ours; `None` for anything else (peer-controlled input).
pub fn decode(branch: &[u8]) -> Option<BranchKey> {
    if !is_ours(branch) {
        return None;
    }
    let p = OUR_PREFIX.len();
    let f = |a: usize, b: usize| branch.get(p + a..p + b).and_then(get_hex);
    get_hex(branch.get(p + 22..p + 34)?)?;
    Some(BranchKey {
        core: f(0, 4)? as u16,
        slot: f(4, 12)? as u32,
        gen: f(12, 20)? as u32,
        index: f(20, 22)? as u8,
    })
}

/// The core that owns the transaction a response with this top-Via branch belongs to.
pub fn owner_core(branch: &[u8]) -> Option<u16> {
    decode(branch).map(|k| k.core)
}

/// A To/From tag: 16 hex digits.
pub fn new_tag(rng: &mut Rng) -> [u8; 16] {
    let mut t = [0u8; 16];
    put_hex(&mut t, rng.next_u64());
    t
}

/// FNV-1a over a Call-ID: the owner core of a dialog is `hash % cores`. It must agree with
/// the driver's dispatch (`driver::call_id_hash`), which hands every datagram to that core.
pub fn call_id_hash(call_id: &[u8]) -> u64 {
    crate::fnv::hash(call_id)
}

/// A Call-ID for requests we originate (OPTIONS probes): random hex `@` our host, drawn so
/// that it hashes to this core (its responses are dispatched by Call-ID).
pub fn new_call_id(rng: &mut Rng, host: &str, core: u16, cores: u16) -> String {
    let mut s = String::with_capacity(25 + host.len());
    // Each draw lands on this core with probability 1/cores: bounded retries, then any.
    for _ in 0..64 * u32::from(cores.max(1)) {
        let mut t = [0u8; 24];
        put_hex(&mut t[..16], rng.next_u64());
        put_hex(&mut t[16..], rng.next_u64());
        s.clear();
        s.push_str(std::str::from_utf8(&t).unwrap_or("0"));
        s.push('@');
        s.push_str(host);
        if cores <= 1 || call_id_hash(s.as_bytes()) % u64::from(cores) == u64::from(core) {
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut rng = Rng::new(3);
        let key = BranchKey {
            core: 3,
            slot: 0xdead_beef,
            gen: 7,
            index: 0x1f,
        };
        let b = Branch::new(key, &mut rng);
        assert!(b.as_str().starts_with("z9hG4bKit"));
        assert_eq!(decode(b.as_bytes()), Some(key));
        assert_eq!(owner_core(b.as_bytes()), Some(3));
        let b2 = Branch::new(key, &mut rng);
        assert_ne!(b, b2, "random bits differ");
    }

    #[test]
    fn rejects_foreign_and_malformed() {
        assert_eq!(decode(b"z9hG4bK776asdhds"), None);
        assert_eq!(decode(b""), None);
        let mut bad = [b'0'; BRANCH_LEN];
        bad[..OUR_PREFIX.len()].copy_from_slice(OUR_PREFIX);
        bad[BRANCH_LEN - 1] = b'G';
        assert_eq!(decode(&bad), None);
        bad[BRANCH_LEN - 1] = b'0';
        assert!(decode(&bad).is_some());
    }

    #[test]
    fn tags_and_call_ids() {
        let mut rng = Rng::new(9);
        assert_ne!(new_tag(&mut rng), new_tag(&mut rng));
        let c = new_call_id(&mut rng, "127.0.0.1", 0, 1);
        assert!(c.ends_with("@127.0.0.1"));
        assert_eq!(c.len(), 24 + 1 + 9);
        for core in 0..4u16 {
            let c = new_call_id(&mut rng, "127.0.0.1", core, 4);
            assert_eq!(
                crate::driver::call_id_hash(c.as_bytes()) % 4,
                u64::from(core)
            );
        }
    }
}
