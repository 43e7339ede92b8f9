//! The `intertrunk` binary: `check-config` exit codes and `ctl` against a running admin API.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use intertrunk::config::{Config, DEFAULT_CONFIG};
use intertrunk::control::calls::CallTable;
use intertrunk::control::metrics::Metrics;
use intertrunk::control::spawn_at;
use intertrunk::route::{LiveTable, RouteTable};

fn temp_file(name: &str, text: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "intertrunk-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn intertrunk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_intertrunk"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_config_exit_codes() {
    let good = temp_file("good.toml", DEFAULT_CONFIG);
    let out = intertrunk(&["check-config", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("valid"));

    let bad_text = DEFAULT_CONFIG
        .replace("pstn_usages = [\"ToPBX1\"]", "pstn_usages = [\"Nowhere\"]")
        .replace(
            "media_timeout_s = 30",
            "media_timeout_s = 30\nunknown_key = 1",
        );
    let bad = temp_file("bad.toml", &bad_text);
    let out = intertrunk(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown_key") && err.contains("Nowhere"),
        "{err}"
    );
    // Each problem with its line.
    let line_of = |needle: &str| bad_text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert!(
        err.contains(&format!("line {}", line_of("unknown_key"))),
        "{err}"
    );
    assert!(
        err.contains(&format!("line {}", line_of("Nowhere"))),
        "{err}"
    );

    let out = intertrunk(&["check-config", "/nonexistent/intertrunk.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(good.parent().unwrap());
    let _ = std::fs::remove_dir_all(bad.parent().unwrap());
}

#[test]
fn ctl_against_a_running_admin_api() {
    let path = temp_file("intertrunk.toml", DEFAULT_CONFIG);
    let cfg = Config::load(&path).unwrap();
    let live = LiveTable::new(Arc::new(RouteTable::build(Arc::new(cfg)).unwrap()));
    let control = spawn_at(
        "127.0.0.1:0".parse().unwrap(),
        live.clone(),
        Some(path.clone()),
        Arc::new(Metrics::new(1)),
        Arc::new(CallTable::new(1)),
    )
    .unwrap();
    let admin = control.admin_addr().to_string();
    let ctl = |args: &[&str]| {
        let mut v = vec!["ctl", "--admin", admin.as_str()];
        v.extend_from_slice(args);
        intertrunk(&v)
    };

    let out = ctl(&["get-trunk-configuration", "--identity", "PstnGateway:gw1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("Identity") && s.contains(": PstnGateway:gw1"),
        "{s}"
    );
    assert!(
        s.contains("PstnUsages") && s.contains("{ToPBX1, ToPBX2}"),
        "{s}"
    );

    // The seed's own command, and the plain form.
    let out = ctl(&[
        "set-trunk-configuration",
        "--identity",
        "PstnGateway:gw1",
        "--pstn-usages",
        r#"@{add="ToPSTN"}"#,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("{ToPBX1, ToPBX2, ToPSTN}"));
    let out = ctl(&[
        "set-trunk-configuration",
        "--identity",
        "PstnGateway:gw1",
        "--pstn-usages",
        "remove=ToPBX1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        live.load()
            .config()
            .trunk("PstnGateway:gw1")
            .unwrap()
            .pstn_usages,
        ["ToPBX2", "ToPSTN"]
    );
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("pstn_usages = [\"ToPBX2\", \"ToPSTN\"]"));

    let out = ctl(&["set-pstn-usage", "--usage", r#"@{add="Local"}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ctl(&[
        "new-voice-route",
        "--identity",
        "LocalRoute",
        "--number-pattern",
        r"^\+1425\d{7}$",
        "--pstn-usages",
        "Local",
        "--pstn-gateway-list",
        "PstnGateway:gw1",
        "--priority",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ctl(&["get-voice-route"]);
    assert!(text(&out.stdout).contains("LocalRoute"));

    // A refused change: exit 1, every diagnostic on stderr, nothing changed.
    let out = ctl(&[
        "set-voice-route",
        "--identity",
        "LocalRoute",
        "--pstn-gateway-list",
        r#"@{add="PstnGateway:ghost"}"#,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error 400") && err.contains("ghost"),
        "{err}"
    );
    let out = ctl(&["remove-voice-route", "--identity", "NoSuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("404"));
    // A malformed modifier fails before any request.
    let out = ctl(&["set-pstn-usage", "--usage", r#"@{append="x"}"#]);
    assert_eq!(out.status.code(), Some(2));

    let out = ctl(&[
        "test-intertrunk-routing",
        "--trunk",
        "PstnGateway:gw1",
        "--target-number",
        "2065550100",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for step in [
        "1. Dial plan    : GatewayInbound, rule TenDigit -> +12065550100",
        "2. PSTN usages, in order:",
        "ToPBX2:",
        "route PBX2",
        "3. Gateways in the order they would be tried:",
        "1. PstnGateway:pbx2 (usage ToPBX2, route PBX2)",
        "Result         : routed",
    ] {
        assert!(s.contains(step), "missing `{step}` in:\n{s}");
    }

    let out = ctl(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = ctl(&["get-calls"]);
    assert!(text(&out.stdout).contains("No calls in progress."));
    let out = ctl(&["--json", "get-pstn-usage"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["usage"][3], "Local");

    control.shutdown();
    let out = ctl(&["get-calls"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "no admin API: {}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
