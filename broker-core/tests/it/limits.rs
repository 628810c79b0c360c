//! The configured bounds a public broker needs: subscriptions per client, topic length and
//! levels, User Properties per packet, the keep alive cap and the client identifier length.
//! Each test crosses one and checks the answer the specification gives for it.

use crate::common::*;
use broker_core::BrokerConfig;
use mqtt_codec::{
    ByteStr, Packet, Properties, PubAckPacket, QoS, ReasonCode, SubscriptionOptions,
    UnsubscribePacket,
};

fn limited() -> BrokerConfig {
    BrokerConfig {
        max_subscriptions_per_client: 2,
        max_topic_length: 16,
        max_topic_levels: 4,
        max_user_properties: 2,
        max_user_properties_bytes: 16,
        ..quiet_config()
    }
}

fn subscribe_all(
    h: &mut Harness,
    connection: broker_core::ConnectionId,
    filters: &[&str],
) -> Vec<ReasonCode> {
    let filters: Vec<(&str, SubscriptionOptions)> = filters
        .iter()
        .map(|f| (*f, options(QoS::AtLeastOnce)))
        .collect();
    let outputs = h.send(
        connection,
        Packet::Subscribe(subscribe_packet(7, &filters, None)),
    );
    assert!(!closed(&outputs, connection), "{outputs:#?}");
    suback(&outputs, connection).reason_codes
}

fn user_properties(pairs: &[(&str, &str)]) -> Properties {
    Properties {
        user_properties: pairs
            .iter()
            .map(|(name, value)| (ByteStr::from(*name), ByteStr::from(*value)))
            .collect(),
        ..Properties::default()
    }
}

// ----- Subscriptions per client ----------------------------------------------------------------

#[test]
fn mqtt_3_9_3_subscriptions_beyond_the_maximum_get_0x97_quota_exceeded() {
    let mut h = Harness::with_config(limited());
    h.connect_ok(A, v5("a"));
    let granted = ReasonCode::GrantedQoS1;
    assert_eq!(subscribe_all(&mut h, A, &["x", "y"]), [granted, granted]);
    // Replacing a filter the session holds does not count; a third one is refused.
    assert_eq!(
        subscribe_all(&mut h, A, &["x", "z", "y"]),
        [granted, ReasonCode::QuotaExceeded, granted]
    );
    // The refused filter delivers nothing; an unsubscribe makes room again.
    h.connect_ok(B, v5("b"));
    assert!(payloads(&h.publish(B, qos0("z", "m")), A).is_empty());
    h.unsubscribe(A, &["y"]);
    assert_eq!(subscribe_all(&mut h, A, &["z"]), [granted]);
    assert_eq!(payloads(&h.publish(B, qos0("z", "m")), A), ["m"]);
}

#[test]
fn mqtt_3_9_3_a_3_1_1_subscription_beyond_the_maximum_gets_0x80() {
    let mut h = Harness::with_config(limited());
    h.connect_ok(A, v311("a"));
    let granted = ReasonCode::GrantedQoS1;
    assert_eq!(
        subscribe_all(&mut h, A, &["x", "y", "z"]),
        [granted, granted, ReasonCode::UnspecifiedError]
    );
}

// ----- Topic length and levels ------------------------------------------------------------------

#[test]
fn mqtt_3_9_3_a_filter_beyond_the_topic_limits_gets_0x8f_topic_filter_invalid() {
    let mut h = Harness::with_config(BrokerConfig {
        max_subscriptions_per_client: 100,
        ..limited()
    });
    h.connect_ok(A, v5("a"));
    let granted = ReasonCode::GrantedQoS1;
    let invalid = ReasonCode::TopicFilterInvalid;
    let cases = [
        ("0123456789abcdef", granted),
        ("0123456789abcdefg", invalid),
        ("a/b/c/#", granted),
        ("a/b/c/d/#", invalid),
        ("+/+/+/+/+", invalid),
        // A shared filter's levels are those after the group.
        ("$share/g/a/b/c/d", granted),
        ("$share/g/a/b/c/d/e", invalid),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            subscribe_all(&mut h, A, &[filter]),
            [expected],
            "{filter:?}"
        );
    }
    h.connect_ok(B, v311("b"));
    assert_eq!(
        subscribe_all(&mut h, B, &["a/b/c/d/e"]),
        [ReasonCode::UnspecifiedError]
    );
}

