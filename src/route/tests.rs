use super::*;

fn table(text: &str) -> RouteTable {
    RouteTable::build(Arc::new(Config::from_toml(text).unwrap())).unwrap()
}

fn routed(d: Decision) -> Routed {
    match d {
        Decision::Route(r) => r,
        other => panic!("not routed: {other:?}"),
    }
}

fn gateways(t: &RouteTable, r: &Routed) -> Vec<String> {
    r.candidates
        .iter()
        .map(|c| t.trunk(c.trunk).identity.clone())
        .collect()
}

fn src(t: &RouteTable, addr: &str) -> TrunkId {
    t.trunk_by_source(addr.parse().unwrap()).unwrap()
}

#[test]
fn gateway_to_pbx_and_back() {
    let t = table(crate::config::DEFAULT_CONFIG);
    let mut rr = RoundRobin::new();
    let gw = src(&t, "127.0.0.11:5060");
    // Ten digits from the PSTN, normalized by the gateway's dial plan.
    let r = routed(t.decide(gw, "2065550100", "4255550199", &mut rr));
    assert_eq!(r.normalized, "+12065550100");
    assert_eq!(gateways(&t, &r), ["PstnGateway:pbx2"]);
    assert_eq!(
        r.candidates[0].request_uri,
        "sip:+12065550100@127.0.0.22:5060;user=phone"
    );
    assert_eq!(r.candidates[0].calling, None);
    let r = routed(t.decide(gw, "+14255550100", "", &mut rr));
    assert_eq!(gateways(&t, &r), ["PstnGateway:pbx1"]);
    // PBX -> PSTN: pbx1's usages are ToPBX2 then ToPSTN.
    let pbx1 = src(&t, "127.0.0.21:40000");
    let r = routed(t.decide(pbx1, "+33123456789", "+14255550100", &mut rr));
    assert_eq!(gateways(&t, &r), ["PstnGateway:gw1"]);
    assert_eq!(r.normalized, "+33123456789");
    // The gateway's dial plan has no rule for this: 404 / 14010.
    assert_eq!(t.decide(gw, "12345", "", &mut rr), Decision::NoMatchingRule);
    assert_eq!(
        Decision::NoMatchingRule.rejection(),
        Some((404, 14010, "No matching rule"))
    );
    // No usage of the gateway routes to the PSTN: 403 / 12004 (no hairpin by accident).
    assert_eq!(t.decide(gw, "+33123456789", "", &mut rr), Decision::NoRoute);
    assert_eq!(Decision::NoRoute.rejection().unwrap().1, 12004);
    // Unknown sources are no trunk at all.
    assert_eq!(t.trunk_by_source("127.0.0.99:5060".parse().unwrap()), None);
    assert_eq!(t.translate_response_code(gw, 408), 503);
    assert_eq!(t.translate_response_code(gw, 486), 486);
    assert_eq!(t.translate_response_code(pbx1, 408), 408);
}

#[test]
fn pbx_to_pbx_usage_order_covers_both_pbxs() {
    let t = table(crate::config::DEFAULT_CONFIG);
    let mut rr = RoundRobin::new();
    let pbx1 = src(&t, "127.0.0.21:5060");
    let pbx2 = src(&t, "127.0.0.22:5060");
    // A PBX2 number from PBX1: ToPBX2 (pbx2) first, then ToPSTN's catch-all (gw1).
    let r = routed(t.decide(pbx1, "+12065550100", "+14255550100", &mut rr));
    assert_eq!(gateways(&t, &r), ["PstnGateway:pbx2", "PstnGateway:gw1"]);
    assert_eq!(t.usage_name(r.candidates[0].usage), "ToPBX2");
    assert_eq!(t.usage_name(r.candidates[1].usage), "ToPSTN");
    assert_eq!(t.route_identity(r.candidates[1].route), "PSTN");
    let r = routed(t.decide(pbx2, "+14255550100", "+12065550100", &mut rr));
    assert_eq!(gateways(&t, &r), ["PstnGateway:pbx1", "PstnGateway:gw1"]);
}

const THREE_PBX: &str = r#"
[voice]
pstn_usages = ["Internal", "Local", "LongDistance"]

[[trunk]]
identity = "PstnGateway:pbxA"
address = "10.0.0.1:5060"
pstn_usages = ["Internal", "Local", "LongDistance"]

[[trunk]]
identity = "PstnGateway:pbxB"
address = "10.0.0.2:5060"
pstn_usages = ["Internal"]

[[trunk]]
identity = "PstnGateway:pbxC"
address = "10.0.0.2:5070"
pstn_usages = ["Internal"]
outbound_translation_rules = ["StripPlus"]
outbound_calling_number_translation_rules = ["Ext"]

[[trunk]]
identity = "PstnGateway:gw1"
address = "10.0.1.1:5060"
remove_plus_from_uri = true

[[trunk]]
identity = "PstnGateway:gw2"
address = "10.0.1.2:5060"

[[trunk]]
identity = "PstnGateway:gw3"
address = "10.0.1.3:5060"

