use super::*;

fn table(text: &str) -> RouteTable {
    RouteTable::build(Arc::new(Config::from_toml(text).unwrap())).unwrap()
}

#[test]
fn builtin_gateway_to_pbx() {
    let t = table(crate::config::DEFAULT_CONFIG);
    let gw = t
        .trunk_by_source("127.0.0.11:5060".parse().unwrap())
        .unwrap();
    let mut rr = RoundRobin::new();
    let Decision::Route(r) = t.decide(gw, "2065550100", "4255550199", &mut rr) else {
        panic!("not routed")
    };
    assert_eq!(r.normalized, "+12065550100");
    assert_eq!(r.candidates.len(), 1);
    assert_eq!(t.trunk(r.candidates[0].trunk).identity, "PstnGateway:pbx2");
    assert_eq!(
        r.candidates[0].request_uri,
        "sip:+12065550100@127.0.0.22:5060;user=phone"
    );
}
