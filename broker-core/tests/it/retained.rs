//! Retained messages: storing, replacing, clearing, sending on subscribe as Retain Handling says,
//! and the RETAIN flag of forwarded messages.

use crate::common::*;
use broker_core::BrokerConfig;
use mqtt_codec::{ByteStr, QoS, ReasonCode, RetainHandling, SubscriptionOptions};
use std::time::Duration;

#[test]
fn mqtt_3_3_1_5_retained_message_is_stored_and_sent_to_new_subscribers() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.publish(A, retained(qos1("status", "online", 1)));
    assert_eq!(h.broker.stats().retained_messages, 1);

    h.connect_ok(B, v5("subscriber"));
    let outputs = h.subscribe(B, "status", QoS::AtLeastOnce);
    let delivered = publishes(&outputs, B);
    assert_eq!(payloads(&outputs, B), ["online"]);
    assert!(delivered[0].retain, "sent because of a new subscription");
    assert_eq!(
        delivered[0].qos,
        QoS::AtLeastOnce,
        "the QoS it was stored with"
    );
    // The SUBACK comes before the retained message.
    let packets = sent_to(&outputs, B);
    assert!(matches!(packets[0], mqtt_codec::Packet::SubAck(_)));
}

#[test]
fn mqtt_3_3_1_5_retained_message_replaces_the_previous_one() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.publish(A, retained(qos0("status", "first")));
    h.publish(A, retained(qos0("status", "second")));
    assert_eq!(h.broker.stats().retained_messages, 1);
    h.connect_ok(B, v5("subscriber"));
    assert_eq!(
        payloads(&h.subscribe(B, "status", QoS::AtMostOnce), B),
        ["second"]
    );
    let summary = h.broker.retained(None, h.now);
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].topic, "status");
    assert_eq!(summary[0].payload, "second");
}

#[test]
fn mqtt_3_3_1_6_empty_retained_payload_clears() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("existing"));
    h.subscribe(B, "status", QoS::AtMostOnce);
    h.publish(A, retained(qos0("status", "online")));

    let outputs = h.publish(A, retained(qos0("status", "")));
    // Existing subscribers still receive it, as a normal message [MQTT-3.3.1-12].
    let delivered = publishes(&outputs, B);
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].payload.is_empty());
    assert!(!delivered[0].retain);

    // Not stored, and the old one is gone [MQTT-3.3.1-7].
    assert_eq!(h.broker.stats().retained_messages, 0);
    h.connect_ok(C, v5("late"));
    assert!(publishes(&h.subscribe(C, "status", QoS::AtMostOnce), C).is_empty());
}

#[test]
fn mqtt_3_3_1_10_v311_empty_retained_payload_clears() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("publisher"));
    h.publish(A, retained(qos1("status", "online", 1)));
    h.publish(A, retained(qos1("status", "", 2)));
    h.connect_ok(B, v311("late"));
    assert!(publishes(&h.subscribe(B, "status", QoS::AtLeastOnce), B).is_empty());
}

#[test]
fn mqtt_3_3_1_8_non_retained_publish_leaves_the_retained_message_alone() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.publish(A, retained(qos0("status", "kept")));
    h.publish(A, qos0("status", "passing"));
    h.publish(A, qos0("status", ""));
    h.connect_ok(B, v5("subscriber"));
    assert_eq!(
        payloads(&h.subscribe(B, "status", QoS::AtMostOnce), B),
        ["kept"]
    );
}

#[test]
fn mqtt_3_3_1_8_v311_retained_messages_are_sent_with_retain_1_on_subscribe() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("publisher"));
    h.publish(A, retained(qos2("a/b", "x", 1)));
    h.connect_ok(B, v311("subscriber"));
    let delivered = publishes(&h.subscribe(B, "a/+", QoS::AtLeastOnce), B);
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].retain);
    assert_eq!(
        delivered[0].qos,
        QoS::AtLeastOnce,
        "downgraded to the granted QoS"
    );
    assert!(delivered[0].packet_id.is_some());
}

