//! The number matcher of a table. Patterns that are a literal prefix plus an optional class
//! run (`^\+1206555\d{4}$`, `^\+44`, `^(\+1|1)?425\d+$`) are keyed by that prefix in a hash
//! table probed once per prefix length of the number. Every other pattern is keyed the same
//! way by the literal prefixes any of its matches must start with (regex-syntax's prefix
//! extraction: `^\+44[2-9]20\d+$` under `+44220` .. `+44920`) and run, as a DFA, only when
//! the number has one of them. Anchored patterns (`^`) go in the hash table; unanchored ones
//! in a small trie walked from every position of the number. A lookup so touches the routes
//! that could match the number, not the table: its cost does not grow with the number of
//! routes.
//!
//! The analysis works on the pattern's HIR from regex-syntax, the same parse the regex crate
//! makes, so a literal entry matches exactly the numbers the regex would.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use crate::config::translation::SimplePattern;

use regex_automata::dfa::{dense, sparse, Automaton};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::Input;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Class, Hir, HirKind, Look};
use smallvec::SmallVec;

use super::RouteId;
use crate::fnv;

/// A character class of a pattern's tail, e.g. `\d` (which is Unicode-aware, as in the regex).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CharClass {
    ascii: u128,
    ranges: Box<[(char, char)]>,
}

impl CharClass {
    fn new(ranges: Vec<(char, char)>) -> Self {
        let mut ascii = 0u128;
        for &(a, b) in &ranges {
            for c in (a as u32)..=(b as u32).min(127) {
                ascii |= 1 << c;
            }
        }
        CharClass {
            ascii,
            ranges: ranges.into_boxed_slice(),
        }
    }

    #[inline]
    fn contains(&self, c: char) -> bool {
        let u = c as u32;
        if u < 128 {
            return self.ascii & (1 << u) != 0;
        }
        let i = self.ranges.partition_point(|&(_, hi)| hi < c);
        self.ranges.get(i).is_some_and(|&(lo, _)| lo <= c)
    }
}

/// What must follow the literal prefix: `min..=max` characters of `class`, then the end of
/// the number when `end` (else anything).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    class: u16,
    min: u16,
    max: u16,
    end: bool,
}

const NO_CLASS: u16 = u16::MAX;
const UNBOUNDED: u16 = u16::MAX;

/// A pattern split into literal prefixes and a tail.
pub(crate) struct Literal {
    pub prefixes: Vec<Vec<u8>>,
    class: Option<Cow<'static, [(char, char)]>>,
    min: u32,
    max: Option<u32>,
    end: bool,
}

/// The literal of a pattern of the [`SimplePattern`] shape, as [`analyze`] would find it from
/// the pattern's parse (the property test of the route table checks that they agree).
pub(crate) fn simple_literal(p: SimplePattern) -> Option<Literal> {
    let class = match p.digits {
        true => Some(Cow::Borrowed(digit_ranges()?)),
        false => None,
    };
    Some(Literal {
        prefixes: vec![p.prefix.into_bytes()],
        class,
        min: p.min,
        max: p.max,
        end: p.end,
    })
}

/// The ranges of `\d` (Unicode decimal digits), as regex-syntax has them.
fn digit_ranges() -> Option<&'static [(char, char)]> {
    static DIGIT: OnceLock<Option<Vec<(char, char)>>> = OnceLock::new();
    DIGIT
        .get_or_init(|| {
            regex_syntax::parse(r"\d")
                .ok()
                .and_then(|h| match h.kind() {
                    HirKind::Class(c) => class_ranges(c),
                    _ => None,
                })
        })
        .as_deref()
}

/// At most this many literal alternatives per pattern (`^(\+1|1)?(206|425)` is 4).
const MAX_PREFIXES: usize = 64;

