//! The `intertrunk` binary relaying real calls over loopback sockets: SIP peers (a gateway
//! and PBXs, each on its own 127.0.N.x address) placing and answering calls with RTP through
//! `intertrunk run`.
//!
//! Each test runs its own relay process on its own 127.0.N.0/24 so the tests run in parallel.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use intertrunk::demo::ua::{Answer, CallOutcome, Callee, Caller, Dial};

fn ip(net: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, net, host))
}

fn addr(net: u8, host: u8) -> SocketAddr {
    SocketAddr::new(ip(net, host), 5060)
}

/// The three-trunk topology of the seed plus a second gateway for failover:
/// gw1 (.11) and gw2 (.12) are PSTN gateways, pbx1 (.21) and pbx2 (.22) IP-PBXs.
fn config(net: u8) -> String {
    format!(
        r#"
[server]
sip_listen = ["udp:127.0.{net}.1:5060"]
media_address = "127.0.{net}.1"
media_ports = "20000-21999"
workers = 2
admin_listen = "127.0.{net}.1:8060"
media_timeout_s = 3

[voice]
pstn_usages = ["ToPBX1", "ToPBX2", "ToPSTN"]

[[trunk]]
identity = "PstnGateway:gw1"
address = "127.0.{net}.11:5060"
pstn_usages = ["ToPBX1", "ToPBX2"]
dial_plan = "GatewayInbound"

[[trunk]]
identity = "PstnGateway:gw2"
address = "127.0.{net}.12:5060"
pstn_usages = ["ToPBX1", "ToPBX2"]

[[trunk]]
identity = "PstnGateway:pbx1"
address = "127.0.{net}.21:5060"
pstn_usages = ["ToPBX2", "ToPSTN"]

[[trunk]]
identity = "PstnGateway:pbx2"
address = "127.0.{net}.22:5060"
pstn_usages = ["ToPBX1", "ToPSTN"]

[[voice_route]]
identity = "PBX1"
number_pattern = '^\+1425555\d{{4}}$'
pstn_usages = ["ToPBX1"]
pstn_gateway_list = ["PstnGateway:pbx1"]

[[voice_route]]
identity = "PBX2"
number_pattern = '^\+1206555\d{{4}}$'
pstn_usages = ["ToPBX2"]
pstn_gateway_list = ["PstnGateway:pbx2"]

[[voice_route]]
identity = "PSTN"
number_pattern = '^\+\d+$'
pstn_usages = ["ToPSTN"]
pstn_gateway_list = ["PstnGateway:gw1", "PstnGateway:gw2"]

[[dial_plan]]
identity = "GatewayInbound"
normalization_rules = [
  {{ name = "E164", pattern = '^(\+\d+)$', translation = '$1' }},
  {{ name = "TenDigit", pattern = '^(\d{{10}})$', translation = '+1$1' }},
]
"#
    )
}

/// `intertrunk run --config FILE` as a child process, stopped with SIGTERM when dropped.
struct RelayProcess {
    child: Child,
    admin: SocketAddr,
    sip: SocketAddr,
    log: PathBuf,
    _dir: PathBuf,
}

