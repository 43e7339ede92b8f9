//! Lexical helpers shared by the SIP views (RFC 3261 section 25.1 basic rules).

const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

/// RFC 3261 `token` characters (a table: this runs on every octet of every header name).
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// Space or tab.
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Linear white space as it appears inside a folded value: SP, HT, CR, LF.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims LWS from both ends; slice patterns, so no bounds checks (runs on every field).
pub(crate) fn trim_lws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_lws(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_lws(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// The first ':' among the first sixteen octets of `s` (its index, below 16) with the mask
/// of the CRs and LFs among them; `None` when `s` is shorter or has no ':' there.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn colon_probe(s: &[u8]) -> Option<(u32, u32)> {
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    if s.len() < 16 {
        return None;
    }
    // SAFETY: `s` has at least sixteen octets, so the unaligned load stays inside it; SSE2 is
    // in the x86_64 baseline.
    let (colons, ends) = unsafe {
        let v = _mm_loadu_si128(s.as_ptr().cast::<__m128i>());
        let colon = _mm_cmpeq_epi8(v, _mm_set1_epi8(b':' as i8));
        let cr = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\r' as i8));
        let lf = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8));
        (
            _mm_movemask_epi8(colon) as u32,
            _mm_movemask_epi8(_mm_or_si128(cr, lf)) as u32,
        )
    };
    (colons != 0).then(|| (colons.trailing_zeros(), ends))
}

/// The first ':' among the first sixteen octets of `s`, with the mask of CRs and LFs there.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(crate) fn colon_probe(s: &[u8]) -> Option<(u32, u32)> {
    let head = s.get(..16)?;
    let at = head.iter().position(|&b| b == b':')?;
    let ends = head
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\r' || b == b'\n')
        .fold(0u32, |m, (i, _)| m | 1 << i);
    Some((at as u32, ends))
}

/// Offset of the first CR or LF at or after `from`. Header values are 20-80 octets, too
/// short for a general search to repay its set-up on every line: sixteen octets per step with
/// SSE2 (part of every x86_64), eight with a word trick elsewhere.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn find_eol(buf: &[u8], from: usize) -> Option<usize> {
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let rest = buf.get(from..)?;
    let mut at = 0;
    while at + 16 <= rest.len() {
        // SAFETY: `at + 16 <= rest.len()`, so the sixteen octets loaded (unaligned) lie inside
        // `rest`; SSE2 is in the x86_64 baseline, so the instructions exist on every target.
        let hits = unsafe {
            let v = _mm_loadu_si128(rest.as_ptr().add(at).cast::<__m128i>());
            let cr = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\r' as i8));
            let lf = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8));
            _mm_movemask_epi8(_mm_or_si128(cr, lf))
        };
        if hits != 0 {
            return Some(from + at + hits.trailing_zeros() as usize);
        }
        at += 16;
    }
    rest.get(at..)?
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|j| from + at + j)
}

/// Offset of the first CR or LF at or after `from`, eight octets at a time.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(crate) fn find_eol(buf: &[u8], from: usize) -> Option<usize> {
    find_eol_words(buf, from)
}

