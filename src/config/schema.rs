//! The structural check of a configuration document, before serde sees it.
//!
//! serde stops at the first problem; an admin wants them all. So this walk checks every key of
//! every table against the schema (unknown keys, wrong types, bad addresses, missing required
//! keys), records the line of every object and key for the semantic checks that follow, and
//! drops what is broken so that serde can still build the rest and those checks can run on it.

use std::collections::HashSet;

use toml_edit::{ImDocument, Item, TableLike, Value};

use super::Diagnostic;

/// Byte offset -> 1-based line.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        LineIndex { starts }
    }
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

/// Where each object of a configuration sits in its file. Indices follow the parsed
/// `Config`'s vectors (objects dropped as broken are not in either).
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    pub server: Elem,
    pub voice: Elem,
    pub trunk: Vec<Elem>,
    pub voice_route: Vec<Elem>,
    pub dial_plan: Vec<Elem>,
    pub translation_rule: Vec<Elem>,
    pub response_code_translation_rule: Vec<Elem>,
    /// Identities of objects dropped as broken, per section: references to them are not
    /// reported again as dangling.
    pub broken: HashSet<(&'static str, String)>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Elem {
    pub line: Option<usize>,
    /// Line of each known key (the schema's own name for it: no string per key and object).
    pub keys: Vec<(&'static str, usize)>,
    /// Normalization rules of a dial plan.
    pub rules: Vec<Elem>,
}

impl Elem {
    /// The line of `key`, else the line of the object.
    pub(crate) fn key_line(&self, key: &str) -> Option<usize> {
        self.keys
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, l)| *l)
            .or(self.line)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Bool,
    Int(i64, i64),
    StrList,
    SockAddr,
    Ip,
    ListenList,
    PortRange,
    Transport,
    Rules,
}

struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
}

const fn f(name: &'static str, kind: Kind, required: bool) -> Field {
    Field {
        name,
        kind,
        required,
    }
}

const U32: Kind = Kind::Int(0, u32::MAX as i64);

const SERVER: &[Field] = &[
    f("sip_listen", Kind::ListenList, false),
    f("public_address", Kind::Ip, false),
    f("media_address", Kind::Ip, false),
    f("media_ports", Kind::PortRange, false),
    f("workers", Kind::Int(0, 4096), false),
    f("admin_listen", Kind::SockAddr, false),
    f("media_timeout_s", U32, false),
    f("media_batch_wait_us", Kind::Int(0, 100_000), false),
    f("sip_batch_wait_us", Kind::Int(0, 100_000), false),
    f("sip_overload_queue_ms", Kind::Int(0, 10_000), false),
    f("realtime_priority", Kind::Int(0, 99), false),
];
const VOICE: &[Field] = &[f("pstn_usages", Kind::StrList, false)];
const TRUNK: &[Field] = &[
    f("identity", Kind::Str, true),
    f("address", Kind::SockAddr, true),
    f("transport", Kind::Transport, false),
    f("pstn_usages", Kind::StrList, false),
    f("dial_plan", Kind::Str, false),
    f("outbound_translation_rules", Kind::StrList, false),
    f(
        "outbound_calling_number_translation_rules",
        Kind::StrList,
        false,
    ),
    f("sip_response_code_translation_rules", Kind::StrList, false),
    f("enable_bypass", Kind::Bool, false),
    f("enable_rtp_latching", Kind::Bool, false),
    f("remove_plus_from_uri", Kind::Bool, false),
    f("enable_fast_failover_timer", Kind::Bool, false),
    f("max_early_dialogs", U32, false),
    f("rtcp_active_calls", Kind::Bool, false),
    f("forward_pai", Kind::Bool, false),
    f("forward_call_history", Kind::Bool, false),
    f("enable_session_timer", Kind::Bool, false),
    f("options_keepalive_s", U32, false),
];
const VOICE_ROUTE: &[Field] = &[
    f("identity", Kind::Str, true),
    f("number_pattern", Kind::Str, true),
    f("pstn_usages", Kind::StrList, false),
    f("pstn_gateway_list", Kind::StrList, false),
    f("priority", U32, false),
    f("suppress_caller_id", Kind::Bool, false),
    f("alternate_caller_id", Kind::Str, false),
    f("description", Kind::Str, false),
];
const DIAL_PLAN: &[Field] = &[
    f("identity", Kind::Str, true),
    f("normalization_rules", Kind::Rules, false),
];
const NORMALIZATION_RULE: &[Field] = &[
    f("name", Kind::Str, true),
    f("pattern", Kind::Str, true),
    f("translation", Kind::Str, true),
];
const TRANSLATION_RULE: &[Field] = &[
    f("identity", Kind::Str, true),
    f("pattern", Kind::Str, true),
    f("translation", Kind::Str, true),
];
const RESPONSE_CODE_RULE: &[Field] = &[
    f("identity", Kind::Str, true),
    f("received_response_code", Kind::Int(100, 699), true),
    f("translated_response_code", Kind::Int(100, 699), true),
];

