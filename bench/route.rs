//! Routing benchmarks: `decide` on realistic tables of 10, 10,000 and 100,000 routes against
//! the naive reference (every route's regex in order), and the build time and memory of a
//! 100,000-route table.
//!
//! Tables: E.164 routes of mixed prefix lengths (country code, area code, exchange; anchored
//! with an exact digit count, or open prefixes), a few hundred general regexes (classes inside
//! the number, unanchored), and a catch-all, spread over four PSTN usages with 1-3 gateways
//! each. Numbers: mostly numbers some route owns, some random.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use intertrunk::config::{Config, DialPlan, NormalizationRule, Trunk, VoiceRoute};
use intertrunk::route::reference::Reference;
use intertrunk::route::{Decision, RoundRobin, RouteTable, TrunkId};

/// Counts live heap bytes, to measure what a table holds.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// xorshift64*: a fixed seed gives the same tables every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

const COUNTRIES: &[&str] = &[
    "1", "44", "33", "49", "86", "91", "81", "61", "55", "7", "34", "39", "353",
];
const USAGES: usize = 4;
const GATEWAYS: usize = 24;

/// A table of `n` routes and the numbers to look up in it.
fn generate(n: usize, seed: u64) -> (Config, Vec<String>) {
    let mut rng = Rng(seed);
    let mut c = Config::from_toml("").expect("empty config");
    c.voice.pstn_usages = (0..USAGES).map(|u| format!("Usage{u}")).collect();
    let mut src = Trunk::new("PstnGateway:ingress", "10.1.0.1:5060".parse().unwrap());
    src.pstn_usages = c.voice.pstn_usages.clone();
    c.trunk.push(src);
    for g in 0..GATEWAYS {
        c.trunk.push(Trunk::new(
            format!("PstnGateway:gw{g}"),
            format!("10.2.0.{}:5060", g + 1).parse().unwrap(),
        ));
    }
    let general = (n / 10).min(300);
    let mut owned = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for i in 0..n {
        let cc = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
        let national = 10 - cc.len().min(2) + 1;
        let (pattern, example) = if i < general {
            // General regexes: a class or alternation inside the number, or no anchor.
            let area = rng.digits(3);
            match rng.below(3) {
                0 => (
                    format!(r"^\+{cc}[2-9]{area}\d{{4}}$"),
                    format!("+{cc}5{area}{}", rng.digits(4)),
                ),
                1 => (
                    format!(r"\+{cc}{area}(55|66)\d+"),
                    format!("+{cc}{area}55{}", rng.digits(5)),
                ),
                _ => (
                    format!(r"^(00|\+){cc}{area}\d{{2,6}}$"),
                    format!("00{cc}{area}{}", rng.digits(4)),
                ),
            }
        } else {
            // Distinct E.164 prefixes of 4..8 digits after the country code (area code plus
            // part of the exchange), as a carrier's table has them.
            let (prefix, plen) = loop {
                let plen = 4 + rng.below(5) as usize;
                let p = format!("{cc}{}", rng.digits(plen));
                if seen.insert(p.clone()) {
                    break (p, plen);
                }
            };
            let rest = national.saturating_sub(plen).max(1);
            if rng.below(3) == 0 {
                (
                    format!(r"^\+{prefix}"),
                    format!("+{prefix}{}", rng.digits(rest)),
                )
            } else {
                (
                    format!(r"^\+{prefix}\d{{{rest}}}$"),
                    format!("+{prefix}{}", rng.digits(rest)),
                )
            }
        };
        let mut r = VoiceRoute::new(format!("Route{i}"), pattern);
        r.pstn_usages = vec![format!("Usage{}", rng.below(USAGES as u64))];
        let gws = 1 + rng.below(3) as usize;
        let first = rng.below(GATEWAYS as u64) as usize;
        r.pstn_gateway_list = (0..gws)
            .map(|k| format!("PstnGateway:gw{}", (first + k * 7) % GATEWAYS))
            .collect();
        r.priority = rng.below(4) as u32;
        c.voice_route.push(r);
        owned.push(example);
    }
    let mut catch_all = VoiceRoute::new("CatchAll", r"^\+\d+$");
    catch_all.pstn_usages = vec![format!("Usage{}", USAGES - 1)];
    catch_all.pstn_gateway_list = vec!["PstnGateway:gw0".into()];
    catch_all.priority = 9;
    c.voice_route.push(catch_all);
    let numbers = (0..1024)
        .map(|_| {
            if rng.below(5) == 0 {
                format!("+{}", rng.digits(11))
            } else {
                owned[rng.below(owned.len() as u64) as usize].clone()
            }
        })
        .collect();
    (c, numbers)
}