/// The portable line-end search: eight octets per step.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
pub(crate) fn find_eol_words(buf: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let rest = buf.get(from..)?;
    let mut at = from;
    let mut words = rest.chunks_exact(8);
    for w in words.by_ref() {
        let Ok(a) = <[u8; 8]>::try_from(w) else {
            break;
        };
        let x = u64::from_le_bytes(a);
        // flags the octets below 0x20; the lowest flag is exact (a borrow only runs upwards
        // from an octet that is itself flagged)
        let flags = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        if flags != 0 {
            let i = at + (flags.trailing_zeros() / 8) as usize;
            if matches!(buf.get(i), Some(b'\r' | b'\n')) {
                return Some(i);
            }
            // another control octet (HT inside a value): finish octet by octet
            return buf
                .get(i..)
                .and_then(|r| memchr::memchr2(b'\r', b'\n', r))
                .map(|j| i + j);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|j| at + j)
}

/// Length of the leading run of visible octets (0x21..=0x7e), eight at a time: a
/// Request-URI is 40-80 of them.
#[inline]
pub(crate) fn visible_len(s: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = s.chunks_exact(8);
    let mut at = 0;
    for w in words.by_ref() {
        let Ok(a) = <[u8; 8]>::try_from(w) else {
            break;
        };
        let x = u64::from_le_bytes(a);
        // below 0x21 (exact at the lowest flag: borrows run upwards from a flagged octet), or
        // above 0x7e (0x7f + 1 sets the high bit; octets with it set are flagged by `| x`, and
        // only 0xff carries, upwards from a flagged octet)
        let low = x.wrapping_sub(ONES * 0x21) & !x;
        let high = x.wrapping_add(ONES) | x;
        let flags = (low | high) & HIGH;
        if flags != 0 {
            return at + (flags.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + words
        .remainder()
        .iter()
        .position(|&b| !(0x21..0x7f).contains(&b))
        .unwrap_or(words.remainder().len())
}

/// Length of the leading run of token octets; four table look-ups per step (header names
/// are 2-20 octets, mostly over four).
#[inline]
pub(crate) fn token_len(s: &[u8]) -> usize {
    let mut quads = s.chunks_exact(4);
    let mut at = 0;
    for q in quads.by_ref() {
        if let [a, b, c, d] = *q {
            if !(is_token(a) & is_token(b) & is_token(c) & is_token(d)) {
                break;
            }
        }
        at += 4;
    }
    at + s
        .get(at..)
        .unwrap_or(&[])
        .iter()
        .position(|&b| !is_token(b))
        .unwrap_or(s.len() - at)
}

pub(crate) fn skip_lws(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    s.get(start..).unwrap_or(&[])
}

/// Decimal digits only, at least one, no overflow.
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut v: u32 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some(v)
}

pub(crate) fn parse_port(s: &[u8]) -> Option<u16> {
    parse_u32(s).and_then(|v| u16::try_from(v).ok())
}

/// Position of `sub` inside `base`; `sub` must be a subslice of `base`.
#[inline]
pub(crate) fn offset_in(base: &[u8], sub: &[u8]) -> usize {
    let off = (sub.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    debug_assert!(off <= base.len());
    off.min(base.len())
}

/// Length of a quoted-string starting at `s[0] == '"'`, quotes included; `None` if it never
/// closes.
pub(crate) fn quoted_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while let Some(j) = s.get(i..).and_then(|r| memchr::memchr2(b'"', b'\\', r)) {
        let at = i + j;
        if s.get(at) == Some(&b'"') {
            return Some(at + 1);
        }
        i = at + 2; // skip the escaped octet
    }
    None
}

/// Splits a header value at the commas that separate list elements: commas inside a
/// quoted-string or inside `<...>` belong to the element. Elements are trimmed; empty ones are
/// yielded too so callers can reject `a,,b`.
#[derive(Clone)]
pub(crate) struct CommaSplit<'b> {
    rest: Option<&'b [u8]>,
}

impl<'b> CommaSplit<'b> {
    pub(crate) fn new(value: &'b [u8]) -> Self {
        CommaSplit { rest: Some(value) }
    }
}

impl<'b> Iterator for CommaSplit<'b> {
    type Item = &'b [u8];
    fn next(&mut self) -> Option<&'b [u8]> {
        let s = self.rest?;
        let mut i = 0;
        loop {
            let Some(j) = s
                .get(i..)
                .and_then(|r| memchr::memchr3(b',', b'"', b'<', r))
            else {
                self.rest = None;
                return Some(trim_lws(s));
            };
            let at = i + j;
            match s.get(at) {
                Some(b',') => {
                    self.rest = s.get(at + 1..);
                    return Some(trim_lws(s.get(..at).unwrap_or(&[])));
                }
                Some(b'"') => match s.get(at..).and_then(quoted_len) {
                    Some(n) => i = at + n,
                    None => {
                        self.rest = None;
                        return Some(trim_lws(s));
                    }
                },
                _ => match s.get(at..).and_then(|r| memchr::memchr(b'>', r)) {
                    Some(n) => i = at + n + 1,
                    None => {
                        self.rest = None;
                        return Some(trim_lws(s));
                    }
                },
            }
        }
    }
}

/// One `;name[=value]` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Param<'b> {
    pub name: &'b [u8],
    pub value: Option<&'b [u8]>,
    /// The whole parameter from its `;` to the end of its value.
    pub span: &'b [u8],
}

