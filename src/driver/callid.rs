//! Which worker owns a SIP datagram: `hash(Call-ID) % workers`.
//!
//! A cheap scan, not a parse: it runs on the receiving worker for every datagram, before the
//! owner's full parser sees it. A datagram without a findable Call-ID stays where it landed
//! (its core rejects it).

/// The Call-ID value of a SIP datagram (long form `Call-ID` or compact `i`, any case), trimmed;
/// `None` when the header section has none.
pub fn find_call_id(datagram: &[u8]) -> Option<&[u8]> {
    // Header lines start after the start line; stop at the blank line.
    let mut pos = memchr::memchr(b'\n', datagram)? + 1;
    while pos < datagram.len() {
        let rest = datagram.get(pos..)?;
        let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = rest.get(..line_end)?;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if let Some(value) = call_id_value(line) {
            return Some(value);
        }
        pos += line_end + 1;
    }
    None
}

fn call_id_value(line: &[u8]) -> Option<&[u8]> {
    let colon = memchr::memchr(b':', line)?;
    let name = trim(line.get(..colon)?);
    if !(name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i")) {
        return None;
    }
    let value = trim(line.get(colon + 1..)?);
    (!value.is_empty()).then_some(value)
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

/// FNV-1a, 64 bits: stable across processes and versions, so every worker (and the proxy,
/// if it needs to know) agrees on the owner.
pub fn call_id_hash(call_id: &[u8]) -> u64 {
    crate::fnv::hash(call_id)
}

/// The worker owning this datagram, or `None` without a Call-ID.
pub fn call_id_owner(datagram: &[u8], workers: usize) -> Option<usize> {
    if workers <= 1 {
        return Some(0);
    }
    let id = find_call_id(datagram)?;
    // workers is small; the modulo of a 64-bit hash is uniform enough.
    Some((call_id_hash(id) % workers as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_long_and_compact_forms() {
        let m = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x\r\nCALL-ID :  abc@host \r\n\r\nbody";
        assert_eq!(find_call_id(m), Some(&b"abc@host"[..]));
        let m = b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP x\r\ni:xyz\r\n\r\n";
        assert_eq!(find_call_id(m), Some(&b"xyz"[..]));
        let m = b"BYE sip:a SIP/2.0\nCall-ID: lf-only\n\n";
        assert_eq!(find_call_id(m), Some(&b"lf-only"[..]));
    }

    #[test]
    fn ignores_body_and_lookalikes() {
        let m = b"INVITE sip:a SIP/2.0\r\nCall-Info: x\r\nIx: y\r\n\r\nCall-ID: in-body\r\n";
        assert_eq!(find_call_id(m), None);
        assert_eq!(find_call_id(b""), None);
        assert_eq!(find_call_id(b"garbage"), None);
        assert_eq!(find_call_id(b"X\r\nCall-ID:   \r\n\r\n"), None);
    }

    #[test]
    fn owner_is_stable_and_in_range() {
        let m = b"OPTIONS sip:a SIP/2.0\r\ni: k1\r\n\r\n";
        let o = call_id_owner(m, 3).unwrap();
        assert!(o < 3);
        assert_eq!(call_id_owner(m, 3), Some(o));
        assert_eq!(call_id_owner(b"no headers", 2), None);
        assert_eq!(call_id_owner(b"no headers", 1), Some(0));
        assert_eq!(call_id_hash(b""), 0xcbf2_9ce4_8422_2325);
    }
}
