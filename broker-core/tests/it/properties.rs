//! MQTT 5.0 properties: topic aliases in both directions, message expiry, maximum packet size,
//! properties forwarded unaltered, and request/response information.

use crate::common::*;
use broker_core::{BrokerConfig, ConnectionId, DropReason, Output, Termination};
use bytes::Bytes;
use mqtt_codec::{ByteStr, Packet, Properties, PublishPacket, QoS, ReasonCode};

fn with_alias(mut publish: PublishPacket, alias: u16) -> PublishPacket {
    publish.properties.topic_alias = Some(alias);
    publish
}

// ----- Topic aliases from the client ----------------------------------------------------------

#[test]
fn mqtt_3_3_2_12_inbound_topic_alias_is_set_then_used() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "sensors/long/topic/name", QoS::AtMostOnce);

    let outputs = h.publish(A, with_alias(qos0("sensors/long/topic/name", "1"), 3));
    let delivered = publishes(&outputs, B);
    assert_eq!(delivered[0].topic, "sensors/long/topic/name");
    assert_eq!(
        delivered[0].properties.topic_alias, None,
        "aliases are per hop"
    );

    let outputs = h.publish(A, with_alias(qos0("", "2"), 3));
    let delivered = publishes(&outputs, B);
    assert_eq!(delivered[0].topic, "sensors/long/topic/name");
    assert_eq!(delivered[0].payload, "2");
}

#[test]
fn inbound_topic_alias_can_be_remapped() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "#", QoS::AtMostOnce);
    h.publish(A, with_alias(qos0("first", "x"), 1));
    h.publish(A, with_alias(qos0("second", "x"), 1));
    let delivered = publishes(&h.publish(A, with_alias(qos0("", "y"), 1)), B);
    assert_eq!(delivered[0].topic, "second");
}

#[test]
fn unknown_inbound_topic_alias_is_a_protocol_error() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let outputs = h.publish(A, with_alias(qos0("", "x"), 4));
    assert_disconnected(&outputs, A, ReasonCode::ProtocolError);
}

#[test]
fn mqtt_3_3_2_9_topic_alias_above_the_maximum_disconnects_with_0x94() {
    let mut h = Harness::with_config(BrokerConfig {
        topic_alias_maximum: 5,
        ..quiet_config()
    });
    h.connect_ok(A, v5("publisher"));
    let outputs = h.publish(A, with_alias(qos0("t", "x"), 6));
    assert_disconnected(&outputs, A, ReasonCode::TopicAliasInvalid);
}

#[test]
fn mqtt_3_3_2_8_topic_alias_0_disconnects_with_0x94() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let outputs = h.publish(A, with_alias(qos0("t", "x"), 0));
    assert_disconnected(&outputs, A, ReasonCode::TopicAliasInvalid);
}

#[test]
fn mqtt_3_2_2_18_topic_aliases_disabled_refuses_every_alias() {
    let mut h = Harness::with_config(BrokerConfig {
        topic_alias_maximum: 0,
        ..quiet_config()
    });
    let connack = h.connect_ok(A, v5("publisher"));
    assert_eq!(connack.properties.topic_alias_maximum, None);
    let outputs = h.publish(A, with_alias(qos0("t", "x"), 1));
    assert_disconnected(&outputs, A, ReasonCode::TopicAliasInvalid);
}

#[test]
fn mqtt_3_3_2_7_topic_aliases_do_not_survive_the_connection() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("publisher", 60));
    h.publish(A, with_alias(qos0("t", "x"), 1));
    h.disconnect(A);
    h.connect_ok(B, v5_persistent("publisher", 60));
    let outputs = h.publish(B, with_alias(qos0("", "y"), 1));
    assert_disconnected(&outputs, B, ReasonCode::ProtocolError);
}

// ----- Topic aliases towards the client --------------------------------------------------------

fn subscriber_with_alias_maximum(maximum: u16) -> mqtt_codec::ConnectPacket {
    let mut connect = v5("subscriber");
    connect.properties.topic_alias_maximum = Some(maximum);
    connect
}

