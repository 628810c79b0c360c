//! Deadlines stepped with the fake clock: keep alive at one and a half periods, Server Keep
//! Alive, and session expiry (including changes at DISCONNECT).

use crate::common::*;
use broker_core::BrokerConfig;
use mqtt_codec::{DisconnectPacket, Packet, Properties, QoS, ReasonCode};

fn keep_alive(mut connect: mqtt_codec::ConnectPacket, seconds: u16) -> mqtt_codec::ConnectPacket {
    connect.keep_alive = seconds;
    connect
}

#[test]
fn mqtt_3_1_2_22_keep_alive_closes_after_one_and_a_half_periods() {
    let mut h = Harness::new();
    h.connect_ok(A, keep_alive(v5("client"), 10));
    assert_eq!(h.broker.next_deadline(), Some(h.t0 + secs(15)));

    let outputs = h.advance_and_tick(millis(14_999));
    assert!(
        outputs.is_empty(),
        "not before 1.5 x keep alive: {outputs:#?}"
    );
    assert_eq!(h.broker.client_id(A), Some("client"));

    let outputs = h.advance_and_tick(millis(1));
    assert_disconnected(&outputs, A, ReasonCode::KeepAliveTimeout);
    assert_eq!(h.broker.client_id(A), None);
    assert_eq!(h.broker.stats().clients_connected, 0);
}

#[test]
fn mqtt_3_1_2_24_v311_keep_alive_closes_without_disconnect() {
    // 3.1 and 3.1.1 alike: open a millisecond before one and a half periods, closed at it,
    // with no DISCONNECT (they have no server DISCONNECT).
    for connect in [v311("client"), v31("client")] {
        let mut h = Harness::new();
        h.connect_ok(A, keep_alive(connect, 4));
        assert!(h.advance_and_tick(millis(5_999)).is_empty());
        assert_eq!(h.broker.client_id(A), Some("client"));
        let outputs = h.advance_and_tick(millis(1));
        assert!(sent_to(&outputs, A).is_empty());
        assert!(closed(&outputs, A));
        assert_eq!(h.broker.client_id(A), None);
    }
}

#[test]
fn keep_alive_is_reset_by_any_packet() {
    let mut h = Harness::new();
    h.connect_ok(A, keep_alive(v5("client"), 10));
    for _ in 0..10 {
        h.advance_and_tick(secs(12));
        // Any control packet counts, not only PINGREQ.
        h.publish(A, qos0("t", "alive"));
    }
    assert_eq!(h.broker.client_id(A), Some("client"));
    h.advance(secs(12));
    h.send(A, Packet::PingReq);
    assert!(h.advance_and_tick(millis(14_999)).is_empty());
    assert!(closed(&h.advance_and_tick(millis(1)), A));
}

#[test]
fn keep_alive_0_never_times_out() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("client"));
    assert_eq!(h.broker.next_deadline(), None);
    assert!(h.advance_and_tick(secs(365 * 24 * 3600)).is_empty());
    assert_eq!(h.broker.client_id(A), Some("client"));
}

#[test]
fn mqtt_3_2_2_21_server_keep_alive_overrides_the_clients_value() {
    let mut h = Harness::with_config(BrokerConfig {
        server_keep_alive: Some(20),
        ..quiet_config()
    });
    let connack = h.connect_ok(A, keep_alive(v5("client"), 600));
    assert_eq!(connack.properties.server_keep_alive, Some(20));
    assert_eq!(h.broker.clients()[0].keep_alive, 20);
    assert!(h.advance_and_tick(millis(29_999)).is_empty());
    assert_disconnected(
        &h.advance_and_tick(millis(1)),
        A,
        ReasonCode::KeepAliveTimeout,
    );
}

#[test]
fn mqtt_3_2_2_22_server_keep_alive_does_not_apply_to_v311_clients() {
    // A 3.1.1 client cannot be told another keep alive, so it pings at its own pace; cutting it
    // off at the server's value would drop healthy clients.
    let mut h = Harness::with_config(BrokerConfig {
        server_keep_alive: Some(20),
        ..quiet_config()
    });
    h.connect_ok(A, keep_alive(v311("client"), 60));
    assert_eq!(h.broker.clients()[0].keep_alive, 60);
    // Past 1.5 x the server's 20 s, up to a millisecond before 1.5 x its own 60 s: still open.
    assert!(h.advance_and_tick(millis(89_999)).is_empty());
    assert!(closed(&h.advance_and_tick(millis(1)), A));
}

#[test]
fn keep_alive_timer_of_a_closed_connection_is_ignored() {
    let mut h = Harness::new();
    h.connect_ok(A, keep_alive(v5("client"), 10));
    h.disconnect(A);
    h.connect_ok(B, v5("client"));
    assert!(h.advance_and_tick(secs(100)).is_empty());
    assert_eq!(h.broker.client_id(B), Some("client"));
}

#[test]
fn mqtt_3_1_2_23_session_is_kept_for_the_expiry_interval_then_removed() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("client", 60));
    h.subscribe(A, "t", QoS::AtLeastOnce);
    h.disconnect(A);
    assert_eq!(h.broker.stats().sessions, 1);
    assert_eq!(h.broker.next_deadline(), Some(h.t0 + secs(60)));

    h.advance_and_tick(secs(59));
    assert_eq!(h.broker.stats().sessions, 1);
    h.advance_and_tick(secs(1));
    assert_eq!(h.broker.stats().sessions, 0, "[MQTT-4.1.0-2]");
    assert_eq!(h.broker.stats().subscriptions, 0);
    assert!(!h.connect_ok(B, v5_persistent("client", 60)).session_present);
}