#[test]
fn mqtt_3_4_2_1_a_qos_1_or_2_publish_beyond_the_topic_limits_gets_0x90_and_goes_nowhere() {
    let mut h = Harness::with_config(limited());
    h.connect_ok(A, v5("subscriber"));
    h.subscribe(A, "#", QoS::ExactlyOnce);
    h.connect_ok(B, v5("publisher"));

    let outputs = h.publish(B, qos1("a/b/c/d/e", "m", 1));
    assert_eq!(
        acks(&outputs, B, is_puback),
        [(1, ReasonCode::TopicNameInvalid)]
    );
    assert!(publishes(&outputs, A).is_empty());
    assert!(!closed(&outputs, B));

    let outputs = h.publish(B, qos2("0123456789abcdefg", "m", 2));
    assert_eq!(
        acks(&outputs, B, is_pubrec),
        [(2, ReasonCode::TopicNameInvalid)]
    );
    assert!(publishes(&outputs, A).is_empty());

    // At the bounds, delivered.
    let outputs = h.publish(B, qos1("a/b/c/0123456789", "m", 3));
    assert_eq!(acks(&outputs, B, is_puback), [(3, ReasonCode::Success)]);
    assert_eq!(payloads(&outputs, A), ["m"]);
}

#[test]
fn mqtt_3_14_2_1_a_qos_0_publish_beyond_the_topic_limits_is_disconnected_with_0x90() {
    let mut h = Harness::with_config(limited());
    h.connect_ok(A, v5("a"));
    let outputs = h.publish(A, qos0("a/b/c/d/e", "m"));
    assert_disconnected(&outputs, A, ReasonCode::TopicNameInvalid);
}

#[test]
fn mqtt_3_3_5_2_a_3_1_1_publish_beyond_the_topic_limits_closes_the_connection() {
    let mut h = Harness::with_config(limited());
    h.connect_ok(A, v311("a"));
    let outputs = h.publish(A, qos1("0123456789abcdefg", "m", 1));
    assert!(sent_to(&outputs, A).is_empty(), "{outputs:#?}");
    assert!(closed(&outputs, A));
}

#[test]
fn mqtt_3_2_2_2_a_will_topic_beyond_the_limits_is_refused_with_0x90() {
    let mut h = Harness::with_config(limited());
    let outputs = h.connect(A, with_will(v5("a"), will("a/b/c/d/e", "gone")));
    assert_eq!(
        connack(&outputs, A).reason_code,
        ReasonCode::TopicNameInvalid
    );
    assert!(closed(&outputs, A));
    // No 3.1.1 return code says so: closed without CONNACK [MQTT-3.2.2-6].
    let outputs = h.connect(B, with_will(v311("b"), will("a/b/c/d/e", "gone")));
    assert!(sent_to(&outputs, B).is_empty(), "{outputs:#?}");
    assert!(closed(&outputs, B));
}

// ----- User Properties --------------------------------------------------------------------------

