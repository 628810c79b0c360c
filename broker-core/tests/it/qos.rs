//! QoS 0, 1 and 2 in both directions: acknowledgements, packet identifiers, the in-flight window,
//! queueing, ordering, redelivery on resume and offline queues.

use crate::common::*;
use broker_core::{BrokerConfig, DropReason};
use mqtt_codec::{Packet, PubAckPacket, QoS, ReasonCode};

// ----- Inbound (client to broker) --------------------------------------------------------------

#[test]
fn mqtt_3_3_4_1_qos0_publish_is_not_acknowledged() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::AtMostOnce);
    let outputs = h.publish(A, qos0("t", "x"));
    assert!(sent_to(&outputs, A).is_empty());
    assert_eq!(payloads(&outputs, B), ["x"]);
    let delivered = &publishes(&outputs, B)[0];
    assert_eq!(delivered.qos, QoS::AtMostOnce);
    assert_eq!(delivered.packet_id, None);
    assert!(!delivered.dup, "[MQTT-4.3.1-1]");
}

#[test]
fn mqtt_4_3_2_4_qos1_publish_is_acknowledged_with_puback() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    let outputs = h.publish(A, qos1("t", "x", 42));
    assert_eq!(acks(&outputs, A, is_puback), [(42, ReasonCode::Success)]);
    assert_eq!(payloads(&outputs, B), ["x"]);
}

#[test]
fn v5_puback_reports_no_matching_subscribers() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let outputs = h.publish(A, qos1("nobody/listens", "x", 1));
    assert_eq!(
        acks(&outputs, A, is_puback),
        [(1, ReasonCode::NoMatchingSubscribers)]
    );
}

#[test]
fn v311_puback_is_always_success() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("publisher"));
    let outputs = h.publish(A, qos1("nobody/listens", "x", 1));
    assert_eq!(acks(&outputs, A, is_puback), [(1, ReasonCode::Success)]);
}

#[test]
fn mqtt_4_3_2_5_after_puback_the_same_packet_id_is_a_new_message() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::AtMostOnce);
    assert_eq!(payloads(&h.publish(A, qos1("t", "one", 5)), B), ["one"]);
    let mut again = qos1("t", "two", 5);
    again.dup = true;
    assert_eq!(payloads(&h.publish(A, again), B), ["two"]);
}

#[test]
fn mqtt_4_3_3_8_qos2_publish_gets_pubrec_and_pubrel_gets_pubcomp() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::ExactlyOnce);
    let outputs = h.publish(A, qos2("t", "x", 9));
    assert_eq!(acks(&outputs, A, is_pubrec), [(9, ReasonCode::Success)]);
    assert_eq!(payloads(&outputs, B), ["x"]);

    let outputs = h.send(A, Packet::PubRel(PubAckPacket::new(9)));
    assert_eq!(
        acks(&outputs, A, is_pubcomp),
        [(9, ReasonCode::Success)],
        "[MQTT-4.3.3-11]"
    );
    assert!(publishes(&outputs, B).is_empty());
}

#[test]
fn mqtt_4_3_3_10_duplicate_qos2_publish_before_pubrel_is_not_delivered_twice() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::ExactlyOnce);
    assert_eq!(payloads(&h.publish(A, qos2("t", "once", 3)), B), ["once"]);

    let mut duplicate = qos2("t", "once", 3);
    duplicate.dup = true;
    let outputs = h.publish(A, duplicate);
    assert_eq!(acks(&outputs, A, is_pubrec), [(3, ReasonCode::Success)]);
    assert!(publishes(&outputs, B).is_empty(), "delivered once only");
    assert_eq!(h.broker.stats().publish_sent, [0, 0, 1]);
}

#[test]
fn mqtt_4_3_3_10_duplicate_qos2_is_recognised_after_a_reconnect() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("publisher", 60));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::ExactlyOnce);
    assert_eq!(payloads(&h.publish(A, qos2("t", "once", 3)), B), ["once"]);
    h.lose(A);

    h.connect_ok(C, v5_persistent("publisher", 60));
    let mut duplicate = qos2("t", "once", 3);
    duplicate.dup = true;
    let outputs = h.publish(C, duplicate);
    assert_eq!(acks(&outputs, C, is_pubrec), [(3, ReasonCode::Success)]);
    assert!(publishes(&outputs, B).is_empty());
    let outputs = h.send(C, Packet::PubRel(PubAckPacket::new(3)));
    assert_eq!(acks(&outputs, C, is_pubcomp), [(3, ReasonCode::Success)]);
}