/// Splits `hir` into literal prefixes and a tail, when it has that shape.
pub(crate) fn analyze(hir: &Hir) -> Option<Vec<Literal>> {
    // A top-level alternation of such shapes (`^\+1206|^\+1425`) is several entries.
    if let HirKind::Alternation(branches) = hir.kind() {
        let mut out = Vec::new();
        for b in branches {
            out.extend(analyze(b)?);
        }
        return (out.iter().map(|l| l.prefixes.len()).sum::<usize>() <= MAX_PREFIXES)
            .then_some(out);
    }
    let mut items = Vec::new();
    flatten(hir, &mut items);
    // regex-syntax factors common prefixes out (`^a\d$|^b$` is `^(?:a\d$|b$)`): distribute a
    // final alternation back over what precedes it.
    if let Some((last, head)) = items.split_last() {
        if let HirKind::Alternation(branches) = last.kind() {
            if literal_set(last).is_none() {
                let mut out = Vec::new();
                for b in branches {
                    let mut v: Vec<Hir> = head.iter().map(|h| (*h).clone()).collect();
                    v.push(b.clone());
                    out.extend(analyze(&Hir::concat(v))?);
                }
                return (out.iter().map(|l| l.prefixes.len()).sum::<usize>() <= MAX_PREFIXES)
                    .then_some(out);
            }
        }
    }
    let mut it = items.into_iter().peekable();
    if !matches!(it.next()?.kind(), HirKind::Look(Look::Start)) {
        return None;
    }
    let mut prefixes: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(h) = it.peek() {
        let Some(set) = literal_set(h) else { break };
        let mut next = Vec::with_capacity(prefixes.len() * set.len());
        for p in &prefixes {
            for s in &set {
                let mut v = p.clone();
                v.extend_from_slice(s);
                next.push(v);
            }
        }
        if next.len() > MAX_PREFIXES {
            return None;
        }
        prefixes = next;
        it.next();
    }
    let mut class: Option<Cow<'static, [(char, char)]>> = None;
    let (mut min, mut max) = (0u32, Some(0u32));
    while let Some(h) = it.peek() {
        let (c, lo, hi) = match h.kind() {
            HirKind::Class(c) => (class_ranges(c)?, 1, Some(1)),
            HirKind::Repetition(r) => match r.sub.kind() {
                HirKind::Class(c) => (class_ranges(c)?, r.min, r.max),
                _ => break,
            },
            _ => break,
        };
        match &class {
            Some(prev) if **prev != *c => return None,
            _ => class = Some(Cow::Owned(c)),
        }
        min = min.checked_add(lo)?;
        max = match (max, hi) {
            (Some(a), Some(b)) => a.checked_add(b),
            _ => None,
        };
        it.next();
    }
    let end = match it.next() {
        None => false,
        Some(h) if matches!(h.kind(), HirKind::Look(Look::End)) => true,
        Some(_) => return None,
    };
    if it.next().is_some() {
        return None;
    }
    Some(vec![Literal {
        prefixes,
        class,
        min,
        max,
        end,
    }])
}

fn flatten<'h>(h: &'h Hir, out: &mut Vec<&'h Hir>) {
    match h.kind() {
        HirKind::Capture(c) => flatten(&c.sub, out),
        HirKind::Concat(v) => v.iter().for_each(|h| flatten(h, out)),
        HirKind::Empty => {}
        _ => out.push(h),
    }
}

/// The finite set of strings `h` matches, when it is a small set of literals.
fn literal_set(h: &Hir) -> Option<Vec<Vec<u8>>> {
    match h.kind() {
        HirKind::Literal(l) => Some(vec![l.0.to_vec()]),
        HirKind::Class(c) => {
            let r = class_ranges(c)?;
            match r.as_slice() {
                [(a, b)] if a == b => Some(vec![a.to_string().into_bytes()]),
                _ => None,
            }
        }
        HirKind::Capture(c) => literal_set(&c.sub),
        HirKind::Empty => Some(vec![Vec::new()]),
        HirKind::Concat(v) => {
            let mut acc = vec![Vec::new()];
            for h in v {
                let set = literal_set(h)?;
                let mut next = Vec::new();
                for p in &acc {
                    for s in &set {
                        let mut x: Vec<u8> = p.clone();
                        x.extend_from_slice(s);
                        next.push(x);
                    }
                }
                if next.len() > MAX_PREFIXES {
                    return None;
                }
                acc = next;
            }
            Some(acc)
        }
        HirKind::Alternation(v) => {
            let mut acc = Vec::new();
            for h in v {
                acc.extend(literal_set(h)?);
                if acc.len() > MAX_PREFIXES {
                    return None;
                }
            }
            Some(acc)
        }
        HirKind::Repetition(r) if r.min == 0 && r.max == Some(1) => {
            let mut s = literal_set(&r.sub)?;
            s.push(Vec::new());
            Some(s)
        }
        _ => None,
    }
}