/// The array sections, in file-format order.
const ARRAYS: &[(&str, &[Field])] = &[
    ("trunk", TRUNK),
    ("voice_route", VOICE_ROUTE),
    ("dial_plan", DIAL_PLAN),
    ("translation_rule", TRANSLATION_RULE),
    ("response_code_translation_rule", RESPONSE_CODE_RULE),
];

pub(crate) struct Checked {
    pub diagnostics: Vec<Diagnostic>,
    /// The document without what is broken, for serde.
    /// The document without its broken parts, as TOML text; None when nothing was dropped
    /// (the parsed document can then be deserialized as it is).
    pub cleaned: Option<String>,
    pub map: SourceMap,
}

/// What to drop from the document before serde reads it.
enum Drop {
    Top(String),
    Key(String, Option<usize>, String),
    Elem(String, usize),
    Rule(usize, usize, String),
}

struct Walker<'a> {
    lines: LineIndex,
    diags: Vec<Diagnostic>,
    drops: Vec<Drop>,
    _text: &'a str,
}

pub(crate) fn check(text: &str, doc: &ImDocument<String>) -> Checked {
    let mut w = Walker {
        lines: LineIndex::new(text),
        diags: Vec::new(),
        drops: Vec::new(),
        _text: text,
    };
    let mut map = SourceMap::default();
    let root = doc.as_table();
    for (key, item) in root.iter() {
        let kline = root
            .key(key)
            .and_then(|k| k.span())
            .map(|s| w.lines.line(s.start));
        match key {
            "server" | "voice" => {
                let Some(t) = item.as_table_like() else {
                    w.err(kline, None, format!("`{key}` must be a table"));
                    w.drops.push(Drop::Top(key.to_owned()));
                    continue;
                };
                let fields = if key == "server" { SERVER } else { VOICE };
                let line = table_span(item).map(|s| w.lines.line(s.start)).or(kline);
                let (elem, _) = w.table(t, line, fields, key, key, None);
                // Every key of these tables has a default: a broken key is just dropped.
                if key == "server" {
                    map.server = elem;
                } else {
                    map.voice = elem;
                }
            }
            _ => {
                let Some((section, fields)) = ARRAYS.iter().find(|(n, _)| *n == key) else {
                    w.err(
                        kline,
                        None,
                        format!(
                            "unknown key `{key}` (expected server, voice, trunk, voice_route, dial_plan, translation_rule or response_code_translation_rule)"
                        ),
                    );
                    w.drops.push(Drop::Top(key.to_owned()));
                    continue;
                };
                let Some(elems) = elements(item) else {
                    w.err(
                        kline,
                        None,
                        format!("`{key}` must be an array of tables ([[{key}]])"),
                    );
                    w.drops.push(Drop::Top(key.to_owned()));
                    continue;
                };
                let mut kept = Vec::new();
                for (i, (t, span)) in elems.into_iter().enumerate() {
                    let line = span.map(|s| w.lines.line(s.start)).or(kline);
                    let ident = t.get("identity").and_then(Item::as_str).map(str::to_owned);
                    let (elem, ok) = w.table(t, line, fields, section, key, Some(i));
                    if ok {
                        kept.push(elem);
                    } else {
                        w.drops.push(Drop::Elem(key.to_owned(), i));
                        if let Some(id) = ident {
                            map.broken.insert((section, id));
                        }
                    }
                }
                match *section {
                    "trunk" => map.trunk = kept,
                    "voice_route" => map.voice_route = kept,
                    "dial_plan" => map.dial_plan = kept,
                    "translation_rule" => map.translation_rule = kept,
                    _ => map.response_code_translation_rule = kept,
                }
            }
        }
    }
    let cleaned = w.clean(doc);
    Checked {
        diagnostics: w.diags,
        cleaned,
        map,
    }
}