[[voice_route]]
identity = "CatchAll"
number_pattern = '^\+\d+$'
pstn_usages = ["LongDistance"]
pstn_gateway_list = ["PstnGateway:gw3"]

[[voice_route]]
identity = "ToB"
number_pattern = '^\+1206555\d{4}$'
pstn_usages = ["Internal"]
pstn_gateway_list = ["PstnGateway:pbxB"]
priority = 1

[[voice_route]]
identity = "ToC"
number_pattern = '^\+1206555(01|02)\d{2}$'
pstn_usages = ["Internal"]
pstn_gateway_list = ["PstnGateway:pbxC"]
priority = 0

[[voice_route]]
identity = "Local"
number_pattern = '^\+1(206|425)'
pstn_usages = ["Local"]
pstn_gateway_list = ["PstnGateway:gw1", "PstnGateway:gw2"]

[[voice_route]]
identity = "Private"
number_pattern = '\+1206555999.'
pstn_usages = ["Local"]
pstn_gateway_list = ["PstnGateway:gw2"]
suppress_caller_id = true
alternate_caller_id = "+12065550000"

[[voice_route]]
identity = "Anonymous"
number_pattern = '^\+1425555'
pstn_usages = ["Local"]
pstn_gateway_list = ["PstnGateway:gw3"]
suppress_caller_id = true
priority = 5

[[translation_rule]]
identity = "StripPlus"
pattern = '^\+(\d*)$'
translation = '$1'

[[translation_rule]]
identity = "Ext"
pattern = '^\+1206555(\d{4})$'
translation = '${1}'
"#;

#[test]
fn three_pbxs_priorities_round_robin_and_translations() {
    let t = table(THREE_PBX);
    let mut rr = RoundRobin::new();
    // Two trunks share 10.0.0.2: the port tells them apart, an unknown port is neither.
    assert_eq!(
        t.trunk(src(&t, "10.0.0.2:5070")).identity,
        "PstnGateway:pbxC"
    );
    assert_eq!(
        t.trunk(src(&t, "10.0.0.2:5060")).identity,
        "PstnGateway:pbxB"
    );
    assert_eq!(t.trunk_by_source("10.0.0.2:5080".parse().unwrap()), None);
    // The only trunk on its ip is matched from any port.
    let a = src(&t, "10.0.0.1:32000");
    let b = src(&t, "10.0.0.2:5060");

    // Priority 0 (ToC) before priority 1 (ToB), though ToB comes first in the file; then the
    // Local usage with gw1/gw2 in round-robin; then LongDistance.
    let r = routed(t.decide(a, "+12065550123", "+12065550777", &mut rr));
    assert_eq!(
        gateways(&t, &r),
        [
            "PstnGateway:pbxC",
            "PstnGateway:pbxB",
            "PstnGateway:gw1",
            "PstnGateway:gw2",
            "PstnGateway:gw3"
        ]
    );
    let c = &r.candidates;
    // pbxC strips the plus (outbound rule) and shortens the calling number to an extension.
    assert_eq!(c[0].called, "12065550123");
    assert_eq!(c[0].request_uri, "sip:12065550123@10.0.0.2:5070;user=phone");
    assert_eq!(c[0].calling.as_deref(), Some("0777"));
    assert_eq!(c[1].called, "+12065550123");
    assert_eq!(c[1].calling, None);
    // gw1 has remove_plus_from_uri.
    assert_eq!(c[2].called, "12065550123");
    assert_eq!(c[2].request_uri, "sip:12065550123@10.0.1.1:5060;user=phone");
    assert_eq!(c[3].called, "+12065550123");

    // Round-robin: the Local route's list turns call by call.
    let r = routed(t.decide(a, "+12065550123", "", &mut rr));
    assert_eq!(
        gateways(&t, &r)[2..4],
        ["PstnGateway:gw2", "PstnGateway:gw1"]
    );
    let r = routed(t.decide(a, "+12065550123", "", &mut rr));
    assert_eq!(
        gateways(&t, &r)[2..4],
        ["PstnGateway:gw1", "PstnGateway:gw2"]
    );
    // Another core has its own positions.
    let mut other = RoundRobin::new();
    let r = routed(t.decide(a, "+12065550123", "", &mut other));
    assert_eq!(
        gateways(&t, &r)[2..4],
        ["PstnGateway:gw1", "PstnGateway:gw2"]
    );

    // Caller ID: the Private route presents its alternate caller ID; gw2 appears once, at its
    // first position (Local), with that route's settings.
    let r = routed(t.decide(a, "+12065559991", "+12065550777", &mut other));
    let names = gateways(&t, &r);
    assert_eq!(names[..2], ["PstnGateway:pbxB", "PstnGateway:gw2"]);
    assert_eq!(t.route_identity(r.candidates[1].route), "Local");
    assert!(!r.candidates[1].suppress_caller_id);
    // Anonymous: suppressed with no alternate.
    let r = routed(t.decide(a, "+14255551234", "+12065550777", &mut other));
    assert_eq!(gateways(&t, &r).len(), 3);
    let anon = &r.candidates[2];
    assert_eq!(t.route_identity(anon.route), "Anonymous");
    assert!(anon.suppress_caller_id);
    assert_eq!(anon.calling, None);
    // pbxB only has the Internal usage: a PSTN number has no route.
    assert_eq!(t.decide(b, "+4420123456", "", &mut rr), Decision::NoRoute);
}

