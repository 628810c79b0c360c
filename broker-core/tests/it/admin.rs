//! `$SYS/broker/...` statistics, server shutdown, administrative disconnects, the counters and
//! the summaries the HTTP API reads.

use crate::common::*;
use broker_core::{BrokerConfig, DropReason, Transport};
use mqtt_codec::{ProtocolVersion, QoS, ReasonCode};

fn sys_config() -> BrokerConfig {
    BrokerConfig {
        sys_interval: Some(secs(10)),
        version: "test-broker 1.2.3".to_string(),
        ..BrokerConfig::default()
    }
}

/// The `$SYS` value published on `topic` in `outputs` to `connection`.
fn sys_value(
    outputs: &[broker_core::Output],
    connection: broker_core::ConnectionId,
    topic: &str,
) -> Option<String> {
    publishes(outputs, connection)
        .into_iter()
        .find(|p| p.topic.as_str() == topic)
        .map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
}

#[test]
fn sys_topics_are_published_at_start_and_then_every_interval() {
    let mut h = Harness::with_config(sys_config());
    assert_eq!(
        h.broker.next_deadline(),
        Some(h.t0),
        "the first is due at once"
    );
    h.connect_ok(A, v5("watcher"));
    h.subscribe(A, "$SYS/#", QoS::AtMostOnce);

    let outputs = h.tick();
    assert_eq!(
        sys_value(&outputs, A, "$SYS/broker/uptime").as_deref(),
        Some("0 seconds")
    );
    assert_eq!(
        sys_value(&outputs, A, "$SYS/broker/clients/connected").as_deref(),
        Some("1")
    );
    assert_eq!(
        sys_value(&outputs, A, "$SYS/broker/version").as_deref(),
        Some("test-broker 1.2.3")
    );
    for topic in [
        "$SYS/broker/clients/total",
        "$SYS/broker/clients/maximum",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/publish/messages/received",
        "$SYS/broker/publish/messages/sent",
        "$SYS/broker/publish/messages/dropped",
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/store/messages/count",
    ] {
        assert!(sys_value(&outputs, A, topic).is_some(), "{topic}");
    }
    assert_eq!(h.broker.next_deadline(), Some(h.t0 + secs(10)));

    assert!(
        h.advance_and_tick(millis(9_999)).is_empty(),
        "not before the interval"
    );
    h.connect_ok(B, v311("second"));
    let outputs = h.advance_and_tick(millis(1));
    assert_eq!(
        sys_value(&outputs, A, "$SYS/broker/uptime").as_deref(),
        Some("10 seconds")
    );
    assert_eq!(
        sys_value(&outputs, A, "$SYS/broker/clients/connected").as_deref(),
        Some("2")
    );
    assert_eq!(
        sys_value(&outputs, A, "$SYS/broker/clients/maximum").as_deref(),
        Some("2")
    );
}

#[test]
fn sys_topics_are_retained_for_later_subscribers() {
    let mut h = Harness::with_config(sys_config());
    h.tick();
    h.advance_and_tick(secs(20));
    h.connect_ok(A, v5("late"));
    let outputs = h.subscribe(A, "$SYS/broker/uptime", QoS::AtMostOnce);
    assert_eq!(
        sys_value(&outputs, A, "$SYS/broker/uptime").as_deref(),
        Some("20 seconds")
    );
    assert!(publishes(&outputs, A)[0].retain);
}

#[test]
fn mqtt_4_7_2_1_sys_topics_are_not_sent_to_a_hash_subscription() {
    let mut h = Harness::with_config(sys_config());
    h.connect_ok(A, v5("everything"));
    h.subscribe(A, "#", QoS::AtMostOnce);
    h.connect_ok(B, v5("plus"));
    h.subscribe(B, "+/broker/#", QoS::AtMostOnce);
    h.connect_ok(D, v5("named"));
    h.subscribe(D, "$SYS/broker/uptime", QoS::AtMostOnce);
    let outputs = h.tick();
    assert_eq!(
        publishes(&outputs, D).len(),
        1,
        "the statistics were published (a subscription naming $SYS receives them)"
    );
    assert!(publishes(&outputs, A).is_empty());
    assert!(publishes(&outputs, B).is_empty());
    h.connect_ok(C, v5("late"));
    assert!(publishes(&h.subscribe(C, "#", QoS::AtMostOnce), C).is_empty());
}

#[test]
fn sys_publication_does_not_replay_missed_intervals() {
    // A broker whose clock jumped (a suspended machine) publishes the statistics once, not
    // once for every interval it missed.
    let mut h = Harness::with_config(sys_config());
    h.connect_ok(A, v5("watcher"));
    h.subscribe(A, "$SYS/broker/uptime", QoS::AtMostOnce);
    h.tick();
    let outputs = h.advance_and_tick(secs(3600));
    assert_eq!(payloads(&outputs, A), ["3600 seconds"]);
    assert_eq!(h.broker.next_deadline(), Some(h.t0 + secs(3610)));
}

#[test]
fn sys_disabled_publishes_nothing() {
    let mut h = Harness::new();
    assert_eq!(h.broker.next_deadline(), None);
    h.connect_ok(A, v5("watcher"));
    h.subscribe(A, "$SYS/#", QoS::AtMostOnce);
    assert!(h.advance_and_tick(secs(3600)).is_empty());
}

