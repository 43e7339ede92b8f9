//! Routing against a naive reference, and live swaps under concurrent readers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intertrunk::config::{Config, DialPlan, NormalizationRule, TranslationRule, Trunk, VoiceRoute};
use intertrunk::route::reference::Reference;
use intertrunk::route::{Decision, LiveTable, RoundRobin, RouteTable, TrunkId};
use proptest::prelude::*;

fn addr(i: usize) -> SocketAddr {
    format!("10.0.{}.{}:5060", i / 200, i % 200 + 1)
        .parse()
        .unwrap()
}

/// A number pattern from a prefix and a shape; shapes cover what the trie serves and what it
/// must leave to verifiers (anchored or not, with a usable prefix or none, as a DFA or through
/// the regex crate).
fn pattern(prefix: &str, shape: u8) -> String {
    let p = prefix.replace('+', r"\+");
    match shape % 19 {
        0 => format!("^{p}"),
        1 => format!("^{p}$"),
        2 => format!(r"^{p}\d{{3}}$"),
        3 => format!(r"^{p}\d{{2,4}}$"),
        4 => format!(r"^{p}\d+$"),
        5 => format!(r"^{p}\d*"),
        6 => format!(r"^(\+1|1)?{p}\d*$"),
        7 => p.to_string(),
        8 => format!(r"^{p}[0-5]\d*$"),
        9 => r"\d{3}$".to_string(),
        10 => format!(r"^{p}(12|34)\d?$"),
        11 => format!(r"^{p}.\d$"),
        12 => format!(r"^{p}\d{{2}}|^9{p}"),
        13 => format!(r"^{p}[2-9]1\d*$"),
        14 => format!(r"(00|9){p}\d"),
        15 => format!(r"(?m)^{p}\d$"),
        16 => format!(r"\b{p}\d*"),
        17 => format!(r"{p}[13]2|^{p}$"),
        _ => format!(r"(?i)^{p}[a-c]?\d{{1,3}}$"),
    }
}

const RULES: &[(&str, &str)] = &[
    (r"^\+(\d*)$", "$1"),
    (r"^(\d{4})$", "+1425555$1"),
    (r"^0(\d+)$", "+44${1}"),
    (r"1", "one"),
    (r"^(?P<all>\d+)$", "00${all}$$"),
];

/// usages, dial plan?, called rules, calling rules, remove_plus_from_uri
type TrunkSpec = (Vec<usize>, Option<usize>, Vec<usize>, Vec<usize>, bool);
/// prefix, shape, usages, gateways, priority, suppress_caller_id, alternate_caller_id?
type RouteSpec = (String, u8, Vec<usize>, Vec<usize>, u32, bool, bool);

#[derive(Debug, Clone)]
struct Spec {
    usages: usize,
    trunks: Vec<TrunkSpec>,
    routes: Vec<RouteSpec>,
    dial_plan: Vec<usize>,
}

fn spec() -> impl Strategy<Value = Spec> {
    let trunk = (
        prop::collection::vec(0..4usize, 0..4),
        prop::option::of(0..1usize),
        prop::collection::vec(0..RULES.len(), 0..2),
        prop::collection::vec(0..RULES.len(), 0..2),
        any::<bool>(),
    );
    let route = (
        "\\+?[0-9]{0,4}",
        any::<u8>(),
        prop::collection::vec(0..4usize, 0..3),
        prop::collection::vec(0..6usize, 0..4),
        0..3u32,
        any::<bool>(),
        any::<bool>(),
    );
    (
        1..5usize,
        prop::collection::vec(trunk, 2..6),
        prop::collection::vec(route, 0..25),
        prop::collection::vec(0..RULES.len(), 0..3),
    )
        .prop_map(|(usages, trunks, routes, dial_plan)| Spec {
            usages,
            trunks,
            routes,
            dial_plan,
        })
}