#[test]
fn mqtt_4_3_3_12_after_pubcomp_the_same_packet_id_is_a_new_message() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::AtMostOnce);
    h.publish(A, qos2("t", "first", 3));
    h.send(A, Packet::PubRel(PubAckPacket::new(3)));
    assert_eq!(
        payloads(&h.publish(A, qos2("t", "second", 3)), B),
        ["second"]
    );
}

#[test]
fn v5_pubrel_for_an_unknown_packet_id_gets_pubcomp_0x92() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let outputs = h.send(A, Packet::PubRel(PubAckPacket::new(77)));
    assert_eq!(
        acks(&outputs, A, is_pubcomp),
        [(77, ReasonCode::PacketIdentifierNotFound)]
    );
    assert!(!closed(&outputs, A));
}

#[test]
fn mqtt_3_3_4_7_receive_maximum_exceeded_disconnects_with_0x93() {
    let mut h = Harness::with_config(BrokerConfig {
        receive_maximum: 2,
        ..quiet_config()
    });
    let connack = h.connect_ok(A, v5("publisher"));
    assert_eq!(connack.properties.receive_maximum, Some(2));
    h.publish(A, qos2("t", "1", 1));
    let outputs = h.publish(A, qos2("t", "2", 2));
    assert!(!closed(&outputs, A));
    let outputs = h.publish(A, qos2("t", "3", 3));
    assert_disconnected(&outputs, A, ReasonCode::ReceiveMaximumExceeded);
}

#[test]
fn receive_maximum_counts_only_qos2_messages_awaiting_pubrel() {
    let mut h = Harness::with_config(BrokerConfig {
        receive_maximum: 1,
        ..quiet_config()
    });
    h.connect_ok(A, v5("publisher"));
    for id in 1..=5 {
        h.publish(A, qos2("t", "x", id));
        let outputs = h.send(A, Packet::PubRel(PubAckPacket::new(id)));
        assert!(!closed(&outputs, A));
        // QoS 1 is acknowledged at once and never accumulates.
        assert!(!closed(&h.publish(A, qos1("t", "y", 100 + id)), A));
    }
}

// ----- Outbound (broker to client) ------------------------------------------------------------

#[test]
fn mqtt_4_3_2_1_outbound_qos1_messages_get_distinct_packet_ids() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    let mut ids = Vec::new();
    for n in 0..5 {
        let delivered = publishes(&h.publish(A, qos1("t", "x", 1 + n)), B);
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].qos, QoS::AtLeastOnce);
        assert!(!delivered[0].dup, "[MQTT-4.3.2-2]");
        ids.push(delivered[0].packet_id.expect("QoS 1 has an id"));
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 5);
    assert!(!ids.contains(&0));
}

#[test]
fn mqtt_2_2_1_3_packet_ids_in_flight_are_never_reused() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5("subscriber");
    subscriber.properties.receive_maximum = Some(2);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::AtLeastOnce);
    // The first message stays unacknowledged while the identifier space wraps around.
    let held = publishes(&h.publish(A, qos1("t", "held", 1)), B)[0]
        .packet_id
        .unwrap();
    for n in 0..70_000u32 {
        let outputs = h.publish(A, qos1("t", "x", 2));
        let delivered = publishes(&outputs, B);
        assert_eq!(delivered.len(), 1, "message {n}");
        let id = delivered[0].packet_id.unwrap();
        assert_ne!(id, 0);
        assert_ne!(
            id, held,
            "identifier of a message in flight reused at message {n}"
        );
        h.puback(B, id);
    }
}

#[test]
fn mqtt_4_3_2_3_puback_frees_the_window() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5("subscriber");
    subscriber.properties.receive_maximum = Some(1);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::AtLeastOnce);

    let first = publishes(&h.publish(A, qos1("t", "1", 1)), B);
    assert_eq!(first.len(), 1);
    assert!(
        publishes(&h.publish(A, qos1("t", "2", 2)), B).is_empty(),
        "window full"
    );
    // A PUBACK for an identifier not in flight changes nothing.
    assert!(publishes(&h.puback(B, 999), B).is_empty());
    let next = publishes(&h.puback(B, first[0].packet_id.unwrap()), B);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].payload, "2");
}

