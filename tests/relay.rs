//! The `intertrunk` binary relaying real calls over loopback sockets: SIP peers (a gateway
//! and PBXs, each on its own 127.0.N.x address) placing and answering calls with RTP through
//! `intertrunk run`.
//!
//! Each test runs its own relay process on its own 127.0.N.0/24 so the tests run in parallel.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use intertrunk::demo::ua::{Answer, CallOutcome, Callee, Caller, Dial};

mod common;

use common::{addr, config, ip, Probing, RelayProcess};

/// Waits up to 3 s for `counter` to reach `want` (the far end counts on its own thread).
fn eventually(counter: &std::sync::atomic::AtomicU64, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let v = counter.load(Ordering::Relaxed);
        if v >= want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(10));
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
    let relay = RelayProcess::start(net, &config(net, Probing::On));
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
    let relay = RelayProcess::start(net, &config(net, Probing::On));
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
    // The two refusals may have been handled by different workers: wait for both counters.
    assert_eq!(
        relay.wait_metric("intertrunk_calls_no_matching_rule_total", 1.0),
        1.0
    );
}

#[test]
fn failover_from_a_503_gateway_to_the_next() {
    let net = 43;
    let relay = RelayProcess::start(net, &config(net, Probing::On));
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
    let relay = RelayProcess::start(net, &config(net, Probing::On));
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
    let relay = RelayProcess::start(net, &config(net, Probing::On));
    let ringing = Answer {
        ring: None,
        ..Answer::default()
    };
    let pbx1 = Callee::spawn(addr(net, 21), ringing).unwrap();
    let mut dial = Dial::number("+14255550100");
    dial.cancel_after = Some(Duration::from_millis(50));
    let out = call(net, 11, &relay, &dial);
    assert_eq!(out.status, 487, "{out:?}\n{}", relay.log_text());
    assert_eq!(
        eventually(&pbx1.stats.cancelled, 1),
        1,
        "the CANCEL reached the callee"
    );
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
    let relay = RelayProcess::start(net, &config(net, Probing::On));
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
    let relay = RelayProcess::start(net, &config(net, Probing::On));
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
    assert_eq!(eventually(&pbx1.stats.byes_received, 1), 1);
    assert_eq!(
        relay.wait_metric("intertrunk_media_timeouts_total", 1.0),
        1.0
    );
    assert_eq!(relay.wait_metric("intertrunk_media_sessions", 0.0), 0.0);
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let net = 48;
    let mut relay = RelayProcess::start(net, &config(net, Probing::On));
    let _pbx1 = Callee::spawn(addr(net, 21), Answer::default()).unwrap();
    assert_eq!(
        call(net, 11, &relay, &with_media("+14255550100", 2)).status,
        200
    );
    assert_eq!(relay.terminate(), Some(0), "{}", relay.log_text());
    // A restart right away finds its ports free: the workers' rings no longer hold the
    // sockets once the process is gone (their teardown would otherwise be asynchronous).
    let sip = relay.sip;
    let worker0 = std::net::SocketAddr::new(sip.ip(), sip.port() + 1);
    for a in [sip, worker0] {
        if let Err(e) = std::net::UdpSocket::bind(a) {
            panic!("{a} still bound after the relay exited: {e}");
        }
    }
}

/// `realtime_priority` puts every worker thread under SCHED_FIFO at that priority, or, where
/// the relay may not (no root, no CAP_SYS_NICE), says so and runs on.
#[test]
fn realtime_priority_applies_to_the_workers_or_is_reported() {
    let net = 49;
    let cfg =
        config(net, Probing::Off).replacen("[server]\n", "[server]\nrealtime_priority = 7\n", 1);
    assert!(cfg.contains("realtime_priority = 7"));
    let mut relay = RelayProcess::start(net, &cfg);
    let pid = relay.pid();
    let mut workers = 0;
    let mut fifo = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("worker-") {
            continue;
        }
        workers += 1;
        // Fields after the command name: policy is the 41st field of stat, rt_priority the 40th.
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        let (prio, policy) = (fields[40 - 3], fields[41 - 3]);
        if policy == "1" {
            assert_eq!(prio, "7", "{stat}");
            fifo += 1;
        }
    }
    assert!(workers > 0);
    if fifo != workers {
        assert_eq!(fifo, 0);
        assert!(
            relay.log_text().contains("realtime_priority refused"),
            "{}",
            relay.log_text()
        );
    }
    assert_eq!(relay.terminate(), Some(0));
}