#[test]
fn outbound_topic_alias_is_assigned_and_then_replaces_the_topic() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, subscriber_with_alias_maximum(10));
    h.subscribe(B, "t/#", QoS::AtLeastOnce);

    let first = publishes(&h.publish(A, qos1("t/long/name", "1", 1)), B);
    let alias = first[0]
        .properties
        .topic_alias
        .expect("an alias is assigned");
    assert!((1..=10).contains(&alias), "[MQTT-3.3.2-11]");
    assert_eq!(
        first[0].topic, "t/long/name",
        "the first message sets the mapping"
    );

    let second = publishes(&h.publish(A, qos1("t/long/name", "2", 2)), B);
    assert_eq!(second[0].topic, "", "the alias stands for the topic");
    assert_eq!(second[0].properties.topic_alias, Some(alias));

    let other = publishes(&h.publish(A, qos0("t/other", "3")), B);
    assert_eq!(other[0].topic, "t/other");
    assert_ne!(other[0].properties.topic_alias, Some(alias));
}

#[test]
fn mqtt_3_1_2_26_outbound_aliases_never_exceed_the_clients_maximum() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, subscriber_with_alias_maximum(2));
    h.subscribe(B, "#", QoS::AtMostOnce);
    for topic in ["a", "b", "c", "d"] {
        let delivered = publishes(&h.publish(A, qos0(topic, "x")), B);
        assert_eq!(
            delivered[0].topic, topic,
            "no alias is used before it is set"
        );
        assert!(delivered[0].properties.topic_alias.unwrap_or(0) <= 2);
    }
    // Topics beyond the maximum keep travelling in full.
    let delivered = publishes(&h.publish(A, qos0("d", "again")), B);
    assert_eq!(delivered[0].topic, "d");
    assert_eq!(delivered[0].properties.topic_alias, None);
}

#[test]
fn mqtt_3_1_2_27_no_outbound_aliases_without_a_client_maximum() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::AtMostOnce);
    for _ in 0..3 {
        let delivered = publishes(&h.publish(A, qos0("t", "x")), B);
        assert_eq!(delivered[0].topic, "t");
        assert_eq!(delivered[0].properties.topic_alias, None);
    }
}

#[test]
fn outbound_aliases_start_afresh_on_a_new_connection() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut connect = subscriber_with_alias_maximum(5);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(60);
    h.connect_ok(B, connect.clone());
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.publish(A, qos1("t", "1", 1));
    h.lose(B);
    // The redelivery on the new connection must carry the topic again.
    let outputs = h.connect(C, connect);
    let resent = publishes(&outputs, C);
    assert_eq!(resent[0].topic, "t");
    assert!(resent[0].dup);
}

// ----- Message expiry --------------------------------------------------------------------------

fn expiring(mut publish: PublishPacket, seconds: u32) -> PublishPacket {
    publish.properties.message_expiry_interval = Some(seconds);
    publish
}

#[test]
fn mqtt_3_3_2_6_forwarded_expiry_is_what_is_left_of_the_interval() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5_persistent("subscriber", 600));
    h.subscribe(B, "t", QoS::AtLeastOnce);

    let delivered = publishes(&h.publish(A, expiring(qos1("t", "now", 1), 100)), B);
    assert_eq!(delivered[0].properties.message_expiry_interval, Some(100));
    h.puback(B, delivered[0].packet_id.unwrap());

    h.disconnect(B);
    h.publish(A, expiring(qos1("t", "later", 2), 100));
    h.advance(secs(30));
    let outputs = h.connect(C, v5_persistent("subscriber", 600));
    let delivered = publishes(&outputs, C);
    assert_eq!(delivered[0].properties.message_expiry_interval, Some(70));
}

#[test]
fn mqtt_3_3_2_6_what_is_left_is_rounded_up_to_whole_seconds() {
    // A queued message sent with 999, 1000 and 1001 ms of its 10 s left: 1, 1 and 2 seconds.
    // Rounded down, a receiver would be told 0 (no expiry in 5.0's terms: the property would
    // be absent) or a second less than is left.
    for (left_ms, told) in [(999, 1), (1000, 1), (1001, 2), (9_000, 9), (9_001, 10)] {
        let mut h = Harness::new();
        h.connect_ok(A, v5("publisher"));
        h.connect_ok(B, v5_persistent("subscriber", 600));
        h.subscribe(B, "t", QoS::AtLeastOnce);
        h.disconnect(B);
        h.publish(A, expiring(qos1("t", "queued", 1), 10));
        h.advance(millis(10_000 - left_ms));
        let delivered = publishes(&h.connect(C, v5_persistent("subscriber", 600)), C);
        assert_eq!(
            delivered[0].properties.message_expiry_interval,
            Some(told),
            "{left_ms} ms left"
        );
    }
}