fn dedup<T: PartialEq + Copy>(v: &[T]) -> Vec<T> {
    let mut out = Vec::new();
    for &x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

fn config(s: &Spec) -> Config {
    let mut c: Config = Config::from_toml("").unwrap();
    c.voice.pstn_usages = (0..s.usages).map(|u| format!("U{u}")).collect();
    let usage = |u: usize| format!("U{}", u % s.usages);
    c.translation_rule = RULES
        .iter()
        .enumerate()
        .map(|(i, (p, t))| TranslationRule {
            identity: format!("R{i}"),
            pattern: p.to_string(),
            translation: t.to_string(),
        })
        .collect();
    if !s.dial_plan.is_empty() {
        let mut rules: Vec<NormalizationRule> = s
            .dial_plan
            .iter()
            .enumerate()
            .map(|(i, &r)| NormalizationRule {
                name: format!("N{i}"),
                pattern: RULES[r].0.into(),
                translation: RULES[r].1.into(),
            })
            .collect();
        // Keep E.164 as is, so that most numbers get through.
        rules.push(NormalizationRule {
            name: "E164".into(),
            pattern: r"^(\+\d+)$".into(),
            translation: "$1".into(),
        });
        c.dial_plan.push(DialPlan {
            identity: "DP".into(),
            normalization_rules: rules,
        });
    }
    for (i, (us, dp, called, calling, plus)) in s.trunks.iter().enumerate() {
        let mut t = Trunk::new(format!("T{i}"), addr(i));
        t.pstn_usages = dedup(&us.iter().map(|&u| u % s.usages).collect::<Vec<_>>())
            .into_iter()
            .map(usage)
            .collect();
        t.dial_plan = dp.filter(|_| !s.dial_plan.is_empty()).map(|_| "DP".into());
        t.outbound_translation_rules = called.iter().map(|r| format!("R{r}")).collect();
        t.outbound_calling_number_translation_rules =
            calling.iter().map(|r| format!("R{r}")).collect();
        t.remove_plus_from_uri = *plus;
        c.trunk.push(t);
    }
    for (i, (prefix, shape, us, gws, prio, suppress, alt)) in s.routes.iter().enumerate() {
        let mut r = VoiceRoute::new(format!("V{i}"), pattern(prefix, *shape));
        r.pstn_usages = dedup(&us.iter().map(|&u| u % s.usages).collect::<Vec<_>>())
            .into_iter()
            .map(usage)
            .collect();
        r.pstn_gateway_list = dedup(&gws.iter().map(|&g| g % s.trunks.len()).collect::<Vec<_>>())
            .into_iter()
            .map(|g| format!("T{g}"))
            .collect();
        r.priority = *prio;
        r.suppress_caller_id = *suppress;
        if *alt {
            r.alternate_caller_id = "+15550100".into();
        }
        c.voice_route.push(r);
    }
    c
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\+?[0-9]{0,12}",
        "\\+1(206|425)[0-9]{0,8}",
        "9?[0-9]{0,3}(12|34)?[0-9]{0,2}",
        // Unicode digits (\d is Unicode-aware) and letters.
        "\\+?[0-9]{0,4}[١٢a-cA-C]?[0-9]{0,3}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    #[test]
    fn decide_equals_the_naive_reference(
        s in spec(),
        calls in prop::collection::vec((0..6usize, number(), number()), 1..24),
    ) {
        let cfg = Arc::new(config(&s));
        if let Err(d) = cfg.validate() {
            panic!("generated config invalid: {d:?}");
        }
        let table = RouteTable::build(Arc::clone(&cfg)).unwrap();
        let mut naive = Reference::new(cfg).unwrap();
        let mut rr = RoundRobin::new();
        for (src, called, calling) in calls {
            let src = TrunkId((src % s.trunks.len()) as u16);
            let got = table.decide(src, &called, &calling, &mut rr);
            let want = naive.decide(src, &called, &calling);
            prop_assert_eq!(got, want, "trunk {:?} number {:?}", src, called);
        }
    }
}

#[test]
fn readers_never_see_a_torn_table_during_swaps() {
    // Table k normalizes every number to +<k>... and routes +<k> to trunk gw<k> only, so any
    // mix of two tables shows up as a wrong gateway, a wrong number or no route.
    const KINDS: usize = 8;
    let make = |k: usize| -> Arc<RouteTable> {
        let mut c = Config::from_toml("").unwrap();
        c.voice.pstn_usages = vec!["All".into()];
        c.dial_plan.push(DialPlan {
            identity: "DP".into(),
            normalization_rules: vec![NormalizationRule {
                name: "Tag".into(),
                pattern: r"^(\d+)$".into(),
                translation: format!("+{k}$1"),
            }],
        });
        let mut src = Trunk::new("src", addr(100));
        src.pstn_usages = vec!["All".into()];
        src.dial_plan = Some("DP".into());
        c.trunk.push(src);
        for g in 0..KINDS {
            c.trunk.push(Trunk::new(format!("gw{g}"), addr(g)));
            let mut r = VoiceRoute::new(format!("to{g}"), format!(r"^\+{g}\d+$"));
            r.pstn_usages = vec!["All".into()];
            r.pstn_gateway_list = vec![format!("gw{}", if g == k { g } else { (g + 1) % KINDS })];
            // Only table k's own route may match its numbers: others point elsewhere but
            // never match (their prefix differs).
            c.voice_route.push(r);
        }
        Arc::new(RouteTable::build(Arc::new(c)).unwrap())
    };
    let tables: Vec<Arc<RouteTable>> = (0..KINDS).map(make).collect();
    let kind_of: Vec<u64> = tables.iter().map(|t| t.generation()).collect();
    let live = LiveTable::new(Arc::clone(&tables[0]));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(20);
    let progress: Arc<[std::sync::atomic::AtomicUsize; 2]> = Arc::default();
    let readers: Vec<_> = (0..2)
        .map(|me| {
            let mut reader = live.reader();
            let stop = Arc::clone(&stop);
            let progress = Arc::clone(&progress);
            let kind_of = kind_of.clone();
            std::thread::spawn(move || {
                let mut rr = RoundRobin::new();
                let mut seen = std::collections::HashSet::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 5_000_000 && Instant::now() < deadline {
                    let t = reader.current();
                    let k = kind_of.iter().position(|&g| g == t.generation()).unwrap();
                    if seen.insert(k) {
                        progress[me].store(seen.len(), Ordering::Relaxed);
                    }
                    let src = t.trunk_by_identity("src").unwrap();
                    match t.decide(src, "2065550100", "", &mut rr) {
                        Decision::Route(r) => {
                            assert_eq!(r.normalized, format!("+{k}2065550100"));
                            assert_eq!(r.candidates.len(), 1);
                            assert_eq!(t.trunk(r.candidates[0].trunk).identity, format!("gw{k}"));
                        }
                        other => panic!("table {k}: {other:?}"),
                    }
                    n += 1;
                }
                (n, seen.len())
            })
        })
        .collect();
    // Swap thousands of times, and until every reader has seen several tables (bounded by
    // the deadline: a reader stuck on one table fails below).
    let mut swaps = 0;
    let readers_moved = || progress.iter().all(|p| p.load(Ordering::Relaxed) >= 3);
    while (swaps < 5_000 || !readers_moved()) && Instant::now() < deadline {
        live.publish(Arc::clone(&tables[swaps % KINDS]));
        swaps += 1;
        if swaps % 64 == 0 {
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let (n, kinds) = r.join().unwrap();
        assert!(n > 0);
        assert!(
            kinds > 1,
            "a reader saw only {kinds} table(s) in {n} lookups"
        );
    }
    assert!(swaps >= 1000, "only {swaps} swaps");
}