#[test]
fn session_reconnected_before_expiry_is_resumed_and_its_old_timer_ignored() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("client", 60));
    h.disconnect(A);
    h.advance_and_tick(secs(59));
    assert!(h.connect_ok(B, v5_persistent("client", 60)).session_present);
    h.advance_and_tick(secs(120));
    assert_eq!(h.broker.stats().sessions, 1, "online sessions never expire");
    h.lose(B);
    h.advance_and_tick(secs(59));
    assert_eq!(h.broker.stats().sessions, 1, "the countdown restarted");
    h.advance_and_tick(secs(1));
    assert_eq!(h.broker.stats().sessions, 0);
}

#[test]
fn session_expiry_0_ends_the_session_with_the_connection() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("client", 0));
    h.subscribe(A, "t", QoS::AtLeastOnce);
    h.lose(A);
    assert_eq!(h.broker.stats().sessions, 0);
    assert!(!h.connect_ok(B, v5_persistent("client", 0)).session_present);
}

#[test]
fn session_expiry_maximum_never_expires() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("client", u32::MAX));
    h.disconnect(A);
    h.advance_and_tick(secs(10 * 365 * 24 * 3600));
    assert!(
        h.connect_ok(B, v5_persistent("client", u32::MAX))
            .session_present
    );
}

#[test]
fn v311_persistent_session_never_expires() {
    let mut h = Harness::new();
    h.connect_ok(A, v311_persistent("client"));
    h.disconnect(A);
    h.advance_and_tick(secs(10 * 365 * 24 * 3600));
    assert!(h.connect_ok(B, v311_persistent("client")).session_present);
}

#[test]
fn session_expiry_is_capped_by_the_configured_maximum() {
    let mut h = Harness::with_config(BrokerConfig {
        max_session_expiry: 30,
        ..quiet_config()
    });
    let connack = h.connect_ok(A, v5_persistent("client", 3600));
    assert_eq!(connack.properties.session_expiry_interval, Some(30));
    h.disconnect(A);
    h.advance_and_tick(secs(30));
    assert_eq!(h.broker.stats().sessions, 0);
}

fn disconnect_with_expiry(expiry: u32) -> Packet {
    Packet::Disconnect(DisconnectPacket {
        reason_code: ReasonCode::NORMAL_DISCONNECTION,
        properties: Properties {
            session_expiry_interval: Some(expiry),
            ..Properties::default()
        },
    })
}

#[test]
fn session_expiry_changed_at_disconnect_is_used() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("client", 600));
    let outputs = h.send(A, disconnect_with_expiry(10));
    assert!(closed(&outputs, A));
    h.advance_and_tick(secs(10));
    assert_eq!(h.broker.stats().sessions, 0);

    // And to zero: the session ends at once.
    h.connect_ok(B, v5_persistent("other", 600));
    h.send(B, disconnect_with_expiry(0));
    assert_eq!(h.broker.stats().sessions, 0);
}

#[test]
fn session_expiry_set_at_disconnect_after_0_at_connect_is_a_protocol_error() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("client"));
    let outputs = h.send(A, disconnect_with_expiry(60));
    assert_disconnected(&outputs, A, ReasonCode::ProtocolError);
    // The DISCONNECT the server sends never carries a Session Expiry Interval [MQTT-3.14.2-2].
    for packet in sent_to(&outputs, A) {
        if let Packet::Disconnect(disconnect) = packet {
            assert_eq!(disconnect.properties.session_expiry_interval, None);
        }
    }
    assert_eq!(h.broker.stats().sessions, 0);
}

#[test]
fn session_expiry_at_disconnect_is_judged_against_the_connect_not_the_grant() {
    // The CONNECT asked for a session that outlives the connection; the broker granted none.
    // Setting an interval at DISCONNECT is then allowed (only a CONNECT with 0 forbids it).
    let mut h = Harness::with_config(BrokerConfig {
        max_session_expiry: 0,
        ..quiet_config()
    });
    let connack = h.connect_ok(A, v5_persistent("client", 600));
    assert_eq!(connack.properties.session_expiry_interval, Some(0));
    let outputs = h.send(A, disconnect_with_expiry(300));
    assert!(closed(&outputs, A));
    assert_eq!(disconnect_reason(&outputs, A), None, "a normal close");
    assert_eq!(h.broker.stats().sessions, 0, "still capped by the maximum");
}

#[test]
fn next_deadline_follows_the_earliest_timer() {
    let mut h = Harness::new();
    assert_eq!(h.broker.next_deadline(), None);
    h.connect_ok(A, keep_alive(v5("one"), 100));
    h.connect_ok(B, keep_alive(v5("two"), 10));
    assert_eq!(h.broker.next_deadline(), Some(h.t0 + secs(15)));
    h.advance_and_tick(secs(15));
    assert_eq!(h.broker.next_deadline(), Some(h.t0 + secs(150)));
}
