//! The admin API end to end on a loopback port with a real configuration file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use intertrunk::config::{Config, DEFAULT_CONFIG};
use intertrunk::control::calls::{CallState, CallTable, NewCall};
use intertrunk::control::http;
use intertrunk::control::metrics::{Counter, Metrics};
use intertrunk::control::{spawn_at, ControlHandle};
use intertrunk::route::{LiveTable, RouteTable};
use serde_json::{json, Value};

fn temp_config(text: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "intertrunk-control-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("intertrunk.toml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Relay {
    control: Option<ControlHandle>,
    live: LiveTable,
    path: Option<PathBuf>,
    calls: Arc<CallTable>,
    metrics: Arc<Metrics>,
}

impl Relay {
    fn start(path: Option<PathBuf>) -> Relay {
        let cfg = match &path {
            Some(p) => Config::load(p).unwrap(),
            None => Config::from_toml(DEFAULT_CONFIG).unwrap(),
        };
        let live = LiveTable::new(Arc::new(RouteTable::build(Arc::new(cfg)).unwrap()));
        let metrics = Arc::new(Metrics::new(2));
        let calls = Arc::new(CallTable::new(2));
        let control = spawn_at(
            "127.0.0.1:0".parse().unwrap(),
            live.clone(),
            path.clone(),
            metrics.clone(),
            calls.clone(),
        )
        .unwrap();
        Relay {
            control: Some(control),
            live,
            path,
            calls,
            metrics,
        }
    }

    fn addr(&self) -> String {
        self.control.as_ref().unwrap().admin_addr().to_string()
    }

    fn req(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let r = http::request(
            &self.addr(),
            method,
            path,
            body.as_deref().map(str::as_bytes),
            Duration::from_secs(10),
        )
        .unwrap();
        let v = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
        (r.status, v)
    }

    fn file(&self) -> String {
        std::fs::read_to_string(self.path.as_ref().unwrap()).unwrap()
    }

    fn config(&self) -> Arc<Config> {
        self.live.load().config().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(c) = self.control.take() {
            c.shutdown();
        }
        if let Some(p) = &self.path {
            let _ = std::fs::remove_dir_all(p.parent().unwrap());
        }
    }
}

#[test]
fn change_persists_keeps_comments_and_reloads_to_the_same_table() {
    let relay = Relay::start(Some(temp_config(DEFAULT_CONFIG)));
    let g0 = relay.live.load().generation();

    let (st, v) = relay.req(
        "PATCH",
        "/trunk-configurations/PstnGateway:gw1",
        Some(json!({"pstn_usages": {"add": ["ToPSTN"]}, "enable_rtp_latching": true})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["persisted"], true);
    assert_eq!(
        v["object"]["pstn_usages"],
        json!(["ToPBX1", "ToPBX2", "ToPSTN"])
    );
    let cfg = relay.config();
    let gw1 = cfg.trunk("PstnGateway:gw1").unwrap();
    assert_eq!(gw1.pstn_usages, ["ToPBX1", "ToPBX2", "ToPSTN"]);
    assert!(gw1.enable_rtp_latching);
    assert!(relay.live.load().generation() > g0);

    // New route, a global usage, removal, via the API.
    let (st, v) = relay.req(
        "POST",
        "/pstn-usages",
        Some(json!({"usage": {"add": ["Local"]}})),
    );
    assert_eq!(st, 405, "{v}");
    let (st, v) = relay.req(
        "PATCH",
        "/pstn-usages",
        Some(json!({"usage": {"add": ["Local"]}})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["usage"], json!(["ToPBX1", "ToPBX2", "ToPSTN", "Local"]));
    let (st, v) = relay.req(
        "POST",
        "/voice-routes",
        Some(
            json!({"identity": "Local", "number_pattern": "^\\+1425\\d{7}$",
                    "pstn_usages": ["Local"], "pstn_gateway_list": {"add": ["PstnGateway:gw1"]},
                    "priority": 1}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["object"]["pstn_gateway_list"], json!(["PstnGateway:gw1"]));
    let (st, _) = relay.req("DELETE", "/voice-routes/PSTN", None);
    assert_eq!(st, 200);
    let (st, v) = relay.req("GET", "/voice-routes/PSTN", None);
    assert_eq!(st, 404, "{v}");

    // Restart: the file gives the same configuration as the one in force.
    let text = relay.file();
    let reloaded = Config::from_toml(&text).unwrap();
    assert_eq!(reloaded, *relay.config());
    // Comments and untouched layout survive.
    for line in DEFAULT_CONFIG.lines().filter(|l| l.starts_with('#')) {
        assert!(text.contains(line), "lost comment: {line}");
    }
    assert!(
        text.contains("  { name = \"TenDigit\", pattern = '^(\\d{10})$', translation = '+1$1' },")
    );
    // And reloading it changes nothing.
    let (st, v) = relay.req("POST", "/reload", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(*relay.config(), reloaded);
}

#[test]
fn a_change_that_fails_validation_changes_nothing() {
    let relay = Relay::start(Some(temp_config(DEFAULT_CONFIG)));
    let before_file = relay.file();
    let before = relay.live.load();

    let (st, v) = relay.req(
        "PATCH",
        "/voice-routes/PBX1",
        Some(json!({"pstn_usages": {"add": ["NoSuchUsage"]}, "number_pattern": "^(unclosed"})),
    );
    assert_eq!(st, 400, "{v}");
    let diags = v["diagnostics"].as_array().unwrap();
    assert!(diags.len() >= 2, "every problem is reported: {v}");
    assert!(
        diags
            .iter()
            .all(|d| d["identity"] == "PBX1" || d["identity"].is_null()),
        "{v}"
    );
    assert!(v.to_string().contains("NoSuchUsage"));

    // A gateway that is not a trunk, removing a usage still in use, a dangling dial plan.
    for (method, path, body) in [
        (
            "PATCH",
            "/voice-routes/PBX1",
            json!({"pstn_gateway_list": ["PstnGateway:nope"]}),
        ),
        (
            "PATCH",
            "/pstn-usages",
            json!({"usage": {"remove": ["ToPBX1"]}}),
        ),
        (
            "PATCH",
            "/trunk-configurations/PstnGateway:pbx1",
            json!({"dial_plan": "Nope"}),
        ),
        (
            "PATCH",
            "/trunk-configurations/PstnGateway:pbx1",
            json!({"no_such_key": 1}),
        ),
        (
            "PATCH",
            "/trunk-configurations/PstnGateway:pbx1",
            json!({"max_early_dialogs": "x"}),
        ),
        (
            "POST",
            "/trunk-configurations",
            json!({"identity": "PstnGateway:dup", "address": "127.0.0.11:5060"}),
        ),
    ] {
        let (st, v) = relay.req(method, path, Some(body));
        assert_eq!(st, 400, "{method} {path}: {v}");
        assert!(!v["diagnostics"].as_array().unwrap().is_empty(), "{v}");
    }
    // 404 and 409 and malformed requests.
    let (st, _) = relay.req("PATCH", "/voice-routes/Nope", Some(json!({"priority": 1})));
    assert_eq!(st, 404);
    let (st, _) = relay.req("DELETE", "/dial-plans/Nope", None);
    assert_eq!(st, 404);
    let (st, v) = relay.req(
        "POST",
        "/voice-routes",
        Some(json!({"identity": "PBX1", "number_pattern": "x"})),
    );
    assert_eq!(st, 409, "{v}");
    let (st, _) = relay.req(
        "PATCH",
        "/voice-routes/PBX1",
        Some(json!({"pstn_usages": {"append": ["x"]}})),
    );
    assert_eq!(st, 400);
    let (st, _) = relay.req(
        "PATCH",
        "/voice-routes/PBX1",
        Some(json!({"identity": "Other"})),
    );
    assert_eq!(st, 400);
    let r = http::request(
        &relay.addr(),
        "PATCH",
        "/voice-routes/PBX1",
        Some(b"{not json"),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    let (st, _) = relay.req("GET", "/nothing-here", None);
    assert_eq!(st, 404);
    let (st, _) = relay.req("PUT", "/voice-routes", None);
    assert_eq!(st, 405);

    assert_eq!(relay.file(), before_file);
    let after = relay.live.load();
    assert!(
        Arc::ptr_eq(&before, &after),
        "the table in force was replaced"
    );
}

#[test]
fn hand_edited_file_is_not_overwritten_and_broken_reload_keeps_the_table() {
    let relay = Relay::start(Some(temp_config(DEFAULT_CONFIG)));
    let path = relay.path.clone().unwrap();
    let edited = DEFAULT_CONFIG.replace("media_timeout_s = 30", "media_timeout_s = 31")
        + "\n# edited by hand\n";
    std::fs::write(&path, &edited).unwrap();
    let (st, v) = relay.req("PATCH", "/voice-routes/PBX1", Some(json!({"priority": 3})));
    assert_eq!(st, 409, "{v}");
    assert_eq!(relay.file(), edited);
    let (st, _) = relay.req("POST", "/reload", None);
    assert_eq!(st, 200);
    let (st, v) = relay.req("PATCH", "/voice-routes/PBX1", Some(json!({"priority": 3})));
    assert_eq!(st, 200, "{v}");
    assert!(relay.file().contains("# edited by hand"));
    assert_eq!(relay.config().server.media_timeout_s, 31);

    // A broken file: reload refuses with every diagnostic and keeps the table.
    let before = relay.live.load();
    std::fs::write(
        &path,
        DEFAULT_CONFIG.replace("^\\+1425555\\d{4}$", "^(") + "\n[bogus]\n",
    )
    .unwrap();
    let (st, v) = relay.req("POST", "/reload", None);
    assert_eq!(st, 400, "{v}");
    let diags = v["diagnostics"].as_array().unwrap();
    assert!(diags.len() >= 2, "{v}");
    assert!(diags.iter().all(|d| d["line"].is_u64()), "{v}");
    assert!(Arc::ptr_eq(&before, &relay.live.load()));
}

#[test]
fn concurrent_changes_are_serialized() {
    let relay = Arc::new(Relay::start(Some(temp_config(DEFAULT_CONFIG))));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let relay = relay.clone();
            std::thread::spawn(move || {
                for j in 0..3 {
                    let (st, v) = relay.req(
                        "PATCH",
                        "/pstn-usages",
                        Some(json!({"usage": {"add": [format!("U{i}-{j}")]}})),
                    );
                    assert_eq!(st, 200, "{v}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let usages = &relay.config().voice.pstn_usages;
    assert_eq!(usages.len(), 3 + 24, "a change was lost: {usages:?}");
    let on_disk = Config::from_toml(&relay.file()).unwrap();
    assert_eq!(on_disk.voice.pstn_usages, *usages);
}

#[test]
fn test_intertrunk_routing_calls_and_metrics() {
    let relay = Relay::start(Some(temp_config(DEFAULT_CONFIG)));
    let (st, v) = relay.req(
        "POST",
        "/test-intertrunk-routing",
        Some(json!({"trunk": "PstnGateway:gw1", "target_number": "(206) 555-0100"})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["normalized"], "+12065550100");
    assert_eq!(v["normalization_rule"], "TenDigit");
    assert_eq!(v["candidates"][0]["gateway"], "PstnGateway:pbx2");
    assert!(v["result"].as_str().unwrap().starts_with("routed"));
    let (st, v) = relay.req(
        "POST",
        "/test-intertrunk-routing",
        Some(json!({"trunk": "PstnGateway:pbx1", "target_number": "12345"})),
    );
    assert_eq!(st, 200);
    assert_eq!(v["outcome"], "NoRoute");
    assert!(v["result"].as_str().unwrap().contains("12004"), "{v}");
    let (st, _) = relay.req(
        "POST",
        "/test-intertrunk-routing",
        Some(json!({"trunk": "PstnGateway:none", "target_number": "1"})),
    );
    assert_eq!(st, 404);

    relay.calls.started(
        1,
        42,
        NewCall {
            source_trunk: "PstnGateway:gw1".into(),
            called: "+12065550100".into(),
            calling: "+14255550123".into(),
            started_unix_ms: 1,
        },
    );
    relay
        .calls
        .update(1, 42, CallState::Confirmed, Some("PstnGateway:pbx2".into()));
    let (st, v) = relay.req("GET", "/calls", None);
    assert_eq!(st, 200);
    assert_eq!(v["count"], 1);
    assert_eq!(v["calls"][0]["call_id"], "1-42");
    assert_eq!(v["calls"][0]["state"], "confirmed");
    assert_eq!(v["calls"][0]["target_trunk"], "PstnGateway:pbx2");
    assert_eq!(v["calls"][0]["worker"], 1);

    relay.metrics.worker(1).add(Counter::InvitesReceived, 3);
    let (st, v) = relay.req("GET", "/metrics", None);
    assert_eq!(st, 200);
    let text = v.as_str().unwrap();
    assert!(
        text.contains("\nintertrunk_invites_received_total 3\n"),
        "{text}"
    );
    assert!(text.contains("intertrunk_admin_requests_total "));
}

#[test]
fn built_in_configuration_changes_apply_in_memory_only() {
    let relay = Relay::start(None);
    let (st, v) = relay.req(
        "PATCH",
        "/trunk-configurations/PstnGateway:pbx1",
        Some(json!({"pstn_usages": "@{remove=\"ToPSTN\"}"})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["persisted"], false);
    assert!(v["message"].as_str().unwrap().contains("in memory only"));
    assert_eq!(
        relay
            .config()
            .trunk("PstnGateway:pbx1")
            .unwrap()
            .pstn_usages,
        ["ToPBX2"]
    );
    let (st, _) = relay.req("POST", "/reload", None);
    assert_eq!(st, 400);
}