#[test]
fn mqtt_3_3_1_9_v311_forwarded_messages_have_retain_0() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("publisher"));
    h.connect_ok(B, v311("subscriber"));
    h.subscribe(B, "status", QoS::AtMostOnce);
    let delivered = publishes(&h.publish(A, retained(qos0("status", "x"))), B);
    assert!(!delivered[0].retain);
}

#[test]
fn retained_messages_matching_a_wildcard_are_all_sent_in_topic_order() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.publish(A, retained(qos0("sensors/b/temp", "2")));
    h.publish(A, retained(qos0("sensors/a/temp", "1")));
    h.publish(A, retained(qos0("sensors/a/humidity", "ignored")));
    h.publish(A, retained(qos0("other", "ignored")));
    h.connect_ok(B, v5("subscriber"));
    let outputs = h.subscribe(B, "sensors/+/temp", QoS::AtMostOnce);
    assert_eq!(payloads(&outputs, B), ["1", "2"]);
    let everything = h.broker.retained(Some("sensors/#"), h.now);
    assert_eq!(everything.len(), 3);
}

#[test]
fn mqtt_3_3_1_9_retain_handling_0_sends_retained_messages_at_every_subscribe() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.publish(A, retained(qos0("t", "x")));
    h.connect_ok(B, v5("subscriber"));
    let options = retain_handling(QoS::AtMostOnce, RetainHandling::SendAtSubscribe);
    assert_eq!(payloads(&h.subscribe_with(B, "t", options, None), B), ["x"]);
    // Subscribing again replaces the subscription and sends them again [MQTT-3.8.4-4].
    assert_eq!(payloads(&h.subscribe_with(B, "t", options, None), B), ["x"]);
}

#[test]
fn mqtt_3_3_1_10_retain_handling_1_sends_only_for_a_new_subscription() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.publish(A, retained(qos0("t", "x")));
    h.connect_ok(B, v5("subscriber"));
    let options = retain_handling(QoS::AtMostOnce, RetainHandling::SendIfNew);
    assert_eq!(payloads(&h.subscribe_with(B, "t", options, None), B), ["x"]);
    assert!(publishes(&h.subscribe_with(B, "t", options, None), B).is_empty());
}

#[test]
fn mqtt_3_3_1_11_retain_handling_2_never_sends_retained_messages() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.publish(A, retained(qos0("t", "x")));
    h.connect_ok(B, v5("subscriber"));
    let options = retain_handling(QoS::AtMostOnce, RetainHandling::DoNotSend);
    assert!(publishes(&h.subscribe_with(B, "t", options, None), B).is_empty());
    // The subscription itself works.
    assert_eq!(payloads(&h.publish(A, qos0("t", "live")), B), ["live"]);
}

#[test]
fn mqtt_3_3_1_12_retain_flag_is_cleared_when_forwarding() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::AtMostOnce);
    let delivered = publishes(&h.publish(A, retained(qos0("t", "x"))), B);
    assert!(!delivered[0].retain);
}

#[test]
fn mqtt_3_3_1_13_retain_as_published_keeps_the_retain_flag() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    let options = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        retain_as_published: true,
        ..SubscriptionOptions::default()
    };
    h.subscribe_with(B, "t", options, None);
    let outputs = h.publish(A, retained(qos0("t", "retained")));
    assert!(publishes(&outputs, B)[0].retain);
    let outputs = h.publish(A, qos0("t", "plain"));
    assert!(!publishes(&outputs, B)[0].retain);
}

