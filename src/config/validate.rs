//! The semantic checks of a configuration: identities, references, patterns, addresses.

use std::collections::{HashMap, HashSet};

use super::schema::{Elem, SourceMap};
use super::translation::{parse_pattern, simple_pattern, Translation};
use super::{Config, Diagnostic};

const UDP_ONLY: &str = "SIP over TCP and TLS is not supported (this relay speaks SIP over UDP)";

struct Ctx<'a> {
    map: Option<&'a SourceMap>,
    diags: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn line(&self, pick: impl Fn(&SourceMap) -> Option<&Elem>, key: &str) -> Option<usize> {
        self.map.and_then(pick).and_then(|e| e.key_line(key))
    }
    fn broken(&self, section: &'static str, id: &str) -> bool {
        self.map
            .is_some_and(|m| m.broken.contains(&(section, id.to_owned())))
    }
    fn err(&mut self, line: Option<usize>, identity: &str, message: String) {
        self.diags
            .push(Diagnostic::new(line, Some(identity), message));
    }
}

// Identities come from the operator's own file, not from the network: a keyed hasher buys
// nothing here and costs a large part of checking a big table.
type FastMap<K, V> = HashMap<K, V, crate::fnv::BuildFnv>;
type FastSet<K> = HashSet<K, crate::fnv::BuildFnv>;

/// Appends every semantic problem of `cfg` to `diags`.
pub(crate) fn check(cfg: &Config, map: Option<&SourceMap>, diags: &mut Vec<Diagnostic>) {
    check_with(cfg, map, diags, true);
}