/// The span that locates a table: its header for `[x]`/`[[x]]`, the braces for inline ones.
fn table_span(item: &Item) -> Option<std::ops::Range<usize>> {
    match item {
        Item::Table(t) => t.span(),
        Item::Value(Value::InlineTable(t)) => t.span(),
        _ => None,
    }
}

type ElemRef<'a> = (&'a dyn TableLike, Option<std::ops::Range<usize>>);

/// The tables of an array section, whether written `[[x]]` or `x = [{..}, ..]`.
fn elements(item: &Item) -> Option<Vec<ElemRef<'_>>> {
    match item {
        Item::ArrayOfTables(a) => Some(a.iter().map(|t| (t as &dyn TableLike, t.span())).collect()),
        Item::Value(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_inline_table().map(|t| (t as &dyn TableLike, t.span())))
            .collect(),
        _ => None,
    }
}

impl Walker<'_> {
    fn err(&mut self, line: Option<usize>, identity: Option<&str>, message: String) {
        self.diags.push(Diagnostic::new(line, identity, message));
    }

    /// Checks one table against `fields`. Returns its source map entry and whether it is
    /// usable (every required key present and well typed).
    fn table(
        &mut self,
        t: &dyn TableLike,
        line: Option<usize>,
        fields: &[Field],
        section: &str,
        top: &str,
        index: Option<usize>,
    ) -> (Elem, bool) {
        let name_key = if fields.iter().any(|f| f.name == "identity") {
            "identity"
        } else {
            "name"
        };
        let ident: String = match t.get(name_key).and_then(Item::as_str) {
            Some(s) => s.to_owned(),
            None if index.is_none() => section.to_owned(),
            None => format!("{section} #{}", index.unwrap_or(0) + 1),
        };
        let mut elem = Elem {
            line,
            ..Elem::default()
        };
        let mut ok = true;
        for (key, item) in t.iter() {
            let kline = t
                .get_key_value(key)
                .and_then(|(k, _)| k.span())
                .map(|s| self.lines.line(s.start))
                .or(line);
            let Some(field) = fields.iter().find(|f| f.name == key) else {
                let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
                self.err(
                    kline,
                    Some(&ident),
                    format!(
                        "unknown key `{key}` in {section} (known keys: {})",
                        known.join(", ")
                    ),
                );
                self.drops
                    .push(Drop::Key(top.to_owned(), index, key.to_owned()));
                continue;
            };
            if let Some(l) = kline {
                elem.keys.push((field.name, l));
            }
            let problem = if field.kind == Kind::Rules {
                self.rules(item, &ident, kline, index, &mut elem)
            } else {
                check_value(item, field.kind)
            };
            if let Some(msg) = problem {
                self.err(kline, Some(&ident), format!("`{key}`: {msg}"));
                if field.required {
                    ok = false;
                } else {
                    self.drops
                        .push(Drop::Key(top.to_owned(), index, key.to_owned()));
                }
            }
        }
        for field in fields.iter().filter(|f| f.required) {
            if t.get(field.name).is_none() {
                self.err(
                    line,
                    Some(&ident),
                    format!("missing required key `{}` in {section}", field.name),
                );
                ok = false;
            }
        }
        (elem, ok)
    }

    /// Checks the normalization rules of dial plan `index`; drops the broken ones.
    fn rules(
        &mut self,
        item: &Item,
        plan: &str,
        kline: Option<usize>,
        index: Option<usize>,
        elem: &mut Elem,
    ) -> Option<String> {
        let Some(rules) = elements(item) else {
            return Some(
                "expected an array of tables ({ name = .., pattern = .., translation = .. })"
                    .into(),
            );
        };
        for (i, (t, span)) in rules.into_iter().enumerate() {
            let line = span.map(|s| self.lines.line(s.start)).or(kline);
            let section = format!("normalization rule of dial plan {plan}");
            let before = self.diags.len();
            let (mut rule, ok) = self.table(t, line, NORMALIZATION_RULE, &section, "", None);
            // A rule with any problem is dropped whole (its keys cannot be dropped one by
            // one: all are required).
            if ok && self.diags.len() == before {
                // Keys of a rule are reported through its own line.
                rule.keys.clear();
                elem.rules.push(rule);
            } else {
                self.drops
                    .push(Drop::Rule(index.unwrap_or(0), i, "dial_plan".into()));
            }
        }
        None
    }

    /// The document without the dropped parts, as TOML text; None when nothing is dropped.
    fn clean(&mut self, doc: &ImDocument<String>) -> Option<String> {
        if self.drops.is_empty() {
            return None;
        }
        let mut m = doc.clone().into_mut();
        // Keys and rules first (they index elements as they are in the file), then elements
        // from the back, then whole sections.
        let root = m.as_table_mut();
        for d in &self.drops {
            match d {
                Drop::Key(top, idx, key) => {
                    // Keys of a normalization rule are dropped with the rule itself.
                    if top.is_empty() {
                        continue;
                    }
                    if let Some(t) = root.get_mut(top).and_then(|i| elem_mut(i, *idx)) {
                        t.remove(key);
                    }
                }
                Drop::Rule(plan, rule, top) => {
                    if let Some(t) = root.get_mut(top).and_then(|i| elem_mut(i, Some(*plan))) {
                        if let Some(item) = t.get_mut("normalization_rules") {
                            mark_rule(item, *rule);
                        }
                    }
                }
                _ => {}
            }
        }
        // Rules were marked (not removed) so that indices stayed valid; remove them now.
        if let Some(Item::ArrayOfTables(a)) = root.get_mut("dial_plan") {
            for t in a.iter_mut() {
                if let Some(item) = t.get_mut("normalization_rules") {
                    sweep_rules(item);
                }
            }
        } else if let Some(Item::Value(Value::Array(a))) = root.get_mut("dial_plan") {
            for v in a.iter_mut() {
                if let Some(item) = v
                    .as_inline_table_mut()
                    .and_then(|t| t.get_mut("normalization_rules"))
                {
                    sweep_rules_value(item);
                }
            }
        }
        let mut elems: Vec<(&str, usize)> = self
            .drops
            .iter()
            .filter_map(|d| match d {
                Drop::Elem(top, i) => Some((top.as_str(), *i)),
                _ => None,
            })
            .collect();
        elems.sort_by_key(|e| std::cmp::Reverse(e.1));
        for (top, i) in elems {
            match root.get_mut(top) {
                Some(Item::ArrayOfTables(a)) => a.remove(i),
                Some(Item::Value(Value::Array(a))) => {
                    a.remove(i);
                }
                _ => {}
            }
        }
        for d in &self.drops {
            if let Drop::Top(k) = d {
                root.remove(k);
            }
        }
        Some(m.to_string())
    }
}