#[test]
fn mqtt_3_4_2_1_a_publish_beyond_the_user_property_limits_gets_0x97() {
    let mut h = Harness::with_config(limited());
    h.connect_ok(A, v5("subscriber"));
    h.subscribe(A, "t", QoS::AtLeastOnce);
    h.connect_ok(B, v5("publisher"));

    // At the bounds: two properties, 16 bytes of names and values.
    let mut publish = qos1("t", "m", 1);
    publish.properties = user_properties(&[("abcd", "efgh"), ("ijkl", "mnop")]);
    let outputs = h.publish(B, publish);
    assert_eq!(acks(&outputs, B, is_puback), [(1, ReasonCode::Success)]);
    assert_eq!(payloads(&outputs, A), ["m"]);

    for (id, pairs) in [
        (2, &[("a", "1"), ("b", "2"), ("c", "3")][..]),
        (3, &[("abcd", "efgh"), ("ijkl", "mnopq")][..]),
    ] {
        let mut publish = qos1("t", "m", id);
        publish.properties = user_properties(pairs);
        let outputs = h.publish(B, publish);
        assert_eq!(
            acks(&outputs, B, is_puback),
            [(id, ReasonCode::QuotaExceeded)]
        );
        assert!(publishes(&outputs, A).is_empty());
        assert!(!closed(&outputs, B));
    }

    // QoS 0 has no acknowledgement: the connection ends with the reason.
    let mut publish = qos0("t", "m");
    publish.properties = user_properties(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let outputs = h.publish(B, publish);
    assert_disconnected(&outputs, B, ReasonCode::QuotaExceeded);
    assert!(publishes(&outputs, A).is_empty());
}

#[test]
fn mqtt_3_2_2_2_a_connect_beyond_the_user_property_limits_gets_connack_0x97() {
    let mut h = Harness::with_config(limited());
    // The CONNECT's and its will's properties count together.
    let mut connect = with_will(v5("a"), will("w", "gone"));
    connect.properties = user_properties(&[("a", "1"), ("b", "2")]);
    connect.will.as_mut().expect("will").properties = user_properties(&[("c", "3")]);
    let outputs = h.connect(A, connect);
    assert_eq!(connack(&outputs, A).reason_code, ReasonCode::QuotaExceeded);
    assert!(closed(&outputs, A));

    let mut connect = v5("b");
    connect.properties = user_properties(&[("a", "1"), ("b", "2")]);
    h.connect_ok(B, connect);
}

#[test]
fn mqtt_3_9_3_a_subscribe_beyond_the_user_property_limits_gets_0x97_for_every_filter() {
    let mut h = Harness::with_config(limited());
    h.connect_ok(A, v5("a"));
    let mut subscribe = subscribe_packet(
        9,
        &[
            ("x", options(QoS::AtMostOnce)),
            ("y", options(QoS::AtMostOnce)),
        ],
        None,
    );
    subscribe.properties = user_properties(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let outputs = h.send(A, Packet::Subscribe(subscribe));
    assert_eq!(
        suback(&outputs, A).reason_codes,
        [ReasonCode::QuotaExceeded, ReasonCode::QuotaExceeded]
    );
    assert!(!closed(&outputs, A));
}

#[test]
fn mqtt_3_14_2_1_other_packets_beyond_the_user_property_limits_are_disconnected_with_0x97() {
    let many = || user_properties(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let mut h = Harness::with_config(limited());
    h.connect_ok(A, v5("a"));
    let outputs = h.send(
        A,
        Packet::PubAck(PubAckPacket {
            packet_id: 1,
            reason_code: ReasonCode::Success,
            properties: many(),
        }),
    );
    assert_disconnected(&outputs, A, ReasonCode::QuotaExceeded);

    h.connect_ok(B, v5("b"));
    let outputs = h.send(
        B,
        Packet::Unsubscribe(UnsubscribePacket {
            packet_id: 2,
            properties: many(),
            filters: vec![ByteStr::from("x")],
        }),
    );
    assert_disconnected(&outputs, B, ReasonCode::QuotaExceeded);
}

// ----- Keep alive cap ---------------------------------------------------------------------------

fn capped(maximum: u16) -> BrokerConfig {
    BrokerConfig {
        max_keep_alive: Some(maximum),
        ..quiet_config()
    }
}

fn with_keep_alive(
    mut connect: mqtt_codec::ConnectPacket,
    keep_alive: u16,
) -> mqtt_codec::ConnectPacket {
    connect.keep_alive = keep_alive;
    connect
}

#[test]
fn mqtt_3_2_2_21_a_keep_alive_above_the_cap_or_none_is_replaced_by_server_keep_alive() {
    let mut h = Harness::with_config(capped(60));
    for (connection, asked, told) in [
        (A, 0, Some(60)),
        (B, 600, Some(60)),
        (C, 30, None),
        (D, 60, None),
    ] {
        let id = format!("client-{asked}");
        let connack = h.connect_ok(connection, with_keep_alive(v5(&id), asked));
        assert_eq!(connack.properties.server_keep_alive, told, "asked {asked}");
    }
    // Held to the cap: open a millisecond before 1.5 x 60 s of silence, disconnected at it
    // [MQTT-3.1.2-22]; the one that asked for 30 s at 1.5 x 30 s.
    assert!(h.advance_and_tick(millis(44_999)).is_empty());
    let outputs = h.advance_and_tick(millis(1));
    assert_disconnected(&outputs, C, ReasonCode::KeepAliveTimeout);
    assert_eq!(h.broker.stats().clients_connected, 3, "{outputs:#?}");
    assert!(h.advance_and_tick(millis(44_999)).is_empty());
    let outputs = h.advance_and_tick(millis(1));
    assert_disconnected(&outputs, A, ReasonCode::KeepAliveTimeout);
    assert_disconnected(&outputs, B, ReasonCode::KeepAliveTimeout);
    assert_disconnected(&outputs, D, ReasonCode::KeepAliveTimeout);
}

#[test]
fn mqtt_3_1_2_24_a_3_1_1_keep_alive_below_the_cap_is_held_to_its_own_value() {
    let mut h = Harness::with_config(capped(60));
    h.connect_ok(A, with_keep_alive(v311("old"), 40));
    assert!(h.advance_and_tick(millis(59_999)).is_empty());
    let outputs = h.advance_and_tick(millis(1));
    assert!(sent_to(&outputs, A).is_empty(), "{outputs:#?}");
    assert!(closed(&outputs, A));
}

#[test]
fn mqtt_3_2_2_6_a_3_1_1_keep_alive_above_the_cap_or_none_is_closed_without_connack() {
    let mut h = Harness::with_config(capped(60));
    for (connection, asked) in [(A, 0), (B, 61)] {
        let outputs = h.connect(connection, with_keep_alive(v311("old"), asked));
        assert!(sent_to(&outputs, connection).is_empty(), "{outputs:#?}");
        assert!(closed(&outputs, connection), "asked {asked}");
    }
    h.connect_ok(C, with_keep_alive(v311("old"), 60));
    h.connect_ok(D, with_keep_alive(v31("older"), 1));
}

#[test]
fn mqtt_3_2_2_21_server_keep_alive_wins_over_the_cap() {
    let mut h = Harness::with_config(BrokerConfig {
        server_keep_alive: Some(120),
        ..capped(60)
    });
    let connack = h.connect_ok(A, with_keep_alive(v5("a"), 10));
    assert_eq!(connack.properties.server_keep_alive, Some(120));
}

// ----- Client identifier length -----------------------------------------------------------------

#[test]
fn mqtt_3_1_3_5_a_client_id_at_the_maximum_is_accepted_and_one_beyond_refused() {
    let mut h = Harness::with_config(BrokerConfig {
        max_client_id_len: 23,
        ..quiet_config()
    });
    let at_limit = "a".repeat(23);
    let beyond = "b".repeat(24);
    h.connect_ok(A, v5(&at_limit));
    let outputs = h.connect(B, v5(&beyond));
    assert_eq!(
        connack(&outputs, B).reason_code,
        ReasonCode::ClientIdentifierNotValid
    );
    assert!(closed(&outputs, B));
    h.connect_ok(C, v311(&at_limit));
    // 3.1.1: return code 0x02, Identifier rejected.
    let outputs = h.connect(D, v311(&beyond));
    assert_eq!(
        connack(&outputs, D).reason_code,
        ReasonCode::ClientIdentifierNotValid
    );
    assert!(closed(&outputs, D));
}