/// [`check`], leaving out the voice routes' number patterns when `route_patterns` is false
/// (the route table parses each of them once anyway, and reports what does not parse).
pub(crate) fn check_with(
    cfg: &Config,
    map: Option<&SourceMap>,
    diags: &mut Vec<Diagnostic>,
    route_patterns: bool,
) {
    let mut cx = Ctx { map, diags };

    // [server]
    let s = &cfg.server;
    if s.sip_listen.is_empty() {
        let l = cx.line(|m| Some(&m.server), "sip_listen");
        cx.err(
            l,
            "server",
            "`sip_listen` needs at least one address".into(),
        );
    }
    // The schema names tcp and tls (Lync trunks often use them), but the relay speaks SIP over
    // UDP only: accepting them would send UDP to a peer that listens for TCP or TLS.
    for l in s
        .sip_listen
        .iter()
        .filter(|l| l.transport != super::Transport::Udp)
    {
        let line = cx.line(|m| Some(&m.server), "sip_listen");
        cx.err(line, "server", format!("`sip_listen`: `{l}`: {UDP_ONLY}"));
    }
    if let Err(e) = s.media_ports.to_string().parse::<super::PortRange>() {
        let l = cx.line(|m| Some(&m.server), "media_ports");
        cx.err(l, "server", format!("`media_ports`: {e}"));
    }

    // [voice]
    let mut usages = FastSet::default();
    for u in &cfg.voice.pstn_usages {
        if u.is_empty() || !usages.insert(u.as_str()) {
            let l = cx.line(|m| Some(&m.voice), "pstn_usages");
            let what = if u.is_empty() {
                "an empty PSTN usage name".to_owned()
            } else {
                format!("PSTN usage `{u}` is listed twice")
            };
            cx.err(l, "voice", format!("`pstn_usages`: {what}"));
        }
    }

    let trunks = identities(
        &mut cx,
        "trunk",
        cfg.trunk.iter().map(|t| &t.identity),
        |m| &m.trunk,
    );
    let _ = identities(
        &mut cx,
        "voice_route",
        cfg.voice_route.iter().map(|r| &r.identity),
        |m| &m.voice_route,
    );
    let plans = identities(
        &mut cx,
        "dial_plan",
        cfg.dial_plan.iter().map(|d| &d.identity),
        |m| &m.dial_plan,
    );
    let rules = identities(
        &mut cx,
        "translation_rule",
        cfg.translation_rule.iter().map(|r| &r.identity),
        |m| &m.translation_rule,
    );
    let codes = identities(
        &mut cx,
        "response_code_translation_rule",
        cfg.response_code_translation_rule
            .iter()
            .map(|r| &r.identity),
        |m| &m.response_code_translation_rule,
    );

    // [[trunk]]
    let mut addresses: HashMap<std::net::SocketAddr, &str> = HashMap::new();
    for (i, t) in cfg.trunk.iter().enumerate() {
        let id = t.identity.as_str();
        let at = |cx: &Ctx<'_>, key: &str| cx.line(|m| m.trunk.get(i), key);
        if t.transport != super::Transport::Udp {
            let l = at(&cx, "transport");
            let name = t.transport.as_str();
            cx.err(l, id, format!("`transport`: `{name}`: {UDP_ONLY}"));
        }
        let l = at(&cx, "pstn_usages");
        usage_list(&mut cx, &usages, &t.pstn_usages, id, l);
        if let Some(dp) = &t.dial_plan {
            if !plans.contains_key(dp.as_str()) && !cx.broken("dial_plan", dp) {
                let l = at(&cx, "dial_plan");
                cx.err(
                    l,
                    id,
                    format!("`dial_plan`: no dial plan `{dp}` is defined"),
                );
            }
        }
        for (key, list, set, section, noun) in [
            (
                "outbound_translation_rules",
                &t.outbound_translation_rules,
                &rules,
                "translation_rule",
                "translation rule",
            ),
            (
                "outbound_calling_number_translation_rules",
                &t.outbound_calling_number_translation_rules,
                &rules,
                "translation_rule",
                "translation rule",
            ),
            (
                "sip_response_code_translation_rules",
                &t.sip_response_code_translation_rules,
                &codes,
                "response_code_translation_rule",
                "response code translation rule",
            ),
        ] {
            for name in list {
                if !set.contains_key(name.as_str()) && !cx.broken(section, name) {
                    let l = at(&cx, key);
                    cx.err(l, id, format!("`{key}`: no {noun} `{name}` is defined"));
                }
            }
        }
        if let Some(first) = addresses.insert(t.address, id) {
            let l = at(&cx, "address");
            cx.err(
                l,
                id,
                format!(
                    "`address`: {} is already the address of trunk {first} (a source address must identify one trunk)",
                    t.address
                ),
            );
            addresses.insert(t.address, first);
        }
    }

    // [[voice_route]]
    for (i, r) in cfg.voice_route.iter().enumerate() {
        let id = r.identity.as_str();
        let at = |cx: &Ctx<'_>, key: &str| cx.line(|m| m.voice_route.get(i), key);
        // A pattern of the simple shape is valid without parsing it.
        if route_patterns && simple_pattern(&r.number_pattern).is_none() {
            if let Err(e) = parse_pattern(&r.number_pattern) {
                let l = at(&cx, "number_pattern");
                cx.err(l, id, bad_number_pattern(&e));
            }
        }
        let l = at(&cx, "pstn_usages");
        usage_list(&mut cx, &usages, &r.pstn_usages, id, l);
        let mut seen: SmallSet<'_> = SmallSet::default();
        for g in &r.pstn_gateway_list {
            if !trunks.contains_key(g.as_str()) && !cx.broken("trunk", g) {
                let l = at(&cx, "pstn_gateway_list");
                cx.err(l, id, format!("`pstn_gateway_list`: `{g}` is not a trunk"));
            } else if !seen.insert(g.as_str()) {
                let l = at(&cx, "pstn_gateway_list");
                cx.err(l, id, format!("`pstn_gateway_list`: `{g}` is listed twice"));
            }
        }
        let alt = r
            .alternate_caller_id
            .strip_prefix('+')
            .unwrap_or(&r.alternate_caller_id);
        if !alt.bytes().all(|b| b.is_ascii_digit()) {
            let l = at(&cx, "alternate_caller_id");
            cx.err(
                l,
                id,
                format!(
                    "`alternate_caller_id` `{}` must be a number (digits, optionally after +)",
                    r.alternate_caller_id
                ),
            );
        }
    }

    // [[dial_plan]]
    for (i, d) in cfg.dial_plan.iter().enumerate() {
        let mut names: SmallSet<'_> = SmallSet::default();
        for (j, rule) in d.normalization_rules.iter().enumerate() {
            let line = cx
                .map
                .and_then(|m| m.dial_plan.get(i))
                .and_then(|e| e.rules.get(j).and_then(|r| r.line).or(e.line));
            let id = format!("{}/{}", d.identity, rule.name);
            if !names.insert(rule.name.as_str()) {
                cx.err(
                    line,
                    &id,
                    "normalization rule name is used twice in this dial plan".into(),
                );
            }
            rule_pattern(&mut cx, (line, line), &id, &rule.pattern, &rule.translation);
        }
    }

    // [[translation_rule]]
    for (i, r) in cfg.translation_rule.iter().enumerate() {
        let lines = (
            cx.line(|m| m.translation_rule.get(i), "pattern"),
            cx.line(|m| m.translation_rule.get(i), "translation"),
        );
        rule_pattern(&mut cx, lines, &r.identity, &r.pattern, &r.translation);
    }

    // [[response_code_translation_rule]]
    for (i, r) in cfg.response_code_translation_rule.iter().enumerate() {
        for (key, code) in [
            ("received_response_code", r.received_response_code),
            ("translated_response_code", r.translated_response_code),
        ] {
            if !(100..=699).contains(&code) {
                let l = cx.line(|m| m.response_code_translation_rule.get(i), key);
                cx.err(
                    l,
                    &r.identity,
                    format!("`{key}`: {code} is not a SIP response code"),
                );
            }
        }
    }
}