#[test]
fn mqtt_3_3_2_6_a_message_sent_again_is_told_what_is_left_rounded_up_and_at_least_1() {
    // A message in flight at the disconnect goes out again whatever is left [MQTT-4.3.3-7]; it
    // says how much, rounded up, and never 0 (a second even once its time has passed).
    for (left_ms, told) in [(1001, 2), (1000, 1), (999, 1), (0, 1)] {
        let mut h = Harness::new();
        h.connect_ok(A, v5("publisher"));
        h.connect_ok(B, v5_persistent("subscriber", 600));
        h.subscribe(B, "t", QoS::AtLeastOnce);
        h.publish(A, expiring(qos1("t", "in flight", 1), 10));
        h.lose(B);
        h.advance(millis(10_000 - left_ms));
        let resent = publishes(&h.connect(C, v5_persistent("subscriber", 600)), C);
        assert!(resent[0].dup);
        assert_eq!(
            resent[0].properties.message_expiry_interval,
            Some(told),
            "{left_ms} ms left"
        );
    }
}

#[test]
fn mqtt_3_3_2_5_message_expired_while_queued_is_dropped() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5_persistent("subscriber", 600));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.disconnect(B);
    h.publish(A, expiring(qos1("t", "stale", 1), 10));
    h.publish(A, qos1("t", "fresh", 2));
    h.advance(secs(10));
    let outputs = h.connect(C, v5_persistent("subscriber", 600));
    assert_eq!(payloads(&outputs, C), ["fresh"]);
    assert_eq!(h.broker.stats().dropped_for(DropReason::Expired), 1);
}

#[test]
fn message_expired_behind_a_full_window_is_dropped() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5("subscriber");
    subscriber.properties.receive_maximum = Some(1);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::AtLeastOnce);
    let id = publishes(&h.publish(A, qos1("t", "first", 1)), B)[0]
        .packet_id
        .unwrap();
    h.publish(A, expiring(qos1("t", "stale", 2), 5));
    h.publish(A, qos1("t", "last", 3));
    h.advance(secs(6));
    assert_eq!(payloads(&h.puback(B, id), B), ["last"]);
    assert_eq!(h.broker.stats().dropped_for(DropReason::Expired), 1);
}

#[test]
fn mqtt_4_3_3_7_message_already_sent_is_redelivered_with_its_remaining_expiry() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5_persistent("subscriber", 600));
    h.subscribe(B, "t", QoS::ExactlyOnce);
    h.publish(A, expiring(qos2("t", "in flight", 1), 100));
    h.lose(B);

    h.advance(secs(40));
    let outputs = h.connect(C, v5_persistent("subscriber", 600));
    let resent = publishes(&outputs, C);
    assert!(resent[0].dup);
    assert_eq!(
        resent[0].properties.message_expiry_interval,
        Some(60),
        "the time waited is taken off [MQTT-3.3.2-6]"
    );

    // Once sent, delivery completes even after the interval has passed.
    h.lose(C);
    h.advance(secs(120));
    let outputs = h.connect(D, v5_persistent("subscriber", 600));
    let resent = publishes(&outputs, D);
    assert_eq!(resent.len(), 1, "not expired once sent");
    assert!(resent[0].properties.message_expiry_interval.is_some());
}

// ----- Maximum packet size ---------------------------------------------------------------------

#[test]
fn mqtt_3_1_2_25_message_larger_than_the_clients_maximum_packet_size_is_dropped() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5("subscriber");
    subscriber.properties.maximum_packet_size = Some(64);
    subscriber.properties.receive_maximum = Some(1);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::AtLeastOnce);

    let big = "x".repeat(100);
    assert!(
        publishes(&h.publish(A, qos0("t", &big)), B).is_empty(),
        "[MQTT-3.1.2-24]"
    );
    assert!(publishes(&h.publish(A, qos1("t", &big, 1)), B).is_empty());
    assert_eq!(h.broker.stats().dropped_for(DropReason::PacketTooLarge), 2);

    // Behaves as if the oversized QoS 1 message had been delivered: the window is free.
    let delivered = publishes(&h.publish(A, qos1("t", "small", 2)), B);
    assert_eq!(delivered.len(), 1);
    assert_eq!(h.broker.stats().queued_messages, 1);
}