const DROPPED_RULE: &str = "\u{0}dropped";

fn mark_rule(item: &mut Item, i: usize) {
    match item {
        Item::ArrayOfTables(a) => {
            if let Some(t) = a.get_mut(i) {
                t.insert(DROPPED_RULE, toml_edit::value(true));
            }
        }
        Item::Value(Value::Array(a)) => {
            if let Some(t) = a.get_mut(i).and_then(Value::as_inline_table_mut) {
                t.insert(DROPPED_RULE, Value::from(true));
            }
        }
        _ => {}
    }
}

fn sweep_rules(item: &mut Item) {
    match item {
        Item::ArrayOfTables(a) => a.retain(|t| !t.contains_key(DROPPED_RULE)),
        Item::Value(v) => sweep_rules_value(v),
        _ => {}
    }
}

fn sweep_rules_value(v: &mut Value) {
    if let Value::Array(a) = v {
        a.retain(|v| {
            !v.as_inline_table()
                .is_some_and(|t| t.contains_key(DROPPED_RULE))
        });
    }
}

fn elem_mut(item: &mut Item, idx: Option<usize>) -> Option<&mut dyn TableLike> {
    match (item, idx) {
        (Item::Table(t), None) => Some(t),
        (Item::Value(Value::InlineTable(t)), None) => Some(t),
        (Item::ArrayOfTables(a), Some(i)) => a.get_mut(i).map(|t| t as &mut dyn TableLike),
        (Item::Value(Value::Array(a)), Some(i)) => a
            .get_mut(i)
            .and_then(Value::as_inline_table_mut)
            .map(|t| t as &mut dyn TableLike),
        _ => None,
    }
}

