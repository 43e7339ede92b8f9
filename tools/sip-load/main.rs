//! sip-load: a native SIP call generator for the relay's highest sustained calls/s.
//!
//! One process, two threads: a UAC and a UAS, each on its own UDP socket (recvmmsg/sendmmsg),
//! running the peer-bench harness's call flow (its SIPp uac.xml/uas.xml messages): INVITE with
//! SDP -> 100/180/200 -> ACK -> optional hold -> BYE -> 200, with RFC 3261 retransmissions
//! over UDP and loose routing through the proxy's Record-Route. Each trial holds an exclusive
//! flock(2) on the bench lock file, so it never overlaps another benchmark.
//!
//! One JSON object per trial on stdout; progress on stderr.
//!
//!   sip-load [--uac 127.0.0.1:5091] [--uas 127.0.0.1:5090] [--target 127.0.0.1:5070]
//!            [--number 4930123456] [--rates 300,2000] [--secs 10] [--search START,MAX]
//!            [--budget-s 120] [--hold-ms 0] [--call-timeout-ms 5000] [--max-calls N]
//!            [--sut-pid PID[,PID]] [--label NAME] [--uas-trying 1] [--lock /tmp/bench.lock]
//!            [--batch-us 0]
//!
//! `--target` = the `--uas` address measures the generator alone. `--sut-pid` adds the CPU of
//! those processes, their threads and descendants (Kamailio forks its workers).

mod engine;
mod timers;

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use engine::{Config, Generator, TrialStats};

struct Args {
    cfg: Config,
    rates: Vec<f64>,
    secs: f64,
    search: Option<(f64, f64)>,
    budget_s: f64,
    sut_pids: Vec<u32>,
    label: String,
    lock: String,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        cfg: Config::default(),
        rates: Vec::new(),
        secs: 10.0,
        search: None,
        budget_s: 300.0,
        sut_pids: Vec::new(),
        label: String::new(),
        lock: "/tmp/bench.lock".into(),
    };
    let addr =
        |v: &str| -> Result<SocketAddr> { v.parse().with_context(|| format!("address {v}")) };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--help" || k == "-h" {
            eprintln!(
                "{}",
                include_str!("main.rs")
                    .lines()
                    .take(18)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::process::exit(0);
        }
        let v = it.next().ok_or_else(|| anyhow!("{k} needs a value"))?;
        match k.as_str() {
            "--uac" => a.cfg.uac = addr(&v)?,
            "--uas" => a.cfg.uas = addr(&v)?,
            "--target" => a.cfg.target = addr(&v)?,
            "--number" => a.cfg.number = v,
            "--hold-ms" => a.cfg.hold = Duration::from_millis(v.parse()?),
            "--call-timeout-ms" => a.cfg.call_timeout = Duration::from_millis(v.parse()?),
            "--max-calls" => a.cfg.max_calls = v.parse()?,
            "--uas-trying" => a.cfg.uas_trying = v != "0",
            "--batch-us" => {
                let us: u64 = v.parse()?;
                if us > 1000 {
                    bail!("--batch-us must be at most 1000");
                }
                a.cfg.batch = Duration::from_micros(us);
            }
            "--rates" => {
                a.rates = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--secs" => a.secs = v.parse()?,
            "--search" => {
                let (s, m) = v
                    .split_once(',')
                    .ok_or_else(|| anyhow!("--search START,MAX"))?;
                a.search = Some((s.parse()?, m.parse()?));
            }
            "--budget-s" => a.budget_s = v.parse()?,
            "--sut-pid" => {
                a.sut_pids = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--label" => a.label = v,
            "--lock" => a.lock = v,
            _ => bail!("unknown argument {k} (--help)"),
        }
    }
    if !(0.1..=60.0).contains(&a.secs) {
        bail!("--secs must be 0.1..=60 (bounded trials)");
    }
    if a.cfg.call_timeout > Duration::from_secs(60) || a.cfg.hold > Duration::from_secs(60) {
        bail!("--call-timeout-ms and --hold-ms must be at most 60000");
    }
    let bad = |r: f64| !(1.0..=1_000_000.0).contains(&r);
    if a.rates.iter().any(|&r| bad(r)) || a.search.is_some_and(|(s, m)| bad(s) || bad(m) || s > m) {
        bail!("rates must be 1..=1000000 calls/s (and START <= MAX)");
    }
    if a.cfg.max_calls == 0 || a.cfg.max_calls > 10_000_000 {
        bail!("--max-calls must be 1..=10000000");
    }
    if a.rates.is_empty() && a.search.is_none() {
        a.rates = vec![300.0, 2000.0];
    }
    Ok(a)
}