#[test]
fn mqtt_4_3_3_4_outbound_qos2_pubrec_pubrel_pubcomp() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5("subscriber");
    subscriber.properties.receive_maximum = Some(1);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::ExactlyOnce);

    let sent = publishes(&h.publish(A, qos2("t", "1", 1)), B);
    let id = sent[0].packet_id.unwrap();
    assert_eq!(sent[0].qos, QoS::ExactlyOnce);
    assert!(!sent[0].dup, "[MQTT-4.3.3-2]");
    assert!(publishes(&h.publish(A, qos2("t", "2", 2)), B).is_empty());

    let outputs = h.send(B, Packet::PubRec(PubAckPacket::new(id)));
    assert_eq!(acks(&outputs, B, is_pubrel), [(id, ReasonCode::Success)]);
    assert!(
        publishes(&outputs, B).is_empty(),
        "the window stays taken until PUBCOMP [MQTT-4.3.3-5]"
    );
    let outputs = h.send(B, Packet::PubComp(PubAckPacket::new(id)));
    assert_eq!(payloads(&outputs, B), ["2"]);
}

#[test]
fn v5_pubrec_for_an_unknown_packet_id_gets_pubrel_0x92() {
    let mut h = Harness::new();
    h.connect_ok(B, v5("subscriber"));
    let outputs = h.send(B, Packet::PubRec(PubAckPacket::new(12)));
    assert_eq!(
        acks(&outputs, B, is_pubrel),
        [(12, ReasonCode::PacketIdentifierNotFound)]
    );
}

#[test]
fn mqtt_4_4_0_2_pubrec_with_an_error_ends_the_exchange() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5_persistent("subscriber", 60);
    subscriber.properties.receive_maximum = Some(1);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::ExactlyOnce);
    let id = publishes(&h.publish(A, qos2("t", "refused", 1)), B)[0]
        .packet_id
        .unwrap();
    h.publish(A, qos2("t", "next", 2));

    let mut refusal = PubAckPacket::new(id);
    refusal.reason_code = ReasonCode::QuotaExceeded;
    let outputs = h.send(B, Packet::PubRec(refusal));
    assert!(
        acks(&outputs, B, is_pubrel).is_empty(),
        "no PUBREL [MQTT-4.3.3-4]"
    );
    assert_eq!(
        payloads(&outputs, B),
        ["next"],
        "the window slot is free again"
    );

    // Not retransmitted on resume either.
    h.lose(B);
    let outputs = h.connect(C, v5_persistent("subscriber", 60));
    let resent = payloads(&outputs, C);
    assert_eq!(resent, ["next"]);
}

#[test]
fn mqtt_4_3_3_5_a_pubrec_with_an_error_after_the_pubrel_does_not_end_the_exchange() {
    // The first PUBREC accepted the message and the PUBREL went out; the exchange now waits for
    // PUBCOMP, and the message keeps its place in the window [MQTT-4.3.3-5]. A later PUBREC,
    // even one with an error code, is answered with the PUBREL again (found by
    // broker_core_sequences: the message was dropped and the next one sent beyond the window,
    // while its PUBREL was still on its way).
    let (mut h, id) = one_in_flight_one_waiting(QoS::ExactlyOnce);
    let outputs = h.send(B, Packet::PubRec(PubAckPacket::new(id)));
    assert_eq!(acks(&outputs, B, is_pubrel), [(id, ReasonCode::Success)]);

    let mut late = PubAckPacket::new(id);
    late.reason_code = ReasonCode::UnspecifiedError;
    let outputs = h.send(B, Packet::PubRec(late));
    assert_eq!(acks(&outputs, B, is_pubrel), [(id, ReasonCode::Success)]);
    assert!(
        publishes(&outputs, B).is_empty(),
        "the window stays taken until PUBCOMP"
    );
    let outputs = h.send(B, Packet::PubComp(PubAckPacket::new(id)));
    assert_eq!(payloads(&outputs, B), ["2"]);
}

