//! SIGHUP re-reads the configuration file (its own test binary: the signal reaches the whole
//! process).

use std::sync::Arc;
use std::time::{Duration, Instant};

use intertrunk::config::{Config, DEFAULT_CONFIG};
use intertrunk::control::calls::CallTable;
use intertrunk::control::metrics::{ControlCounter, Metrics};
use intertrunk::control::spawn_at;
use intertrunk::route::{LiveTable, RouteTable};

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn sighup_reloads_and_a_broken_file_keeps_the_table() {
    let dir = std::env::temp_dir().join(format!("intertrunk-sighup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("intertrunk.toml");
    std::fs::write(&path, DEFAULT_CONFIG).unwrap();
    let cfg = Config::load(&path).unwrap();
    let live = LiveTable::new(Arc::new(RouteTable::build(Arc::new(cfg)).unwrap()));
    let metrics = Arc::new(Metrics::new(1));
    let control = spawn_at(
        "127.0.0.1:0".parse().unwrap(),
        live.clone(),
        Some(path.clone()),
        metrics.clone(),
        Arc::new(CallTable::new(1)),
    )
    .unwrap();

    let changed = DEFAULT_CONFIG.replace(
        "pstn_gateway_list = [\"PstnGateway:pbx1\"]",
        "pstn_gateway_list = [\"PstnGateway:pbx1\"]\npriority = 5",
    );
    assert_ne!(changed, DEFAULT_CONFIG);
    std::fs::write(&path, &changed).unwrap();
    signal_hook::low_level::raise(signal_hook::consts::SIGHUP).unwrap();
    assert!(
        wait_for(|| live.load().config().voice_route("PBX1").map(|r| r.priority) == Some(5)),
        "SIGHUP did not reload"
    );
    assert_eq!(metrics.control_get(ControlCounter::Reloads), 1);

    let before = live.load();
    std::fs::write(&path, "[server]\nnot_a_key = 1\n").unwrap();
    signal_hook::low_level::raise(signal_hook::consts::SIGHUP).unwrap();
    assert!(wait_for(|| metrics
        .control_get(ControlCounter::ReloadsFailed)
        == 1));
    assert!(Arc::ptr_eq(&before, &live.load()));

    control.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
