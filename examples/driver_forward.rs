//! The driver with a trivial forwarding core, for perf/bare-forward.sh: binds `--pairs` media
//! pairs from `--first-port` on `--ip` and sends every datagram, unchanged, out of the port it
//! arrived on to `--sink`. Prints `ready` once serving; exits on SIGTERM/SIGINT, printing the
//! driver counters.
//!
//! driver_forward --ip 127.0.0.1 --first-port 20000 --pairs 500 --sink 127.0.0.1:51010
//!                [--sip-port 5260] [--min-wait-us 300] [--workers 1] [--buffers N] [--verbose]
//!                [--probe-port P --probe-dst IP:PORT]   (datagrams on P go to the probe instead)

use intertrunk::driver::signals::TerminationSignals;
use intertrunk::driver::{
    run_workers, Core, DriverConfig, Forward, PortBinder, Transmit, WorkerStats,
};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

struct Forwarder {
    sink: SocketAddr,
    /// Datagrams on this port go to `probe_dst` instead (latency probes).
    probe: Option<(u16, SocketAddr)>,
}

impl Core for Forwarder {
    fn handle_sip(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: &[u8]) {}
    fn handle_media(&mut self, _: Instant, port: u16, _: SocketAddr, _: &[u8]) -> Forward {
        if let Some((p, dst)) = self.probe.filter(|&(p, _)| p == port) {
            return Forward::To { out_port: p, dst };
        }
        Forward::To {
            out_port: port,
            dst: self.sink,
        }
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self, _: &mut [u8]) -> Option<Transmit> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn start_drain(&mut self, _: Instant) {}
    fn is_idle(&self) -> bool {
        true
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: Option<T>) -> T {
    let v = args
        .iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    match v.or(default) {
        Some(v) => v,
        None => {
            eprintln!("missing or bad {name} (see the source header for usage)");
            std::process::exit(2);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let ip: IpAddr = arg(&args, "--ip", Some("127.0.0.1".parse()?));
    let first_port: u16 = arg(&args, "--first-port", Some(20000));
    let pairs: u16 = arg(&args, "--pairs", Some(500));
    let sink: SocketAddr = arg(&args, "--sink", None);
    let sip_port: u16 = arg(&args, "--sip-port", Some(5260));
    let min_wait_us: u64 = arg(&args, "--min-wait-us", Some(300));
    let workers: usize = arg(&args, "--workers", Some(1));

    let probe_port: u16 = arg(&args, "--probe-port", Some(0));
    let probe = (probe_port != 0).then(|| {
        let dst: SocketAddr = arg(&args, "--probe-dst", None);
        (probe_port, dst)
    });
    let signals = TerminationSignals::install()?;
    let mut cfg = DriverConfig::new(vec![SocketAddr::new(ip, sip_port)]);
    cfg.workers = workers;
    cfg.media_address = ip;
    cfg.media_min_wait = Duration::from_micros(min_wait_us);
    cfg.sip_min_wait = cfg.media_min_wait;
    cfg.max_media_sockets = usize::from(pairs) * 2 + 16;
    let buffers: usize = arg(&args, "--buffers", Some(usize::from(pairs) * 16));
    cfg.media_buffers = buffers.clamp(1024, 32768).next_power_of_two() as u16;
    let running = run_workers(cfg, move |mut ctx| {
        // Worker i binds every `workers`-th pair.
        for p in (0..pairs).skip(ctx.index).step_by(ctx.workers) {
            let port = first_port + 2 * p;
            if let Err(e) = ctx.binder.bind_pair(port) {
                eprintln!("bind {port}: {e}");
            }
        }
        Forwarder { sink, probe }
    })?;
    println!(
        "ready pid={} nofile={} max_media_calls={}",
        std::process::id(),
        running.preflight().nofile,
        running.preflight().max_media_calls()
    );
    let verbose = args.iter().any(|a| a == "--verbose");
    let s = running.stats().clone();
    let counters = move || {
        let sum = |f: fn(&WorkerStats) -> &std::sync::atomic::AtomicU64| -> u64 {
            s.iter().map(|w| WorkerStats::get(f(w))).sum()
        };
        format!(
        "received={} forwarded={} dropped={} send_errors={} enobufs_rearms={} turns={} sockets={} \
         buffers_out={} buffer_errors={} cq_overflows={}",
        sum(|w| &w.media_received),
        sum(|w| &w.media_forwarded),
        sum(|w| &w.media_dropped),
        sum(|w| &w.media_send_errors),
        sum(|w| &w.enobufs_rearms),
        sum(|w| &w.turns),
        sum(|w| &w.media_sockets),
        sum(|w| &w.media_buffers_out),
        sum(|w| &w.buffer_errors),
        sum(|w| &w.cq_overflows),
        )
    };
    while signals.wait(Duration::from_secs(1))?.is_none() {
        if running.is_finished() {
            break;
        }
        if verbose {
            eprintln!("{}", counters());
        }
    }
    println!("{}", counters());
    running.stop();
    running.join()?;
    Ok(())
}
