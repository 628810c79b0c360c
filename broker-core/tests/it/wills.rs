//! Will messages: when they are published, when they are not, the 5.0 Will Delay Interval and
//! what a will carries.

use crate::common::*;
use broker_core::AuthHook;
use mqtt_codec::{ByteStr, DisconnectPacket, Packet, Properties, QoS, ReasonCode};

/// A subscriber on `C` listening to `will/#`.
fn with_listener(h: &mut Harness) {
    h.connect_ok(C, v5("listener"));
    h.subscribe(C, "will/#", QoS::ExactlyOnce);
}

#[test]
fn mqtt_3_1_2_8_will_is_published_when_the_connection_is_lost() {
    let mut h = Harness::new();
    with_listener(&mut h);
    h.connect_ok(A, with_will(v5("client"), will("will/client", "gone")));
    let outputs = h.lose(A);
    assert_eq!(payloads(&outputs, C), ["gone"]);
    // Published once only [MQTT-3.1.2-10].
    assert!(h.lose(A).is_empty());
}

#[test]
fn mqtt_3_1_2_8_v311_will_is_published_when_the_connection_is_lost() {
    let mut h = Harness::new();
    with_listener(&mut h);
    let mut last_will = will("will/client", "gone");
    last_will.qos = QoS::AtLeastOnce;
    h.connect_ok(A, with_will(v311("client"), last_will));
    let outputs = h.lose(A);
    let delivered = publishes(&outputs, C);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].qos, QoS::AtLeastOnce);
}

#[test]
fn will_is_published_on_keep_alive_timeout() {
    let mut h = Harness::new();
    with_listener(&mut h);
    let mut connect = with_will(v5("client"), will("will/client", "timed out"));
    connect.keep_alive = 10;
    h.connect_ok(A, connect);
    let outputs = h.advance_and_tick(secs(15));
    assert_disconnected(&outputs, A, ReasonCode::KeepAliveTimeout);
    assert_eq!(payloads(&outputs, C), ["timed out"]);
}

#[test]
fn mqtt_3_14_4_3_will_is_not_published_on_normal_disconnect() {
    let mut h = Harness::new();
    with_listener(&mut h);
    h.connect_ok(A, with_will(v5("client"), will("will/client", "gone")));
    let outputs = h.disconnect(A);
    assert!(closed(&outputs, A));
    assert!(publishes(&outputs, C).is_empty());
    assert!(publishes(&h.lose(A), C).is_empty());
}

#[test]
fn mqtt_3_14_4_3_v311_will_is_not_published_on_disconnect() {
    let mut h = Harness::new();
    with_listener(&mut h);
    h.connect_ok(A, with_will(v311("client"), will("will/client", "gone")));
    let outputs = h.disconnect(A);
    assert!(publishes(&outputs, C).is_empty());
}

#[test]
fn will_is_published_on_disconnect_with_reason_0x04() {
    let mut h = Harness::new();
    with_listener(&mut h);
    h.connect_ok(A, with_will(v5("client"), will("will/client", "asked for")));
    let outputs = h.send(
        A,
        Packet::Disconnect(DisconnectPacket {
            reason_code: ReasonCode::DisconnectWithWillMessage,
            properties: Properties::default(),
        }),
    );
    assert!(closed(&outputs, A));
    assert!(
        disconnect_reason(&outputs, A).is_none(),
        "the client ended it"
    );
    assert_eq!(payloads(&outputs, C), ["asked for"]);
}

#[test]
fn will_is_published_when_the_server_closes_for_a_protocol_error() {
    let mut h = Harness::new();
    with_listener(&mut h);
    h.connect_ok(
        A,
        with_will(v5("client"), will("will/client", "misbehaved")),
    );
    let outputs = h.send(A, Packet::Connect(v5("client")));
    assert_disconnected(&outputs, A, ReasonCode::ProtocolError);
    assert_eq!(payloads(&outputs, C), ["misbehaved"]);
}