#[test]
fn mqtt_3_1_2_25_a_resend_too_large_for_the_new_connection_is_discarded_as_delivered() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5_persistent("subscriber", 300);
    subscriber.properties.receive_maximum = Some(1);
    h.connect_ok(B, subscriber.clone());
    h.subscribe(B, "t", QoS::AtLeastOnce);
    let big = "x".repeat(100);
    assert_eq!(publishes(&h.publish(A, qos1("t", &big, 1)), B).len(), 1);
    h.publish(A, qos1("t", "small", 2));
    h.lose(B);

    // Back with a limit the unacknowledged message exceeds: it is not resent, and it does not
    // hold the window, so the queued message follows at once.
    subscriber.properties.maximum_packet_size = Some(64);
    let outputs = h.connect(C, subscriber);
    assert_eq!(payloads(&outputs, C), ["small"]);
    assert_eq!(h.broker.stats().dropped_for(DropReason::PacketTooLarge), 1);
    assert_eq!(
        h.broker.stats().queued_messages,
        1,
        "only \"small\" is in flight"
    );
}

#[test]
fn message_of_exactly_the_maximum_packet_size_is_sent() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    // QoS 0 PUBLISH: fixed header 2, topic 2 + 1, property length 1, payload 58 = 64 bytes.
    let mut subscriber = v5("subscriber");
    subscriber.properties.maximum_packet_size = Some(64);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::AtMostOnce);
    let payload = "y".repeat(58);
    assert_eq!(payloads(&h.publish(A, qos0("t", &payload)), B), [payload]);
    let payload = "y".repeat(59);
    assert!(publishes(&h.publish(A, qos0("t", &payload)), B).is_empty());
}

// ----- Properties forwarded unaltered -------------------------------------------------------------

#[test]
fn mqtt_3_3_2_17_application_properties_are_forwarded_unaltered() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("requester"));
    h.connect_ok(B, v5("responder"));
    h.subscribe(B, "service/request", QoS::AtLeastOnce);
    let mut request = qos1("service/request", "{\"n\":1}", 1);
    request.properties = Properties {
        payload_format_indicator: Some(1),
        content_type: Some(ByteStr::from("application/json")),
        response_topic: Some(ByteStr::from("service/reply/requester")),
        correlation_data: Some(Bytes::from_static(b"\x00\xffcorrelation")),
        user_properties: vec![
            (ByteStr::from("z"), ByteStr::from("last")),
            (ByteStr::from("a"), ByteStr::from("first")),
            (ByteStr::from("z"), ByteStr::from("again")),
        ],
        ..Properties::default()
    };
    let delivered = publishes(&h.publish(A, request.clone()), B);
    let properties = &delivered[0].properties;
    assert_eq!(
        properties.payload_format_indicator,
        Some(1),
        "[MQTT-3.3.2-4]"
    );
    assert_eq!(
        properties.content_type, request.properties.content_type,
        "[MQTT-3.3.2-20]"
    );
    assert_eq!(
        properties.response_topic, request.properties.response_topic,
        "[MQTT-3.3.2-15]"
    );
    assert_eq!(
        properties.correlation_data, request.properties.correlation_data,
        "[MQTT-3.3.2-16]"
    );
    assert_eq!(
        properties.user_properties, request.properties.user_properties,
        "unaltered and in order [MQTT-3.3.2-18]"
    );
}

#[test]
fn request_response_round_trip() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("requester"));
    h.connect_ok(B, v5("responder"));
    h.subscribe(A, "reply/requester", QoS::AtLeastOnce);
    h.subscribe(B, "service", QoS::AtLeastOnce);
    let mut request = qos1("service", "question", 1);
    request.properties.response_topic = Some(ByteStr::from("reply/requester"));
    request.properties.correlation_data = Some(Bytes::from_static(b"42"));
    let received = publishes(&h.publish(A, request), B).remove(0);

    let mut response = qos1(
        received.properties.response_topic.as_ref().unwrap(),
        "answer",
        1,
    );
    response.properties.correlation_data = received.properties.correlation_data.clone();
    let answer = publishes(&h.publish(B, response), A).remove(0);
    assert_eq!(answer.payload, "answer");
    assert_eq!(
        answer.properties.correlation_data.as_deref(),
        Some(&b"42"[..])
    );
}

#[test]
fn mqtt_3_1_2_28_response_information_only_when_requested() {
    let mut h = Harness::new();
    let mut connect = v5("client");
    connect.properties.request_response_information = Some(1);
    let connack = h.connect_ok(A, connect);
    let information = connack
        .properties
        .response_information
        .expect("response information");
    assert!(!information.is_empty());
    // It can be used as a topic prefix.
    h.subscribe(A, &format!("{information}/#"), QoS::AtMostOnce);

    let mut connect = v5("other");
    connect.properties.request_response_information = Some(0);
    assert_eq!(
        h.connect_ok(B, connect).properties.response_information,
        None
    );
    assert_eq!(
        h.connect_ok(C, v5("third")).properties.response_information,
        None
    );
}