#[test]
fn mqtt_4_3_2_a_pubrec_for_a_qos1_message_does_not_release_it() {
    // A QoS 1 message ends with PUBACK [MQTT-4.3.2-4]; a PUBREC for its identifier is answered
    // as for an unknown one, and the message keeps its place until the PUBACK (found by
    // broker_core_sequences: it was taken for a released QoS 2 message and got PUBRELs).
    let (mut h, id) = one_in_flight_one_waiting(QoS::AtLeastOnce);

    let outputs = h.send(B, Packet::PubRec(PubAckPacket::new(id)));
    assert_eq!(
        acks(&outputs, B, is_pubrel),
        [(id, ReasonCode::PacketIdentifierNotFound)]
    );
    assert!(
        publishes(&outputs, B).is_empty(),
        "the window is still taken"
    );
    let outputs = h.send(B, Packet::PubAck(PubAckPacket::new(id)));
    assert_eq!(payloads(&outputs, B), ["2"]);
}

#[test]
fn mqtt_4_4_0_2_puback_with_an_error_code_still_acknowledges() {
    let (mut h, id) = one_in_flight_one_waiting(QoS::AtLeastOnce);
    let mut refusal = PubAckPacket::new(id);
    refusal.reason_code = ReasonCode::PayloadFormatInvalid;
    assert_eq!(payloads(&h.send(B, Packet::PubAck(refusal)), B), ["2"]);
}

#[test]
fn mqtt_3_8_4_8_delivery_qos_is_the_minimum_of_published_and_granted() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("granted0"));
    h.connect_ok(C, v5("granted1"));
    h.connect_ok(D, v5("granted2"));
    h.subscribe(B, "t", QoS::AtMostOnce);
    h.subscribe(C, "t", QoS::AtLeastOnce);
    h.subscribe(D, "t", QoS::ExactlyOnce);

    let outputs = h.publish(A, qos2("t", "x", 1));
    assert_eq!(publishes(&outputs, B)[0].qos, QoS::AtMostOnce);
    assert_eq!(publishes(&outputs, B)[0].packet_id, None);
    assert_eq!(publishes(&outputs, C)[0].qos, QoS::AtLeastOnce);
    assert_eq!(publishes(&outputs, D)[0].qos, QoS::ExactlyOnce);

    let outputs = h.publish(A, qos1("t", "y", 2));
    assert_eq!(publishes(&outputs, B)[0].qos, QoS::AtMostOnce);
    assert_eq!(publishes(&outputs, C)[0].qos, QoS::AtLeastOnce);
    assert_eq!(publishes(&outputs, D)[0].qos, QoS::AtLeastOnce);
}

#[test]
fn mqtt_3_3_1_3_incoming_dup_flag_is_not_propagated() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    let mut publish = qos1("t", "x", 1);
    publish.dup = true;
    let delivered = publishes(&h.publish(A, publish), B);
    assert!(!delivered[0].dup);
    assert_ne!(delivered[0].packet_id, None);
}

#[test]
fn mqtt_4_6_0_6_messages_are_delivered_in_publication_order() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5("subscriber");
    subscriber.properties.receive_maximum = Some(2);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::AtLeastOnce);

    let mut received = Vec::new();
    let mut in_flight = Vec::new();
    for n in 0..10 {
        let outputs = h.publish(A, qos1("t", &n.to_string(), 1));
        for publish in publishes(&outputs, B) {
            received.push(String::from_utf8(publish.payload.to_vec()).unwrap());
            in_flight.push(publish.packet_id.unwrap());
        }
        assert!(
            in_flight.len() <= 2,
            "never more than Receive Maximum [MQTT-3.3.4-9]"
        );
        // Acknowledge every other step, so messages queue up behind the window.
        if n % 2 == 1 {
            let id = in_flight.remove(0);
            for publish in publishes(&h.puback(B, id), B) {
                received.push(String::from_utf8(publish.payload.to_vec()).unwrap());
                in_flight.push(publish.packet_id.unwrap());
            }
        }
    }
    while !in_flight.is_empty() {
        let id = in_flight.remove(0);
        for publish in publishes(&h.puback(B, id), B) {
            received.push(String::from_utf8(publish.payload.to_vec()).unwrap());
            in_flight.push(publish.packet_id.unwrap());
        }
    }
    let expected: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    assert_eq!(received, expected);
}