impl RelayProcess {
    fn start(net: u8, config_text: &str) -> RelayProcess {
        let dir =
            std::env::temp_dir().join(format!("intertrunk-relay-{}-{net}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("intertrunk.toml");
        std::fs::write(&cfg, config_text).unwrap();
        let log = dir.join("relay.log");
        let child = Command::new(env!("CARGO_BIN_EXE_intertrunk"))
            .args(["run", "--config", cfg.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let admin = SocketAddr::new(ip(net, 1), 8060);
        let mut relay = RelayProcess {
            child,
            admin,
            sip: addr(net, 1),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&admin, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = relay.child.try_wait() {
                panic!("relay exited at start ({status}):\n{}", relay.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "relay not ready:\n{}",
                relay.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        relay
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metric(&self, name: &str) -> f64 {
        let mut s = TcpStream::connect(self.admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.admin
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == name).then(|| v.trim().parse().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
    }

    /// Waits until `name` reaches `want` (workers publish their counters every 250 ms).
    fn wait_metric(&self, name: &str, want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.metric(name);
            if v == want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn terminate(&mut self) -> Option<i32> {
        // SAFETY: signalling our own child process by its PID.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

fn call(net: u8, from: u8, relay: &RelayProcess, dial: &Dial) -> CallOutcome {
    let mut caller = Caller::new(ip(net, from), relay.sip).unwrap();
    caller.call(dial).unwrap()
}

fn with_media(number: &str, packets: u32) -> Dial {
    let mut d = Dial::number(number);
    d.rtp_packets = packets;
    d
}

#[test]
fn calls_in_every_direction_carry_media_both_ways() {
    let net = 41;
    let relay = RelayProcess::start(net, &config(net));
    let gw1 = Callee::spawn(addr(net, 11), Answer::default()).unwrap();
    let pbx1 = Callee::spawn(addr(net, 21), Answer::default()).unwrap();
    let pbx2 = Callee::spawn(addr(net, 22), Answer::default()).unwrap();

    // PSTN -> PBX (10-digit number normalized by the gateway's dial plan), PBX -> PBX both
    // ways, PBX -> PSTN.
    for (from, number, callee) in [
        (11, "4255550100", &pbx1),
        (11, "+12065550100", &pbx2),
        (21, "+12065550123", &pbx2),
        (22, "+14255550123", &pbx1),
        (21, "+33123456789", &gw1),
    ] {
        let answered_before = callee.stats.answered.load(Ordering::Relaxed);
        let out = call(net, from, &relay, &with_media(number, 20));
        assert_eq!(
            out.status,
            200,
            "{number} from .{from}: {out:?}\n{}",
            relay.log_text()
        );
        assert!(out.ended_cleanly, "{out:?}");
        assert_eq!(
            out.rtp_received, out.rtp_sent,
            "every RTP packet echoed: {out:?}"
        );
        let media = out.relay_media.expect("an SDP answer");
        assert_eq!(media.ip(), ip(net, 1), "media anchored at the relay");
        assert_eq!(
            callee.stats.answered.load(Ordering::Relaxed),
            answered_before + 1
        );
    }
    assert_eq!(relay.wait_metric("intertrunk_active_calls", 0.0), 0.0);
    assert_eq!(relay.wait_metric("intertrunk_media_sessions", 0.0), 0.0);
    assert_eq!(relay.metric("intertrunk_calls_answered_total"), 5.0);
    assert!(relay.metric("intertrunk_rtp_packets_relayed_total") >= 200.0);
}

#[test]
fn lync_outcomes_unknown_source_no_route_and_no_dial_plan_rule() {
    let net = 42;
    let relay = RelayProcess::start(net, &config(net));
    // No trunk at .99: 403 before any routing.
    assert_eq!(
        call(net, 99, &relay, &Dial::number("+14255550100")).status,
        403
    );
    // The gateway's usages (ToPBX1, ToPBX2) have no route to +33: 403 (12004).
    assert_eq!(
        call(net, 11, &relay, &Dial::number("+33123456789")).status,
        403
    );
    // The gateway's dial plan has no rule for a 5-digit number: 404 (14010).
    assert_eq!(call(net, 11, &relay, &Dial::number("12345")).status, 404);
    assert_eq!(
        relay.wait_metric("intertrunk_calls_no_route_total", 1.0),
        1.0
    );
    assert_eq!(relay.metric("intertrunk_calls_no_matching_rule_total"), 1.0);
}

#[test]
fn failover_from_a_503_gateway_to_the_next() {
    let net = 43;
    let relay = RelayProcess::start(net, &config(net));
    let broken = Answer {
        code: 503,
        ..Answer::default()
    };
    let gw1 = Callee::spawn(addr(net, 11), broken).unwrap();
    let gw2 = Callee::spawn(addr(net, 12), Answer::default()).unwrap();
    // Round-robin rotates the PSTN route's gateway list: some calls try gw1 first, get 503
    // and fail over to gw2; all of them are answered.
    for _ in 0..4 {
        let out = call(net, 21, &relay, &with_media("+33123456789", 5));
        assert_eq!(out.status, 200, "{out:?}\n{}", relay.log_text());
        assert_eq!(out.rtp_received, out.rtp_sent);
    }
    assert!(gw1.stats.rejected.load(Ordering::Relaxed) >= 1);
    assert_eq!(gw2.stats.answered.load(Ordering::Relaxed), 4);
    assert!(relay.wait_metric("intertrunk_failovers_total", 2.0) >= 1.0);
    assert_eq!(relay.wait_metric("intertrunk_media_sessions", 0.0), 0.0);
}

#[test]
fn busy_is_final_and_does_not_fail_over() {
    let net = 44;
    let relay = RelayProcess::start(net, &config(net));
    let busy = Answer {
        code: 486,
        ..Answer::default()
    };
    let gw1 = Callee::spawn(addr(net, 11), busy.clone()).unwrap();
    let gw2 = Callee::spawn(addr(net, 12), busy).unwrap();
    let out = call(net, 21, &relay, &Dial::number("+33123456789"));
    assert_eq!(out.status, 486);
    let tried =
        gw1.stats.invites.load(Ordering::Relaxed) + gw2.stats.invites.load(Ordering::Relaxed);
    assert_eq!(tried, 1, "a 486 is final: no second gateway");
    assert_eq!(relay.wait_metric("intertrunk_media_sessions", 0.0), 0.0);
}

#[test]
fn cancel_while_ringing_and_bye_from_the_callee() {
    let net = 45;
    let relay = RelayProcess::start(net, &config(net));
    let ringing = Answer {
        ring: None,
        ..Answer::default()
    };
    let pbx1 = Callee::spawn(addr(net, 21), ringing).unwrap();
    let mut dial = Dial::number("+14255550100");
    dial.cancel_after = Some(Duration::from_millis(50));
    let out = call(net, 11, &relay, &dial);
    assert_eq!(out.status, 487, "{out:?}\n{}", relay.log_text());
    assert_eq!(pbx1.stats.cancelled.load(Ordering::Relaxed), 1);
    drop(pbx1);

    let hangs_up = Answer {
        hang_up_after: Some(Duration::from_millis(100)),
        ..Answer::default()
    };
    let pbx2 = Callee::spawn(addr(net, 22), hangs_up).unwrap();
    let mut dial = with_media("+12065550100", 3);
    dial.wait_for_bye = Some(Duration::from_secs(5));
    let out = call(net, 11, &relay, &dial);
    assert_eq!(out.status, 200);
    assert!(
        out.ended_by_callee,
        "the callee's BYE came through the relay: {out:?}"
    );
    assert_eq!(pbx2.stats.byes_sent.load(Ordering::Relaxed), 1);
    assert_eq!(relay.wait_metric("intertrunk_active_calls", 0.0), 0.0);
    assert_eq!(relay.wait_metric("intertrunk_media_sessions", 0.0), 0.0);
}

#[test]
fn rtp_from_a_third_address_is_dropped_not_relayed() {
    let net = 46;
    let relay = RelayProcess::start(net, &config(net));
    let pbx1 = Callee::spawn(addr(net, 21), Answer::default()).unwrap();
    let mut dial = with_media("+14255550100", 20);
    dial.inject_from = Some(ip(net, 77));
    let out = call(net, 11, &relay, &dial);
    assert_eq!(out.status, 200);
    assert_eq!(out.rtp_injected, 20);
    assert_eq!(
        pbx1.stats.rtp_echoed.load(Ordering::Relaxed),
        20,
        "only the caller's packets reach the callee"
    );
    assert_eq!(out.rtp_received, 20, "no injected packet comes back");
    assert!(relay.wait_metric("intertrunk_rtp_packets_dropped_total", 20.0) >= 20.0);
}

#[test]
fn silent_call_is_torn_down_with_bye_to_both_legs() {
    let net = 47;
    let relay = RelayProcess::start(net, &config(net));
    let pbx1 = Callee::spawn(addr(net, 21), Answer::default()).unwrap();
    // No RTP at all: after media_timeout_s (3 s) the relay ends the call on both legs.
    let mut dial = Dial::number("+14255550100");
    dial.wait_for_bye = Some(Duration::from_secs(10));
    let out = call(net, 11, &relay, &dial);
    assert_eq!(out.status, 200);
    assert!(
        out.ended_by_callee,
        "the relay's BYE reached the caller: {out:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while pbx1.stats.byes_received.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pbx1.stats.byes_received.load(Ordering::Relaxed), 1);
    assert_eq!(
        relay.wait_metric("intertrunk_media_timeouts_total", 1.0),
        1.0
    );
    assert_eq!(relay.wait_metric("intertrunk_media_sessions", 0.0), 0.0);
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let net = 48;
    let mut relay = RelayProcess::start(net, &config(net));
    let _pbx1 = Callee::spawn(addr(net, 21), Answer::default()).unwrap();
    assert_eq!(
        call(net, 11, &relay, &with_media("+14255550100", 2)).status,
        200
    );
    assert_eq!(relay.terminate(), Some(0), "{}", relay.log_text());
}
