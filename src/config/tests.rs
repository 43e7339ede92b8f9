use super::*;

#[test]
fn builtin_config_loads_and_validates() {
    let c = Config::from_toml(DEFAULT_CONFIG).unwrap();
    assert_eq!(c.trunk.len(), 3);
    assert_eq!(c.trunk[0].identity, "PstnGateway:gw1");
    assert!(c.trunk[0].enable_fast_failover_timer);
    assert!(c.trunk[0].rtcp_active_calls);
    assert_eq!(c.trunk[0].max_early_dialogs, 20);
    assert_eq!(c.trunk[0].options_keepalive_s, 30);
    assert_eq!(c.trunk[0].transport, Transport::Udp);
    assert_eq!(c.dial_plan[0].normalization_rules.len(), 2);
    assert_eq!(
        c.server.media_ports,
        PortRange {
            first: 30000,
            last: 39999
        }
    );
    assert_eq!(c, Config::builtin());
}

#[test]
fn serializes_back_to_equal_config() {
    let mut c = Config::builtin();
    c.server.public_address = Some("192.0.2.1".parse().unwrap());
    c.trunk[1].dial_plan = Some("GatewayInbound".into());
    c.voice_route[0].alternate_caller_id = "+15550100".into();
    let text = c.to_toml();
    let back = Config::from_toml(&text).unwrap_or_else(|d| panic!("{d:?}\n{text}"));
    assert_eq!(back, c);
    assert_eq!(c.clone(), c);
}

#[test]
fn listen_and_port_range_syntax() {
    let l: Listen = "udp:[::1]:5060".parse().unwrap();
    assert_eq!(l.to_string(), "udp:[::1]:5060");
    assert!("udp:127.0.0.1".parse::<Listen>().is_err());
    assert!("sctp:127.0.0.1:5060".parse::<Listen>().is_err());
    assert_eq!("30000-30001".parse::<PortRange>().unwrap().last, 30001);
    for bad in ["30000", "40000-30000", "a-b", "30001-30002", "0-10"] {
        assert!(bad.parse::<PortRange>().is_err(), "{bad}");
    }
}

/// (line, identity, fragment of the message) of each diagnostic, in order.
fn diags(text: &str) -> Vec<(Option<usize>, Option<String>, String)> {
    let d = Config::from_toml(text).expect_err("config should be invalid");
    d.into_iter()
        .map(|d| (d.line, d.identity, d.message))
        .collect()
}

const BROKEN: &str = r#"[server]
sip_listen = ["udp:127.0.0.1"]
media_ports = "40000-30000"
colour = "blue"

[voice]
pstn_usages = ["Local", "PBX"]

[[trunk]]
identity = "gw1"
address = "127.0.0.11:5060"
pstn_usages = ["Local", "Nowhere"]
dial_plan = "Missing"
outbound_translation_rules = ["NoSuchRule"]
sip_response_code_translation_rules = ["NoSuchCode"]
max_early_dialogs = "many"

[[trunk]]
identity = "gw1"
address = "127.0.0.11:5060"
typo_key = 1

[[trunk]]
identity = "pbx"

[[voice_route]]
identity = "R1"
number_pattern = '^\+1(206$'
pstn_usages = ["PBX"]
pstn_gateway_list = ["gw1", "ghost"]

[[dial_plan]]
identity = "DP"
normalization_rules = [
  { name = "A", pattern = '^(\d+)$', translation = '+$2' },
  { name = "B", pattern = '^\d+$', translation = 'x', extra = 1 },
]

[[translation_rule]]
identity = "T"
pattern = '^\+(\d*)$'
translation = '${rest}'

[[response_code_translation_rule]]
identity = "C"
received_response_code = 999
translated_response_code = 503

[unknown_section]
x = 1
"#;

#[test]
fn every_error_at_once_with_lines() {
    let got = diags(BROKEN);
    let expect: &[(usize, &str, &str)] = &[
        (2, "server", "bad listen address"),
        (3, "server", "bad port range"),
        (4, "server", "unknown key `colour`"),
        (12, "gw1", "`Nowhere` is not in the global PSTN usage list"),
        (13, "gw1", "no dial plan `Missing`"),
        (14, "gw1", "no translation rule `NoSuchRule`"),
        (15, "gw1", "no response code translation rule `NoSuchCode`"),
        (16, "gw1", "`max_early_dialogs`: expected an integer"),
        (19, "gw1", "duplicate trunk identity (first at line 10)"),
        (20, "gw1", "already the address of trunk gw1"),
        (21, "gw1", "unknown key `typo_key`"),
        (23, "pbx", "missing required key `address`"),
        (28, "R1", "`number_pattern` is not a valid regex"),
        (30, "R1", "`ghost` is not a trunk"),
        (
            35,
            "DP/A",
            "refers to group $2, but the pattern has 1 capture group",
        ),
        (36, "B", "unknown key `extra`"),
        (42, "T", "refers to group `rest`"),
        (46, "C", "999 is out of range"),
        (49, "", "unknown key `unknown_section`"),
    ];
    let shown: Vec<String> = got
        .iter()
        .map(|(l, i, m)| format!("{l:?} {i:?} {m}"))
        .collect();
    assert_eq!(got.len(), expect.len(), "{shown:#?}");
    for ((line, id, msg), (el, eid, emsg)) in got.iter().zip(expect) {
        assert_eq!(*line, Some(*el), "{shown:#?}");
        assert_eq!(id.as_deref().unwrap_or(""), *eid, "{shown:#?}");
        assert!(msg.contains(emsg), "`{msg}` lacks `{emsg}`: {shown:#?}");
    }
}

