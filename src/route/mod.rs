//! The compiled, immutable routing table (DESIGN section 5, a contract) and its lock-free
//! publication.
//!
//! [`RouteTable::build`] turns a validated [`Config`] into lookup structures: trunks by source
//! address, one number matcher for every PSTN usage (literal prefixes in a hash table, other
//! patterns as DFAs keyed by their required prefixes, see `matcher`), compiled dial plans and
//! translation rules.
//! [`RouteTable::decide`] is the routing decision of a new call; [`RouteTable::explain`] is the
//! same decision step by step, for `test-intertrunk-routing`. Round-robin positions live in a
//! per-core [`RoundRobin`], outside the table. [`LiveTable`] swaps whole tables atomically;
//! each core reads through its own [`TableReader`].

mod live;
mod matcher;
pub mod reference;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;
use smallvec::SmallVec;

use crate::config::translation::{parse_pattern, simple_pattern, Translation};
use crate::config::{Config, Diagnostic, Transport};

pub use live::{LiveTable, TableReader};
use matcher::{CharClass, Classes, Hits, Matcher, MatcherBuilder, TrieHits};

/// Index of a trunk in its table (the config's file order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TrunkId(pub u16);
/// Index of a voice route in its table (the config's file order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RouteId(pub u32);
/// Index of a PSTN usage in the global list (`[voice] pstn_usages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct UsageId(pub u16);

/// A trunk with every setting resolved.
#[derive(Debug, Clone)]
pub struct TrunkInfo {
    pub identity: String,
    pub address: SocketAddr,
    pub transport: Transport,
    /// Calls arriving here are routed with these usages, in order.
    pub pstn_usages: Vec<UsageId>,
    pub dial_plan: Option<String>,
    pub enable_bypass: bool,
    pub enable_rtp_latching: bool,
    pub remove_plus_from_uri: bool,
    pub enable_fast_failover_timer: bool,
    pub max_early_dialogs: u32,
    pub rtcp_active_calls: bool,
    pub forward_pai: bool,
    pub forward_call_history: bool,
    pub enable_session_timer: bool,
    /// OPTIONS probe interval; None = probing off.
    pub options_keepalive: Option<Duration>,
    dial_plan_ix: Option<usize>,
    called_rules: Vec<usize>,
    calling_rules: Vec<usize>,
    response_codes: Vec<(u16, u16)>,
    /// `@<address>;user=phone`, the end of a Request-URI to this trunk.
    uri_suffix: String,
}

/// The outcome of routing a new call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Route(Routed),
    /// No usage of the source trunk has a route with a gateway for the number:
    /// `403 Forbidden`, Lync diagnostic 12004.
    NoRoute,
    /// The source trunk's dial plan has no rule for the number: `404 Not Found`, Lync 14010.
    NoMatchingRule,
}

impl Decision {
    /// The SIP response that rejects the call, with its Lync diagnostic id and reason.
    pub fn rejection(&self) -> Option<(u16, u32, &'static str)> {
        match self {
            Decision::Route(_) => None,
            Decision::NoRoute => Some((403, 12004, "none of the routes have a valid gateway")),
            Decision::NoMatchingRule => Some((404, 14010, "No matching rule")),
        }
    }
}

/// A routed call: the normalized called number and the targets in try order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub normalized: String,
    pub candidates: Vec<Candidate>,
}

/// One target of a call, with the numbers as they must be sent to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub trunk: TrunkId,
    pub usage: UsageId,
    pub route: RouteId,
    /// After the target's outbound translation rules and `remove_plus_from_uri`.
    pub called: String,
    /// New From (and P-Asserted-Identity) user part; None = unchanged. With
    /// `suppress_caller_id` it is the route's alternate caller ID (None: send anonymous).
    pub calling: Option<String>,
    /// The caller's identity must not be sent (RFC 3323 privacy).
    pub suppress_caller_id: bool,
    /// `sip:<called>@<target address>;user=phone`.
    pub request_uri: String,
}

