//! A naive router written straight from DESIGN section 5, to check [`RouteTable::decide`]
//! against (property tests) and to measure it by (benchmarks): every route's regex is tried in
//! order, and translations go through the regex crate's own `replace_all`.

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;

use super::{Candidate, Decision, RouteId, Routed, TrunkId, UsageId};
use crate::config::Config;

pub struct Reference {
    cfg: Arc<Config>,
    route_re: Vec<Regex>,
    rule_re: HashMap<String, (Regex, String)>,
    plan_re: HashMap<String, Vec<(Regex, String)>>,
    turns: HashMap<usize, u32>,
    /// Routes of each usage by priority then file order (a sort, not a matcher).
    by_usage: HashMap<String, Vec<usize>>,
}

/// A .NET replacement template in the regex crate's syntax (`$1` -> `${1}`, `$&` -> `${0}`).
fn to_regex_replacement(t: &str) -> String {
    let mut out = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push_str("$$");
            }
            Some('&') => {
                chars.next();
                out.push_str("${0}");
            }
            Some('{') => out.push('$'),
            _ => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                out.push_str(&format!("${{{n}}}"));
            }
        }
    }
    out
}

impl Reference {
    pub fn new(cfg: Arc<Config>) -> Result<Reference, regex::Error> {
        let route_re = cfg
            .voice_route
            .iter()
            .map(|r| Regex::new(&r.number_pattern))
            .collect::<Result<_, _>>()?;
        let mut rule_re = HashMap::new();
        for r in &cfg.translation_rule {
            rule_re.insert(
                r.identity.clone(),
                (
                    Regex::new(&r.pattern)?,
                    to_regex_replacement(&r.translation),
                ),
            );
        }
        let mut plan_re = HashMap::new();
        for d in &cfg.dial_plan {
            let mut v = Vec::new();
            for n in &d.normalization_rules {
                v.push((
                    Regex::new(&n.pattern)?,
                    to_regex_replacement(&n.translation),
                ));
            }
            plan_re.insert(d.identity.clone(), v);
        }
        let mut by_usage = HashMap::new();
        for u in &cfg.voice.pstn_usages {
            let mut routes: Vec<usize> = (0..cfg.voice_route.len())
                .filter(|&i| cfg.voice_route[i].pstn_usages.contains(u))
                .collect();
            routes.sort_by_key(|&i| cfg.voice_route[i].priority);
            by_usage.insert(u.clone(), routes);
        }
        Ok(Reference {
            by_usage,
            cfg,
            route_re,
            rule_re,
            plan_re,
            turns: HashMap::new(),
        })
    }

    fn rewrite(rules: &[&(Regex, String)], number: &str) -> Option<String> {
        rules
            .iter()
            .find(|(re, _)| re.is_match(number))
            .map(|(re, t)| re.replace_all(number, t.as_str()).into_owned())
    }

    pub fn decide(&mut self, source: TrunkId, called: &str, calling: &str) -> Decision {
        let cfg = Arc::clone(&self.cfg);
        let Some(trunk) = cfg.trunk.get(source.0 as usize) else {
            return Decision::NoRoute;
        };
        let normalized = match &trunk.dial_plan {
            None => called.to_owned(),
            Some(dp) => {
                let rules: Vec<&(Regex, String)> = self
                    .plan_re
                    .get(dp)
                    .map(|v| v.iter().collect())
                    .unwrap_or_default();
                match Self::rewrite(&rules, called) {
                    Some(n) => n,
                    None => return Decision::NoMatchingRule,
                }
            }
        };
        let mut candidates: Vec<Candidate> = Vec::new();
        // Taken out for the loop (it borrows self mutably), put back below.
        let by_usage = std::mem::take(&mut self.by_usage);
        for usage in &trunk.pstn_usages {
            let uid = cfg
                .voice
                .pstn_usages
                .iter()
                .position(|u| u == usage)
                .unwrap_or(0);
            for &i in by_usage.get(usage).map_or(&[][..], Vec::as_slice) {
                if !self.route_re[i].is_match(&normalized) {
                    continue;
                }
                let r = &cfg.voice_route[i];
                let n = r.pstn_gateway_list.len();
                let turn = self.turns.entry(i).or_insert(0);
                let start = if n == 0 { 0 } else { *turn as usize % n };
                *turn = turn.wrapping_add(1);
                for k in 0..n {
                    let gw = &r.pstn_gateway_list[(start + k) % n];
                    let g = cfg
                        .trunk
                        .iter()
                        .position(|t| &t.identity == gw)
                        .unwrap_or(0);
                    if candidates.iter().any(|c| c.trunk.0 as usize == g) {
                        continue;
                    }
                    let target = &cfg.trunk[g];
                    let called_rules: Vec<&(Regex, String)> = target
                        .outbound_translation_rules
                        .iter()
                        .filter_map(|n| self.rule_re.get(n))
                        .collect();
                    let mut out = Self::rewrite(&called_rules, &normalized)
                        .unwrap_or_else(|| normalized.clone());
                    if target.remove_plus_from_uri && out.starts_with('+') {
                        out.remove(0);
                    }
                    let calling_out = if r.suppress_caller_id {
                        (!r.alternate_caller_id.is_empty()).then(|| r.alternate_caller_id.clone())
                    } else {
                        let rules: Vec<&(Regex, String)> = target
                            .outbound_calling_number_translation_rules
                            .iter()
                            .filter_map(|n| self.rule_re.get(n))
                            .collect();
                        Self::rewrite(&rules, calling)
                    };
                    let escaped: String = out
                        .bytes()
                        .map(|b| {
                            if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
                                (b as char).to_string()
                            } else {
                                format!("%{b:02X}")
                            }
                        })
                        .collect();
                    candidates.push(Candidate {
                        trunk: TrunkId(g as u16),
                        usage: UsageId(uid as u16),
                        route: RouteId(i as u32),
                        request_uri: format!("sip:{escaped}@{};user=phone", target.address),
                        called: out,
                        calling: calling_out,
                        suppress_caller_id: r.suppress_caller_id,
                    });
                }
            }
        }
        self.by_usage = by_usage;
        if candidates.is_empty() {
            Decision::NoRoute
        } else {
            Decision::Route(Routed {
                normalized,
                candidates,
            })
        }
    }
}
