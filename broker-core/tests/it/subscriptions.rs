//! SUBSCRIBE and UNSUBSCRIBE: wildcards, `$` topics, overlapping subscriptions, subscription
//! identifiers, No Local and shared subscriptions.

use crate::common::*;
use broker_core::{ConnectionId, Frame, Output};
use mqtt_codec::{Packet, QoS, ReasonCode, SubscriptionOptions};

#[test]
fn wildcards_match_as_the_specification_examples_say() {
    // (filter, topic, delivered)
    let cases: &[(&str, &str, bool)] = &[
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/#", "sport", true),
        ("#", "sport/tennis", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("a/b", "a/b/c", false),
        ("a/b", "A/b", false),
    ];
    for (n, (filter, topic, expected)) in cases.iter().enumerate() {
        let mut h = Harness::new();
        h.connect_ok(A, v5("publisher"));
        h.connect_ok(B, v5("subscriber"));
        h.subscribe(B, filter, QoS::AtMostOnce);
        let delivered = publishes(&h.publish(A, qos0(topic, "x")), B);
        assert_eq!(
            !delivered.is_empty(),
            *expected,
            "case {n}: {filter:?} vs {topic:?}"
        );
        if *expected {
            assert_eq!(delivered[0].topic, *topic, "[MQTT-3.3.2-3]");
        }
    }
}

#[test]
fn mqtt_4_7_2_1_dollar_topics_are_not_matched_by_wildcards_at_the_first_level() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("hash"));
    h.connect_ok(C, v5("plus"));
    h.connect_ok(D, v5("explicit"));
    h.subscribe(B, "#", QoS::AtMostOnce);
    h.subscribe(C, "+/broker/uptime", QoS::AtMostOnce);
    h.subscribe(D, "$SYS/#", QoS::AtMostOnce);
    let outputs = h.publish(A, qos0("$SYS/broker/uptime", "x"));
    assert!(publishes(&outputs, B).is_empty());
    assert!(publishes(&outputs, C).is_empty());
    assert_eq!(payloads(&outputs, D), ["x"]);
}

#[test]
fn mqtt_3_3_4_2_overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "a/#", QoS::AtMostOnce);
    h.subscribe(B, "a/+", QoS::ExactlyOnce);
    h.subscribe(B, "a/b", QoS::AtLeastOnce);
    let delivered = publishes(&h.publish(A, qos2("a/b", "x", 1)), B);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].qos, QoS::ExactlyOnce);
}

#[test]
fn mqtt_3_3_4_4_single_copy_carries_every_matching_subscription_identifier() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe_with(B, "a/#", options(QoS::AtMostOnce), Some(1));
    h.subscribe_with(B, "a/+", options(QoS::AtLeastOnce), Some(2));
    h.subscribe_with(B, "a/b", options(QoS::AtMostOnce), None);
    let delivered = publishes(&h.publish(A, qos1("a/b", "x", 1)), B);
    assert_eq!(delivered.len(), 1);
    let mut identifiers = delivered[0].properties.subscription_identifiers.clone();
    identifiers.sort_unstable();
    assert_eq!(identifiers, [1, 2], "[MQTT-3.3.4-3]");

    // A message matching only the subscription without identifier carries none.
    h.subscribe_with(B, "c", options(QoS::AtMostOnce), None);
    let delivered = publishes(&h.publish(A, qos0("c", "y")), B);
    assert!(delivered[0].properties.subscription_identifiers.is_empty());
}

#[test]
fn mqtt_3_3_4_6_a_subscription_identifier_from_a_client_is_a_protocol_error() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::AtMostOnce);
    let mut publish = qos1("t", "x", 1);
    publish.properties.subscription_identifiers.push(99);
    let outputs = h.publish(A, publish);
    assert_disconnected(&outputs, A, ReasonCode::ProtocolError);
    assert!(publishes(&outputs, B).is_empty(), "nothing delivered");
    assert!(acks(&outputs, A, is_puback).is_empty(), "nor acknowledged");
}

#[test]
fn v311_subscribers_get_no_subscription_identifiers() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v311("subscriber"));
    let mut subscribe = subscribe_packet(1, &[("t", options(QoS::AtMostOnce))], Some(5));
    subscribe.properties.subscription_identifiers = vec![5];
    h.send(B, Packet::Subscribe(subscribe));
    let delivered = publishes(&h.publish(A, qos0("t", "x")), B);
    assert!(delivered[0].properties.subscription_identifiers.is_empty());
}