/// CPU time (ns) of every thread of `pid`: the first field of /proc/PID/task/*/schedstat.
fn task_cpu_ns(pid: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// `roots` and all their descendants (from the parent field of /proc/*/stat).
fn with_descendants(roots: &[u32]) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.filter_map(|e| e.ok()) {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat.get(i + 2..))
                .and_then(|rest| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pp) = ppid {
                parent_of.push((pid, pp));
            }
        }
    }
    let mut out: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < out.len() && out.len() < 100_000 {
        let p = out[i];
        for &(c, pp) in &parent_of {
            if pp == p && !out.contains(&c) {
                out.push(c);
            }
        }
        i += 1;
    }
    out
}

fn cpu_ns(pids: &[u32]) -> u64 {
    pids.iter().map(|p| task_cpu_ns(&p.to_string())).sum()
}

struct Trial {
    st: TrialStats,
    json: String,
}

fn trial(a: &Args, g: &mut Generator, rate: f64, phase: &str) -> Result<Trial> {
    let sut = with_descendants(&a.sut_pids);
    let lock = File::options()
        .create(true)
        .append(true)
        .open(&a.lock)
        .with_context(|| format!("open {}", a.lock))?;
    let waited = Instant::now();
    engine::lock_exclusive(lock.as_raw_fd()).context("flock")?;
    let lock_wait_s = waited.elapsed().as_secs_f64();
    let gen0 = task_cpu_ns("self");
    let sut0 = cpu_ns(&sut);
    let st = g.run_trial(rate, a.secs);
    let gen1 = task_cpu_ns("self");
    let sut1 = cpu_ns(&sut);
    drop(lock);
    let per_call = |ns: u64| {
        if st.completed > 0 {
            ns as f64 / 1e6 / st.completed as f64
        } else {
            0.0
        }
    };
    let pct = |ns: u64| ns as f64 / 1e7 / st.wall_s.max(1e-9);
    let (gen_ns, sut_ns) = (gen1.saturating_sub(gen0), sut1.saturating_sub(sut0));
    let sut_part = if a.sut_pids.is_empty() {
        String::new()
    } else {
        format!(
            "\"sut_pids\":{},\"sut_cpu_ms_per_call\":{:.4},\"sut_cpu_pct\":{:.1},",
            sut.len(),
            per_call(sut_ns),
            pct(sut_ns)
        )
    };
    let json = format!(
        "{{\"generator\":\"sip-load\",\"label\":\"{label}\",\"phase\":\"{phase}\",\"target\":\"{target}\",\"offered_cps\":{rate},\"secs\":{secs},\"achieved_cps\":{ach:.1},\"attempted\":{att},\"completed\":{comp},\"failed\":{fail},\"failed_timeout\":{fto},\"failed_status\":{fst},\"last_fail_status\":{lfs},\"failed_table_full\":{ffull},\"failed_bad_2xx\":{fbad},\"retx_sent\":{rs},\"retx_recv\":{rr},\"stray\":{stray},\"bad_msgs\":{bad},\"send_dropped\":{sd},\"setup_p50_ms\":{p50:.3},\"setup_p90_ms\":{p90:.3},\"setup_p99_ms\":{p99:.3},\"gen_cpu_ms_per_call\":{gpc:.4},\"gen_cpu_pct\":{gpct:.1},{sut_part}\"wall_s\":{wall:.2},\"lock_wait_s\":{lock_wait_s:.1},\"pass\":{pass},\"clean\":{clean}}}",
        label = a.label.replace(['"', '\\'], ""),
        target = a.cfg.target,
        secs = st.secs,
        ach = st.achieved_cps,
        att = st.attempted,
        comp = st.completed,
        fail = st.failed,
        fto = st.failed_timeout,
        fst = st.failed_status,
        lfs = st.last_fail_status,
        ffull = st.failed_table_full,
        fbad = st.failed_bad_2xx,
        rs = st.retx_sent,
        rr = st.retx_recv,
        stray = st.stray,
        bad = st.bad_msgs,
        sd = st.send_dropped,
        p50 = st.setup_ms(0.5),
        p90 = st.setup_ms(0.9),
        p99 = st.setup_ms(0.99),
        gpc = per_call(gen_ns),
        gpct = pct(gen_ns),
        wall = st.wall_s,
        pass = st.pass(),
        clean = st.pass() && st.retx_sent == 0,
    );
    println!("{json}");
    eprintln!(
        "sip-load: {rate} cps x {}s: {} of {} completed, {} failed, achieved {:.0} cps, setup p99 {:.2} ms -> {}",
        a.secs,
        st.completed,
        st.attempted,
        st.failed,
        st.achieved_cps,
        st.setup_ms(0.99),
        if st.pass() { "pass" } else { "FAIL" }
    );
    Ok(Trial { st, json })
}