#[test]
fn one_qos_0_message_fanned_out_reaches_each_version_and_retain_as_published_as_encoded_for_it() {
    // The broker encodes a QoS 0 copy once per protocol version and RETAIN flag and shares the
    // bytes among the receivers alike. Each receiver here decodes its frame as its own client
    // would (by the version of its CONNECT, see `sent_to`), so bytes encoded for another
    // version, or with the other RETAIN flag, fail. Two of each kind, so whichever of a pair
    // of kinds gets encoded first, a mix-up reaches the other. (3.1 and 3.1.1 encode PUBLISH
    // the same, so a mix-up between those two alone cannot be seen in the bytes; the frame's
    // version is checked for it.)
    let keeps_retain = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        retain_as_published: true,
        ..SubscriptionOptions::default()
    };
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut receivers = Vec::new();
    for index in 0..2u32 {
        let base = 10 + 10 * index;
        for (offset, connect, rap) in [
            (0, v31(&format!("old-{index}")), false),
            (1, v311(&format!("classic-{index}")), false),
            (2, v5(&format!("plain-{index}")), false),
            (3, v5(&format!("keeps-{index}")), true),
        ] {
            let connection = broker_core::ConnectionId(u64::from(base + offset));
            h.connect_ok(connection, connect);
            if rap {
                h.subscribe_with(connection, "fan/#", keeps_retain, None);
            } else {
                h.subscribe(connection, "fan/#", QoS::AtMostOnce);
            }
            receivers.push((connection, rap));
        }
    }
    for published_retained in [true, false] {
        let mut publish = qos0("fan/out", "same payload");
        publish.retain = published_retained;
        let outputs = h.publish(A, publish);
        for (connection, rap) in &receivers {
            let delivered = publishes(&outputs, *connection);
            assert_eq!(delivered.len(), 1, "{connection:?}: {outputs:#?}");
            let publish = &delivered[0];
            assert_eq!(
                (publish.topic.as_str(), &publish.payload[..], publish.retain),
                ("fan/out", &b"same payload"[..], published_retained && *rap),
                "{connection:?}, retained {published_retained}"
            );
        }
    }
}

#[test]
fn retained_messages_are_not_sent_to_shared_subscriptions() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.publish(A, retained(qos0("jobs/1", "x")));
    h.connect_ok(B, v5("worker"));
    assert!(publishes(&h.subscribe(B, "$share/workers/jobs/+", QoS::AtMostOnce), B).is_empty());
    assert_eq!(payloads(&h.publish(A, qos0("jobs/2", "y")), B), ["y"]);
}

#[test]
fn retained_message_is_sent_with_the_subscription_identifier() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.publish(A, retained(qos0("t", "x")));
    h.connect_ok(B, v5("subscriber"));
    let outputs = h.subscribe_with(B, "t", options(QoS::AtMostOnce), Some(7));
    assert_eq!(
        publishes(&outputs, B)[0]
            .properties
            .subscription_identifiers,
        [7]
    );
}

#[test]
fn expired_retained_message_is_not_sent() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut publish = retained(qos1("t", "short lived", 1));
    publish.properties.message_expiry_interval = Some(10);
    h.publish(A, publish);

    h.advance(secs(4));
    h.connect_ok(B, v5("early"));
    let delivered = publishes(&h.subscribe(B, "t", QoS::AtLeastOnce), B);
    assert_eq!(
        delivered[0].properties.message_expiry_interval,
        Some(6),
        "what is left of the interval [MQTT-3.3.2-6]"
    );

    h.advance(secs(7));
    assert!(h.broker.retained(None, h.now).is_empty());
    h.connect_ok(C, v5("late"));
    assert!(publishes(&h.subscribe(C, "t", QoS::AtLeastOnce), C).is_empty());
    assert_eq!(h.broker.stats().retained_messages, 0);
}

#[test]
fn mqtt_3_3_2_5_a_retained_message_is_gone_once_its_interval_has_elapsed() {
    // Expired at the instant its Message Expiry Interval has passed, not a tick later.
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut publish = retained(qos1("t", "short lived", 1));
    publish.properties.message_expiry_interval = Some(10);
    h.publish(A, publish);

    h.advance(secs(10) - Duration::from_millis(1));
    h.connect_ok(B, v5("just in time"));
    assert_eq!(
        payloads(&h.subscribe(B, "t", QoS::AtLeastOnce), B),
        ["short lived"]
    );
    h.advance(Duration::from_millis(1));
    assert!(
        h.broker.retained(None, h.now).is_empty(),
        "the API lists no expired message"
    );
    h.connect_ok(C, v5("too late"));
    assert!(publishes(&h.subscribe(C, "t", QoS::AtLeastOnce), C).is_empty());
}

