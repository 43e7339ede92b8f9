//! Time for a change through the admin API to be live: from sending `PATCH` to a reader
//! thread (standing for a worker core, reading through its own `TableReader`) seeing the new
//! table. Once with a configuration file (validate + build + atomic write with fsync + swap)
//! and once on the built-in configuration (no file: validate + build + swap).
//!
//! `cargo bench --bench control` (about 5 s; bounded to 300 changes per case).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intertrunk::config::{Config, DEFAULT_CONFIG};
use intertrunk::control::calls::CallTable;
use intertrunk::control::http;
use intertrunk::control::metrics::Metrics;
use intertrunk::control::spawn_at;
use intertrunk::route::{LiveTable, RouteTable};

const CHANGES: usize = 300;

fn case(name: &str, with_file: bool) {
    let dir = std::env::temp_dir().join(format!("intertrunk-bench-control-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("intertrunk.toml");
    std::fs::write(&path, DEFAULT_CONFIG).unwrap();
    let cfg = Config::from_toml(DEFAULT_CONFIG).unwrap();
    let live = LiveTable::new(Arc::new(RouteTable::build(Arc::new(cfg)).unwrap()));
    let control = spawn_at(
        "127.0.0.1:0".parse().unwrap(),
        live.clone(),
        with_file.then(|| path.clone()),
        Arc::new(Metrics::new(1)),
        Arc::new(CallTable::new(1)),
    )
    .unwrap();
    let admin = control.admin_addr().to_string();

    // The reader publishes the generation it sees and when it first saw it.
    let seen_gen = Arc::new(AtomicU64::new(0));
    let seen_at_ns = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let reader = {
        let (mut r, seen_gen, seen_at_ns, stop) = (
            live.reader(),
            seen_gen.clone(),
            seen_at_ns.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let mut last = 0;
            while !stop.load(Ordering::Relaxed) {
                let g = r.current().generation();
                if g != last {
                    last = g;
                    seen_at_ns.store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    seen_gen.store(g, Ordering::Release);
                }
                std::thread::yield_now();
            }
        })
    };

    let mut live_us = Vec::with_capacity(CHANGES);
    let mut answer_us = Vec::with_capacity(CHANGES);
    let deadline = Instant::now() + Duration::from_secs(20);
    for i in 0..CHANGES {
        if Instant::now() > deadline {
            break;
        }
        let body = format!("{{\"priority\": {}}}", 1 + i % 2);
        let t0 = epoch.elapsed().as_nanos() as u64;
        let r = http::request(
            &admin,
            "PATCH",
            "/voice-routes/PBX1",
            Some(body.as_bytes()),
            Duration::from_secs(10),
        )
        .unwrap();
        let t1 = epoch.elapsed().as_nanos() as u64;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let generation = v["generation"].as_u64().unwrap();
        let spin_until = Instant::now() + Duration::from_secs(5);
        while seen_gen.load(Ordering::Acquire) < generation {
            assert!(Instant::now() < spin_until, "reader never saw the change");
            std::hint::spin_loop();
        }
        live_us.push((seen_at_ns.load(Ordering::Relaxed).saturating_sub(t0)) as f64 / 1e3);
        answer_us.push((t1 - t0) as f64 / 1e3);
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    control.shutdown();
    let _ = std::fs::remove_dir_all(&dir);

    let q = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    println!(
        "{name}: {} changes; live at reader: median {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us; \
         HTTP answer: median {:.0} us",
        live_us.len(),
        q(&mut live_us, 0.5),
        q(&mut live_us, 0.9),
        q(&mut live_us, 0.99),
        q(&mut live_us, 1.0),
        q(&mut answer_us, 0.5),
    );
}

fn main() {
    case("with config file (fsync)", true);
    case("built-in config (no file)", false);
}