#[test]
fn reason_strings_accompany_disconnects() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("client"));
    let outputs = h.publish(A, with_alias(qos0("", "x"), 9));
    let reason_string = sent_to(&outputs, A)
        .into_iter()
        .find_map(|p| match p {
            Packet::Disconnect(d) => d.properties.reason_string,
            _ => None,
        })
        .expect("a reason string");
    // The log line, the DISCONNECT and this test name the same variant.
    let termination = Termination::TopicAliasUnknown(9);
    assert_eq!(reason_string.as_str(), termination.to_string());
    assert_eq!(
        disconnect_reason(&outputs, A),
        Some(termination.reason_code())
    );
}

#[test]
fn mqtt_3_1_2_24_a_topic_alias_never_pushes_a_message_over_the_maximum_packet_size() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5("subscriber");
    subscriber.properties.maximum_packet_size = Some(64);
    subscriber.properties.topic_alias_maximum = Some(10);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::AtMostOnce);

    // 64 bytes without an alias; the alias property would add three.
    let payload = "y".repeat(58);
    for _ in 0..2 {
        let delivered = publishes(&h.publish(A, qos0("t", &payload)), B);
        assert_eq!(
            delivered.len(),
            1,
            "it fits without an alias, so it is sent"
        );
        let packet = Packet::Publish(delivered[0].clone());
        let size = mqtt_codec::encoded_len(&packet, mqtt_codec::ProtocolVersion::V5).unwrap();
        assert!(size <= 64, "{size} bytes sent to a client that accepts 64");
        assert_eq!(delivered[0].topic, "t");
    }
    // A smaller message on the same topic may use an alias again.
    let delivered = publishes(&h.publish(A, qos0("t", "small")), B);
    assert!(delivered[0].properties.topic_alias.is_some());
    let delivered = publishes(&h.publish(A, qos0("t", &payload)), B);
    let packet = Packet::Publish(delivered[0].clone());
    assert!(mqtt_codec::encoded_len(&packet, mqtt_codec::ProtocolVersion::V5).unwrap() <= 64);
}

/// The frames sent to `connection`, as bytes.
fn frames_to(outputs: &[Output], connection: ConnectionId) -> Vec<Bytes> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send {
                connection: c,
                frame,
            } if *c == connection => Some(frame.bytes.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn mqtt_3_2_2_19_a_connack_leaves_out_its_reason_string_beyond_the_client_maximum() {
    let config = BrokerConfig {
        max_client_id_len: 4,
        ..quiet_config()
    };
    let mut h = Harness::with_config(config);
    // Without a limit the refusal says why.
    let outputs = h.connect(A, v5("too-long"));
    assert!(connack(&outputs, A).properties.reason_string.is_some());
    // With one the reason string would break, it is left out; the code still says it.
    let mut limited = v5("too-long");
    limited.properties.maximum_packet_size = Some(29);
    let outputs = h.connect(B, limited);
    let frames = frames_to(&outputs, B);
    assert_eq!(frames.len(), 1, "{outputs:#?}");
    assert!(frames[0].len() <= 29, "{} bytes", frames[0].len());
    let connack = connack(&outputs, B);
    assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
    assert_eq!(connack.properties.reason_string, None, "[MQTT-3.2.2-20]");
    assert!(closed(&outputs, B));
}

#[test]
fn mqtt_3_1_2_24_a_disconnect_leaves_out_its_reason_string_beyond_the_client_maximum() {
    let mut h = Harness::new();
    let mut limited = v5("client");
    limited.properties.maximum_packet_size = Some(16);
    h.connect_ok(A, limited);
    let outputs = h.publish(A, with_alias(qos0("", "x"), 9));
    let frames = frames_to(&outputs, A);
    assert_eq!(frames.len(), 1);
    assert!(frames[0].len() <= 16, "{} bytes", frames[0].len());
    assert_disconnected(&outputs, A, ReasonCode::ProtocolError);
    let reason_string = sent_to(&outputs, A).into_iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.properties.reason_string),
        _ => None,
    });
    assert_eq!(reason_string, Some(None));
}