#[test]
fn mqtt_3_3_4_9_window_is_the_client_receive_maximum_and_the_rest_is_queued() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5("subscriber");
    subscriber.properties.receive_maximum = Some(3);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::AtLeastOnce);

    let mut sent = Vec::new();
    for n in 0..5 {
        sent.extend(publishes(&h.publish(A, qos1("t", &n.to_string(), 1)), B));
    }
    assert_eq!(sent.len(), 3);
    assert_eq!(
        h.broker.stats().queued_messages,
        5,
        "3 in flight + 2 queued"
    );
    assert_eq!(h.broker.clients()[1].queued, 5);

    // QoS 0 is not held back by a full window [MQTT-3.3.4-10].
    assert_eq!(payloads(&h.publish(A, qos0("t", "fast")), B), ["fast"]);
}

#[test]
fn max_inflight_bounds_the_window_whatever_the_client_allows() {
    let mut h = Harness::with_config(BrokerConfig {
        max_inflight: 2,
        ..quiet_config()
    });
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v311("subscriber"));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    let mut sent = 0;
    for n in 0..4 {
        sent += publishes(&h.publish(A, qos1("t", &n.to_string(), 1)), B).len();
    }
    assert_eq!(sent, 2);
}

#[test]
fn mqtt_4_4_0_1_unacknowledged_messages_are_redelivered_with_dup_on_resume() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5_persistent("subscriber", 300));
    h.subscribe(B, "q1", QoS::AtLeastOnce);
    h.subscribe(B, "q2", QoS::ExactlyOnce);

    let first = publishes(&h.publish(A, qos1("q1", "a", 1)), B)[0].clone();
    let second = publishes(&h.publish(A, qos2("q2", "b", 2)), B)[0].clone();
    let third = publishes(&h.publish(A, qos2("q2", "c", 3)), B)[0].clone();
    // The second is released: only PUBCOMP is awaited for it.
    let outputs = h.send(
        B,
        Packet::PubRec(PubAckPacket::new(second.packet_id.unwrap())),
    );
    assert_eq!(acks(&outputs, B, is_pubrel).len(), 1);
    h.lose(B);

    let outputs = h.connect(C, v5_persistent("subscriber", 300));
    assert!(connack(&outputs, C).session_present);
    let resent = sent_to(&outputs, C);
    // CONNACK, then the unacknowledged packets in their original order with their original
    // identifiers: the PUBLISH of the first, the PUBREL of the second, the PUBLISH of the third.
    assert_eq!(resent.len(), 4, "{resent:#?}");
    assert!(matches!(resent[0], Packet::ConnAck(_)));
    match &resent[1] {
        Packet::Publish(p) => {
            assert!(p.dup, "[MQTT-3.3.1-1]");
            assert_eq!(p.packet_id, first.packet_id);
            assert_eq!(p.payload, "a");
            assert_eq!(p.qos, QoS::AtLeastOnce);
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    assert_eq!(
        resent[2],
        Packet::PubRel(PubAckPacket::new(second.packet_id.unwrap())),
        "PUBREL, not the PUBLISH again [MQTT-4.3.3-6]"
    );
    match &resent[3] {
        Packet::Publish(p) => {
            assert!(p.dup);
            assert_eq!(p.packet_id, third.packet_id);
            assert_eq!(p.payload, "c");
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }

    // The flows complete on the new connection.
    h.puback(C, first.packet_id.unwrap());
    h.send(
        C,
        Packet::PubComp(PubAckPacket::new(second.packet_id.unwrap())),
    );
    h.send(
        C,
        Packet::PubRec(PubAckPacket::new(third.packet_id.unwrap())),
    );
    h.send(
        C,
        Packet::PubComp(PubAckPacket::new(third.packet_id.unwrap())),
    );
    assert_eq!(h.broker.stats().queued_messages, 0);
}

#[test]
fn mqtt_4_4_0_1_v311_unacknowledged_messages_are_redelivered_on_resume() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("publisher"));
    h.connect_ok(B, v311_persistent("subscriber"));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    let sent = publishes(&h.publish(A, qos1("t", "a", 1)), B)[0].clone();
    h.lose(B);
    let outputs = h.connect(C, v311_persistent("subscriber"));
    let resent = publishes(&outputs, C);
    assert_eq!(resent.len(), 1);
    assert!(resent[0].dup);
    assert_eq!(resent[0].packet_id, sent.packet_id);
}