/// Reports empty and duplicate identities of one section; returns the identities (with the
/// line of each one's first definition).
fn identities<'c>(
    cx: &mut Ctx<'_>,
    section: &str,
    ids: impl ExactSizeIterator<Item = &'c String>,
    elems: impl Fn(&SourceMap) -> &Vec<Elem>,
) -> FastMap<&'c str, Option<usize>> {
    let mut first: FastMap<&str, Option<usize>> =
        FastMap::with_capacity_and_hasher(ids.len(), Default::default());
    for (i, id) in ids.enumerate() {
        let line = cx.line(|m| elems(m).get(i), "identity");
        if id.is_empty() {
            cx.err(line, "", format!("{section} with an empty identity"));
            continue;
        }
        if let Some(prev) = first.get(id.as_str()) {
            let where_ = prev
                .map(|l| format!(" (first at line {l})"))
                .unwrap_or_default();
            cx.err(line, id, format!("duplicate {section} identity{where_}"));
        } else {
            first.insert(id, line);
        }
    }
    first
}

/// The names already seen in one short list (a route's gateways, a trunk's usages): a linear
/// scan while the list is short, which is nearly always, instead of a set per object.
#[derive(Default)]
struct SmallSet<'a> {
    few: smallvec::SmallVec<[&'a str; 8]>,
    many: FastSet<&'a str>,
}

impl<'a> SmallSet<'a> {
    /// False when `s` was there already.
    fn insert(&mut self, s: &'a str) -> bool {
        if !self.many.is_empty() {
            return self.many.insert(s);
        }
        if self.few.contains(&s) {
            return false;
        }
        self.few.push(s);
        if self.few.len() > 16 {
            self.many.extend(self.few.drain(..));
        }
        true
    }
}

fn usage_list(
    cx: &mut Ctx<'_>,
    global: &FastSet<&str>,
    list: &[String],
    id: &str,
    line: Option<usize>,
) {
    let mut seen: SmallSet<'_> = SmallSet::default();
    for u in list {
        if !global.contains(u.as_str()) {
            cx.err(
                line,
                id,
                format!("`pstn_usages`: `{u}` is not in the global PSTN usage list ([voice] pstn_usages)"),
            );
        } else if !seen.insert(u.as_str()) {
            cx.err(line, id, format!("`pstn_usages`: `{u}` is listed twice"));
        }
    }
}

/// The diagnostic of a voice route whose pattern does not parse.
pub(crate) fn bad_number_pattern(e: &str) -> String {
    format!("`number_pattern` is not a valid regex: {e}")
}

fn rule_pattern(
    cx: &mut Ctx<'_>,
    (line, tline): (Option<usize>, Option<usize>),
    id: &str,
    pattern: &str,
    translation: &str,
) {
    match parse_pattern(pattern) {
        Err(e) => cx.err(line, id, format!("`pattern` is not a valid regex: {e}")),
        Ok(info) => {
            if let Err(e) = Translation::parse(translation, &info) {
                cx.err(tline, id, format!("`translation`: {e}"));
            }
        }
    }
}