/// Per-core routing state: round-robin positions of the routes, and match scratch. It is
/// bound to one table at a time and starts over (natural order) when the table changes.
#[derive(Debug, Default)]
pub struct RoundRobin {
    generation: u64,
    next: Vec<u32>,
}

impl RoundRobin {
    pub fn new() -> Self {
        RoundRobin::default()
    }

    fn bind(&mut self, table: &RouteTable) {
        if self.generation != table.generation || self.next.len() != table.routes.len() {
            self.generation = table.generation;
            self.next.clear();
            self.next.resize(table.routes.len(), 0);
        }
    }
}

/// Where the gateway list of `route` starts this time; advances it.
fn take_turn(next: &mut [u32], route: RouteId, len: usize) -> usize {
    match next.get_mut(route.0 as usize) {
        Some(n) if len > 0 => {
            let at = *n as usize % len;
            *n = n.wrapping_add(1);
            at
        }
        _ => 0,
    }
}

struct Rule {
    name: String,
    re: Regex,
    translation: Translation,
}

impl Rule {
    fn compile(name: &str, pattern: &str, translation: &str) -> Result<Rule, String> {
        let info = parse_pattern(pattern)?;
        let translation = Translation::parse(translation, &info)?;
        let re = Regex::new(pattern).map_err(|e| e.to_string())?;
        Ok(Rule {
            name: name.to_owned(),
            re,
            translation,
        })
    }

    /// .NET `Regex.Replace`: every match replaced, the rest kept. None when nothing matches.
    fn apply(&self, input: &str) -> Option<String> {
        // A plan is tried rule by rule and most rules miss: a match test (no capture groups,
        // no allocation) turns those away before the capturing search.
        if !self.re.is_match(input) {
            return None;
        }
        let mut out = String::new();
        let mut last = 0;
        let mut any = false;
        for caps in self.re.captures_iter(input) {
            let Some(m) = caps.get(0) else { continue };
            any = true;
            out.push_str(input.get(last..m.start()).unwrap_or(""));
            self.translation
                .expand(|i| caps.get(i).map(|g| g.as_str()), &mut out);
            last = m.end();
        }
        if !any {
            return None;
        }
        out.push_str(input.get(last..).unwrap_or(""));
        Some(out)
    }
}

struct DialPlanC {
    identity: String,
    rules: Vec<Rule>,
}

/// A route's pattern as the matcher takes it.
enum Pattern {
    /// Literal prefixes with their tail.
    Literal(Vec<(Vec<Vec<u8>>, matcher::Tail)>),
    /// Verifier index and required prefixes (anchored or not).
    General(u32, (Vec<Vec<u8>>, bool)),
}

struct RouteInfo {
    gateways: SmallVec<[TrunkId; 4]>,
    suppress_caller_id: bool,
    alternate_caller_id: Option<Box<str>>,
}

enum Source {
    /// The only trunk on this ip: any source port is it.
    One(TrunkId),
    /// Several trunks share the ip: the source port tells them apart.
    Ports(Vec<(u16, TrunkId)>),
}