/// Iterates `*( SEMI name [EQUAL value] )` with optional LWS around `;` and `=`. Values are
/// tokens, `[IPv6]` references or quoted-strings (kept with their quotes). Yields `Err(())`
/// once on malformed input and then stops.
pub(crate) struct Params<'b> {
    rest: &'b [u8],
    done: bool,
}

impl<'b> Params<'b> {
    pub(crate) fn new(s: &'b [u8]) -> Self {
        Params {
            rest: s,
            done: false,
        }
    }
}

fn param_value_len(s: &[u8]) -> Option<usize> {
    match s.first() {
        Some(b'"') => quoted_len(s),
        Some(b'[') => memchr::memchr(b']', s).map(|i| i + 1),
        _ => {
            let n = s
                .iter()
                .position(|&b| {
                    !(is_token(b) || matches!(b, b':' | b'[' | b']' | b'/' | b'&' | b'$' | b'@'))
                })
                .unwrap_or(s.len());
            Some(n)
        }
    }
}

impl<'b> Iterator for Params<'b> {
    type Item = Result<Param<'b>, ()>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let whole = self.rest;
        let s = skip_lws(whole);
        if s.is_empty() {
            self.done = true;
            return None;
        }
        let fail = |me: &mut Self| {
            me.done = true;
            Some(Err(()))
        };
        if s.first() != Some(&b';') {
            return fail(self);
        }
        let start = offset_in(whole, s);
        let s = skip_lws(s.get(1..).unwrap_or(&[]));
        let name_len = s.iter().position(|&b| !is_token(b)).unwrap_or(s.len());
        if name_len == 0 {
            return fail(self);
        }
        let name = s.get(..name_len).unwrap_or(&[]);
        let after_name = s.get(name_len..).unwrap_or(&[]);
        let t = skip_lws(after_name);
        let (value, end_rest) = if t.first() == Some(&b'=') {
            let v = skip_lws(t.get(1..).unwrap_or(&[]));
            match param_value_len(v) {
                Some(n) if n > 0 => (v.get(..n), v.get(n..).unwrap_or(&[])),
                _ => return fail(self),
            }
        } else {
            (None, after_name)
        };
        let end = offset_in(whole, end_rest);
        self.rest = end_rest;
        let span = whole.get(start..end).unwrap_or(&[]);
        Some(Ok(Param { name, value, span }))
    }
}