fn build_report() {
    let (cfg, _) = generate(100_000, 7);
    let cfg = Arc::new(cfg);
    let text = cfg.to_toml();
    let t0 = Instant::now();
    let parsed = Config::from_toml(&text).expect("generated config is valid");
    let parse_time = t0.elapsed();
    drop(parsed);
    let mut builds = Vec::new();
    let mut bytes = 0;
    let mut peak = 0;
    for _ in 0..3 {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let t0 = Instant::now();
        let table = RouteTable::build(Arc::clone(&cfg)).expect("valid");
        builds.push(t0.elapsed());
        bytes = LIVE.load(Ordering::Relaxed) - before;
        peak = PEAK.load(Ordering::Relaxed) - before;
        let (routes, literal) = table.route_counts();
        if builds.len() == 1 {
            println!(
                "table: {routes} routes, {literal} in the trie, {} by regex",
                routes - literal
            );
        }
        drop(table);
    }
    builds.sort();
    let median = builds[1];
    let per = |d: Duration| d.as_secs_f64() * 1e6 / 100_001.0;
    println!(
        "build 100k routes: median {:.3} s ({:.2} us/route); held {:.1} MB ({} B/route), peak during build {:.1} MB; config parse+validate from TOML {:.3} s",
        median.as_secs_f64(),
        per(median),
        bytes as f64 / 1e6,
        bytes / 100_001,
        peak as f64 / 1e6,
        parse_time.as_secs_f64()
    );
    // OpenSIPS drouting: 383,000 rules in ~4 s and ~96 MB.
    println!(
        "per rule vs OpenSIPS drouting (10.4 us, 251 B): time {:.2}x, memory {:.2}x",
        per(median) / (4.0e6 / 383_000.0),
        (bytes as f64 / 100_001.0) / (96.0e6 / 383_000.0)
    );
}

fn main() {
    // ROUTE_BENCH_LOOKUPS_ONLY=1 skips the (slow) build report, for profiling lookups.
    if std::env::var_os("ROUTE_BENCH_LOOKUPS_ONLY").is_none() {
        build_report();
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    let mut g = c.benchmark_group("route");
    for &n in &[10usize, 10_000, 100_000] {
        let (cfg, numbers) = generate(n, 7);
        let cfg = Arc::new(cfg);
        let table = RouteTable::build(Arc::clone(&cfg)).expect("valid");
        let src = TrunkId(0);
        let mut rr = RoundRobin::new();
        let mut i = 0;
        g.bench_with_input(BenchmarkId::new("decide", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % numbers.len();
                black_box(table.decide(src, black_box(&numbers[i]), "+12065550100", &mut rr))
            })
        });
        let mut naive = Reference::new(Arc::clone(&cfg)).expect("valid");
        let mut i = 0;
        g.bench_with_input(BenchmarkId::new("naive", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % numbers.len();
                black_box(naive.decide(src, black_box(&numbers[i]), "+12065550100"))
            })
        });
    }
    // Dial-plan normalization on the ingress trunk, Lync-style: a plan of 20 rules tried in
    // order, the number matching the last one (every earlier rule is a miss first).
    let (mut cfg, _) = generate(10, 7);
    let rules = (0..20)
        .map(|k| NormalizationRule {
            name: format!("Rule{k}"),
            pattern: format!(r"^9{k:02}(\d{{7,10}})$"),
            translation: "+1$1".into(),
        })
        .chain(std::iter::once(NormalizationRule {
            name: "TenDigits".into(),
            pattern: r"^(\d{10})$".into(),
            translation: "+1$1".into(),
        }))
        .collect();
    cfg.dial_plan.push(DialPlan {
        identity: "Ingress".into(),
        normalization_rules: rules,
    });
    cfg.trunk[0].dial_plan = Some("Ingress".into());
    let table = RouteTable::build(Arc::new(cfg)).expect("valid");
    let mut rr = RoundRobin::new();
    // The bench measures a real normalization: the last rule rewrote the number.
    match table.decide(TrunkId(0), "2065550100", "+12065550100", &mut rr) {
        Decision::Route(r) => assert_eq!(r.normalized, "+12065550100"),
        other => panic!("dial plan bench does not route: {other:?}"),
    }
    g.bench_function("decide_with_dial_plan_21_rules", |b| {
        b.iter(|| {
            black_box(table.decide(TrunkId(0), black_box("2065550100"), "+12065550100", &mut rr))
        })
    });
    g.finish();
    c.final_summary();
}
