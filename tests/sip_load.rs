//! The sip-load generator through the real relay binary: its UAC and UAS on 127.0.67.x, the
//! relay between them (record-routing, media bypassed, as in the SIP benchmark), ~200 calls/s
//! for 2 s; every call must complete.

mod common;
#[allow(unused)]
#[path = "../tools/sip-load/engine.rs"]
mod engine;
#[path = "../tools/sip-load/timers.rs"]
mod timers;

use common::{addr, RelayProcess};

fn config(net: u8) -> String {
    format!(
        r#"
[server]
sip_listen = ["udp:127.0.{net}.1:5060"]
media_address = "127.0.{net}.1"
media_ports = "22000-22999"
workers = 2
admin_listen = "127.0.{net}.1:8060"
media_timeout_s = 30

[voice]
pstn_usages = ["ToCallee"]

[[trunk]]
identity = "PstnGateway:uac"
address = "127.0.{net}.11:5060"
enable_bypass = true
options_keepalive_s = 0
pstn_usages = ["ToCallee"]
dial_plan = "Bench"

[[trunk]]
identity = "PstnGateway:uas"
address = "127.0.{net}.21:5060"
enable_bypass = true
options_keepalive_s = 0
pstn_usages = []

[[voice_route]]
identity = "Callee"
number_pattern = '^\+49\d+$'
pstn_usages = ["ToCallee"]
pstn_gateway_list = ["PstnGateway:uas"]

[[dial_plan]]
identity = "Bench"
normalization_rules = [
  {{ name = "Germany", pattern = '^(49\d+)$', translation = '+$1' }},
]
"#
    )
}

#[test]
fn generator_calls_complete_through_the_relay() {
    let net = 67;
    let mut relay = RelayProcess::start(net, &config(net));
    let cfg = engine::Config {
        uac: addr(net, 11),
        uas: addr(net, 21),
        target: relay.sip,
        ..engine::Config::default()
    };
    let mut g = engine::Generator::start(cfg).unwrap();
    let st = g.run_trial(200.0, 2.0);
    drop(g);
    assert_eq!(st.planned, 400);
    assert_eq!(st.attempted, 400, "{st:?}");
    assert_eq!(st.failed, 0, "{st:?}\n{}", relay.log_text());
    assert_eq!(st.completed, 400, "{st:?}");
    assert_eq!(st.failed_bad_2xx, 0);
    assert_eq!(st.bad_msgs, 0);
    assert_eq!(st.setup_us.len(), 400);
    // The relay answered every call and ended every dialog (the BYEs went through it).
    assert_eq!(
        relay.wait_metric("intertrunk_calls_answered_total", 400.0),
        400.0
    );
    assert_eq!(relay.wait_metric("intertrunk_active_calls", 0.0), 0.0);
    // All INVITEs come from one source, so they land on one worker's socket; about half are
    // owned (by Call-ID) by the other worker and handed to it. In-dialog requests and
    // responses come back on the owner's own port and need no handoff.
    let handoffs = relay.metric("intertrunk_driver_handoffs_total");
    assert!((100.0..=300.0).contains(&handoffs), "{handoffs} handoffs");
    assert_eq!(relay.terminate(), Some(0));
}