fn class_ranges(c: &Class) -> Option<Vec<(char, char)>> {
    match c {
        Class::Unicode(u) => Some(u.ranges().iter().map(|r| (r.start(), r.end())).collect()),
        // Byte classes only arise with Unicode off; keep them in the general set unless ASCII.
        Class::Bytes(b) => {
            let r: Vec<(char, char)> = b
                .ranges()
                .iter()
                .map(|r| (r.start() as char, r.end() as char))
                .collect();
            r.iter().all(|&(_, hi)| (hi as u32) < 128).then_some(r)
        }
    }
}

/// Classes shared by all matchers of a table (nearly every tail is `\d`).
#[derive(Default)]
pub(crate) struct Classes {
    list: Vec<CharClass>,
    index: HashMap<Vec<(char, char)>, u16>,
    last: Option<u16>,
}

impl Classes {
    fn intern(&mut self, ranges: &[(char, char)]) -> Option<u16> {
        // Nearly every tail is `\d`: try the last class first, before hashing 60-odd ranges.
        if let Some(i) = self.last {
            if self
                .list
                .get(usize::from(i))
                .is_some_and(|c| *c.ranges == *ranges)
            {
                return Some(i);
            }
        }
        let i = match self.index.get(ranges) {
            Some(&i) => i,
            None => {
                let i = u16::try_from(self.list.len())
                    .ok()
                    .filter(|&i| i != NO_CLASS)?;
                self.list.push(CharClass::new(ranges.to_vec()));
                self.index.insert(ranges.to_vec(), i);
                i
            }
        };
        self.last = Some(i);
        Some(i)
    }

    pub(crate) fn finish(self) -> Box<[CharClass]> {
        self.list.into_boxed_slice()
    }

    /// The tail of `lit`, or None when it cannot be represented (then use the regex).
    pub(crate) fn tail(&mut self, lit: &Literal) -> Option<Tail> {
        if lit.prefixes.iter().any(|p| p.len() > MAX_KEY) {
            return None;
        }
        let class = match &lit.class {
            Some(r) => self.intern(r)?,
            None => NO_CLASS,
        };
        let min = u16::try_from(lit.min).ok().filter(|&m| m != UNBOUNDED)?;
        let max = match lit.max {
            None => UNBOUNDED,
            Some(m) => u16::try_from(m).ok().filter(|&m| m != UNBOUNDED)?,
        };
        Some(Tail {
            class,
            min,
            max,
            end: lit.end,
        })
    }
}

impl Tail {
    #[inline]
    fn matches(&self, classes: &[CharClass], rest: &str) -> bool {
        let Some(class) = classes.get(self.class as usize) else {
            // No class: the prefix alone, then the end when anchored.
            return !self.end || rest.is_empty();
        };
        let mut n: u32 = 0;
        for c in rest.chars() {
            if !self.end && n >= u32::from(self.min) {
                return true;
            }
            if !class.contains(c) {
                return false;
            }
            n += 1;
        }
        if !self.end {
            return n >= u32::from(self.min);
        }
        n >= u32::from(self.min) && (self.max == UNBOUNDED || n <= u32::from(self.max))
    }
}

/// How an entry checks the rest of the number once the walk reached its node.
#[derive(Clone, Copy)]
enum Check {
    /// The literal prefix is the pattern's; the rest must fit the tail.
    Tail(Tail),
    /// The prefix is only necessary: run verifier `n` on the whole number.
    Regex(u32),
}

#[derive(Clone, Copy)]
struct Entry {
    usage: u16,
    rank: u32,
    route: RouteId,
    check: Check,
}

/// A trie node. Nodes are laid out breadth first, so the children of a node are contiguous
/// and each holds the byte that leads to it: a step reads one short run of nodes instead of
/// chasing separate key and target arrays (at 100k routes the deep nodes are cold in cache,
/// so a step costs what it touches).
#[derive(Default, Clone, Copy)]
struct Node {
    key: u8,
    n_children: u16,
    first_child: u32,
    entries: u32,
    n_entries: u32,
}