#[test]
fn mqtt_3_1_4_3_will_of_a_taken_over_connection_is_published() {
    let mut h = Harness::new();
    with_listener(&mut h);
    h.connect_ok(
        A,
        with_will(v5("client"), will("will/client", "taken over")),
    );
    let outputs = h.connect(B, v5("client"));
    assert_disconnected(&outputs, A, ReasonCode::SessionTakenOver);
    assert_eq!(payloads(&outputs, C), ["taken over"]);
}

#[test]
fn mqtt_3_1_2_15_will_retain_publishes_a_retained_message() {
    let mut h = Harness::new();
    let mut last_will = will("will/client", "offline");
    last_will.retain = true;
    h.connect_ok(A, with_will(v5("client"), last_will));
    h.lose(A);
    assert_eq!(h.broker.stats().retained_messages, 1);
    h.connect_ok(B, v5("late"));
    let delivered = publishes(&h.subscribe(B, "will/client", QoS::AtMostOnce), B);
    assert_eq!(delivered[0].payload, "offline");
    assert!(delivered[0].retain);
}

#[test]
fn mqtt_3_1_2_14_will_without_retain_is_not_retained() {
    let mut h = Harness::new();
    h.connect_ok(B, v5("listener"));
    h.subscribe(B, "will/client", QoS::AtMostOnce);
    h.connect_ok(A, with_will(v5("client"), will("will/client", "offline")));
    let outputs = h.lose(A);
    assert_eq!(payloads(&outputs, B), ["offline"], "the will was published");
    assert_eq!(h.broker.stats().retained_messages, 0);
}

#[test]
fn mqtt_3_1_3_10_will_properties_travel_with_the_will_in_order() {
    let mut h = Harness::new();
    with_listener(&mut h);
    let mut last_will = will("will/client", "{}");
    last_will.properties = Properties {
        content_type: Some(ByteStr::from("application/json")),
        payload_format_indicator: Some(1),
        response_topic: Some(ByteStr::from("reply/here")),
        correlation_data: Some(bytes::Bytes::from_static(b"\x01\x02")),
        user_properties: vec![
            (ByteStr::from("b"), ByteStr::from("2")),
            (ByteStr::from("a"), ByteStr::from("1")),
            (ByteStr::from("b"), ByteStr::from("3")),
        ],
        will_delay_interval: Some(0),
        ..Properties::default()
    };
    h.connect_ok(A, with_will(v5("client"), last_will.clone()));
    let delivered = publishes(&h.lose(A), C);
    let properties = &delivered[0].properties;
    assert_eq!(
        properties.user_properties,
        last_will.properties.user_properties
    );
    assert_eq!(properties.content_type, last_will.properties.content_type);
    assert_eq!(properties.payload_format_indicator, Some(1));
    assert_eq!(
        properties.response_topic,
        last_will.properties.response_topic
    );
    assert_eq!(
        properties.correlation_data,
        last_will.properties.correlation_data
    );
    assert_eq!(
        properties.will_delay_interval, None,
        "the Will Delay Interval is not a PUBLISH property"
    );
}

#[test]
fn will_message_expiry_interval_is_applied() {
    let mut h = Harness::new();
    let mut last_will = will("will/client", "expiring");
    last_will.qos = QoS::AtLeastOnce;
    last_will.properties.message_expiry_interval = Some(30);
    h.connect_ok(A, with_will(v5("client"), last_will));
    h.connect_ok(B, v5_persistent("listener", 600));
    h.subscribe(B, "will/#", QoS::AtLeastOnce);
    h.disconnect(B);
    h.lose(A);

    h.advance(secs(10));
    let outputs = h.connect(D, v5_persistent("listener", 600));
    let delivered = publishes(&outputs, D);
    assert_eq!(delivered[0].properties.message_expiry_interval, Some(20));
}

#[test]
fn mqtt_3_1_3_9_will_delay_not_published_if_the_client_reconnects_in_time() {
    let mut h = Harness::new();
    with_listener(&mut h);
    let mut last_will = will("will/client", "delayed");
    last_will.properties.will_delay_interval = Some(30);
    h.connect_ok(
        A,
        with_will(v5_persistent("client", 300), last_will.clone()),
    );
    let outputs = h.lose(A);
    assert!(publishes(&outputs, C).is_empty(), "waits for the delay");

    h.advance(secs(20));
    h.connect_ok(B, v5_persistent("client", 300));
    let outputs = h.advance_and_tick(secs(60));
    assert!(publishes(&outputs, C).is_empty());
    // The new connection's own will is the one that counts now.
    assert!(publishes(&h.lose(B), C).is_empty(), "B had no will");
    let outputs = h.advance_and_tick(secs(600));
    assert!(publishes(&outputs, C).is_empty());
}