/// The compiled routing table of one configuration. Immutable; shared by every core.
pub struct RouteTable {
    config: Arc<Config>,
    generation: u64,
    trunks: Vec<TrunkInfo>,
    by_identity: HashMap<String, TrunkId>,
    by_source: HashMap<IpAddr, Source>,
    matcher: Matcher,
    classes: Box<[CharClass]>,
    routes: Vec<RouteInfo>,
    dial_plans: Vec<DialPlanC>,
    rules: Vec<Rule>,
    literal_routes: usize,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("generation", &self.generation)
            .field("trunks", &self.trunks.len())
            .field("routes", &self.routes.len())
            .field("literal_routes", &self.literal_routes)
            .finish_non_exhaustive()
    }
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// How the matcher takes route `r`'s pattern (a general pattern's verifier goes into `b`);
/// None, with a diagnostic, when it does not compile.
fn analyse(
    classes: &mut Classes,
    b: &mut MatcherBuilder,
    r: &crate::config::VoiceRoute,
    diags: &mut Vec<Diagnostic>,
) -> Option<Pattern> {
    // The common shape needs no regex parse at all.
    if let Some(l) = simple_pattern(&r.number_pattern).and_then(matcher::simple_literal) {
        if let Some(t) = classes.tail(&l) {
            return Some(Pattern::Literal(vec![(l.prefixes, t)]));
        }
    }
    let hir = match parse_pattern(&r.number_pattern) {
        Ok(p) => p.hir,
        Err(e) => {
            let msg = Config::bad_number_pattern(&e);
            diags.push(Diagnostic::new(None, Some(&r.identity), msg));
            return None;
        }
    };
    let lit = matcher::analyze(&hir).and_then(|lits| {
        lits.into_iter()
            .map(|l| classes.tail(&l).map(|t| (l.prefixes, t)))
            .collect::<Option<Vec<_>>>()
    });
    if let Some(lit) = lit {
        return Some(Pattern::Literal(lit));
    }
    match matcher::Verifier::new(&hir, &r.number_pattern) {
        Ok(v) => Some(Pattern::General(
            b.add_verifier(v),
            matcher::required_prefixes(&hir),
        )),
        Err(e) => {
            diags.push(Diagnostic::new(
                None,
                Some(&r.identity),
                format!("`number_pattern` does not compile: {e}"),
            ));
            None
        }
    }
}