#[test]
fn mqtt_3_3_2_retained_message_keeps_its_properties_but_not_its_topic_alias() {
    // What a later subscriber gets is the message as published: Content Type and User
    // Properties kept [MQTT-3.3.2-17] [MQTT-3.3.2-20], the publisher's Topic Alias not.
    let mut h = Harness::new();
    let mut publisher = v5("publisher");
    publisher.properties.topic_alias_maximum = Some(4);
    h.connect_ok(A, publisher);
    let mut publish = retained(qos1("t", "described", 1));
    publish.properties.content_type = Some(ByteStr::from("text/plain"));
    publish.properties.user_properties = vec![(ByteStr::from("k"), ByteStr::from("v"))];
    publish.properties.topic_alias = Some(1);
    h.publish(A, publish);

    h.connect_ok(B, v5("subscriber"));
    let delivered = publishes(&h.subscribe(B, "t", QoS::AtLeastOnce), B);
    assert_eq!(delivered.len(), 1);
    let properties = &delivered[0].properties;
    assert_eq!(properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        properties.user_properties,
        [(ByteStr::from("k"), ByteStr::from("v"))]
    );
    assert_eq!(properties.topic_alias, None);
    assert_eq!(delivered[0].topic, "t");
}

#[test]
fn mqtt_4_7_2_1_retained_dollar_topics_are_not_sent_to_wildcard_subscriptions() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.publish(A, retained(qos0("$private/state", "x")));
    h.publish(A, retained(qos0("public/state", "y")));
    h.connect_ok(B, v5("subscriber"));
    assert_eq!(payloads(&h.subscribe(B, "#", QoS::AtMostOnce), B), ["y"]);
    assert_eq!(
        payloads(&h.subscribe(B, "+/state", QoS::AtMostOnce), B),
        ["y"],
        "the retained public/state, not $private/state"
    );
    assert_eq!(
        payloads(&h.subscribe(B, "$private/#", QoS::AtMostOnce), B),
        ["x"]
    );
}

#[test]
fn retained_messages_are_not_session_state() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("publisher"));
    h.publish(A, retained(qos0("t", "outlives the publisher")));
    h.disconnect(A);
    assert_eq!(h.broker.stats().sessions, 0);
    h.connect_ok(B, v311("subscriber"));
    assert_eq!(
        payloads(&h.subscribe(B, "t", QoS::AtMostOnce), B),
        ["outlives the publisher"]
    );
}

#[test]
fn retain_disabled_announces_it_and_keeps_nothing() {
    let mut h = Harness::with_config(BrokerConfig {
        retain_available: false,
        ..quiet_config()
    });
    let connack = h.connect_ok(A, v5("publisher"));
    assert_eq!(connack.properties.retain_available, Some(0), "announced");
    h.connect_ok(B, v311("subscriber"));
    h.subscribe(B, "t", QoS::AtMostOnce);
    let outputs = h.publish(A, qos0("t", "x"));
    assert_eq!(payloads(&outputs, B), ["x"], "plain messages still flow");
    // A retained one is refused [MQTT-3.2.2-14], delivered to nobody and kept nowhere.
    let outputs = h.publish(A, retained(qos0("t", "kept?")));
    assert_disconnected(&outputs, A, ReasonCode::RetainNotSupported);
    assert!(publishes(&outputs, B).is_empty());
    assert_eq!(h.broker.stats().retained_messages, 0);
    h.connect_ok(C, v5("late"));
    assert!(publishes(&h.subscribe(C, "t", QoS::AtMostOnce), C).is_empty());
}