#[test]
fn caller_id_suppression() {
    let text = THREE_PBX.replace(
        "pstn_gateway_list = [\"PstnGateway:gw1\", \"PstnGateway:gw2\"]",
        "pstn_gateway_list = []",
    );
    let t = table(&text);
    let mut rr = RoundRobin::new();
    let a = src(&t, "10.0.0.1:5060");
    let r = routed(t.decide(a, "+12065559991", "+12065550777", &mut rr));
    let p = r
        .candidates
        .iter()
        .find(|c| t.route_identity(c.route) == "Private")
        .unwrap();
    assert!(p.suppress_caller_id);
    assert_eq!(p.calling.as_deref(), Some("+12065550000"));
    let r = routed(t.decide(a, "+14255551234", "+12065550777", &mut rr));
    assert_eq!(t.route_identity(r.candidates[0].route), "Anonymous");
    assert!(r.candidates[0].suppress_caller_id);
    assert_eq!(r.candidates[0].calling, None);
}

#[test]
fn explain_shows_every_step() {
    let t = table(crate::config::DEFAULT_CONFIG);
    let pbx1 = t.trunk_by_identity("PstnGateway:pbx1").unwrap();
    let tr = t.explain(pbx1, "+12065550100", "+14255550100");
    assert_eq!(tr.normalized.as_deref(), Some("+12065550100"));
    assert_eq!(tr.usages.len(), 2);
    assert_eq!(tr.usages[0].usage, "ToPBX2");
    assert_eq!(tr.usages[0].routes[0].identity, "PBX2");
    assert_eq!(tr.usages[1].routes[0].gateways, ["PstnGateway:gw1"]);
    assert_eq!(tr.candidates.len(), 2);
    assert_eq!(tr.outcome, Outcome::Route);
    let gw = t.trunk_by_identity("PstnGateway:gw1").unwrap();
    let tr = t.explain(gw, "2065550100", "");
    assert_eq!(tr.dial_plan.as_deref(), Some("GatewayInbound"));
    assert_eq!(tr.normalization_rule.as_deref(), Some("TenDigit"));
    let tr = t.explain(gw, "12", "");
    assert_eq!(
        (tr.outcome, tr.sip_status, tr.lync_diagnostic),
        (Outcome::NoMatchingRule, 404, Some(14010))
    );
    assert!(serde_json::to_string(&tr)
        .unwrap()
        .contains("GatewayInbound"));
}

#[test]
fn unanchored_translation_replaces_every_match() {
    let text = THREE_PBX
        .replace("pattern = '^\\+(\\d*)$'", "pattern = '0'")
        .replace("translation = '$1'\n", "translation = 'O'\n");
    let t = table(&text);
    let a = src(&t, "10.0.0.1:5060");
    let r = routed(t.decide(a, "+12065550102", "", &mut RoundRobin::new()));
    assert_eq!(r.candidates[0].called, "+12O6555O1O2");
}

#[test]
fn user_part_is_escaped() {
    let mut s = String::new();
    push_user(&mut s, "+1#2 3");
    assert_eq!(s, "+1%232%203");
}

#[test]
fn live_swap_keeps_calls_on_their_snapshot_and_rejects_bad_changes() {
    let first = Arc::new(table(crate::config::DEFAULT_CONFIG));
    let live = LiveTable::new(Arc::clone(&first));
    let mut reader = live.reader();
    let call_snapshot = Arc::clone(reader.current());
    assert_eq!(call_snapshot.generation(), first.generation());

    let mut cfg = (**first.config()).clone();
    cfg.voice_route[1].pstn_gateway_list = vec!["PstnGateway:pbx1".into()];
    let second = live.apply(cfg).unwrap();
    assert_eq!(reader.current().generation(), second.generation());
    // The call that started before keeps its table.
    let gw = call_snapshot.trunk_by_identity("PstnGateway:gw1").unwrap();
    let r = routed(call_snapshot.decide(gw, "+12065550100", "", &mut RoundRobin::new()));
    assert_eq!(
        call_snapshot.trunk(r.candidates[0].trunk).identity,
        "PstnGateway:pbx2"
    );

    // A change that fails validation leaves the running table untouched.
    let mut bad = (**second.config()).clone();
    bad.voice_route[0].number_pattern = "^(".into();
    bad.trunk[0].pstn_usages.push("Nope".into());
    assert_eq!(live.apply(bad).unwrap_err().len(), 2);
    assert_eq!(reader.current().generation(), second.generation());
    assert_eq!(live.load().generation(), second.generation());
}