fn check_value(item: &Item, kind: Kind) -> Option<String> {
    let s = item.as_str();
    match kind {
        Kind::Str => s.is_none().then(|| "expected a string".into()),
        Kind::Bool => item
            .as_bool()
            .is_none()
            .then(|| "expected true or false".into()),
        Kind::Int(lo, hi) => match item.as_integer() {
            Some(n) if (lo..=hi).contains(&n) => None,
            Some(n) => Some(format!("{n} is out of range ({lo}..={hi})")),
            None => Some("expected an integer".into()),
        },
        Kind::StrList => match item.as_array() {
            Some(a) if a.iter().all(|v| v.as_str().is_some()) => None,
            _ => Some("expected a list of strings".into()),
        },
        Kind::SockAddr => match s.map(str::parse::<std::net::SocketAddr>) {
            Some(Ok(_)) => None,
            Some(Err(_)) => Some(format!(
                "`{}` is not an ip:port address",
                s.unwrap_or_default()
            )),
            None => Some("expected an \"ip:port\" string".into()),
        },
        Kind::Ip => match s.map(str::parse::<std::net::IpAddr>) {
            Some(Ok(_)) => None,
            Some(Err(_)) => Some(format!("`{}` is not an IP address", s.unwrap_or_default())),
            None => Some("expected an IP address string".into()),
        },
        Kind::ListenList => match item.as_array() {
            Some(a) => {
                let errs: Vec<String> = a
                    .iter()
                    .filter_map(|v| match v.as_str() {
                        Some(s) => s.parse::<super::Listen>().err(),
                        None => Some("expected \"transport:ip:port\" strings".into()),
                    })
                    .collect();
                (!errs.is_empty()).then(|| errs.join("; "))
            }
            None => Some("expected a list of \"transport:ip:port\" strings".into()),
        },
        Kind::PortRange => match s {
            Some(s) => s.parse::<super::PortRange>().err(),
            None => Some("expected a \"first-last\" string".into()),
        },
        Kind::Transport => match s {
            Some(s) => s.parse::<super::Transport>().err(),
            None => Some("expected a string (udp, tcp or tls)".into()),
        },
        // Handled by the walker itself.
        Kind::Rules => None,
    }
}