#[test]
fn syntax_error_has_its_line() {
    let d = diags("[server]\nworkers = 1\n[[trunk]\n");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].0, Some(3));
    assert!(d[0].2.starts_with("TOML syntax"));
}

#[test]
fn in_memory_changes_are_validated() {
    let mut c = Config::builtin();
    c.trunk[0].pstn_usages.push("Nope".into());
    c.voice_route[0]
        .pstn_gateway_list
        .push("PstnGateway:none".into());
    let d = c.validate().unwrap_err();
    assert_eq!(d.len(), 2);
    assert!(d.iter().all(|d| d.line.is_none()));
}

#[test]
fn trunks_may_share_an_ip_on_different_ports() {
    let text = DEFAULT_CONFIG.replace("127.0.0.22:5060", "127.0.0.21:5070");
    assert!(Config::from_toml(&text).is_ok());
    let text = DEFAULT_CONFIG.replace("127.0.0.22:5060", "127.0.0.21:5060");
    let d = diags(&text);
    assert_eq!(d.len(), 1);
    assert!(d[0]
        .2
        .contains("already the address of trunk PstnGateway:pbx1"));
}

#[test]
fn batch_wait_keys_are_optional_bounded_and_round_trip() {
    let base = "[server]\nmedia_batch_wait_us = 500\nsip_batch_wait_us = 20\n";
    let c = Config::from_toml(base).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(c.server.media_batch_wait_us, Some(500));
    assert_eq!(c.server.sip_batch_wait_us, Some(20));
    assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
    assert_eq!(Config::builtin().server.media_batch_wait_us, None);
    assert!(!Config::builtin().to_toml().contains("batch_wait"));
    let err = Config::from_toml("[server]\nmedia_batch_wait_us = 5000000\n").unwrap_err();
    assert!(
        err.iter()
            .any(|d| d.line == Some(2) && d.message.contains("out of range")),
        "{err:?}"
    );
}

#[test]
fn realtime_priority_is_optional_bounded_and_round_trips() {
    let c =
        Config::from_toml("[server]\nrealtime_priority = 10\n").unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(c.server.realtime_priority, Some(10));
    assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
    assert_eq!(Config::builtin().server.realtime_priority, None);
    assert!(!Config::builtin().to_toml().contains("realtime_priority"));
    let err = Config::from_toml("[server]\nrealtime_priority = 100\n").unwrap_err();
    assert!(
        err.iter()
            .any(|d| d.line == Some(2) && d.message.contains("out of range")),
        "{err:?}"
    );
}

#[test]
fn tcp_and_tls_are_refused_with_their_lines() {
    let d = diags(
        "[server]\nsip_listen = [\"udp:127.0.0.1:5060\", \"tcp:127.0.0.1:5060\"]\n\
         [voice]\npstn_usages = []\n\
         [[trunk]]\nidentity = \"PstnGateway:gw1\"\naddress = \"127.0.0.11:5060\"\ntransport = \"tls\"\n\
         [[trunk]]\nidentity = \"PstnGateway:pbx1\"\naddress = \"127.0.0.21:5060\"\ntransport = \"udp\"\n",
    );
    let shown: Vec<String> = d
        .iter()
        .map(|(l, i, m)| format!("{l:?} {i:?} {m}"))
        .collect();
    assert_eq!(d.len(), 2, "{shown:#?}");
    assert_eq!(d[0].0, Some(2), "{shown:#?}");
    assert!(d[0]
        .2
        .contains("`tcp:127.0.0.1:5060`: SIP over TCP and TLS is not supported"));
    assert_eq!(d[1].0, Some(8), "{shown:#?}");
    assert_eq!(d[1].1.as_deref(), Some("PstnGateway:gw1"));
    assert!(d[1].2.contains("`tls`"), "{shown:#?}");
}

#[test]
fn overload_mark_is_optional_bounded_and_reaches_the_proxy() {
    use crate::proxy::ProxyConfig;
    use std::time::Duration;
    let local = "127.0.0.1:5061".parse().unwrap();
    let mark = |text: &str| {
        let c = Config::from_toml(text).unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
        ProxyConfig::for_core(&c, local, 0, 1).overload_queue_delay
    };
    assert_eq!(mark("[server]\n"), None);
    assert_eq!(
        mark("[server]\nsip_overload_queue_ms = 150\n"),
        Some(Duration::from_millis(150))
    );
    assert_eq!(mark("[server]\nsip_overload_queue_ms = 0\n"), None);
    let err = Config::from_toml("[server]\nsip_overload_queue_ms = 60000\n").unwrap_err();
    assert!(
        err.iter()
            .any(|d| d.line == Some(2) && d.message.contains("out of range")),
        "{err:?}"
    );
}