/// Thousands of calls through one relay, ending in every way a call ends (caller BYE, callee
/// BYE, CANCEL while ringing, busy, failover after a 503, a final 503, no route, media
/// timeout), some with RTP: afterwards no call, media session or port pair is left, and every
/// port of `media_ports` can be bound again from outside.
#[test]
fn thousands_of_calls_ending_every_way_leave_no_port_allocated() {
    let net = 50;
    let relay = RelayProcess::start(net, &churn_config(net));
    let now = Some(Duration::ZERO);
    let answers = Answer {
        ring: now,
        ..Answer::default()
    };
    let _bye_from_caller = Callee::spawn(addr(net, 21), answers.clone()).unwrap();
    let bye_from_callee = Callee::spawn(
        addr(net, 22),
        Answer {
            hang_up_after: Some(Duration::from_millis(5)),
            ..answers.clone()
        },
    )
    .unwrap();
    let _busy = Callee::spawn(
        addr(net, 23),
        Answer {
            code: 486,
            ..answers.clone()
        },
    )
    .unwrap();
    let rings = Callee::spawn(
        addr(net, 24),
        Answer {
            ring: None,
            ..answers.clone()
        },
    )
    .unwrap();
    let fails_over = Callee::spawn(
        addr(net, 25),
        Answer {
            code: 503,
            ..answers.clone()
        },
    )
    .unwrap();
    let _backup = Callee::spawn(addr(net, 26), answers.clone()).unwrap();
    let _silent = Callee::spawn(addr(net, 27), answers.clone()).unwrap();
    let _unavailable = Callee::spawn(
        addr(net, 28),
        Answer {
            code: 503,
            ..answers
        },
    )
    .unwrap();

    // Media timeouts take media_timeout_s: a few run beside the churn.
    const SILENT: usize = 8;
    let relay_sip = relay.sip;
    let silent: Vec<_> = (0..SILENT)
        .map(|i| {
            std::thread::spawn(move || {
                let mut caller = Caller::new(ip(net, 11), relay_sip).unwrap();
                let mut dial = Dial::number(&format!("+1006{i:04}"));
                dial.wait_for_bye = Some(Duration::from_secs(15));
                caller.call(&dial).unwrap()
            })
        })
        .collect();

    const THREADS: u32 = 4;
    const CALLS_PER_THREAD: u32 = 500;
    let churn: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut caller = Caller::new(ip(net, 11), relay_sip).unwrap();
                let mut wrong = Vec::new();
                for i in 0..CALLS_PER_THREAD {
                    let way = i % 7;
                    let mut dial = Dial::number(&format!("+100{way}{t}{i:03}"));
                    // One call in 25 carries RTP both ways (not those the callee ends
                    // 5 ms in, before the second packet).
                    if i % 25 == 0 && way != 1 {
                        dial.rtp_packets = 2;
                    }
                    let want = match way {
                        0 => 200,
                        1 => {
                            dial.wait_for_bye = Some(Duration::from_secs(5));
                            200
                        }
                        2 => 486,
                        3 => {
                            dial.cancel_after = Some(Duration::ZERO);
                            487
                        }
                        4 => 200,
                        5 => 503,
                        _ => {
                            dial.number = format!("+99{t}{i:04}");
                            403
                        }
                    };
                    let out = caller.call(&dial).unwrap();
                    let ended = want != 200 || out.ended_cleanly;
                    if out.status != want || !ended || out.rtp_received != out.rtp_sent {
                        wrong.push(format!("{}: want {want}, got {out:?}", dial.number));
                    }
                }
                wrong
            })
        })
        .collect();
    let wrong: Vec<String> = churn.into_iter().flat_map(|h| h.join().unwrap()).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} calls went wrong, first: {:?}\n{}",
        wrong.len(),
        THREADS * CALLS_PER_THREAD,
        &wrong[..wrong.len().min(5)],
        relay.log_text()
    );
    for h in silent {
        let out = h.join().unwrap();
        assert_eq!(out.status, 200, "{out:?}");
        assert!(out.ended_by_callee, "the relay's BYE on timeout: {out:?}");
    }

    let per_way = u64::from(THREADS * CALLS_PER_THREAD).div_ceil(7);
    assert!(
        bye_from_callee.stats.byes_sent.load(Ordering::Relaxed) >= per_way - u64::from(THREADS)
    );
    assert!(rings.stats.cancelled.load(Ordering::Relaxed) >= per_way - u64::from(THREADS));
    // The route's gateways are rotated per call: about half the way-4 calls try .25 first.
    let failed_first = fails_over.stats.rejected.load(Ordering::Relaxed);
    assert!(failed_first >= per_way / 4, "{failed_first} of ~{per_way}");
    assert!(relay.metric("intertrunk_failovers_total") >= failed_first as f64);
    assert_eq!(
        relay.wait_metric("intertrunk_media_timeouts_total", SILENT as f64),
        SILENT as f64
    );
    assert_eq!(relay.wait_metric("intertrunk_active_calls", 0.0), 0.0);
    assert_eq!(relay.wait_metric("intertrunk_media_sessions", 0.0), 0.0);
    assert_eq!(
        relay.wait_metric("intertrunk_media_port_pairs_in_use", 0.0),
        0.0,
        "{}",
        relay.log_text()
    );
    assert_eq!(relay.metric("intertrunk_media_port_pairs_total"), 500.0);

    // From the kernel's side too: every port of the range binds (no socket left open).
    let deadline = Instant::now() + Duration::from_secs(3);
    let held: Vec<u16> = loop {
        let held: Vec<u16> = (20000..=20999u16)
            .filter(|&p| {
                std::net::UdpSocket::bind(std::net::SocketAddr::new(ip(net, 1), p)).is_err()
            })
            .collect();
        if held.is_empty() || Instant::now() > deadline {
            break held;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(held.is_empty(), "media ports still bound: {held:?}");
}

/// One gateway placing calls; behind it one trunk per way a call can end.
fn churn_config(net: u8) -> String {
    let mut c = format!(
        r#"
[server]
sip_listen = ["udp:127.0.{net}.1:5060"]
media_address = "127.0.{net}.1"
media_ports = "20000-20999"
workers = 2
admin_listen = "127.0.{net}.1:8060"
media_timeout_s = 2

[voice]
pstn_usages = ["All"]

[[trunk]]
identity = "PstnGateway:gw"
address = "127.0.{net}.11:5060"
pstn_usages = ["All"]
options_keepalive_s = 0
"#
    );
    // Trunk .2N is reached by +100N...; way 4 fails over from .25 to .26.
    for host in 21..=28 {
        c.push_str(&format!(
            "\n[[trunk]]\nidentity = \"PstnGateway:pbx{host}\"\naddress = \"127.0.{net}.{host}:5060\"\npstn_usages = []\noptions_keepalive_s = 0\n"
        ));
    }
    let routes = [
        (0, "21"),
        (1, "22"),
        (2, "23"),
        (3, "24"),
        (4, "25\", \"PstnGateway:pbx26"),
        (5, "28"),
        (6, "27"),
    ];
    for (way, gateways) in routes {
        c.push_str(&format!(
            "\n[[voice_route]]\nidentity = \"Way{way}\"\nnumber_pattern = '^\\+100{way}\\d+$'\npstn_usages = [\"All\"]\npstn_gateway_list = [\"PstnGateway:pbx{gateways}\"]\n"
        ));
    }
    c
}

/// Hostile datagrams from a trunk and from a stranger: each one becomes a SIP error response or
/// a counted drop, never a crash, and calls keep going through afterwards.
#[test]
fn hostile_datagrams_are_answered_or_counted_and_calls_go_on() {
    let net = 51;
    let relay = RelayProcess::start(net, &config(net, Probing::Off));
    let _pbx1 = Callee::spawn(addr(net, 21), Answer::default()).unwrap();
    let gw = std::net::UdpSocket::bind(addr(net, 11)).unwrap();
    let stranger = std::net::UdpSocket::bind(addr(net, 99)).unwrap();
    for s in [&gw, &stranger] {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    let invite = |extra: &str, max_forwards: &str, branch: &str| {
        format!(
            "INVITE sip:+14255550100@127.0.{net}.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.{net}.11:5060;branch=z9hG4bK{branch}\r\n{extra}Max-Forwards: {max_forwards}\r\nFrom: <sip:gw@127.0.{net}.11>;tag=h{branch}\r\nTo: <sip:+14255550100@127.0.{net}.1>\r\nCall-ID: hostile-{branch}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    let status_of = |s: &std::net::UdpSocket| -> Option<u16> {
        let mut buf = [0u8; 65536];
        let n = s.recv(&mut buf).ok()?;
        let line = std::str::from_utf8(&buf[..n.min(16)]).ok()?;
        line.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
    };

    // Answered: the errors a sender can be told about.
    let answered: Vec<(&str, Vec<u8>, u16)> = vec![
        ("Max-Forwards 0", invite("", "0", "mf0"), 483),
        (
            "Max-Forwards not a number",
            invite("", "seventy", "mfx"),
            400,
        ),
        (
            "CSeq method differs",
            {
                let mut m = invite("", "70", "cseq");
                let at = m.windows(12).position(|w| w == b"CSeq: 1 INVI").unwrap();
                m[at + 8..at + 14].copy_from_slice(b"BYEBYE");
                m
            },
            400,
        ),
        (
            "a loop through the relay",
            invite(
                &format!("Via: SIP/2.0/UDP 127.0.{net}.1:5060;branch=z9hG4bKit0000\r\n"),
                "70",
                "loop",
            ),
            482,
        ),
    ];
    for (what, bytes, want) in &answered {
        gw.send_to(bytes, relay.sip).unwrap();
        let mut got = status_of(&gw);
        if got == Some(100) {
            got = status_of(&gw);
        }
        assert_eq!(got, Some(*want), "{what}");
    }
    stranger
        .send_to(&invite("", "70", "stranger"), relay.sip)
        .unwrap();
    assert_eq!(status_of(&stranger), Some(403), "no open relay");

    // Dropped and counted: nothing a response could be routed by.
    let mut huge = invite("", "70", "huge");
    huge.truncate(huge.len() - 4);
    huge.extend(std::iter::repeat_n(b'A', 60_000));
    let mut many_vias = Vec::new();
    for i in 0..1000 {
        many_vias.extend_from_slice(
            format!(
                "Via: SIP/2.0/UDP 10.0.0.{}:5060;branch=z9hG4bKv{i}\r\n",
                i % 250
            )
            .as_bytes(),
        );
    }
    let garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\0".to_vec(),
        b"INVITE".to_vec(),
        b"INVITE sip:x SIP/2.0\r\n\r\n".to_vec(),
        vec![0xff; 1400],
        huge,
        invite(std::str::from_utf8(&many_vias).unwrap(), "70", "vias"),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnotours\r\n\r\n".to_vec(),
        invite("Content-Length: 99999\r\n", "70", "clen"),
    ];
    for g in &garbage {
        gw.send_to(g, relay.sip).unwrap();
        stranger.send_to(g, relay.sip).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(relay.metric("intertrunk_sip_parse_errors_total") >= 4.0);

    // Still routing, with media.
    let out = call(net, 11, &relay, &with_media("+14255550100", 3));
    assert_eq!(out.status, 200, "{out:?}\n{}", relay.log_text());
    assert_eq!(out.rtp_received, 3);
    assert_eq!(relay.wait_metric("intertrunk_active_calls", 0.0), 0.0);
}