#[derive(Default)]
struct Trie {
    nodes: Vec<Node>,
    entries: Vec<Entry>,
}

/// A pattern outside the trie's shapes, compiled for one question: does it match anywhere in
/// the number. A DFA needs no per-thread cache (no pool, no lock on the lookup path); a
/// pattern a DFA cannot take within the size limit (e.g. a Unicode `\b`) falls back to the
/// regex crate.
pub(crate) enum Verifier {
    Dfa(Box<sparse::DFA<Vec<u8>>>),
    Regex(regex::Regex),
}

/// Determinizing stops beyond this, and the pattern uses the regex crate instead.
const DFA_LIMIT: usize = 1 << 20;

impl Verifier {
    pub(crate) fn new(hir: &Hir, pattern: &str) -> Result<Verifier, regex::Error> {
        let dfa = thompson::Compiler::new()
            .configure(thompson::Config::new().which_captures(WhichCaptures::None))
            .build_from_hir(hir)
            .ok()
            .and_then(|nfa| {
                dense::Builder::new()
                    .configure(
                        dense::Config::new()
                            .dfa_size_limit(Some(DFA_LIMIT))
                            .determinize_size_limit(Some(DFA_LIMIT)),
                    )
                    .build_from_nfa(&nfa)
                    .ok()
            })
            .and_then(|d| d.to_sparse().ok());
        match dfa {
            Some(d) => Ok(Verifier::Dfa(Box::new(d))),
            None => regex::Regex::new(pattern).map(Verifier::Regex),
        }
    }

    #[inline]
    fn is_match(&self, number: &str) -> bool {
        match self {
            // Errors only come from quit bytes and start kinds this DFA is not built with.
            Verifier::Dfa(d) => matches!(
                d.try_search_fwd(&Input::new(number).earliest(true)),
                Ok(Some(_))
            ),
            Verifier::Regex(r) => r.is_match(number),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Verifier::Dfa(d) => d.memory_usage(),
            // Not exposed by the regex crate; a small compiled pattern is a few KB.
            Verifier::Regex(_) => 4096,
        }
    }
}

/// The literal prefixes every match of `hir` starts with, without any that extends another
/// (the shorter one already leads there), and whether a match must start at the beginning of
/// the number. An empty list: no usable prefix (the pattern is tried on every number).
pub(crate) fn required_prefixes(hir: &Hir) -> (Vec<Vec<u8>>, bool) {
    let anchored = hir.properties().look_set_prefix().contains(Look::Start);
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(hir);
    let Some(lits) = seq.literals() else {
        return (Vec::new(), anchored);
    };
    let mut v: Vec<Vec<u8>> = lits.iter().map(|l| l.as_bytes().to_vec()).collect();
    if v.iter().any(|l| l.is_empty() || l.len() > MAX_KEY) {
        return (Vec::new(), anchored);
    }
    v.sort_unstable();
    v.dedup();
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(v.len());
    for l in v {
        if out.last().is_some_and(|k| l.starts_with(k)) {
            continue;
        }
        out.push(l);
    }
    (out, anchored)
}

/// The matcher of a whole table: one prefix table for the anchored patterns of every PSTN
/// usage (a lookup probes it once per number, not once per usage), one trie for the
/// unanchored general patterns, and the verifiers of the general patterns. `rank` orders a usage's routes by
/// priority, then file order.
#[derive(Default)]
pub(crate) struct Matcher {
    anchored: PrefixTable,
    floating: Trie,
    verifiers: Vec<Verifier>,
}

/// The anchored patterns, keyed by literal prefix: a lookup probes the hash of each prefix
/// of the number whose length some key has. Unlike a trie walk, where each step waits for
/// the node the previous one found (at 100k routes, a cache miss per digit), the probes do
/// not depend on one another, so the CPU overlaps their misses.
#[derive(Default)]
struct PrefixTable {
    /// Open addressing, linear probing, a power of two long (or empty).
    slots: Vec<Slot>,
    shift: u32,
    /// The bytes of every key, each key once.
    keys: Vec<u8>,
    entries: Vec<Entry>,
    /// Entries of the empty prefix (patterns with no usable prefix): tried on every number.
    root: Vec<Entry>,
    /// Distinct key lengths, ascending.
    lens: Vec<u16>,
    /// One bit per hash value of the keys (16 bits per key, so it stays in the L2 cache at
    /// 100k routes): a prefix whose bit is clear is no key, and its slot is not read. Most
    /// prefixes of a number are no key, so most probes end here instead of in a cache miss.
    filter: Vec<u64>,
    filter_mask: u64,
}