#[test]
fn resume_resends_in_flight_messages_then_drains_the_queue_in_order() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5_persistent("subscriber", 300);
    subscriber.properties.receive_maximum = Some(2);
    h.connect_ok(B, subscriber.clone());
    h.subscribe(B, "t", QoS::AtLeastOnce);
    for n in 0..4 {
        h.publish(A, qos1("t", &n.to_string(), 1));
    }
    h.lose(B);
    for n in 4..6 {
        h.publish(A, qos1("t", &n.to_string(), 1));
    }

    let outputs = h.connect(C, subscriber);
    let resent = publishes(&outputs, C);
    let texts: Vec<&str> = resent
        .iter()
        .map(|p| std::str::from_utf8(&p.payload).unwrap())
        .collect();
    assert_eq!(texts, ["0", "1"], "the window holds two");
    assert!(resent.iter().all(|p| p.dup));

    let mut received = texts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut pending: Vec<u16> = resent.iter().map(|p| p.packet_id.unwrap()).collect();
    while let Some(id) = pending.first().copied() {
        pending.remove(0);
        for publish in publishes(&h.puback(C, id), C) {
            assert!(!publish.dup, "queued messages are sent for the first time");
            received.push(String::from_utf8(publish.payload.to_vec()).unwrap());
            pending.push(publish.packet_id.unwrap());
        }
    }
    assert_eq!(received, ["0", "1", "2", "3", "4", "5"]);
}

#[test]
fn mqtt_4_5_0_1_offline_persistent_session_queues_qos1_and_qos2_but_not_qos0() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5_persistent("subscriber", 300));
    h.subscribe(B, "t", QoS::ExactlyOnce);
    h.disconnect(B);

    h.publish(A, qos0("t", "zero"));
    h.publish(A, qos1("t", "one", 1));
    h.publish(A, qos2("t", "two", 2));
    let stats = h.broker.stats();
    assert_eq!(stats.dropped_for(DropReason::Offline), 1);
    assert_eq!(stats.queued_messages, 2);

    let outputs = h.connect(C, v5_persistent("subscriber", 300));
    let delivered = publishes(&outputs, C);
    assert_eq!(payloads(&outputs, C), ["one", "two"]);
    assert_eq!(delivered[0].qos, QoS::AtLeastOnce);
    assert_eq!(delivered[1].qos, QoS::ExactlyOnce);
    assert!(delivered.iter().all(|p| !p.dup));
}

#[test]
fn mqtt_4_5_0_1_v311_offline_session_queues_messages() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("publisher"));
    h.connect_ok(B, v311_persistent("subscriber"));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.lose(B);
    h.publish(A, qos1("t", "while away", 1));
    let outputs = h.connect(C, v311_persistent("subscriber"));
    assert_eq!(payloads(&outputs, C), ["while away"]);
}

#[test]
fn offline_queue_is_bounded_by_message_count_and_drops_are_counted() {
    let mut h = Harness::with_config(BrokerConfig {
        max_queued_messages: 2,
        ..quiet_config()
    });
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5_persistent("subscriber", 300));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.disconnect(B);
    for n in 0..5 {
        h.publish(A, qos1("t", &n.to_string(), 1));
    }
    let stats = h.broker.stats();
    assert_eq!(stats.dropped_for(DropReason::QueueFull), 3);
    assert_eq!(stats.queued_messages, 2);
    let outputs = h.connect(C, v5_persistent("subscriber", 300));
    assert_eq!(payloads(&outputs, C), ["0", "1"], "the oldest are kept");
}

#[test]
fn queue_is_bounded_by_bytes() {
    let mut h = Harness::with_config(BrokerConfig {
        max_queued_bytes: 10,
        ..quiet_config()
    });
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5_persistent("subscriber", 300));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.disconnect(B);
    h.publish(A, qos1("t", "123456", 1));
    h.publish(A, qos1("t", "7890", 2));
    h.publish(A, qos1("t", "x", 3));
    assert_eq!(h.broker.stats().dropped_for(DropReason::QueueFull), 1);
    let outputs = h.connect(C, v5_persistent("subscriber", 300));
    assert_eq!(payloads(&outputs, C), ["123456", "7890"]);
}