impl RouteTable {
    /// Compiles a configuration; validates it first (a config changed in memory may be
    /// invalid) and returns every problem.
    pub fn build(cfg: Arc<Config>) -> Result<RouteTable, Vec<Diagnostic>> {
        // Route patterns are parsed once, below, for the matcher.
        if let Err(mut diags) = cfg.validate_except_route_patterns() {
            for r in &cfg.voice_route {
                if let Err(e) = parse_pattern(&r.number_pattern) {
                    let msg = Config::bad_number_pattern(&e);
                    diags.push(Diagnostic::new(None, Some(&r.identity), msg));
                }
            }
            return Err(diags);
        }
        let mut diags = Vec::new();
        let usage_ix: HashMap<&str, UsageId> = cfg
            .voice
            .pstn_usages
            .iter()
            .enumerate()
            .map(|(i, u)| (u.as_str(), UsageId(i as u16)))
            .collect();
        if cfg.trunk.len() > usize::from(u16::MAX)
            || cfg.voice.pstn_usages.len() > usize::from(u16::MAX)
        {
            return Err(vec![Diagnostic::new(
                None,
                None,
                "more than 65535 trunks or PSTN usages",
            )]);
        }
        let by_identity: HashMap<String, TrunkId> = cfg
            .trunk
            .iter()
            .enumerate()
            .map(|(i, t)| (t.identity.clone(), TrunkId(i as u16)))
            .collect();

        let mut rules = Vec::with_capacity(cfg.translation_rule.len());
        let mut rule_ix = HashMap::new();
        for r in &cfg.translation_rule {
            match Rule::compile(&r.identity, &r.pattern, &r.translation) {
                Ok(c) => {
                    rule_ix.insert(r.identity.as_str(), rules.len());
                    rules.push(c);
                }
                Err(e) => diags.push(Diagnostic::new(None, Some(&r.identity), e)),
            }
        }
        let mut dial_plans = Vec::with_capacity(cfg.dial_plan.len());
        let mut plan_ix = HashMap::new();
        for d in &cfg.dial_plan {
            let mut compiled = Vec::new();
            for n in &d.normalization_rules {
                match Rule::compile(&n.name, &n.pattern, &n.translation) {
                    Ok(c) => compiled.push(c),
                    Err(e) => diags.push(Diagnostic::new(
                        None,
                        Some(&format!("{}/{}", d.identity, n.name)),
                        e,
                    )),
                }
            }
            plan_ix.insert(d.identity.as_str(), dial_plans.len());
            dial_plans.push(DialPlanC {
                identity: d.identity.clone(),
                rules: compiled,
            });
        }
        let codes: HashMap<&str, (u16, u16)> = cfg
            .response_code_translation_rule
            .iter()
            .map(|r| {
                (
                    r.identity.as_str(),
                    (r.received_response_code, r.translated_response_code),
                )
            })
            .collect();

        let mut trunks = Vec::with_capacity(cfg.trunk.len());
        let mut by_ip: HashMap<IpAddr, Vec<(u16, TrunkId)>> = HashMap::new();
        for (i, t) in cfg.trunk.iter().enumerate() {
            let id = TrunkId(i as u16);
            by_ip
                .entry(t.address.ip())
                .or_default()
                .push((t.address.port(), id));
            trunks.push(TrunkInfo {
                identity: t.identity.clone(),
                address: t.address,
                transport: t.transport,
                pstn_usages: t
                    .pstn_usages
                    .iter()
                    .filter_map(|u| usage_ix.get(u.as_str()).copied())
                    .collect(),
                dial_plan: t.dial_plan.clone(),
                enable_bypass: t.enable_bypass,
                enable_rtp_latching: t.enable_rtp_latching,
                remove_plus_from_uri: t.remove_plus_from_uri,
                enable_fast_failover_timer: t.enable_fast_failover_timer,
                max_early_dialogs: t.max_early_dialogs,
                rtcp_active_calls: t.rtcp_active_calls,
                forward_pai: t.forward_pai,
                forward_call_history: t.forward_call_history,
                enable_session_timer: t.enable_session_timer,
                options_keepalive: (t.options_keepalive_s > 0)
                    .then(|| Duration::from_secs(u64::from(t.options_keepalive_s))),
                dial_plan_ix: t.dial_plan.as_deref().and_then(|d| plan_ix.get(d).copied()),
                called_rules: t
                    .outbound_translation_rules
                    .iter()
                    .filter_map(|r| rule_ix.get(r.as_str()).copied())
                    .collect(),
                calling_rules: t
                    .outbound_calling_number_translation_rules
                    .iter()
                    .filter_map(|r| rule_ix.get(r.as_str()).copied())
                    .collect(),
                response_codes: t
                    .sip_response_code_translation_rules
                    .iter()
                    .filter_map(|r| codes.get(r.as_str()).copied())
                    .collect(),
                uri_suffix: format!("@{};user=phone", t.address),
            });
        }
        let by_source = by_ip
            .into_iter()
            .map(|(ip, v)| match v.as_slice() {
                [(_, id)] => (ip, Source::One(*id)),
                _ => (ip, Source::Ports(v)),
            })
            .collect();

        // Routes of each usage by priority, then file order: that position is the rank.
        let mut per_usage: Vec<Vec<u32>> = vec![Vec::new(); cfg.voice.pstn_usages.len()];
        let mut routes = Vec::with_capacity(cfg.voice_route.len());
        for (i, r) in cfg.voice_route.iter().enumerate() {
            routes.push(RouteInfo {
                gateways: r
                    .pstn_gateway_list
                    .iter()
                    .filter_map(|g| by_identity.get(g).copied())
                    .collect(),
                suppress_caller_id: r.suppress_caller_id,
                alternate_caller_id: (!r.alternate_caller_id.is_empty())
                    .then(|| r.alternate_caller_id.clone().into_boxed_str()),
            });
            for u in &r.pstn_usages {
                if let Some(&UsageId(u)) = usage_ix.get(u.as_str()) {
                    per_usage[u as usize].push(i as u32);
                }
            }
        }
        // (route, usage, rank), by route: each route goes into the matcher once it is analysed.
        let mut ranks: Vec<(u32, u16, u32)> =
            Vec::with_capacity(per_usage.iter().map(Vec::len).sum());
        for (u, list) in per_usage.iter_mut().enumerate() {
            list.sort_by_key(|&r| (cfg.voice_route[r as usize].priority, r));
            ranks.extend(
                list.iter()
                    .enumerate()
                    .map(|(rank, &r)| (r, u as u16, rank as u32)),
            );
        }
        drop(per_usage);
        ranks.sort_unstable();
        let mut classes = Classes::default();
        let mut b = MatcherBuilder::new(cfg.voice_route.len());
        let mut literal_routes = 0;
        let mut next_rank = 0;
        for (i, r) in cfg.voice_route.iter().enumerate() {
            let first = next_rank;
            while ranks.get(next_rank).is_some_and(|x| x.0 == i as u32) {
                next_rank += 1;
            }
            let mine = &ranks[first..next_rank];
            let Some(pattern) = analyse(&mut classes, &mut b, r, &mut diags) else {
                continue;
            };
            literal_routes += usize::from(matches!(pattern, Pattern::Literal(_)));
            for &(_, u, rank) in mine {
                match &pattern {
                    Pattern::Literal(lits) => {
                        for (prefixes, tail) in lits {
                            for p in prefixes {
                                b.add_literal(u, rank, RouteId(i as u32), p, *tail);
                            }
                        }
                    }
                    Pattern::General(v, prefixes) => {
                        b.add_general(u, rank, RouteId(i as u32), *v, prefixes)
                    }
                }
            }
        }
        let matcher = b.finish();
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(RouteTable {
            config: cfg,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            trunks,
            by_identity,
            by_source,
            matcher,
            classes: classes.finish(),
            routes,
            dial_plans,
            rules,
            literal_routes,
        })
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// A number unique to this table among the tables of this process.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The trunk a packet from `src` belongs to: by ip, and by port where several trunks
    /// share the ip.
    pub fn trunk_by_source(&self, src: SocketAddr) -> Option<TrunkId> {
        let ip = match src.ip() {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match self.by_source.get(&ip)? {
            Source::One(id) => Some(*id),
            Source::Ports(v) => v.iter().find(|(p, _)| *p == src.port()).map(|(_, id)| *id),
        }
    }

    pub fn trunk_by_identity(&self, identity: &str) -> Option<TrunkId> {
        self.by_identity.get(identity).copied()
    }

    /// # Panics
    /// On an id that did not come from this table.
    pub fn trunk(&self, id: TrunkId) -> &TrunkInfo {
        &self.trunks[id.0 as usize]
    }

    pub fn trunks(&self) -> impl Iterator<Item = (TrunkId, &TrunkInfo)> {
        self.trunks
            .iter()
            .enumerate()
            .map(|(i, t)| (TrunkId(i as u16), t))
    }

    pub fn usage_name(&self, id: UsageId) -> &str {
        self.config
            .voice
            .pstn_usages
            .get(id.0 as usize)
            .map_or("", String::as_str)
    }

    pub fn route_identity(&self, id: RouteId) -> &str {
        self.config
            .voice_route
            .get(id.0 as usize)
            .map_or("", |r| r.identity.as_str())
    }

    /// Number of voice routes, and how many of them are served by literal prefix (the rest run
    /// a DFA).
    pub fn route_counts(&self) -> (usize, usize) {
        (self.routes.len(), self.literal_routes)
    }

    /// Approximate heap bytes of the lookup structures (not the config itself).
    pub fn lookup_heap_bytes(&self) -> usize {
        self.matcher.heap_bytes() + self.routes.capacity() * std::mem::size_of::<RouteInfo>()
    }

    /// `code` as the caller must see it, after `trunk`'s response-code translation rules.
    pub fn translate_response_code(&self, trunk: TrunkId, code: u16) -> u16 {
        self.trunks
            .get(trunk.0 as usize)
            .and_then(|t| t.response_codes.iter().find(|(from, _)| *from == code))
            .map_or(code, |&(_, to)| to)
    }

    /// Routes a new call from `source` to `called` (the Request-URI's number), DESIGN
    /// section 5 steps 2-4. Each target trunk appears once, at its first position.
    pub fn decide(
        &self,
        source: TrunkId,
        called: &str,
        calling: &str,
        rr: &mut RoundRobin,
    ) -> Decision {
        rr.bind(self);
        let next = &mut rr.next;
        let mut rot = |route: RouteId, len: usize| take_turn(next, route, len);
        self.run(source, called, calling, &mut rot, None)
    }

    /// The decision of [`RouteTable::decide`] step by step, for `test-intertrunk-routing`.
    /// Gateway lists are shown unrotated (round-robin turns them call by call on each core).
    pub fn explain(&self, source: TrunkId, called: &str, calling: &str) -> Trace {
        let mut trace = Trace {
            source: self
                .trunks
                .get(source.0 as usize)
                .map_or_else(String::new, |t| t.identity.clone()),
            called: called.to_owned(),
            calling: calling.to_owned(),
            dial_plan: None,
            normalization_rule: None,
            normalized: None,
            usages: Vec::new(),
            candidates: Vec::new(),
            outcome: Outcome::NoRoute,
            sip_status: 0,
            lync_diagnostic: None,
        };
        let d = self.run(source, called, calling, &mut |_, _| 0, Some(&mut trace));
        trace.outcome = match &d {
            Decision::Route(_) => Outcome::Route,
            Decision::NoRoute => Outcome::NoRoute,
            Decision::NoMatchingRule => Outcome::NoMatchingRule,
        };
        (trace.sip_status, trace.lync_diagnostic) = match d.rejection() {
            Some((code, diag, _)) => (code, Some(diag)),
            None => (0, None),
        };
        trace
    }

    fn run(
        &self,
        source: TrunkId,
        called: &str,
        calling: &str,
        rot: &mut dyn FnMut(RouteId, usize) -> usize,
        mut trace: Option<&mut Trace>,
    ) -> Decision {
        let Some(trunk) = self.trunks.get(source.0 as usize) else {
            return Decision::NoRoute;
        };
        // Step 2: the source trunk's dial plan; the first rule that matches wins.
        let normalized: String = match trunk.dial_plan_ix.and_then(|i| self.dial_plans.get(i)) {
            None => called.to_owned(),
            Some(plan) => {
                if let Some(t) = trace.as_deref_mut() {
                    t.dial_plan = Some(plan.identity.clone());
                }
                let hit = plan
                    .rules
                    .iter()
                    .find_map(|r| r.apply(called).map(|n| (r, n)));
                match hit {
                    Some((rule, n)) => {
                        if let Some(t) = trace.as_deref_mut() {
                            t.normalization_rule = Some(rule.name.clone());
                        }
                        n
                    }
                    None => return Decision::NoMatchingRule,
                }
            }
        };
        if let Some(t) = trace.as_deref_mut() {
            t.normalized = Some(normalized.clone());
        }
        // Step 3: usages in order; in each, the matching routes by priority then file order.
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut hits = Hits::new();
        let mut trie = TrieHits::new();
        if !trunk.pstn_usages.is_empty() {
            self.matcher
                .trie_matches(&self.classes, &normalized, &mut trie);
        }
        for &usage in &trunk.pstn_usages {
            self.matcher.usage_matches(usage.0, &trie, &mut hits);
            let mut ut = trace.as_ref().map(|_| UsageTrace {
                usage: self.usage_name(usage).to_owned(),
                routes: Vec::new(),
            });
            for &(_, route) in &hits {
                let Some(info) = self.routes.get(route.0 as usize) else {
                    continue;
                };
                let n = info.gateways.len();
                let start = rot(route, n);
                if let Some(ut) = ut.as_mut() {
                    let r = &self.config.voice_route[route.0 as usize];
                    ut.routes.push(RouteTrace {
                        identity: r.identity.clone(),
                        number_pattern: r.number_pattern.clone(),
                        priority: r.priority,
                        gateways: (0..n)
                            .map(|k| {
                                self.trunks[info.gateways[(start + k) % n].0 as usize]
                                    .identity
                                    .clone()
                            })
                            .collect(),
                    });
                }
                for k in 0..n {
                    let g = info.gateways[(start + k) % n];
                    if candidates.iter().any(|c| c.trunk == g) {
                        continue;
                    }
                    candidates.push(self.candidate(g, usage, route, info, &normalized, calling));
                }
            }
            if let (Some(t), Some(ut)) = (trace.as_deref_mut(), ut) {
                t.usages.push(ut);
            }
        }
        if let Some(t) = trace {
            t.candidates = candidates
                .iter()
                .map(|c| CandidateTrace {
                    gateway: self.trunks[c.trunk.0 as usize].identity.clone(),
                    usage: self.usage_name(c.usage).to_owned(),
                    route: self.route_identity(c.route).to_owned(),
                    called: c.called.clone(),
                    calling: c.calling.clone(),
                    suppress_caller_id: c.suppress_caller_id,
                    request_uri: c.request_uri.clone(),
                })
                .collect();
        }
        if candidates.is_empty() {
            Decision::NoRoute
        } else {
            Decision::Route(Routed {
                normalized,
                candidates,
            })
        }
    }

    /// Step 4: the numbers as target `g` must receive them.
    fn candidate(
        &self,
        g: TrunkId,
        usage: UsageId,
        route: RouteId,
        info: &RouteInfo,
        normalized: &str,
        calling: &str,
    ) -> Candidate {
        let target = &self.trunks[g.0 as usize];
        let mut called = self
            .first_rule(&target.called_rules, normalized)
            .unwrap_or_else(|| normalized.to_owned());
        if target.remove_plus_from_uri {
            if let Some(rest) = called.strip_prefix('+') {
                called = rest.to_owned();
            }
        }
        let calling = if info.suppress_caller_id {
            info.alternate_caller_id.as_deref().map(str::to_owned)
        } else {
            self.first_rule(&target.calling_rules, calling)
        };
        let mut request_uri = String::with_capacity(called.len() + 40);
        request_uri.push_str("sip:");
        push_user(&mut request_uri, &called);
        request_uri.push_str(&target.uri_suffix);
        Candidate {
            trunk: g,
            usage,
            route,
            called,
            calling,
            suppress_caller_id: info.suppress_caller_id,
            request_uri,
        }
    }

    fn first_rule(&self, rules: &[usize], number: &str) -> Option<String> {
        rules
            .iter()
            .filter_map(|&i| self.rules.get(i))
            .find_map(|r| r.apply(number))
    }
}

/// Writes a number as a SIP URI user part, escaping what RFC 3261 does not allow there.
fn push_user(out: &mut String, user: &str) {
    for b in user.bytes() {
        let ok = b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b);
        if ok {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Each routing step for one number, as `test-intertrunk-routing` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trace {
    pub source: String,
    pub called: String,
    pub calling: String,
    /// The source trunk's dial plan, if it has one.
    pub dial_plan: Option<String>,
    /// The normalization rule that matched.
    pub normalization_rule: Option<String>,
    /// None when the dial plan had no rule for the number.
    pub normalized: Option<String>,
    /// Every usage of the source trunk in order, with its matching routes.
    pub usages: Vec<UsageTrace>,
    /// The gateways in the order they would be tried.
    pub candidates: Vec<CandidateTrace>,
    pub outcome: Outcome,
    /// The rejecting SIP status (0 when routed) and Lync diagnostic id.
    pub sip_status: u16,
    pub lync_diagnostic: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Route,
    NoRoute,
    NoMatchingRule,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageTrace {
    pub usage: String,
    pub routes: Vec<RouteTrace>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteTrace {
    pub identity: String,
    pub number_pattern: String,
    pub priority: u32,
    pub gateways: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CandidateTrace {
    pub gateway: String,
    pub usage: String,
    pub route: String,
    pub called: String,
    pub calling: Option<String>,
    pub suppress_caller_id: bool,
    pub request_uri: String,
}

#[cfg(test)]
mod tests;
