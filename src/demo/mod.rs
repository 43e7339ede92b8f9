//! `intertrunk demo`: the relay with a simulated PSTN gateway and two IP-PBXs on loopback,
//! placing real calls (SIP and RTP) in every direction of intertrunk routing.
//!
//! It runs the built-in configuration (`src/config/default.toml`): the gateway at 127.0.0.11,
//! the PBXs at 127.0.0.21 and 127.0.0.22, the relay at 127.0.0.1:5060. Each peer answers calls
//! on its trunk address and echoes RTP; calls are placed from each peer's address, so the relay
//! identifies the source trunk exactly as it would for real equipment.

pub mod ua;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{Config, DEFAULT_CONFIG};
use crate::service::Relay;
use ua::{Answer, Callee, Caller, Dial};

/// One call of the demo: who calls, what number, what should happen.
struct Scenario {
    what: &'static str,
    from: Ipv4Addr,
    number: &'static str,
    expect: u16,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        what: "PSTN -> PBX1  (gateway, 10-digit number normalized by its dial plan)",
        from: Ipv4Addr::new(127, 0, 0, 11),
        number: "4255550100",
        expect: 200,
    },
    Scenario {
        what: "PSTN -> PBX2",
        from: Ipv4Addr::new(127, 0, 0, 11),
        number: "+12065550100",
        expect: 200,
    },
    Scenario {
        what: "PBX1 -> PBX2",
        from: Ipv4Addr::new(127, 0, 0, 21),
        number: "+12065550123",
        expect: 200,
    },
    Scenario {
        what: "PBX2 -> PBX1",
        from: Ipv4Addr::new(127, 0, 0, 22),
        number: "+14255550123",
        expect: 200,
    },
    Scenario {
        what: "PBX1 -> PSTN",
        from: Ipv4Addr::new(127, 0, 0, 21),
        number: "+33123456789",
        expect: 200,
    },
    Scenario {
        what: "PSTN -> PSTN  (the gateway's usages have no route for it: 403, Lync 12004)",
        from: Ipv4Addr::new(127, 0, 0, 11),
        number: "+33123456789",
        expect: 403,
    },
];

/// `intertrunk demo`.
pub fn run() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_none() {
        // The demo prints its own lines; the relay's logs only when something is wrong.
        std::env::set_var("RUST_LOG", "warn");
    }
    crate::service::init_logging();
    match demo() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("intertrunk demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn demo() -> anyhow::Result<bool> {
    let config = Config::from_toml(DEFAULT_CONFIG)
        .map_err(|d| anyhow::anyhow!("built-in configuration: {d:?}"))?;
    let relay_addr = config
        .server
        .sip_listen
        .first()
        .map(|l| l.addr)
        .ok_or_else(|| anyhow::anyhow!("no sip_listen"))?;
    let trunks: Vec<(String, SocketAddr)> = config
        .trunk
        .iter()
        .map(|t| (t.identity.clone(), t.address))
        .collect();
    let relay = Relay::start(config, None)?;
    println!(
        "relay on {relay_addr} (workers {:?}), admin API on {}",
        relay.worker_addresses(),
        relay
            .admin_addr()
            .map_or("-".to_string(), |a| a.to_string())
    );
    let mut peers = Vec::new();
    for (identity, addr) in &trunks {
        peers.push(Callee::spawn(*addr, Answer::default())?);
        println!("simulated trunk {identity} answering on {addr}");
    }
    println!(
        "(each callee rings 20 ms, then answers and echoes RTP; each call sends 25 packets)\n"
    );

    let mut all_ok = true;
    for s in SCENARIOS {
        let mut caller = Caller::new(IpAddr::V4(s.from), relay_addr)?;
        let mut dial = Dial::number(s.number);
        dial.rtp_packets = 25;
        let out = caller.call(&dial)?;
        let ok = out.status == s.expect
            && (out.status != 200 || (out.ended_cleanly && out.rtp_received == out.rtp_sent));
        all_ok &= ok;
        println!(
            "{} {:<72} {} {:>3}  setup {:>6.2} ms  RTP {}/{} echoed through the relay",
            if ok { "ok  " } else { "FAIL" },
            s.what,
            s.number,
            out.status,
            out.setup.as_secs_f64() * 1000.0,
            out.rtp_received,
            out.rtp_sent,
        );
    }
    // Let the last transactions settle and the workers publish their counters (every 250 ms).
    std::thread::sleep(Duration::from_millis(600));
    let m = relay.metrics();
    use crate::control::metrics::Counter;
    println!(
        "\nrelay counters: {} calls routed, {} answered, {} refused without a route, {} RTP packets relayed",
        m.total(Counter::CallsRouted),
        m.total(Counter::CallsAnswered),
        m.total(Counter::CallsNoRoute),
        m.total(Counter::RtpPacketsRelayed),
    );
    drop(peers);
    relay.drain();
    relay.join()?;
    println!(
        "{}",
        if all_ok {
            "demo: every call behaved as routed"
        } else {
            "demo: some calls did not behave as expected"
        }
    );
    Ok(all_ok)
}