/// Finds a parameter by name (case-insensitive): `Some(None)` for a flag, `Some(Some(v))` for
/// a value; `None` when absent or the list is malformed before it.
pub(crate) fn find_param<'b>(params: &'b [u8], name: &[u8]) -> Option<Option<&'b [u8]>> {
    Params::new(params)
        .map_while(Result::ok)
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .map(|p| p.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_split_respects_quotes_and_angles() {
        let v: Vec<&[u8]> =
            CommaSplit::new(b"\"Doe, John\" <sip:a@b;x=1,2>;tag=1 , <sip:c@d>,,e").collect();
        assert_eq!(
            v,
            vec![
                &b"\"Doe, John\" <sip:a@b;x=1,2>;tag=1"[..],
                b"<sip:c@d>",
                b"",
                b"e"
            ]
        );
        let v: Vec<&[u8]> = CommaSplit::new(b"\"a\\\",b\" <x>").collect();
        assert_eq!(v, vec![&b"\"a\\\",b\" <x>"[..]]);
        let v: Vec<&[u8]> = CommaSplit::new(b"\"open, b").collect();
        assert_eq!(v, vec![&b"\"open, b"[..]]);
    }

    #[test]
    fn params_with_lws() {
        let p: Vec<_> =
            Params::new(b" ; branch = z9hG4bK1 ;rport; received=[2001:db8::1];x=\"a;b\"")
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].name, b"branch");
        assert_eq!(p[0].value, Some(&b"z9hG4bK1"[..]));
        assert_eq!(p[0].span, b"; branch = z9hG4bK1");
        assert_eq!(p[1].value, None);
        assert_eq!(p[2].value, Some(&b"[2001:db8::1]"[..]));
        assert_eq!(p[3].value, Some(&b"\"a;b\""[..]));
        assert!(Params::new(b";;").any(|r| r.is_err()));
        assert!(Params::new(b";a=").any(|r| r.is_err()));
        assert_eq!(find_param(b";Lr;user=phone", b"lr"), Some(None));
        assert_eq!(
            find_param(b";lr;USER=phone", b"user"),
            Some(Some(&b"phone"[..]))
        );
    }

    #[test]
    fn line_end_search_agrees_with_memchr() {
        let mut buf = [b'a'; 70];
        for len in 0..buf.len() {
            for at in 0..=len {
                for from in [0, 1, 7, 8, 15, 16, 17] {
                    for mark in [b'\r', b'\n', b'\t', 0, 0x1f] {
                        buf.fill(b'a');
                        buf[8] = b'\t';
                        buf[9] = 0xc3;
                        if at < len {
                            buf[at] = mark;
                        }
                        let b = &buf[..len];
                        let want = b
                            .get(from..)
                            .and_then(|r| memchr::memchr2(b'\r', b'\n', r))
                            .map(|j| from + j);
                        assert_eq!(find_eol(b, from), want, "{len} {at} {from} {mark}");
                        assert_eq!(find_eol_words(b, from), want, "{len} {at} {from} {mark}");
                    }
                }
            }
        }
    }

    #[test]
    fn visible_run_agrees_with_octet_scan() {
        for len in 0..40 {
            for at in 0..=len {
                for b in [0u8, 0x09, 0x20, 0x21, 0x7e, 0x7f, 0x80, 0xfe, 0xff] {
                    let mut s = vec![b'a'; len];
                    if at < len {
                        s[at] = b;
                    }
                    if at + 1 < len {
                        s[at + 1] = 0x7e;
                    }
                    let want = s
                        .iter()
                        .position(|&c| !(0x21..0x7f).contains(&c))
                        .unwrap_or(len);
                    assert_eq!(visible_len(&s), want, "{len} {at} {b}");
                }
            }
        }
    }

    #[test]
    fn token_run_agrees_with_octet_scan() {
        for len in 0..20 {
            for at in 0..=len {
                for b in [b':', b' ', b'a', 0xff, b'-'] {
                    let mut s = vec![b'Z'; len];
                    if at < len {
                        s[at] = b;
                    }
                    let want = s.iter().position(|&c| !is_token(c)).unwrap_or(len);
                    assert_eq!(token_len(&s), want, "{len} {at} {b}");
                }
            }
        }
    }

    #[test]
    fn colon_probe_finds_the_first_colon() {
        assert_eq!(colon_probe(b"Via: SIP/2.0/UDP h"), Some((3, 0)));
        assert_eq!(
            colon_probe(b"Via: x\r\nTo: <sip:a@b>"),
            Some((3, 0b1100_0000))
        );
        assert_eq!(colon_probe(b"V\r: x:yyyyyyyyyyyyyy"), Some((2, 0b10)));
        assert_eq!(colon_probe(b"P-Preferred-Identity: <sip:a@b>"), None);
        assert_eq!(colon_probe(b"Via: x"), None, "fewer than sixteen octets");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"36893488147419103232"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_port(b"65536"), None);
        assert_eq!(parse_port(b"5060"), Some(5060));
    }
}