#[test]
fn shutdown_sends_0x8b_to_v5_clients_and_closes_everyone() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("five"));
    h.connect_ok(B, v311("three"));
    h.connect_ok(C, v5_persistent("kept", 600));
    h.broker.handle_shutdown(h.now);
    let outputs = h.drain();
    assert_disconnected(&outputs, A, ReasonCode::ServerShuttingDown);
    assert_disconnected(&outputs, C, ReasonCode::ServerShuttingDown);
    assert!(sent_to(&outputs, B).is_empty());
    assert!(closed(&outputs, B));
    let stats = h.broker.stats();
    assert_eq!(stats.clients_connected, 0);
    assert_eq!(
        stats.sessions, 1,
        "the persistent session stays for a restart"
    );
    assert!(h.lose(A).is_empty());
}

#[test]
fn disconnect_client_sends_0x98() {
    let mut h = Harness::new();
    h.connect_ok(A, with_will(v5("victim"), will("will/victim", "kicked")));
    h.connect_ok(B, v311("listener"));
    h.subscribe(B, "will/#", QoS::AtMostOnce);
    assert!(h.broker.disconnect_client("victim", h.now));
    let outputs = h.drain();
    assert_disconnected(&outputs, A, ReasonCode::AdministrativeAction);
    // The client did not end the connection itself, so its will goes out.
    assert_eq!(payloads(&outputs, B), ["kicked"]);
    assert!(!h.broker.disconnect_client("victim", h.now), "already gone");
    assert!(!h.broker.disconnect_client("nobody", h.now));
}

#[test]
fn disconnect_client_of_an_offline_session_is_false() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("sleeper", 600));
    h.disconnect(A);
    assert!(!h.broker.disconnect_client("sleeper", h.now));
    assert!(h.drain().is_empty());
}

#[test]
fn v311_disconnect_client_just_closes() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("old"));
    assert!(h.broker.disconnect_client("old", h.now));
    let outputs = h.drain();
    assert!(sent_to(&outputs, A).is_empty());
    assert!(closed(&outputs, A));
}

#[test]
fn stats_counters_move() {
    let mut h = Harness::new();
    let initial = h.broker.stats();
    assert_eq!(initial, broker_core::Stats::default());

    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5_persistent("subscriber", 600));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.publish(A, retained(qos1("t", "hello", 1)));
    let stats = h.broker.stats();
    // CONNECT x2, SUBSCRIBE, PUBLISH.
    assert_eq!(stats.packets_received, 4);
    // CONNACK x2, SUBACK, PUBACK, PUBLISH.
    assert_eq!(stats.packets_sent, 5);
    assert_eq!(stats.clients_connected, 2);
    assert_eq!(stats.clients_maximum, 2);
    assert_eq!(stats.sessions, 2);
    assert_eq!(stats.subscriptions, 1);
    assert_eq!(stats.retained_messages, 1);
    assert_eq!(stats.queued_messages, 1, "in flight until acknowledged");
    assert_eq!(stats.publish_received, [0, 1, 0]);
    assert_eq!(stats.publish_sent, [0, 1, 0]);

    h.disconnect(B);
    h.connect(C, as_refused());
    h.broker.record_bytes(100, 250);
    h.broker.record_drop(DropReason::SlowConsumer);
    let stats = h.broker.stats();
    assert_eq!(stats.clients_connected, 1);
    assert_eq!(stats.clients_maximum, 2);
    assert_eq!(stats.sessions, 2);
    assert_eq!(stats.connections_refused, 1);
    assert_eq!(stats.bytes_received, 100);
    assert_eq!(stats.bytes_sent, 250);
    assert_eq!(stats.dropped_for(DropReason::SlowConsumer), 1);
    assert_eq!(stats.dropped.iter().sum::<u64>(), 1);
}

/// A 3.1 CONNECT the broker refuses (empty client identifier).
fn as_refused() -> mqtt_codec::ConnectPacket {
    v31("")
}

#[test]
fn drop_reasons_have_distinct_labels() {
    let labels: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
    let mut unique = labels.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), DropReason::ALL.len());
    for (index, reason) in DropReason::ALL.iter().enumerate() {
        let mut stats = broker_core::Stats::default();
        stats.record_drop(*reason);
        assert_eq!(stats.dropped[index], 1);
    }
}

#[test]
fn client_summaries_describe_the_connections() {
    let mut h = Harness::new();
    let mut connect = v311("alpha");
    connect.keep_alive = 30;
    connect.username = Some("user".into());
    h.connect_ok(A, connect);
    h.subscribe(A, "a", QoS::AtMostOnce);
    h.advance(secs(5));
    h.connect_ok(B, v5("beta"));
    let clients = h.broker.clients();
    assert_eq!(clients.len(), 2);
    let alpha = &clients[0];
    assert_eq!(alpha.client_id, "alpha");
    assert_eq!(alpha.connection, A);
    assert_eq!(alpha.transport, Transport::Tcp);
    assert_eq!(alpha.protocol, ProtocolVersion::V311);
    assert_eq!(alpha.username.as_deref(), Some("user"));
    assert_eq!(alpha.keep_alive, 30);
    assert_eq!(alpha.subscriptions, 1);
    assert_eq!(alpha.connected_at, h.t0);
    assert_eq!(clients[1].connected_at, h.t0 + secs(5));
    assert_eq!(Transport::WebSocketTls.as_str(), "wss");
    assert_eq!(format!("{A}"), "#1");
}