#[test]
fn will_delay_elapsed_publishes_the_will() {
    let mut h = Harness::new();
    with_listener(&mut h);
    let mut last_will = will("will/client", "delayed");
    last_will.properties.will_delay_interval = Some(30);
    h.connect_ok(A, with_will(v5_persistent("client", 300), last_will));
    h.lose(A);
    assert!(h.broker.next_deadline().is_some());

    let outputs = h.advance_and_tick(secs(29));
    assert!(publishes(&outputs, C).is_empty());
    let outputs = h.advance_and_tick(secs(1));
    assert_eq!(payloads(&outputs, C), ["delayed"]);
    // The session itself lives on.
    assert!(
        h.connect_ok(B, v5_persistent("client", 300))
            .session_present
    );
}

#[test]
fn will_is_published_when_the_session_expires_before_the_will_delay() {
    let mut h = Harness::new();
    with_listener(&mut h);
    let mut last_will = will("will/client", "session ended");
    last_will.properties.will_delay_interval = Some(100);
    h.connect_ok(A, with_will(v5_persistent("client", 10), last_will));
    h.lose(A);

    let outputs = h.advance_and_tick(secs(9));
    assert!(publishes(&outputs, C).is_empty());
    let outputs = h.advance_and_tick(secs(1));
    assert_eq!(payloads(&outputs, C), ["session ended"]);
    assert!(!h.connect_ok(B, v5_persistent("client", 10)).session_present);
    let outputs = h.advance_and_tick(secs(200));
    assert!(publishes(&outputs, C).is_empty(), "published once");
}

#[test]
fn will_delay_with_session_expiry_0_publishes_at_once() {
    let mut h = Harness::new();
    with_listener(&mut h);
    let mut last_will = will("will/client", "now");
    last_will.properties.will_delay_interval = Some(100);
    h.connect_ok(A, with_will(v5("client"), last_will));
    assert_eq!(payloads(&h.lose(A), C), ["now"]);
}

#[test]
fn will_delay_is_cancelled_by_a_takeover() {
    let mut h = Harness::new();
    with_listener(&mut h);
    let mut last_will = will("will/client", "delayed");
    last_will.properties.will_delay_interval = Some(30);
    h.connect_ok(A, with_will(v5_persistent("client", 300), last_will));
    let outputs = h.connect(B, v5_persistent("client", 300));
    assert!(publishes(&outputs, C).is_empty());
    assert!(publishes(&h.advance_and_tick(secs(60)), C).is_empty());
}

#[test]
fn will_is_not_published_at_server_shutdown() {
    let mut h = Harness::new();
    h.connect_ok(C, v311("listener"));
    h.subscribe(C, "will/#", QoS::AtMostOnce);
    h.connect_ok(A, with_will(v5("client"), will("will/client", "gone")));
    h.broker.handle_shutdown(h.now);
    let outputs = h.drain();
    assert!(publishes(&outputs, C).is_empty());
}

/// Allows everything except publishing under `secret/`.
struct NoSecrets;

impl AuthHook for NoSecrets {
    fn authorize_publish(&mut self, _: &broker_core::ClientIdentity<'_>, topic: &str) -> bool {
        !topic.starts_with("secret/")
    }
}

#[test]
fn will_to_a_topic_the_client_may_not_publish_to_is_refused_at_connect() {
    let mut h = Harness::with_auth(quiet_config(), Box::new(NoSecrets));
    let outputs = h.connect(A, with_will(v5("client"), will("secret/x", "sneaky")));
    assert_eq!(connack(&outputs, A).reason_code, ReasonCode::NotAuthorized);
    assert!(closed(&outputs, A));
    h.connect_ok(B, with_will(v5("client"), will("public/x", "fine")));
}