/// One key of a [`PrefixTable`]. `n_entries == 0` marks a free slot.
#[derive(Default, Clone, Copy)]
struct Slot {
    fp: u16,
    len: u16,
    key: u32,
    entries: u32,
    n_entries: u32,
}

#[inline]
fn mix(h: u64) -> u64 {
    (h ^ (h >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl PrefixTable {
    #[inline]
    fn lookup(&self, number: &[u8], mut visit: impl FnMut(&Entry, usize)) {
        for e in &self.root {
            visit(e, 0);
        }
        let mask = self.slots.len().wrapping_sub(1);
        let mut h = fnv::OFFSET;
        let mut done = 0usize;
        for &len in &self.lens {
            let len = usize::from(len);
            let Some(chunk) = number.get(done..len) else {
                break;
            };
            for &b in chunk {
                h = fnv::step(h, b);
            }
            done = len;
            let m = mix(h);
            let bit = (m >> 16) & self.filter_mask;
            let word = self.filter.get((bit >> 6) as usize).copied().unwrap_or(0);
            if word & (1 << (bit & 63)) == 0 {
                continue;
            }
            let fp = m as u16;
            let mut i = (m >> self.shift) as usize;
            while let Some(s) = self.slots.get(i & mask) {
                if s.n_entries == 0 {
                    break;
                }
                if s.fp == fp
                    && usize::from(s.len) == len
                    && self.keys.get(s.key as usize..s.key as usize + len) == number.get(..len)
                {
                    let es = s.entries as usize..(s.entries + s.n_entries) as usize;
                    for e in self.entries.get(es).unwrap_or(&[]) {
                        visit(e, len);
                    }
                    break;
                }
                i += 1;
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.keys.capacity()
            + (self.entries.capacity() + self.root.capacity()) * std::mem::size_of::<Entry>()
            + self.lens.capacity() * 2
            + self.filter.capacity() * 8
    }
}

/// A [`PrefixTable`] under construction: keys in one arena, entries in insertion order.
#[derive(Default)]
struct PrefixTableBuilder {
    keys: Vec<u8>,
    /// (key offset, key length, entry)
    items: Vec<(u32, u16, Entry)>,
    root: Vec<Entry>,
}

/// Longest literal prefix the table keys (longer ones go to a verifier).
pub(crate) const MAX_KEY: usize = u16::MAX as usize;

impl PrefixTableBuilder {
    fn with_capacity(n: usize) -> Self {
        PrefixTableBuilder {
            keys: Vec::with_capacity(n * 8),
            items: Vec::with_capacity(n),
            root: Vec::new(),
        }
    }

    fn add(&mut self, prefix: &[u8], e: Entry) {
        if prefix.is_empty() {
            self.root.push(e);
            return;
        }
        let Ok(len) = u16::try_from(prefix.len()) else {
            // analyze and required_prefixes keep keys within MAX_KEY.
            return;
        };
        let off = self.keys.len() as u32;
        self.keys.extend_from_slice(prefix);
        self.items.push((off, len, e));
    }

    fn finish(self) -> PrefixTable {
        let PrefixTableBuilder {
            keys: raw,
            mut items,
            root,
        } = self;
        let key = |&(off, len, _): &(u32, u16, Entry)| {
            raw.get(off as usize..off as usize + usize::from(len))
                .unwrap_or(&[])
        };
        items.sort_by(|a, b| key(a).cmp(key(b)));
        let mut t = PrefixTable {
            entries: Vec::with_capacity(items.len()),
            root,
            ..PrefixTable::default()
        };
        // Unique keys: (offset in t.keys, length, first entry, entry count).
        let mut groups: Vec<(u32, u16, u32, u32)> = Vec::new();
        let mut prev: Option<&[u8]> = None;
        for it in &items {
            let k = key(it);
            if prev != Some(k) {
                groups.push((t.keys.len() as u32, it.1, t.entries.len() as u32, 0));
                t.keys.extend_from_slice(k);
                prev = Some(k);
            }
            t.entries.push(it.2);
            if let Some(g) = groups.last_mut() {
                g.3 += 1;
            }
        }
        let mut lens: Vec<u16> = groups.iter().map(|g| g.1).collect();
        lens.sort_unstable();
        lens.dedup();
        t.lens = lens;
        if groups.is_empty() {
            return t;
        }
        // At most half full: probe chains stay short.
        let size = (groups.len() * 2).next_power_of_two().max(2);
        t.shift = 64 - size.trailing_zeros();
        t.slots = vec![Slot::default(); size];
        let mask = size - 1;
        let bits = (groups.len() * 16).next_power_of_two().max(64);
        t.filter = vec![0; bits / 64];
        t.filter_mask = bits as u64 - 1;
        for &(off, len, first, n) in &groups {
            let mut h = fnv::OFFSET;
            for &b in &t.keys[off as usize..off as usize + usize::from(len)] {
                h = fnv::step(h, b);
            }
            let m = mix(h);
            let bit = (m >> 16) & t.filter_mask;
            t.filter[(bit >> 6) as usize] |= 1 << (bit & 63);
            let mut i = (m >> t.shift) as usize & mask;
            while t.slots[i].n_entries != 0 {
                i = (i + 1) & mask;
            }
            t.slots[i] = Slot {
                fp: m as u16,
                len,
                key: off,
                entries: first,
                n_entries: n,
            };
        }
        t
    }
}

/// A trie under construction: sorted children per node.
struct TrieBuilder {
    children: Vec<Vec<(u8, u32)>>,
    entries: Vec<Vec<Entry>>,
}

impl TrieBuilder {
    fn new(capacity: usize) -> Self {
        let mut children = Vec::with_capacity(capacity);
        let mut entries = Vec::with_capacity(capacity);
        children.push(Vec::new());
        entries.push(Vec::new());
        TrieBuilder { children, entries }
    }

    fn add(&mut self, prefix: &[u8], e: Entry) {
        let mut node = 0usize;
        for &b in prefix {
            let kids = &mut self.children[node];
            node = match kids.binary_search_by_key(&b, |&(k, _)| k) {
                Ok(i) => kids[i].1 as usize,
                Err(i) => {
                    let n = self.entries.len();
                    kids.insert(i, (b, n as u32));
                    self.children.push(Vec::new());
                    self.entries.push(Vec::new());
                    n
                }
            };
        }
        self.entries[node].push(e);
    }

    /// Lays the trie out breadth first.
    fn finish(mut self) -> Trie {
        let n = self.children.len();
        let mut t = Trie {
            nodes: Vec::with_capacity(n),
            entries: Vec::with_capacity(self.entries.iter().map(Vec::len).sum()),
        };
        // `order[k]` is the build node that becomes node k.
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let mut keys: Vec<u8> = Vec::with_capacity(n);
        order.push(0);
        keys.push(0);
        let mut k = 0;
        while let Some(&old) = order.get(k) {
            let kids = std::mem::take(&mut self.children[old as usize]);
            let es = std::mem::take(&mut self.entries[old as usize]);
            t.nodes.push(Node {
                key: keys[k],
                n_children: kids.len() as u16,
                first_child: order.len() as u32,
                entries: t.entries.len() as u32,
                n_entries: es.len() as u32,
            });
            t.entries.extend(es);
            for (b, to) in kids {
                order.push(to);
                keys.push(b);
            }
            k += 1;
        }
        t
    }
}

pub(crate) struct MatcherBuilder {
    anchored: PrefixTableBuilder,
    floating: TrieBuilder,
    verifiers: Vec<Verifier>,
}

impl MatcherBuilder {
    pub(crate) fn new(routes: usize) -> Self {
        MatcherBuilder {
            anchored: PrefixTableBuilder::with_capacity(routes),
            floating: TrieBuilder::new(1),
            verifiers: Vec::new(),
        }
    }

    pub(crate) fn add_literal(
        &mut self,
        usage: u16,
        rank: u32,
        route: RouteId,
        prefix: &[u8],
        tail: Tail,
    ) {
        self.anchored.add(
            prefix,
            Entry {
                usage,
                rank,
                route,
                check: Check::Tail(tail),
            },
        );
    }

    /// Adds a compiled general pattern; returns its index for [`MatcherBuilder::add_general`].
    pub(crate) fn add_verifier(&mut self, v: Verifier) -> u32 {
        self.verifiers.push(v);
        (self.verifiers.len() - 1) as u32
    }

    /// Hangs verifier `v` of a route under each of its required `prefixes`.
    pub(crate) fn add_general(
        &mut self,
        usage: u16,
        rank: u32,
        route: RouteId,
        v: u32,
        (prefixes, anchored): &(Vec<Vec<u8>>, bool),
    ) {
        let e = Entry {
            usage,
            rank,
            route,
            check: Check::Regex(v),
        };
        // No prefix: the empty key, tried on every number (the anchored lookup is done once).
        if prefixes.is_empty() {
            self.anchored.add(b"", e);
            return;
        }
        for p in prefixes {
            if *anchored {
                self.anchored.add(p, e);
            } else {
                self.floating.add(p, e);
            }
        }
    }

    pub(crate) fn finish(self) -> Matcher {
        Matcher {
            anchored: self.anchored.finish(),
            floating: self.floating.finish(),
            verifiers: self.verifiers,
        }
    }
}

/// Routes whose literal pattern matches a number, as (usage, rank, route).
pub(crate) type TrieHits = SmallVec<[(u16, u32, RouteId); 16]>;
/// Matching routes of one usage, as (rank, route).
pub(crate) type Hits = SmallVec<[(u32, RouteId); 16]>;

impl Trie {
    /// Visits the entries on the path of `bytes` from the root, with the rest of the number
    /// after each node.
    #[inline]
    fn walk(&self, bytes: &[u8], mut visit: impl FnMut(&Entry, usize)) {
        let mut node = 0usize;
        let mut depth = 0usize;
        while let Some(n) = self.nodes.get(node) {
            if n.n_entries > 0 {
                let es = n.entries as usize..(n.entries + n.n_entries) as usize;
                for e in self.entries.get(es).unwrap_or(&[]) {
                    visit(e, depth);
                }
            }
            let Some(&b) = bytes.get(depth) else { break };
            let first = n.first_child as usize;
            let Some(kids) = self.nodes.get(first..first + n.n_children as usize) else {
                break;
            };
            match kids.iter().position(|k| k.key == b) {
                Some(i) => node = first + i,
                None => break,
            }
            depth += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.nodes
            .first()
            .is_none_or(|n| n.n_children == 0 && n.n_entries == 0)
    }
}

impl Matcher {
    /// Every route of every usage whose pattern matches `number` (a route can appear more
    /// than once when several of its prefixes lie on the number's path).
    pub(crate) fn trie_matches(&self, classes: &[CharClass], number: &str, out: &mut TrieHits) {
        let bytes = number.as_bytes();
        self.anchored.lookup(bytes, |e, depth| {
            let hit = match e.check {
                Check::Tail(t) => t.matches(classes, number.get(depth..).unwrap_or("")),
                Check::Regex(v) => self.verify(v, number),
            };
            if hit {
                out.push((e.usage, e.rank, e.route));
            }
        });
        if self.floating.is_empty() {
            return;
        }
        // An unanchored pattern can match from any position (the root has no entries).
        for start in 0..bytes.len() {
            let Some(rest) = bytes.get(start..) else {
                break;
            };
            self.floating.walk(rest, |e, _| {
                if let Check::Regex(v) = e.check {
                    if self.verify(v, number) {
                        out.push((e.usage, e.rank, e.route));
                    }
                }
            });
        }
    }

    #[inline]
    fn verify(&self, v: u32, number: &str) -> bool {
        self.verifiers
            .get(v as usize)
            .is_some_and(|v| v.is_match(number))
    }

    /// The routes of `usage` whose pattern matches `number`, in rank order, each once;
    /// `trie` is what [`Matcher::trie_matches`] found for the number.
    pub(crate) fn usage_matches(&self, usage: u16, trie: &TrieHits, hits: &mut Hits) {
        hits.clear();
        hits.extend(
            trie.iter()
                .filter(|h| h.0 == usage)
                .map(|&(_, rank, route)| (rank, route)),
        );
        hits.sort_unstable_by_key(|&(rank, _)| rank);
        // A pattern with several prefixes can hit on more than one trie node.
        hits.dedup_by_key(|h| h.0);
    }

    /// Approximate heap bytes held, for reports.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.anchored.heap_bytes()
            + self.floating.nodes.capacity() * std::mem::size_of::<Node>()
            + self.floating.entries.capacity() * std::mem::size_of::<Entry>()
            + self
                .verifiers
                .iter()
                .map(Verifier::heap_bytes)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(p: &str) -> Option<Vec<Literal>> {
        analyze(&crate::config::translation::parse_pattern(p).unwrap().hir)
    }

    #[test]
    fn analysis_shapes() {
        let l = lit(r"^\+1206555\d{4}$").unwrap();
        assert_eq!(l[0].prefixes, vec![b"+1206555".to_vec()]);
        assert_eq!((l[0].min, l[0].max, l[0].end), (4, Some(4), true));
        let l = lit(r"^\+44").unwrap();
        assert_eq!(l[0].prefixes, vec![b"+44".to_vec()]);
        assert!(l[0].class.is_none() && !l[0].end);
        let l = lit(r"^(\+1|1)?(206|425)\d\d+$").unwrap();
        assert_eq!(l[0].prefixes.len(), 6);
        assert_eq!((l[0].min, l[0].max), (2, None));
        let l = lit(r"^\+1206|^\+1425").unwrap();
        assert_eq!(l.iter().map(|l| l.prefixes.len()).sum::<usize>(), 2);
        let l = lit(r"^\+1206\d+$|^0\d{3}$").unwrap();
        assert_eq!(l.len(), 2);
        assert!(lit(r"\+1206").is_none());
        assert!(lit(r"^\+1\d{3}555$").is_none());
        assert!(lit(r"^\+1\d+[a-z]$").is_none());
        assert!(lit(r"(?m)^\+1$").is_none());
    }

    /// The prefix table against a plain scan, at a size where slots collide and the filter
    /// has false positives.
    #[test]
    fn prefix_table_finds_exactly_the_keys_that_prefix_the_number() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut digits = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b'0' + (x % 10) as u8
                })
                .collect()
        };
        let mut b = PrefixTableBuilder::with_capacity(0);
        let mut keys = Vec::new();
        for i in 0..20_000u32 {
            let len = 1 + (i as usize % 9);
            let k = digits(len);
            let e = Entry {
                usage: 0,
                rank: i,
                route: RouteId(i),
                check: Check::Regex(0),
            };
            b.add(&k, e);
            keys.push(k);
        }
        b.add(
            b"",
            Entry {
                usage: 1,
                rank: 0,
                route: RouteId(u32::MAX),
                check: Check::Regex(0),
            },
        );
        let t = b.finish();
        for _ in 0..5_000 {
            let number = digits(12);
            let mut got: Vec<u32> = Vec::new();
            t.lookup(&number, |e, depth| {
                if e.usage == 0 {
                    assert_eq!(depth, keys[e.rank as usize].len());
                    got.push(e.rank);
                }
            });
            got.sort_unstable();
            let want: Vec<u32> = (0..keys.len() as u32)
                .filter(|&i| number.starts_with(&keys[i as usize]))
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn simple_patterns_read_as_their_parse() {
        for p in [
            r"^\+1206555\d{4}$",
            r"^\+44207",
            r"^\+1\d\d{2,}$",
            r"^0\d?\d*",
            r"^$",
            r"^",
            r"^\+33\d{2,6}$",
            r"^9\d+",
        ] {
            let fast =
                simple_literal(crate::config::translation::simple_pattern(p).unwrap()).unwrap();
            let parsed = lit(p).unwrap();
            assert_eq!(parsed.len(), 1, "{p}");
            let l = &parsed[0];
            assert_eq!(fast.prefixes, l.prefixes, "{p}");
            assert_eq!(fast.class, l.class, "{p}");
            assert_eq!((fast.min, fast.max, fast.end), (l.min, l.max, l.end), "{p}");
        }
    }
}