#[test]
fn mqtt_3_8_3_3_no_local_does_not_send_a_clients_own_messages_back() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("chatter"));
    h.connect_ok(B, v5("listener"));
    let no_local = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        no_local: true,
        ..SubscriptionOptions::default()
    };
    h.subscribe_with(A, "chat", no_local, None);
    h.subscribe(B, "chat", QoS::AtMostOnce);

    let outputs = h.publish(A, qos0("chat", "from A"));
    assert!(publishes(&outputs, A).is_empty());
    assert_eq!(payloads(&outputs, B), ["from A"]);
    let outputs = h.publish(B, qos0("chat", "from B"));
    assert_eq!(payloads(&outputs, A), ["from B"]);
}

#[test]
fn without_no_local_a_client_receives_its_own_messages() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("echo"));
    h.subscribe(A, "t", QoS::AtMostOnce);
    assert_eq!(payloads(&h.publish(A, qos0("t", "x")), A), ["x"]);
}

#[test]
fn mqtt_3_8_3_4_no_local_on_a_shared_subscription_is_a_protocol_error() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("client"));
    let no_local = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        no_local: true,
        ..SubscriptionOptions::default()
    };
    let outputs = h.send(
        A,
        Packet::Subscribe(subscribe_packet(1, &[("$share/g/t", no_local)], None)),
    );
    assert_disconnected(&outputs, A, ReasonCode::ProtocolError);
}

#[test]
fn shared_subscription_delivers_each_message_to_one_member_in_turn() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    for (connection, name) in [(B, "w1"), (C, "w2"), (D, "w3")] {
        h.connect_ok(connection, v5(name));
        h.subscribe(connection, "$share/workers/jobs/#", QoS::AtLeastOnce);
    }
    let mut counts = [0; 3];
    for n in 0..9 {
        let outputs = h.publish(A, qos1("jobs/x", &n.to_string(), 1));
        let receivers: Vec<usize> = [B, C, D]
            .iter()
            .enumerate()
            .filter(|(_, c)| !publishes(&outputs, **c).is_empty())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(receivers.len(), 1, "exactly one member per message");
        counts[receivers[0]] += 1;
        // The publisher gets a success, not "no matching subscribers".
        assert_eq!(acks(&outputs, A, is_puback), [(1, ReasonCode::Success)]);
    }
    assert_eq!(counts, [3, 3, 3], "round robin");
    assert_eq!(h.broker.stats().subscriptions, 3);
}

#[test]
fn shared_subscription_groups_are_independent_and_coexist_with_plain_subscriptions() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("group-one"));
    h.connect_ok(C, v5("group-two"));
    h.connect_ok(D, v5("plain"));
    h.subscribe(B, "$share/one/t", QoS::AtMostOnce);
    h.subscribe(C, "$share/two/t", QoS::AtMostOnce);
    h.subscribe(D, "t", QoS::AtMostOnce);
    let outputs = h.publish(A, qos0("t", "x"));
    for connection in [B, C, D] {
        assert_eq!(payloads(&outputs, connection), ["x"]);
    }
}

#[test]
fn shared_groups_of_different_sizes_each_deliver_every_message_once() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("pair-one"));
    h.connect_ok(E, v5("pair-two"));
    h.connect_ok(C, v5("alone"));
    h.subscribe(B, "$share/pair/t", QoS::AtMostOnce);
    h.subscribe(E, "$share/pair/t", QoS::AtMostOnce);
    h.subscribe(C, "$share/single/t", QoS::AtMostOnce);
    let mut pair = Vec::new();
    let mut single = Vec::new();
    for n in 0..4 {
        let outputs = h.publish(A, qos0("t", &n.to_string()));
        pair.extend(payloads(&outputs, B));
        pair.extend(payloads(&outputs, E));
        single.extend(payloads(&outputs, C));
    }
    pair.sort();
    assert_eq!(pair, ["0", "1", "2", "3"], "the pair shares every message");
    assert_eq!(
        single,
        ["0", "1", "2", "3"],
        "the lone member gets every message"
    );
}

#[test]
fn shared_subscription_prefers_online_members() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5_persistent("offline-worker", 600));
    h.subscribe(B, "$share/g/t", QoS::AtLeastOnce);
    h.connect_ok(C, v5("online-worker"));
    h.subscribe(C, "$share/g/t", QoS::AtLeastOnce);
    h.disconnect(B);

    for n in 0..4 {
        let outputs = h.publish(A, qos1("t", &n.to_string(), 1));
        assert_eq!(payloads(&outputs, C), [n.to_string()]);
    }
    // Nothing was queued for the offline member.
    let outputs = h.connect(D, v5_persistent("offline-worker", 600));
    assert!(publishes(&outputs, D).is_empty());
}

#[test]
fn shared_subscription_with_every_member_offline_queues_for_one() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5_persistent("worker", 600));
    h.subscribe(B, "$share/g/t", QoS::AtLeastOnce);
    h.disconnect(B);
    let outputs = h.publish(A, qos1("t", "kept", 1));
    assert_eq!(acks(&outputs, A, is_puback), [(1, ReasonCode::Success)]);
    let outputs = h.connect(C, v5_persistent("worker", 600));
    assert_eq!(payloads(&outputs, C), ["kept"]);
}