#[test]
fn online_queue_behind_a_full_window_is_bounded_too() {
    let mut h = Harness::with_config(BrokerConfig {
        max_queued_messages: 1,
        ..quiet_config()
    });
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5("subscriber");
    subscriber.properties.receive_maximum = Some(1);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::AtLeastOnce);
    let first = publishes(&h.publish(A, qos1("t", "in flight", 1)), B);
    h.publish(A, qos1("t", "queued", 2));
    h.publish(A, qos1("t", "dropped", 3));
    assert_eq!(h.broker.stats().dropped_for(DropReason::QueueFull), 1);
    let outputs = h.puback(B, first[0].packet_id.unwrap());
    assert_eq!(payloads(&outputs, B), ["queued"]);
    // A slow consumer does not hold up others.
    h.connect_ok(C, v5("other"));
    h.subscribe(C, "t", QoS::AtLeastOnce);
    assert_eq!(
        payloads(&h.publish(A, qos1("t", "still flowing", 4)), C),
        ["still flowing"]
    );
}

#[test]
fn publish_counters_move() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("subscriber"));
    h.subscribe(B, "t", QoS::ExactlyOnce);
    h.publish(A, qos0("t", "abc"));
    h.publish(A, qos1("t", "de", 1));
    h.publish(A, qos2("t", "f", 2));
    let stats = h.broker.stats();
    assert_eq!(stats.publish_received, [1, 1, 1]);
    assert_eq!(stats.publish_sent, [1, 1, 1]);
    assert_eq!(stats.publish_bytes_received, [3, 2, 1]);
    assert_eq!(stats.publish_bytes_sent, [3, 2, 1]);
}

#[test]
fn v311_qos2_flows_in_both_directions() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("publisher"));
    h.connect_ok(B, v311("subscriber"));
    h.subscribe(B, "t", QoS::ExactlyOnce);
    let outputs = h.publish(A, qos2("t", "x", 5));
    assert_eq!(acks(&outputs, A, is_pubrec), [(5, ReasonCode::Success)]);
    let id = publishes(&outputs, B)[0].packet_id.unwrap();
    let outputs = h.send(A, Packet::PubRel(PubAckPacket::new(5)));
    assert_eq!(acks(&outputs, A, is_pubcomp), [(5, ReasonCode::Success)]);
    // 3.1.1 has no reason codes: an unknown PUBREL is still completed plainly.
    let outputs = h.send(A, Packet::PubRel(PubAckPacket::new(6)));
    assert_eq!(acks(&outputs, A, is_pubcomp), [(6, ReasonCode::Success)]);

    let outputs = h.send(B, Packet::PubRec(PubAckPacket::new(id)));
    assert_eq!(acks(&outputs, B, is_pubrel), [(id, ReasonCode::Success)]);
    h.send(B, Packet::PubComp(PubAckPacket::new(id)));
    assert_eq!(h.broker.stats().queued_messages, 0);
}

#[test]
fn mqtt_3_3_4_10_a_full_window_does_not_hold_back_other_packets() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5("subscriber");
    subscriber.properties.receive_maximum = Some(1);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.publish(A, qos1("t", "1", 1));
    h.publish(A, qos1("t", "2", 2));
    assert_eq!(sent_to(&h.send(B, Packet::PingReq), B), [Packet::PingResp]);
    let outputs = h.send(
        B,
        Packet::Subscribe(subscribe_packet(
            9,
            &[("u", options(QoS::AtLeastOnce))],
            None,
        )),
    );
    assert_eq!(suback(&outputs, B).packet_id, 9);
}

#[test]
fn mqtt_3_2_0_1_connack_comes_before_any_other_packet() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5_persistent("subscriber", 60));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.lose(B);
    h.publish(A, qos1("t", "waiting", 1));
    let outputs = h.connect(C, v5_persistent("subscriber", 60));
    let packets = sent_to(&outputs, C);
    assert!(matches!(packets[0], Packet::ConnAck(_)), "{packets:#?}");
    assert_eq!(packets.len(), 2);
}

#[test]
fn mqtt_4_8_2_6_shared_message_refused_by_its_member_is_not_sent_to_another() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5("w1"));
    h.connect_ok(C, v5("w2"));
    h.subscribe(B, "$share/g/t", QoS::AtLeastOnce);
    h.subscribe(C, "$share/g/t", QoS::AtLeastOnce);
    let outputs = h.publish(A, qos1("t", "job", 1));
    let (member, delivered) = if publishes(&outputs, B).is_empty() {
        (C, publishes(&outputs, C))
    } else {
        (B, publishes(&outputs, B))
    };
    let mut refusal = PubAckPacket::new(delivered[0].packet_id.unwrap());
    refusal.reason_code = ReasonCode::ImplementationSpecificError;
    let outputs = h.send(member, Packet::PubAck(refusal));
    assert!(publishes(&outputs, B).is_empty());
    assert!(publishes(&outputs, C).is_empty());
    assert_eq!(h.broker.stats().queued_messages, 0);
}