/// Raise the rate x1.5 until a trial fails (any failed call, or the generator below 99% of
/// the offered rate), then bisect geometrically down to 5%; at most 12 trials and `budget_s`.
fn search(a: &Args, g: &mut Generator, start: f64, max: f64) -> Result<()> {
    let t0 = Instant::now();
    let est = a.secs + (a.cfg.hold + a.cfg.call_timeout).as_secs_f64() * 0.2 + 1.0;
    let (mut lo, mut hi): (Option<f64>, Option<f64>) = (None, None);
    let mut rate = start;
    let mut trials = 0;
    let mut last_json = String::new();
    let mut clean: Option<f64> = None;
    while trials < 12 {
        if t0.elapsed().as_secs_f64() + est > a.budget_s {
            eprintln!("sip-load: search budget of {} s reached", a.budget_s);
            break;
        }
        let t = trial(a, g, rate.round(), "search")?;
        trials += 1;
        if t.st.pass() && t.st.retx_sent == 0 {
            clean = Some(clean.map_or(rate, |c: f64| c.max(rate)));
        }
        if t.st.pass() {
            lo = Some(rate);
            last_json = t.json;
        } else {
            hi = Some(rate);
        }
        let next = match (lo, hi) {
            (Some(l), None) if l < max => (l * 1.5).min(max),
            (Some(l), Some(h)) if h / l > 1.05 => (l * h).sqrt(),
            (None, Some(h)) if h > start / 16.0 && h > 1.0 => h / 2.0,
            _ => break,
        };
        rate = next;
        // Let queues and the system under test settle between trials.
        std::thread::sleep(Duration::from_millis(300));
    }
    println!(
        "{{\"generator\":\"sip-load\",\"label\":\"{}\",\"search\":true,\"target\":\"{}\",\"max_pass_cps\":{},\"first_fail_cps\":{},\"max_clean_cps\":{},\"trials\":{trials},\"search_s\":{:.0},\"best\":{}}}",
        a.label.replace(['"', '\\'], ""),
        a.cfg.target,
        lo.map_or(0.0, f64::round),
        hi.map_or(0.0, f64::round),
        clean.map_or(0.0, f64::round),
        t0.elapsed().as_secs_f64(),
        if last_json.is_empty() { "null".to_string() } else { last_json }
    );
    Ok(())
}

fn main() -> Result<()> {
    let a = parse_args()?;
    let mut g = Generator::start(a.cfg.clone())?;
    for &r in &a.rates {
        trial(&a, &mut g, r, "fixed")?;
        std::thread::sleep(Duration::from_millis(300));
    }
    if let Some((s, m)) = a.search {
        search(&a, &mut g, s, m)?;
    }
    Ok(())
}