#[test]
fn unsubscribing_from_a_shared_subscription_leaves_the_rest_of_the_group() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("w1"));
    h.connect_ok(C, v5("w2"));
    h.subscribe(B, "$share/g/t", QoS::AtMostOnce);
    h.subscribe(C, "$share/g/t", QoS::AtMostOnce);
    h.unsubscribe(B, &["$share/g/t"]);
    for _ in 0..3 {
        assert_eq!(payloads(&h.publish(A, qos0("t", "x")), C), ["x"]);
    }
    h.unsubscribe(C, &["$share/g/t"]);
    assert!(h.publish(A, qos0("t", "x")).is_empty());
    assert_eq!(h.broker.stats().subscriptions, 0);
}

#[test]
fn mqtt_3_8_4_3_subscribing_again_replaces_the_subscription() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::ExactlyOnce);
    h.subscribe(B, "t", QoS::AtMostOnce);
    let delivered = publishes(&h.publish(A, qos2("t", "x", 1)), B);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].qos, QoS::AtMostOnce);
    assert_eq!(h.broker.stats().subscriptions, 1);
    assert_eq!(h.broker.subscriptions().len(), 1);
}

#[test]
fn mqtt_3_8_4_5_several_filters_in_one_subscribe_get_one_suback_in_order() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("subscriber"));
    let outputs = h.send(
        A,
        Packet::Subscribe(subscribe_packet(
            31,
            &[
                ("a", options(QoS::ExactlyOnce)),
                ("b", options(QoS::AtMostOnce)),
                ("c/#", options(QoS::AtLeastOnce)),
            ],
            None,
        )),
    );
    let subacks: Vec<_> = sent_to(&outputs, A)
        .into_iter()
        .filter(|p| matches!(p, Packet::SubAck(_)))
        .collect();
    assert_eq!(subacks.len(), 1);
    let suback = suback(&outputs, A);
    assert_eq!(suback.packet_id, 31, "[MQTT-3.8.4-2]");
    assert_eq!(
        suback.reason_codes,
        [
            ReasonCode::GrantedQoS2,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GrantedQoS1
        ],
        "[MQTT-3.9.3-1]"
    );
    let summaries = h.broker.subscriptions();
    let filters: Vec<&str> = summaries.iter().map(|s| s.filter.as_str()).collect();
    assert_eq!(filters, ["a", "b", "c/#"]);
    assert!(summaries.iter().all(|s| s.online));
}

#[test]
fn mqtt_3_10_4_1_unsubscribe_deletes_the_subscription() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::AtMostOnce);
    h.subscribe(B, "u/+", QoS::AtMostOnce);
    let outputs = h.unsubscribe(B, &["t", "missing", "u/+"]);
    let unsuback = sent_to(&outputs, B)
        .into_iter()
        .find_map(|p| match p {
            Packet::UnsubAck(ack) => Some(ack),
            _ => None,
        })
        .expect("UNSUBACK [MQTT-3.10.4-4]");
    assert_eq!(unsuback.packet_id, 200);
    assert_eq!(
        unsuback.reason_codes,
        [
            ReasonCode::Success,
            ReasonCode::NoSubscriptionExisted,
            ReasonCode::Success
        ],
        "one per filter, in order [MQTT-3.11.3-1] [MQTT-3.10.4-5]"
    );
    assert!(publishes(&h.publish(A, qos0("t", "x")), B).is_empty());
    assert!(publishes(&h.publish(A, qos0("u/v", "x")), B).is_empty());
    assert_eq!(h.broker.stats().subscriptions, 0);
}

#[test]
fn mqtt_3_10_4_1_unsubscribe_compares_filters_character_by_character() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "a/+", QoS::AtMostOnce);
    h.unsubscribe(B, &["a/b", "a/#"]);
    assert_eq!(payloads(&h.publish(A, qos0("a/b", "x")), B), ["x"]);
}

#[test]
fn mqtt_3_10_4_3_unsubscribe_completes_messages_already_in_flight() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5("subscriber");
    subscriber.properties.receive_maximum = Some(1);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::ExactlyOnce);
    let id = publishes(&h.publish(A, qos2("t", "x", 1)), B)[0]
        .packet_id
        .unwrap();
    h.unsubscribe(B, &["t"]);
    let outputs = h.send(B, Packet::PubRec(mqtt_codec::PubAckPacket::new(id)));
    assert_eq!(acks(&outputs, B, is_pubrel), [(id, ReasonCode::Success)]);
    h.send(B, Packet::PubComp(mqtt_codec::PubAckPacket::new(id)));
    assert_eq!(h.broker.stats().queued_messages, 0);
}

