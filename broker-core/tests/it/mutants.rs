//! Tests written for mutants that cargo-mutants found the other suites letting through
//! (`cargo xtask mutants`): each names the code it pins down. They sit here, apart from the
//! suites by theme, so that each survivor's test is easy to find from the README's list.

use crate::common::*;
use broker_core::BrokerConfig;
use mqtt_codec::QoS;

/// `Broker::config` answers with the configuration the broker was built with, not a default.
#[test]
fn config_is_the_one_given() {
    let harness = Harness::with_config(BrokerConfig {
        max_inflight: 7,
        max_topic_levels: 9,
        version: "mutants".into(),
        ..quiet_config()
    });
    let config = harness.broker.config();
    assert_eq!(config.max_inflight, 7);
    assert_eq!(config.max_topic_levels, 9);
    assert_eq!(config.version, "mutants");
    assert_eq!(config.sys_interval, None);
}

/// The broker's `Debug` form is a summary of its sizes (what a log line about it shows).
#[test]
fn debug_summarises_connections_sessions_subscriptions_and_retained() {
    let mut harness = Harness::new();
    harness.connect_ok(A, v5("a"));
    harness.connect_ok(B, v5_persistent("b", 60));
    harness.subscribe(A, "x/#", QoS::AtMostOnce);
    harness.subscribe(B, "y", QoS::AtLeastOnce);
    harness.subscribe(B, "z", QoS::AtLeastOnce);
    harness.publish(A, retained(qos0("r", "kept")));
    let text = format!("{:?}", harness.broker);
    assert_eq!(
        text,
        "Broker { connections: 2, sessions: 2, subscriptions: 3, retained: 1, .. }"
    );
}
