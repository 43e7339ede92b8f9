//! `intertrunk ctl`: the admin API from the shell, with Lync's cmdlet nouns in kebab case.
//!
//! Each verb is one HTTP request to the running relay; the answer is printed the way
//! `Get-CsTrunkConfiguration` prints (`Identity : ...` blocks), or as raw JSON with `--json`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use super::http::{self, percent_encode};
use super::modifier::ListModifier;

/// A Lync-style boolean: `true`/`false`, `$true`/`$false`, `1`/`0`, `yes`/`no`.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().trim_start_matches('$') {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got '{s}'")),
    }
}

/// A multi-valued parameter: checked here so a typo fails before any request.
fn parse_modifier(s: &str) -> Result<ListModifier, String> {
    ListModifier::parse(s).map_err(|e| e.to_string())
}

#[derive(Args, Debug, Clone, Default)]
pub struct TrunkFields {
    /// Peer address ip:port.
    #[arg(long)]
    pub address: Option<String>,
    /// udp (tcp and tls are refused: the relay speaks SIP over UDP).
    #[arg(long)]
    pub transport: Option<String>,
    /// List modifier: '@{add="Local"}', add=Local,PBX, '@{replace="A","B"}', A,B.
    #[arg(long, value_parser = parse_modifier)]
    pub pstn_usages: Option<ListModifier>,
    /// Dial plan identity; "" removes it.
    #[arg(long)]
    pub dial_plan: Option<String>,
    #[arg(long, value_parser = parse_modifier)]
    pub outbound_translation_rules: Option<ListModifier>,
    #[arg(long, value_parser = parse_modifier)]
    pub outbound_calling_number_translation_rules: Option<ListModifier>,
    #[arg(long, value_parser = parse_modifier)]
    pub sip_response_code_translation_rules: Option<ListModifier>,
    #[arg(long, value_parser = parse_bool)]
    pub enable_bypass: Option<bool>,
    #[arg(long, value_parser = parse_bool)]
    pub enable_rtp_latching: Option<bool>,
    #[arg(long, value_parser = parse_bool)]
    pub remove_plus_from_uri: Option<bool>,
    #[arg(long, value_parser = parse_bool)]
    pub enable_fast_failover_timer: Option<bool>,
    #[arg(long)]
    pub max_early_dialogs: Option<u32>,
    #[arg(long, value_parser = parse_bool)]
    pub rtcp_active_calls: Option<bool>,
    #[arg(long, value_parser = parse_bool)]
    pub forward_pai: Option<bool>,
    #[arg(long, value_parser = parse_bool)]
    pub forward_call_history: Option<bool>,
    #[arg(long, value_parser = parse_bool)]
    pub enable_session_timer: Option<bool>,
    #[arg(long)]
    pub options_keepalive_s: Option<u32>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RouteFields {
    /// Regex the normalized called number must match.
    #[arg(long)]
    pub number_pattern: Option<String>,
    #[arg(long, value_parser = parse_modifier)]
    pub pstn_usages: Option<ListModifier>,
    #[arg(long, value_parser = parse_modifier)]
    pub pstn_gateway_list: Option<ListModifier>,
    /// Lower is tried first.
    #[arg(long)]
    pub priority: Option<u32>,
    #[arg(long, value_parser = parse_bool)]
    pub suppress_caller_id: Option<bool>,
    #[arg(long)]
    pub alternate_caller_id: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RuleFields {
    #[arg(long)]
    pub pattern: Option<String>,
    /// `$1`-style translation.
    #[arg(long)]
    pub translation: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ResponseCodeFields {
    #[arg(long)]
    pub received_response_code: Option<u16>,
    #[arg(long)]
    pub translated_response_code: Option<u16>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DialPlanFields {
    /// JSON array of {"name","pattern","translation"}, replacing the dial plan's rules.
    #[arg(long)]
    pub normalization_rules: Option<String>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Verb {
    /// Show trunk configurations (all, or one with --identity).
    GetTrunkConfiguration {
        #[arg(long)]
        identity: Option<String>,
    },
    /// Create a trunk configuration.
    NewTrunkConfiguration {
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        fields: TrunkFields,
    },
    /// Change a trunk configuration.
    SetTrunkConfiguration {
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        fields: TrunkFields,
    },
    /// Delete a trunk configuration.
    RemoveTrunkConfiguration {
        #[arg(long)]
        identity: String,
    },
    /// Show voice routes.
    GetVoiceRoute {
        #[arg(long)]
        identity: Option<String>,
    },
    /// Create a voice route.
    NewVoiceRoute {
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        fields: RouteFields,
    },
    /// Change a voice route.
    SetVoiceRoute {
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        fields: RouteFields,
    },
    /// Delete a voice route.
    RemoveVoiceRoute {
        #[arg(long)]
        identity: String,
    },
    /// Show the global list of PSTN usages.
    GetPstnUsage,
    /// Change the global list of PSTN usages.
    SetPstnUsage {
        /// List modifier: '@{add="Local"}', remove=X, A,B ...
        #[arg(long, alias = "pstn-usages", value_parser = parse_modifier)]
        usage: ListModifier,
    },
    /// Show dial plans.
    GetDialPlan {
        #[arg(long)]
        identity: Option<String>,
    },
    NewDialPlan {
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        fields: DialPlanFields,
    },
    SetDialPlan {
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        fields: DialPlanFields,
    },
    RemoveDialPlan {
        #[arg(long)]
        identity: String,
    },
    /// Show outbound translation rules.
    GetTranslationRule {
        #[arg(long)]
        identity: Option<String>,
    },
    NewTranslationRule {
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        fields: RuleFields,
    },
    SetTranslationRule {
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        fields: RuleFields,
    },
    RemoveTranslationRule {
        #[arg(long)]
        identity: String,
    },
    /// Show SIP response code translation rules.
    GetResponseCodeTranslationRule {
        #[arg(long)]
        identity: Option<String>,
    },
    NewResponseCodeTranslationRule {
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        fields: ResponseCodeFields,
    },
    SetResponseCodeTranslationRule {
        #[arg(long)]
        identity: String,
        #[command(flatten)]
        fields: ResponseCodeFields,
    },
    RemoveResponseCodeTranslationRule {
        #[arg(long)]
        identity: String,
    },
    /// Show how a call from a trunk to a number would be routed, step by step.
    TestIntertrunkRouting {
        #[arg(long)]
        trunk: String,
        #[arg(long)]
        target_number: String,
        /// Calling number (for calling-number translation rules).
        #[arg(long)]
        calling_number: Option<String>,
    },
    /// Re-read the configuration file.
    Reload,
    /// Show calls in progress.
    GetCalls,
}

/// One request the verb turns into.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Value>,
}

fn modifier(m: &Option<ListModifier>) -> Option<Value> {
    m.as_ref().map(ListModifier::to_json)
}

fn put(obj: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        obj.insert(key.to_string(), v);
    }
}

fn trunk_body(identity: Option<&str>, f: &TrunkFields) -> Result<Value, String> {
    let mut o = Map::new();
    put(&mut o, "identity", identity.map(Value::from));
    put(&mut o, "address", f.address.clone().map(Value::from));
    put(&mut o, "transport", f.transport.clone().map(Value::from));
    put(&mut o, "pstn_usages", modifier(&f.pstn_usages));
    // An empty dial plan removes it (null deletes the key).
    put(
        &mut o,
        "dial_plan",
        f.dial_plan.as_ref().map(|d| {
            if d.is_empty() {
                Value::Null
            } else {
                Value::from(d.as_str())
            }
        }),
    );
    put(
        &mut o,
        "outbound_translation_rules",
        modifier(&f.outbound_translation_rules),
    );
    put(
        &mut o,
        "outbound_calling_number_translation_rules",
        modifier(&f.outbound_calling_number_translation_rules),
    );
    put(
        &mut o,
        "sip_response_code_translation_rules",
        modifier(&f.sip_response_code_translation_rules),
    );
    for (k, v) in [
        ("enable_bypass", f.enable_bypass),
        ("enable_rtp_latching", f.enable_rtp_latching),
        ("remove_plus_from_uri", f.remove_plus_from_uri),
        ("enable_fast_failover_timer", f.enable_fast_failover_timer),
        ("rtcp_active_calls", f.rtcp_active_calls),
        ("forward_pai", f.forward_pai),
        ("forward_call_history", f.forward_call_history),
        ("enable_session_timer", f.enable_session_timer),
    ] {
        put(&mut o, k, v.map(Value::from));
    }
    put(
        &mut o,
        "max_early_dialogs",
        f.max_early_dialogs.map(Value::from),
    );
    put(
        &mut o,
        "options_keepalive_s",
        f.options_keepalive_s.map(Value::from),
    );
    non_empty(o, identity)
}

fn route_body(identity: Option<&str>, f: &RouteFields) -> Result<Value, String> {
    let mut o = Map::new();
    put(&mut o, "identity", identity.map(Value::from));
    put(
        &mut o,
        "number_pattern",
        f.number_pattern.clone().map(Value::from),
    );
    put(&mut o, "pstn_usages", modifier(&f.pstn_usages));
    put(&mut o, "pstn_gateway_list", modifier(&f.pstn_gateway_list));
    put(&mut o, "priority", f.priority.map(Value::from));
    put(
        &mut o,
        "suppress_caller_id",
        f.suppress_caller_id.map(Value::from),
    );
    put(
        &mut o,
        "alternate_caller_id",
        f.alternate_caller_id.clone().map(Value::from),
    );
    put(
        &mut o,
        "description",
        f.description.clone().map(Value::from),
    );
    non_empty(o, identity)
}

fn rule_body(identity: Option<&str>, f: &RuleFields) -> Result<Value, String> {
    let mut o = Map::new();
    put(&mut o, "identity", identity.map(Value::from));
    put(&mut o, "pattern", f.pattern.clone().map(Value::from));
    put(
        &mut o,
        "translation",
        f.translation.clone().map(Value::from),
    );
    non_empty(o, identity)
}

fn code_body(identity: Option<&str>, f: &ResponseCodeFields) -> Result<Value, String> {
    let mut o = Map::new();
    put(&mut o, "identity", identity.map(Value::from));
    put(
        &mut o,
        "received_response_code",
        f.received_response_code.map(Value::from),
    );
    put(
        &mut o,
        "translated_response_code",
        f.translated_response_code.map(Value::from),
    );
    non_empty(o, identity)
}

fn dial_plan_body(identity: Option<&str>, f: &DialPlanFields) -> Result<Value, String> {
    let mut o = Map::new();
    put(&mut o, "identity", identity.map(Value::from));
    if let Some(rules) = &f.normalization_rules {
        let v: Value = serde_json::from_str(rules)
            .map_err(|e| format!("--normalization-rules: not JSON: {e}"))?;
        if !v.is_array() {
            return Err("--normalization-rules: expected a JSON array".into());
        }
        o.insert("normalization_rules".into(), v);
    }
    non_empty(o, identity)
}

/// A `set-*` with nothing to set is a mistake worth catching before the request.
fn non_empty(o: Map<String, Value>, identity: Option<&str>) -> Result<Value, String> {
    if identity.is_none() && o.is_empty() {
        return Err("nothing to change: give at least one parameter".into());
    }
    Ok(Value::Object(o))
}

fn one(collection: &str, identity: &str) -> String {
    format!("/{collection}/{}", percent_encode(identity))
}

fn get(collection: &str, identity: &Option<String>) -> Call {
    Call {
        method: "GET",
        path: match identity {
            Some(i) => one(collection, i),
            None => format!("/{collection}"),
        },
        body: None,
    }
}

fn new(collection: &str, body: Value) -> Call {
    Call {
        method: "POST",
        path: format!("/{collection}"),
        body: Some(body),
    }
}

fn set(collection: &str, identity: &str, body: Value) -> Call {
    Call {
        method: "PATCH",
        path: one(collection, identity),
        body: Some(body),
    }
}

fn remove(collection: &str, identity: &str) -> Call {
    Call {
        method: "DELETE",
        path: one(collection, identity),
        body: None,
    }
}

pub const TRUNKS: &str = "trunk-configurations";
pub const ROUTES: &str = "voice-routes";
pub const USAGES: &str = "pstn-usages";
pub const DIAL_PLANS: &str = "dial-plans";
pub const RULES: &str = "translation-rules";
pub const CODE_RULES: &str = "response-code-translation-rules";

impl Verb {
    /// The request this verb sends.
    pub fn call(&self) -> Result<Call, String> {
        use Verb::*;
        Ok(match self {
            GetTrunkConfiguration { identity } => get(TRUNKS, identity),
            NewTrunkConfiguration { identity, fields } => {
                new(TRUNKS, trunk_body(Some(identity), fields)?)
            }
            SetTrunkConfiguration { identity, fields } => {
                set(TRUNKS, identity, trunk_body(None, fields)?)
            }
            RemoveTrunkConfiguration { identity } => remove(TRUNKS, identity),
            GetVoiceRoute { identity } => get(ROUTES, identity),
            NewVoiceRoute { identity, fields } => new(ROUTES, route_body(Some(identity), fields)?),
            SetVoiceRoute { identity, fields } => set(ROUTES, identity, route_body(None, fields)?),
            RemoveVoiceRoute { identity } => remove(ROUTES, identity),
            GetPstnUsage => get(USAGES, &None),
            SetPstnUsage { usage } => Call {
                method: "PATCH",
                path: format!("/{USAGES}"),
                body: Some(serde_json::json!({ "usage": usage.to_json() })),
            },
            GetDialPlan { identity } => get(DIAL_PLANS, identity),
            NewDialPlan { identity, fields } => {
                new(DIAL_PLANS, dial_plan_body(Some(identity), fields)?)
            }
            SetDialPlan { identity, fields } => {
                set(DIAL_PLANS, identity, dial_plan_body(None, fields)?)
            }
            RemoveDialPlan { identity } => remove(DIAL_PLANS, identity),
            GetTranslationRule { identity } => get(RULES, identity),
            NewTranslationRule { identity, fields } => {
                new(RULES, rule_body(Some(identity), fields)?)
            }
            SetTranslationRule { identity, fields } => {
                set(RULES, identity, rule_body(None, fields)?)
            }
            RemoveTranslationRule { identity } => remove(RULES, identity),
            GetResponseCodeTranslationRule { identity } => get(CODE_RULES, identity),
            NewResponseCodeTranslationRule { identity, fields } => {
                new(CODE_RULES, code_body(Some(identity), fields)?)
            }
            SetResponseCodeTranslationRule { identity, fields } => {
                set(CODE_RULES, identity, code_body(None, fields)?)
            }
            RemoveResponseCodeTranslationRule { identity } => remove(CODE_RULES, identity),
            TestIntertrunkRouting {
                trunk,
                target_number,
                calling_number,
            } => {
                let mut body =
                    serde_json::json!({ "trunk": trunk, "target_number": target_number });
                if let Some(c) = calling_number {
                    body["calling_number"] = Value::from(c.as_str());
                }
                Call {
                    method: "POST",
                    path: "/test-intertrunk-routing".into(),
                    body: Some(body),
                }
            }
            Reload => Call {
                method: "POST",
                path: "/reload".into(),
                body: None,
            },
            GetCalls => Call {
                method: "GET",
                path: "/calls".into(),
                body: None,
            },
        })
    }
}

/// Runs one verb against the admin API at `admin`; the exit code is 0 on success.
pub fn run(admin: &str, json: bool, verb: &Verb) -> ExitCode {
    let call = match verb.call() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("intertrunk ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let body = call.body.as_ref().map(|b| b.to_string().into_bytes());
    let resp = match http::request(
        admin,
        call.method,
        &call.path,
        body.as_deref(),
        Duration::from_secs(10),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("intertrunk ctl: cannot reach the admin API at {admin}: {e}");
            return ExitCode::from(3);
        }
    };
    let value: Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&resp.body).into_owned()));
    let ok = (200..300).contains(&resp.status);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else if ok {
        print!("{}", render(verb, &value));
    } else {
        eprint!("{}", render_error(resp.status, &value));
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `pstn_usages` -> `PstnUsages` (how Lync names the parameter).
pub fn pascal(key: &str) -> String {
    key.split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(scalar).collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Object(o) => {
            let parts: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{}={}", pascal(k), scalar(v)))
                .collect();
            format!("{{{}}}", parts.join("; "))
        }
    }
}

/// One `Key : value` block, keys aligned as PowerShell's Format-List does.
pub fn block(obj: &Map<String, Value>) -> String {
    let width = obj.keys().map(|k| pascal(k).len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in obj {
        match v {
            // A list of objects (normalization rules): one line each.
            Value::Array(items) if items.iter().any(Value::is_object) => {
                let name = pascal(k);
                if items.is_empty() {
                    out.push_str(&format!("{name:<width$} : {{}}\n"));
                }
                for (i, item) in items.iter().enumerate() {
                    let label = if i == 0 { name.as_str() } else { "" };
                    out.push_str(&format!("{label:<width$} : {}\n", scalar(item)));
                }
            }
            _ => out.push_str(&format!("{:<width$} : {}\n", pascal(k), scalar(v))),
        }
    }
    out
}

fn blocks(v: &Value) -> String {
    match v {
        Value::Array(items) if items.is_empty() => "(none)\n".to_string(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Object(o) => block(o),
                other => format!("{}\n", scalar(other)),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Object(o) => block(o),
        other => format!("{}\n", scalar(other)),
    }
}

fn render(verb: &Verb, v: &Value) -> String {
    match verb {
        Verb::TestIntertrunkRouting { .. } => render_trace(v),
        Verb::GetCalls => {
            let calls = v.get("calls").unwrap_or(v);
            let mut out = blocks(calls);
            if calls.as_array().is_some_and(|a| a.is_empty()) {
                out = "No calls in progress.\n".into();
            }
            out
        }
        _ => {
            // A change returns {"<noun>": {...}, "persisted": .., "message": ..}.
            let mut out = String::new();
            if let Some(obj) = v.get("object") {
                out.push_str(&blocks(obj));
            } else if v.get("message").is_none() {
                out.push_str(&blocks(v));
            }
            if let Some(m) = v.get("message").and_then(Value::as_str) {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(m);
                out.push('\n');
            }
            out
        }
    }
}

/// An error response: the message and every diagnostic, one per line.
pub fn render_error(status: u16, v: &Value) -> String {
    let mut out = format!(
        "error {status} {}: {}\n",
        http::reason(status),
        v.get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| scalar(v))
    );
    if let Some(diags) = v.get("diagnostics").and_then(Value::as_array) {
        for d in diags {
            out.push_str("  ");
            if let Some(l) = d.get("line").and_then(Value::as_u64) {
                out.push_str(&format!("line {l}: "));
            }
            if let Some(i) = d.get("identity").and_then(Value::as_str) {
                out.push_str(&format!("{i}: "));
            }
            out.push_str(d.get("message").and_then(Value::as_str).unwrap_or(""));
            out.push('\n');
        }
    }
    out
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `test-intertrunk-routing`: every routing step of DESIGN section 5.
pub fn render_trace(v: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!("Trunk          : {}\n", s(v, "source")));
    out.push_str(&format!("TargetNumber   : {}\n", s(v, "called")));
    if !s(v, "calling").is_empty() {
        out.push_str(&format!("CallingNumber  : {}\n", s(v, "calling")));
    }
    // 1. Dial plan.
    let normalized = v.get("normalized").and_then(Value::as_str);
    match v.get("dial_plan").and_then(Value::as_str) {
        None => out.push_str("1. Dial plan    : none on this trunk, number used as is\n"),
        Some(dp) => match (
            v.get("normalization_rule").and_then(Value::as_str),
            normalized,
        ) {
            (Some(rule), Some(n)) => {
                out.push_str(&format!("1. Dial plan    : {dp}, rule {rule} -> {n}\n"))
            }
            _ => out.push_str(&format!(
                "1. Dial plan    : {dp}, no normalization rule matches\n"
            )),
        },
    }
    if let Some(n) = normalized {
        out.push_str(&format!("   Normalized   : {n}\n"));
        // 2. Usages and routes.
        out.push_str("2. PSTN usages, in order:\n");
        match v.get("usages").and_then(Value::as_array) {
            Some(us) if !us.is_empty() => {
                for u in us {
                    match u.get("routes").and_then(Value::as_array) {
                        Some(rs) if !rs.is_empty() => {
                            out.push_str(&format!("   {}:\n", s(u, "usage")));
                            for r in rs {
                                out.push_str(&format!(
                                    "     route {} (priority {}, pattern {}) -> {}\n",
                                    s(r, "identity"),
                                    r.get("priority").map(scalar).unwrap_or_default(),
                                    s(r, "number_pattern"),
                                    r.get("gateways").map(scalar).unwrap_or_default()
                                ));
                            }
                        }
                        _ => out.push_str(&format!("   {}: no matching route\n", s(u, "usage"))),
                    }
                }
            }
            _ => out.push_str("   (the trunk has no PSTN usages)\n"),
        }
        // 3. Gateways.
        out.push_str("3. Gateways in the order they would be tried:\n");
        match v.get("candidates").and_then(Value::as_array) {
            Some(cs) if !cs.is_empty() => {
                for (i, c) in cs.iter().enumerate() {
                    out.push_str(&format!(
                        "   {}. {} (usage {}, route {})\n      Request-URI {}\n",
                        i + 1,
                        s(c, "gateway"),
                        s(c, "usage"),
                        s(c, "route"),
                        s(c, "request_uri"),
                    ));
                    let mut extra = Vec::new();
                    if let Some(calling) = c.get("calling").and_then(Value::as_str) {
                        extra.push(format!("calling number -> {calling}"));
                    }
                    if c.get("suppress_caller_id").and_then(Value::as_bool) == Some(true) {
                        extra.push("caller ID suppressed".to_string());
                    }
                    if !extra.is_empty() {
                        out.push_str(&format!("      {}\n", extra.join(", ")));
                    }
                }
            }
            _ => out.push_str("   (none)\n"),
        }
    }
    out.push_str(&format!("Result         : {}\n", s(v, "result")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser, Debug)]
    struct T {
        #[command(subcommand)]
        verb: Verb,
    }

    fn call(args: &[&str]) -> Call {
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        T::try_parse_from(v).unwrap().verb.call().unwrap()
    }

    #[test]
    fn verbs_become_requests() {
        let c = call(&[
            "set-trunk-configuration",
            "--identity",
            "PstnGateway:gw1",
            "--pstn-usages",
            r#"@{add="Local"}"#,
        ]);
        assert_eq!(c.method, "PATCH");
        assert_eq!(c.path, "/trunk-configurations/PstnGateway:gw1");
        assert_eq!(c.body, Some(json!({"pstn_usages": {"add": ["Local"]}})));

        let c = call(&[
            "set-trunk-configuration",
            "--identity",
            "PstnGateway:gw1",
            "--pstn-usages",
            "add=Local,PBX",
            "--enable-bypass",
            "$true",
            "--dial-plan",
            "",
        ]);
        assert_eq!(
            c.body,
            Some(
                json!({"pstn_usages": {"add": ["Local", "PBX"]}, "dial_plan": null, "enable_bypass": true})
            )
        );

        let c = call(&[
            "new-voice-route",
            "--identity",
            "Local Route",
            "--number-pattern",
            r"^\+1425",
            "--pstn-usages",
            "Local",
            "--pstn-gateway-list",
            r#"@{add="PstnGateway:gw1"}"#,
            "--priority",
            "2",
        ]);
        assert_eq!((c.method, c.path.as_str()), ("POST", "/voice-routes"));
        assert_eq!(
            c.body,
            Some(
                json!({"identity": "Local Route", "number_pattern": "^\\+1425",
                "pstn_usages": {"replace": ["Local"]},
                "pstn_gateway_list": {"add": ["PstnGateway:gw1"]}, "priority": 2})
            )
        );
        let c = call(&["remove-voice-route", "--identity", "Local Route"]);
        assert_eq!(
            (c.method, c.path.as_str()),
            ("DELETE", "/voice-routes/Local%20Route")
        );
        let c = call(&["set-pstn-usage", "--usage", r#"@{add="A"; remove="B"}"#]);
        assert_eq!(
            c.body,
            Some(json!({"usage": {"add": ["A"], "remove": ["B"]}}))
        );
        let c = call(&[
            "test-intertrunk-routing",
            "--trunk",
            "PstnGateway:gw1",
            "--target-number",
            "+12065550100",
        ]);
        assert_eq!(c.path, "/test-intertrunk-routing");
        assert_eq!(c.body.unwrap()["target_number"], "+12065550100");
        assert_eq!(call(&["get-calls"]).path, "/calls");
        assert_eq!(call(&["reload"]).method, "POST");
        assert_eq!(
            call(&["get-trunk-configuration"]).path,
            "/trunk-configurations"
        );
    }

    #[test]
    fn bad_arguments_fail_before_any_request() {
        let parse = |args: &[&str]| {
            let mut v = vec!["t"];
            v.extend_from_slice(args);
            T::try_parse_from(v)
        };
        assert!(parse(&[
            "set-trunk-configuration",
            "--identity",
            "x",
            "--pstn-usages",
            "@{append=\"A\"}"
        ])
        .is_err());
        assert!(parse(&[
            "set-trunk-configuration",
            "--identity",
            "x",
            "--enable-bypass",
            "maybe"
        ])
        .is_err());
        let t = parse(&["set-voice-route", "--identity", "x"]).unwrap();
        assert!(t.verb.call().is_err());
        let t = parse(&[
            "new-dial-plan",
            "--identity",
            "d",
            "--normalization-rules",
            "{",
        ])
        .unwrap();
        assert!(t.verb.call().is_err());
    }

    #[test]
    fn output_reads_like_lync() {
        let v = json!({"identity": "PstnGateway:gw1", "pstn_usages": ["A", "B"], "enable_bypass": false,
            "max_early_dialogs": 20});
        let out = block(v.as_object().unwrap());
        assert_eq!(
            out,
            "Identity        : PstnGateway:gw1\nPstnUsages      : {A, B}\nEnableBypass    : False\nMaxEarlyDialogs : 20\n"
        );
        let err = render_error(
            400,
            &json!({"error": "invalid", "diagnostics": [
            {"line": 3, "identity": "R", "message": "bad regex"}]}),
        );
        assert_eq!(
            err,
            "error 400 Bad Request: invalid\n  line 3: R: bad regex\n"
        );
    }
}