/// Found by the `broker_core_sequences` fuzz target: a client that came back with a smaller
/// Receive Maximum got every message of its earlier window again at once. Now the window is
/// sent again as far as the new Receive Maximum allows, the rest (with DUP and their original
/// identifiers, PUBREL for a released QoS 2 message) as acknowledgements make room, and only
/// then the queue.
#[test]
fn mqtt_3_3_4_9_resending_on_resume_stays_within_the_new_receive_maximum() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5_persistent("subscriber", 600);
    subscriber.properties.receive_maximum = Some(3);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::ExactlyOnce);
    let mut ids = Vec::new();
    for (n, payload) in ["1", "2", "3"].iter().enumerate() {
        let sent = publishes(&h.publish(A, qos2("t", payload, n as u16 + 1)), B);
        ids.push(sent[0].packet_id.unwrap());
    }
    // The second is received: PUBREL is what it is owed from now on.
    let pubrel = acks(
        &h.send(B, Packet::PubRec(PubAckPacket::new(ids[1]))),
        B,
        is_pubrel,
    );
    assert_eq!(pubrel, vec![(ids[1], ReasonCode::Success)]);
    h.lose(B);
    h.publish(A, qos2("t", "4", 4));

    let mut again = v5_persistent("subscriber", 600);
    again.clean_start = false;
    again.properties.receive_maximum = Some(1);
    let outputs = h.connect(C, again);
    let resent = publishes(&outputs, C);
    assert_eq!(resent.len(), 1, "one in flight at a time: {outputs:#?}");
    assert!(resent[0].dup);
    assert_eq!(
        (resent[0].packet_id, &resent[0].payload[..]),
        (Some(ids[0]), &b"1"[..])
    );

    // Completing it makes room for the next owed one: the released second (PUBREL).
    let outputs = h.send(C, Packet::PubRec(PubAckPacket::new(ids[0])));
    assert_eq!(
        acks(&outputs, C, is_pubrel),
        vec![(ids[0], ReasonCode::Success)]
    );
    let outputs = h.send(C, Packet::PubComp(PubAckPacket::new(ids[0])));
    assert!(publishes(&outputs, C).is_empty(), "{outputs:#?}");
    assert_eq!(
        acks(&outputs, C, is_pubrel),
        vec![(ids[1], ReasonCode::Success)]
    );
    // Then the third, resent, and only then the queued fourth, new.
    let outputs = h.send(C, Packet::PubComp(PubAckPacket::new(ids[1])));
    let third = publishes(&outputs, C);
    assert_eq!(third.len(), 1, "{outputs:#?}");
    assert!(third[0].dup);
    assert_eq!(
        (third[0].packet_id, &third[0].payload[..]),
        (Some(ids[2]), &b"3"[..])
    );
    h.send(C, Packet::PubRec(PubAckPacket::new(ids[2])));
    let outputs = h.send(C, Packet::PubComp(PubAckPacket::new(ids[2])));
    let fourth = publishes(&outputs, C);
    assert_eq!(fourth.len(), 1, "{outputs:#?}");
    assert!(!fourth[0].dup);
    assert_eq!(fourth[0].payload, "4");
}

/// A publisher A and a 5.0 subscriber B with Receive Maximum 1, subscribed to `t` at `qos`;
/// message "1" is in flight to B (its packet identifier is returned) and "2" waits behind it.
fn one_in_flight_one_waiting(qos: QoS) -> (Harness, u16) {
    let mut h = Harness::new();
    h.connect_ok(A, v5("publisher"));
    let mut subscriber = v5("subscriber");
    subscriber.properties.receive_maximum = Some(1);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", qos);
    let publish = |payload: &str, packet_id| match qos {
        QoS::ExactlyOnce => qos2("t", payload, packet_id),
        _ => qos1("t", payload, packet_id),
    };
    let id = publishes(&h.publish(A, publish("1", 1)), B)[0]
        .packet_id
        .unwrap();
    h.publish(A, publish("2", 2));
    (h, id)
}
