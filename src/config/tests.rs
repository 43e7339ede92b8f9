use super::*;

#[test]
fn builtin_config_loads_and_validates() {
    let c = Config::from_toml(DEFAULT_CONFIG).unwrap();
    assert_eq!(c.trunk.len(), 3);
    assert_eq!(c.trunk[0].identity, "PstnGateway:gw1");
    assert!(c.trunk[0].enable_fast_failover_timer);
    assert_eq!(c.trunk[0].max_early_dialogs, 20);
    assert_eq!(c.dial_plan[0].normalization_rules.len(), 2);
    assert_eq!(
        c.server.media_ports,
        PortRange {
            first: 30000,
            last: 39999
        }
    );
}