#[test]
fn subscriptions_of_a_clean_session_are_removed_with_it() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::AtMostOnce);
    h.subscribe(B, "$share/g/t", QoS::AtMostOnce);
    assert_eq!(h.broker.stats().subscriptions, 2);
    h.lose(B);
    assert_eq!(h.broker.stats().subscriptions, 0);
    assert!(h.publish(A, qos0("t", "x")).is_empty());
}

#[test]
fn persistent_sessions_subscriptions_are_listed_offline() {
    let mut h = Harness::new();
    h.connect_ok(B, v5_persistent("subscriber", 60));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.disconnect(B);
    let summaries = h.broker.subscriptions();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].client_id, "subscriber");
    assert!(!summaries[0].online);
    assert_eq!(summaries[0].options.qos, QoS::AtLeastOnce);
}

#[test]
fn mqtt_3_3_4_5_shared_and_plain_subscriptions_of_one_session_each_get_their_identifier() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe_with(B, "t", options(QoS::AtMostOnce), Some(1));
    h.subscribe_with(B, "$share/g/t", options(QoS::AtMostOnce), Some(2));
    let delivered = publishes(&h.publish(A, qos0("t", "x")), B);
    let mut identifiers: Vec<Vec<u32>> = delivered
        .iter()
        .map(|p| p.properties.subscription_identifiers.clone())
        .collect();
    identifiers.sort();
    assert_eq!(
        identifiers,
        [vec![1], vec![2]],
        "one copy per subscription kind"
    );
}

// ----- Fan-out ----------------------------------------------------------------------------------

/// The frame sent to `connection` in `outputs`; exactly one is expected.
fn only_frame(outputs: &[Output], connection: ConnectionId) -> Frame {
    let frames: Vec<&Frame> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send {
                connection: target,
                frame,
            } if *target == connection => Some(frame),
            _ => None,
        })
        .collect();
    assert_eq!(frames.len(), 1, "{outputs:#?}");
    frames[0].clone()
}

#[test]
fn qos_0_fan_out_encodes_once_per_protocol_version_and_retain_flag() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    // Two 3.1.1 receivers, two 5.0 receivers, one 5.0 receiver keeping the retain flag, and one
    // 5.0 receiver with a subscription identifier (so its copy differs).
    let receivers = [
        (ConnectionId(10), v311("old-1")),
        (ConnectionId(11), v311("old-2")),
        (ConnectionId(12), v5("new-1")),
        (ConnectionId(13), v5("new-2")),
        (ConnectionId(14), v5("keeps-retain")),
        (ConnectionId(15), v5("identified")),
    ];
    for (connection, connect) in receivers.clone() {
        h.connect_ok(connection, connect);
    }
    for connection in [10, 11, 12, 13] {
        h.subscribe(ConnectionId(connection), "fan/#", QoS::AtMostOnce);
    }
    let keep_retain = SubscriptionOptions {
        retain_as_published: true,
        ..options(QoS::AtMostOnce)
    };
    h.subscribe_with(ConnectionId(14), "fan/#", keep_retain, None);
    h.subscribe_with(ConnectionId(15), "fan/#", options(QoS::AtMostOnce), Some(7));

    let mut message = retained(qos0("fan/out", "shared"));
    message.properties.content_type = Some("text/plain".into());
    let outputs = h.publish(A, message);

    let frame = |n| only_frame(&outputs, ConnectionId(n));
    let same_bytes = |a: &Frame, b: &Frame| a.bytes.as_ptr() == b.bytes.as_ptr();
    assert!(
        same_bytes(&frame(10), &frame(11)),
        "3.1.1 copies share bytes"
    );
    assert!(same_bytes(&frame(12), &frame(13)), "5.0 copies share bytes");
    assert!(
        !same_bytes(&frame(10), &frame(12)),
        "each version has its encoding"
    );
    assert!(
        !same_bytes(&frame(12), &frame(14)),
        "the retain flag is in the bytes"
    );
    assert!(
        !same_bytes(&frame(12), &frame(15)),
        "an identifier makes its own copy"
    );

    // What each client reads is what it would have got from a copy of its own.
    for n in [10, 11, 12, 13, 14, 15] {
        let Packet::Publish(publish) = decode_frame(&frame(n)) else {
            panic!("a PUBLISH");
        };
        assert_eq!(publish.payload, "shared".as_bytes());
        assert_eq!(publish.qos, QoS::AtMostOnce);
        assert_eq!(publish.retain, n == 14, "[MQTT-3.3.1-12] [MQTT-3.3.1-13]");
        let expected_type = (n >= 12).then(|| "text/plain".into());
        assert_eq!(publish.properties.content_type, expected_type);
        let identifiers: &[u32] = if n == 15 { &[7] } else { &[] };
        assert_eq!(publish.properties.subscription_identifiers, identifiers);
    }
    assert_eq!(h.broker.stats().publish_sent[0], 6);
}
