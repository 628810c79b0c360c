//! Loopback tests of message delivery: retained messages, QoS 1 and 2 flows, redelivery,
//! ordering, overlapping and shared subscriptions, the 5.0 subscription options and PUBLISH
//! properties, flow control, and `$` topics. Each test is named after the normative statement it
//! checks (OASIS MQTT 3.1.1 and 5.0 numbering; the doc comment says which).

mod common;

use bytes::Bytes;
use common::{QUIET, TestClient, TestGateway, WAIT, connect_packet, options, publish_packet};
use mqtt_codec::{
    ByteStr, Packet, Properties, ProtocolVersion, PubAckPacket, QoS, ReasonCode, RetainHandling,
    SubscribePacket, Subscription, SubscriptionOptions, UnsubscribePacket,
};
use std::collections::HashMap;
use std::time::Duration;

fn subscription(filter: &str, options: SubscriptionOptions) -> Subscription {
    Subscription {
        filter: ByteStr::from(filter),
        options,
    }
}

fn with_identifier(identifier: u32) -> Properties {
    Properties {
        subscription_identifiers: vec![identifier],
        ..Properties::default()
    }
}

// ----- Retained messages --------------------------------------------------------------------

/// 5.0 [MQTT-3.3.1-5] (3.1.1 [MQTT-3.3.1-5] [MQTT-3.3.1-6]): a retained PUBLISH is stored and
/// replaces the topic's previous retained message; new subscribers get the latest one.
#[tokio::test]
async fn mqtt_3_3_1_5_retained_message_stored_and_replaced() {
    let gateway = TestGateway::start().await;
    let mut publisher = TestClient::v311(gateway.addr, "retainer").await;
    publisher
        .publish_retained("state/lamp", "on", QoS::AtLeastOnce)
        .await;
    publisher
        .publish_retained("state/door", "open", QoS::AtMostOnce)
        .await;
    publisher.ping().await;

    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut subscriber = TestClient::connect(gateway.addr, version, "late").await;
        subscriber.subscribe("state/lamp", QoS::AtLeastOnce).await;
        let message = subscriber.expect_message().await;
        assert_eq!(
            (message.topic.as_str(), &message.payload[..]),
            ("state/lamp", &b"on"[..])
        );
        assert!(message.retain);
        assert_eq!(message.qos, QoS::AtLeastOnce);
        subscriber.expect_silence(QUIET).await;
        subscriber.disconnect().await;
    }

    publisher
        .publish_retained("state/lamp", "off", QoS::AtLeastOnce)
        .await;
    let mut subscriber = TestClient::v5(gateway.addr, "later").await;
    subscriber.subscribe("state/#", QoS::AtLeastOnce).await;
    let mut seen: Vec<(String, Bytes)> = Vec::new();
    for _ in 0..2 {
        let message = subscriber.expect_message().await;
        assert!(message.retain);
        seen.push((message.topic.to_string(), message.payload));
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("state/door".to_string(), Bytes::from_static(b"open")),
            ("state/lamp".to_string(), Bytes::from_static(b"off")),
        ]
    );
    subscriber.expect_silence(QUIET).await;
    subscriber.disconnect().await;
    publisher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.3.1-6] [MQTT-3.3.1-7] (3.1.1 [MQTT-3.3.1-10] [MQTT-3.3.1-11]): a retained
/// PUBLISH with an empty payload is delivered as normal, clears the topic's retained message,
/// and is not stored itself. A non-retained PUBLISH leaves it alone [MQTT-3.3.1-8].
#[tokio::test]
async fn mqtt_3_3_1_6_empty_retained_payload_clears_topic() {
    let gateway = TestGateway::start().await;
    let mut publisher = TestClient::v5(gateway.addr, "clearer").await;
    publisher
        .publish_retained("clear/me", "kept", QoS::AtLeastOnce)
        .await;
    publisher
        .publish("clear/me", "not retained", QoS::AtLeastOnce)
        .await;

    let mut subscriber = TestClient::v311(gateway.addr, "witness").await;
    subscriber.subscribe("clear/me", QoS::AtLeastOnce).await;
    let message = subscriber.expect_message().await;
    assert_eq!(
        message.payload, "kept",
        "a non-retained PUBLISH did not replace it"
    );

    publisher
        .publish_retained("clear/me", "", QoS::AtLeastOnce)
        .await;
    let cleared = subscriber.expect_message().await;
    assert!(cleared.payload.is_empty(), "the empty message is delivered");
    assert!(!cleared.retain, "to an established subscription");

    let mut late = TestClient::v5(gateway.addr, "late").await;
    late.subscribe("clear/#", QoS::AtLeastOnce).await;
    late.expect_silence(QUIET).await;
    late.disconnect().await;
    subscriber.disconnect().await;
    publisher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 3.1.1 [MQTT-3.3.1-8] [MQTT-3.3.1-9] (5.0 [MQTT-3.3.1-12]): the RETAIN flag is 1 on a retained
/// message sent because of a new subscription, and 0 on one forwarded to an established
/// subscription.
#[tokio::test]
async fn mqtt_3_3_1_8_retain_flag_only_for_new_subscriptions() {
    let gateway = TestGateway::start().await;
    let mut publisher = TestClient::v311(gateway.addr, "flagger").await;
    let mut established = TestClient::v311(gateway.addr, "established").await;
    established.subscribe("flag/+", QoS::AtMostOnce).await;

    publisher
        .publish_retained("flag/a", "one", QoS::AtMostOnce)
        .await;
    let forwarded = established.expect_message().await;
    assert_eq!(forwarded.payload, "one");
    assert!(
        !forwarded.retain,
        "forwarded to an established subscription"
    );

    let mut newcomer = TestClient::v311(gateway.addr, "newcomer").await;
    newcomer.subscribe("flag/+", QoS::AtMostOnce).await;
    let sent = newcomer.expect_message().await;
    assert_eq!(sent.payload, "one");
    assert!(sent.retain, "sent because of a new subscription");
    newcomer.disconnect().await;
    established.disconnect().await;
    publisher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11]: Retain Handling 0 sends the retained
/// messages at every SUBSCRIBE, 1 only when the subscription is new, 2 never.
#[tokio::test]
async fn mqtt_3_3_1_10_retain_handling() {
    let gateway = TestGateway::start().await;
    let mut publisher = TestClient::v5(gateway.addr, "handler").await;
    publisher
        .publish_retained("handling/x", "retained", QoS::AtMostOnce)
        .await;
    publisher.ping().await;

    let mut subscriber = TestClient::v5(gateway.addr, "handled").await;
    for (handling, first, second) in [
        (RetainHandling::SendAtSubscribe, true, true),
        (RetainHandling::SendIfNew, true, false),
        (RetainHandling::DoNotSend, false, false),
    ] {
        let filter = "handling/#";
        let opts = SubscriptionOptions {
            retain_handling: handling,
            ..options(QoS::AtMostOnce)
        };
        for expected in [first, second] {
            let ack = subscriber
                .subscribe_with(vec![subscription(filter, opts)], Properties::default())
                .await;
            assert_eq!(ack.reason_codes, vec![ReasonCode::GRANTED_QOS_0]);
            if expected {
                let message = subscriber.expect_message().await;
                assert_eq!(message.payload, "retained", "{handling:?}");
                assert!(message.retain);
            }
            subscriber.expect_silence(QUIET).await;
        }
        subscriber.unsubscribe(filter).await;
    }
    subscriber.disconnect().await;
    publisher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.3.1-12] [MQTT-3.3.1-13]: Retain As Published 1 keeps the RETAIN flag of the
/// received PUBLISH on forwarded messages; 0 clears it.
#[tokio::test]
async fn mqtt_3_3_1_13_retain_as_published() {
    let gateway = TestGateway::start().await;
    let mut keeper = TestClient::v5(gateway.addr, "as-published").await;
    let opts = SubscriptionOptions {
        retain_as_published: true,
        ..options(QoS::AtMostOnce)
    };
    keeper
        .subscribe_with(vec![subscription("rap/#", opts)], Properties::default())
        .await;
    let mut clearer = TestClient::v5(gateway.addr, "not-as-published").await;
    clearer.subscribe("rap/#", QoS::AtMostOnce).await;

    let mut publisher = TestClient::v5(gateway.addr, "rap-publisher").await;
    publisher
        .publish_retained("rap/x", "retained", QoS::AtMostOnce)
        .await;
    publisher.publish("rap/x", "plain", QoS::AtMostOnce).await;

    let (first, second) = (keeper.expect_message().await, keeper.expect_message().await);
    assert_eq!(
        (first.payload.as_ref(), first.retain),
        (&b"retained"[..], true)
    );
    assert_eq!(
        (second.payload.as_ref(), second.retain),
        (&b"plain"[..], false)
    );
    let (first, second) = (
        clearer.expect_message().await,
        clearer.expect_message().await,
    );
    assert_eq!(
        (first.payload.as_ref(), first.retain),
        (&b"retained"[..], false)
    );
    assert_eq!(
        (second.payload.as_ref(), second.retain),
        (&b"plain"[..], false)
    );
    for client in [keeper, clearer, publisher] {
        client.disconnect().await;
    }
    gateway.shutdown(WAIT).await;
}

// ----- QoS flows, redelivery and ordering -------------------------------------------------------

/// 5.0 [MQTT-4.3.3-10] (3.1.1 [MQTT-4.3.3-2]): until PUBREL, a resent QoS 2 PUBLISH with the same
/// packet identifier is acknowledged with PUBREC again and not delivered a second time.
#[tokio::test]
async fn mqtt_4_3_3_10_qos2_duplicate_publish_delivered_once() {
    let gateway = TestGateway::start().await;
    for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
        let mut subscriber = TestClient::v5(gateway.addr, "once-subscriber").await;
        subscriber.subscribe("once/#", QoS::ExactlyOnce).await;
        let mut publisher = TestClient::connect(gateway.addr, version, "once-publisher").await;

        let mut publish = publish_packet("once/x", "exactly once", QoS::ExactlyOnce, false);
        publish.packet_id = Some(7);
        publisher.send(Packet::Publish(publish.clone())).await;
        let first = publisher.expect_packet().await;
        assert_eq!(first, Packet::PubRec(PubAckPacket::new(7)));
        publish.dup = true;
        publisher.send(Packet::Publish(publish)).await;
        let second = publisher.expect_packet().await;
        assert_eq!(
            second,
            Packet::PubRec(PubAckPacket::new(7)),
            "[MQTT-4.3.3-10]"
        );
        publisher.send(Packet::PubRel(PubAckPacket::new(7))).await;
        assert_eq!(
            publisher.expect_packet().await,
            Packet::PubComp(PubAckPacket::new(7)),
            "[MQTT-4.3.3-11]"
        );

        let message = subscriber.expect_message().await;
        assert_eq!(message.payload, "exactly once");
        assert_eq!(message.qos, QoS::ExactlyOnce);
        subscriber.expect_silence(QUIET).await;

        // After PUBCOMP the same identifier starts a new message [MQTT-4.3.3-12].
        publisher
            .publish_packet({
                let mut again = publish_packet("once/x", "a new one", QoS::ExactlyOnce, false);
                again.packet_id = Some(7);
                again
            })
            .await;
        assert_eq!(subscriber.expect_message().await.payload, "a new one");
        subscriber.disconnect().await;
        publisher.disconnect().await;
    }
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-4.3.3-1] .. [MQTT-4.3.3-5]: as the QoS 2 sender, the gateway assigns a packet
/// identifier, sends PUBREL with it after the client's PUBREC, and keeps it until PUBCOMP.
#[tokio::test]
async fn mqtt_4_3_3_4_gateway_releases_qos2_after_pubrec() {
    let gateway = TestGateway::start().await;
    let mut subscriber = TestClient::v5(gateway.addr, "qos2-receiver").await;
    subscriber.subscribe("qos2/#", QoS::ExactlyOnce).await;
    let mut publisher = TestClient::v311(gateway.addr, "qos2-sender").await;
    publisher.publish("qos2/x", "two", QoS::ExactlyOnce).await;

    let publish = subscriber.expect_publish().await;
    assert_eq!(publish.qos, QoS::ExactlyOnce);
    assert!(!publish.dup, "[MQTT-4.3.3-2]");
    let id = publish.packet_id.expect("packet identifier");
    assert_ne!(id, 0);
    subscriber.send(Packet::PubRec(PubAckPacket::new(id))).await;
    assert_eq!(
        subscriber.expect_packet().await,
        Packet::PubRel(PubAckPacket::new(id))
    );
    subscriber
        .send(Packet::PubComp(PubAckPacket::new(id)))
        .await;
    subscriber.expect_silence(QUIET).await;
    subscriber.disconnect().await;
    publisher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 and 3.1.1 [MQTT-4.4.0-1] [MQTT-3.3.1-1]: when a client resumes its session, the gateway
/// resends unacknowledged PUBLISH packets with DUP set and their original packet identifiers, in
/// order, and PUBREL for QoS 2 messages the client had already received.
#[tokio::test]
async fn mqtt_4_4_0_1_redelivery_with_dup_on_resume() {
    let gateway = TestGateway::start().await;
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let id = format!("resumer-{version:?}");
        let mut connect = connect_packet(version, &id);
        connect.clean_start = false;
        connect.properties.session_expiry_interval = version.is_v5().then_some(60);
        let (mut subscriber, _) = TestClient::connect_accepted(gateway.addr, connect.clone()).await;
        subscriber.subscribe("resume/#", QoS::ExactlyOnce).await;

        let mut publisher = TestClient::v5(gateway.addr, "resume-publisher").await;
        publisher
            .publish("resume/a", "first", QoS::AtLeastOnce)
            .await;
        publisher
            .publish("resume/b", "second", QoS::ExactlyOnce)
            .await;
        publisher
            .publish("resume/c", "third", QoS::ExactlyOnce)
            .await;

        let first = subscriber.expect_publish().await;
        let second = subscriber.expect_publish().await;
        let third = subscriber.expect_publish().await;
        // The second one gets as far as PUBREC; nothing else is acknowledged.
        let second_id = second.packet_id.expect("QoS 2 identifier");
        subscriber
            .send(Packet::PubRec(PubAckPacket::new(second_id)))
            .await;
        assert_eq!(
            subscriber.expect_packet().await,
            Packet::PubRel(PubAckPacket::new(second_id))
        );
        subscriber.drop_connection();

        let (mut subscriber, connack) = TestClient::connect_accepted(gateway.addr, connect).await;
        assert!(connack.session_present);
        let resent = subscriber.expect_publish().await;
        assert!(resent.dup, "[MQTT-3.3.1-1]");
        assert_eq!(resent.packet_id, first.packet_id);
        assert_eq!(
            (resent.qos, resent.payload.as_ref()),
            (QoS::AtLeastOnce, &b"first"[..])
        );
        assert_eq!(
            subscriber.expect_packet().await,
            Packet::PubRel(PubAckPacket::new(second_id)),
            "PUBREL resent, not the PUBLISH"
        );
        let resent_third = subscriber.expect_publish().await;
        assert!(resent_third.dup);
        assert_eq!(resent_third.packet_id, third.packet_id);
        assert_eq!(resent_third.payload, "third");

        // Completing the flows leaves nothing to resend.
        subscriber.acknowledge(&resent).await;
        subscriber
            .send(Packet::PubComp(PubAckPacket::new(second_id)))
            .await;
        subscriber.acknowledge(&resent_third).await;
        subscriber.expect_silence(QUIET).await;
        subscriber.disconnect().await;

        let mut clean = connect_packet(version, &id);
        clean.clean_start = true;
        let (client, _) = TestClient::connect_accepted(gateway.addr, clean).await;
        client.disconnect().await;
        publisher.disconnect().await;
    }
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-4.6.0-5] [MQTT-4.6.0-6] (3.1.1 [MQTT-4.6.0-5] [MQTT-4.6.0-6]): messages from one
/// client on one topic reach a subscriber in the order they were published, at each QoS, even
/// when a small in-flight window makes the gateway queue them.
#[tokio::test]
async fn mqtt_4_6_0_5_messages_delivered_in_publish_order() {
    let gateway = TestGateway::start_with(|config| config.broker.max_inflight = 3).await;
    let mut subscriber = TestClient::v5(gateway.addr, "orderly").await;
    subscriber.subscribe("order/#", QoS::ExactlyOnce).await;
    let mut publisher = TestClient::v311(gateway.addr, "order-publisher").await;
    const COUNT: usize = 40;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("order/{qos:?}");
        // Publish without waiting for acknowledgements, as a fast client would.
        for index in 0..COUNT {
            let mut publish = publish_packet(&topic, &index.to_string(), qos, false);
            if qos != QoS::AtMostOnce {
                publish.packet_id = Some(publisher.packet_id());
            }
            publisher.send(Packet::Publish(publish)).await;
        }
        for index in 0..COUNT {
            let message = subscriber.expect_message().await;
            assert_eq!(message.topic, topic.as_str());
            assert_eq!(message.qos, qos);
            assert_eq!(message.payload, index.to_string(), "{qos:?} out of order");
        }
        // Drain the publisher's acknowledgements before the next round.
        for _ in 0..COUNT * usize::from(qos != QoS::AtMostOnce) {
            match publisher.expect_packet().await {
                Packet::PubAck(_) => {}
                Packet::PubRec(ack) => {
                    publisher
                        .send(Packet::PubRel(PubAckPacket::new(ack.packet_id)))
                        .await;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if qos == QoS::ExactlyOnce {
            for _ in 0..COUNT {
                assert!(matches!(
                    publisher.expect_packet().await,
                    Packet::PubComp(_)
                ));
            }
        }
    }
    subscriber.expect_silence(QUIET).await;
    subscriber.disconnect().await;
    publisher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// Packets that arrive in pieces, with pauses between the pieces, are all delivered: the TCP
/// reader forgets a socket's readiness after a short read, so each new piece must wake it.
#[tokio::test]
async fn packets_arriving_in_pieces_are_delivered() {
    let gateway = TestGateway::start().await;
    let mut subscriber = TestClient::v5(gateway.addr, "piecewise-reader").await;
    subscriber.subscribe("pieces/#", QoS::AtMostOnce).await;
    let mut publisher = TestClient::v311(gateway.addr, "piecewise-writer").await;
    let mut bytes = bytes::BytesMut::new();
    for index in 0..3 {
        let publish = publish_packet(
            "pieces/t",
            &format!("piece {index}"),
            QoS::AtMostOnce,
            false,
        );
        mqtt_codec::encode(&Packet::Publish(publish), ProtocolVersion::V311, &mut bytes)
            .expect("encodes");
    }
    // Cut mid-header, mid-topic, between packets and mid-payload.
    let cuts = [1, 5, bytes.len() / 3, bytes.len() / 2 + 3, bytes.len()];
    let mut start = 0;
    for end in cuts {
        publisher.send_raw(&bytes[start..end]).await;
        start = end;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    for index in 0..3 {
        let message = subscriber.expect_message().await;
        assert_eq!(message.payload, format!("piece {index}"));
    }
    subscriber.expect_silence(QUIET).await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.10.4-2] [MQTT-3.11.3-1] (3.1.1 [MQTT-3.10.4-2]): after UNSUBSCRIBE the gateway
/// sends no new messages for the filter; the 5.0 UNSUBACK has one reason code per filter, in
/// order (0x11 for a filter with no subscription), and a QoS 1 PUBLISH that reaches nobody is
/// acknowledged with 0x10 (No matching subscribers).
#[tokio::test]
async fn mqtt_3_10_4_2_unsubscribe_stops_delivery() {
    let gateway = TestGateway::start().await;
    let mut subscriber = TestClient::v5(gateway.addr, "quitter").await;
    subscriber.subscribe("quit/#", QoS::AtLeastOnce).await;
    let mut publisher = TestClient::v5(gateway.addr, "quit-publisher").await;
    publisher
        .publish("quit/x", "before", QoS::AtLeastOnce)
        .await;
    assert_eq!(subscriber.expect_message().await.payload, "before");

    subscriber
        .send(Packet::Unsubscribe(UnsubscribePacket {
            packet_id: 42,
            properties: Properties::default(),
            filters: vec![ByteStr::from("quit/#"), ByteStr::from("never/subscribed")],
        }))
        .await;
    match subscriber.expect_packet().await {
        Packet::UnsubAck(ack) => {
            assert_eq!(ack.packet_id, 42);
            assert_eq!(
                ack.reason_codes,
                vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
            );
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    let ack = publisher
        .publish_packet(publish_packet("quit/x", "after", QoS::AtLeastOnce, false))
        .await
        .expect("PUBACK");
    assert_eq!(ack.reason_code, ReasonCode::NoMatchingSubscribers);
    subscriber.expect_silence(QUIET).await;
    subscriber.disconnect().await;
    publisher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

// ----- Overlapping and shared subscriptions, No Local ----------------------------------------

/// 3.1.1 [MQTT-3.3.5-1]: a message matching several subscriptions of one client reaches it once,
/// at the highest QoS among them.
#[tokio::test]
async fn mqtt_3_3_5_1_overlapping_subscriptions_one_copy_at_max_qos() {
    let gateway = TestGateway::start().await;
    let mut subscriber = TestClient::v311(gateway.addr, "overlapper").await;
    subscriber.subscribe("overlap/#", QoS::AtMostOnce).await;
    subscriber.subscribe("overlap/+/x", QoS::ExactlyOnce).await;
    subscriber.subscribe("overlap/a/x", QoS::AtLeastOnce).await;
    let mut publisher = TestClient::v311(gateway.addr, "overlap-publisher").await;
    publisher
        .publish("overlap/a/x", "once", QoS::ExactlyOnce)
        .await;

    let message = subscriber.expect_message().await;
    assert_eq!(message.payload, "once");
    assert_eq!(message.qos, QoS::ExactlyOnce);
    subscriber.expect_silence(QUIET).await;
    subscriber.disconnect().await;
    publisher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.3.4-2] [MQTT-3.3.4-3] [MQTT-3.3.4-4]: the single copy sent for overlapping
/// subscriptions has the highest QoS and carries the Subscription Identifier of every matching
/// subscription that has one.
#[tokio::test]
async fn mqtt_3_3_4_4_overlapping_subscriptions_carry_every_identifier() {
    let gateway = TestGateway::start().await;
    let mut subscriber = TestClient::v5(gateway.addr, "identified").await;
    subscriber
        .subscribe_with(
            vec![subscription("ids/#", options(QoS::AtMostOnce))],
            with_identifier(11),
        )
        .await;
    subscriber
        .subscribe_with(
            vec![subscription("ids/+", options(QoS::AtLeastOnce))],
            with_identifier(22),
        )
        .await;
    subscriber
        .subscribe_with(
            vec![subscription("ids/x", options(QoS::AtMostOnce))],
            Properties::default(),
        )
        .await;
    let mut publisher = TestClient::v5(gateway.addr, "ids-publisher").await;
    publisher.publish("ids/x", "tagged", QoS::AtLeastOnce).await;

    let message = subscriber.expect_message().await;
    assert_eq!(message.qos, QoS::AtLeastOnce);
    let mut identifiers = message.properties.subscription_identifiers.clone();
    identifiers.sort_unstable();
    assert_eq!(identifiers, vec![11, 22]);
    subscriber.expect_silence(QUIET).await;

    publisher
        .publish("ids/y/z", "deeper", QoS::AtLeastOnce)
        .await;
    let message = subscriber.expect_message().await;
    assert_eq!(message.qos, QoS::AtMostOnce);
    assert_eq!(message.properties.subscription_identifiers, vec![11]);
    subscriber.disconnect().await;
    publisher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-4.8.2-3]: each message published to a shared subscription goes to exactly one
/// member of the group, at the member's granted QoS; the gateway takes the members in turn.
#[tokio::test]
async fn mqtt_4_8_2_3_shared_subscription_round_robin() {
    let gateway = TestGateway::start().await;
    let mut first = TestClient::v5(gateway.addr, "worker-1").await;
    first
        .subscribe("$share/workers/jobs/#", QoS::AtLeastOnce)
        .await;
    let mut second = TestClient::v5(gateway.addr, "worker-2").await;
    second
        .subscribe("$share/workers/jobs/#", QoS::AtMostOnce)
        .await;
    // A plain subscription to the same topics still gets everything.
    let mut observer = TestClient::v311(gateway.addr, "observer").await;
    observer.subscribe("jobs/#", QoS::AtLeastOnce).await;

    let mut publisher = TestClient::v5(gateway.addr, "dispatcher").await;
    const JOBS: usize = 6;
    for job in 0..JOBS {
        publisher
            .publish(&format!("jobs/{job}"), &job.to_string(), QoS::AtLeastOnce)
            .await;
    }
    let mut taken: HashMap<String, &str> = HashMap::new();
    for _ in 0..JOBS / 2 {
        let message = first.expect_message().await;
        assert_eq!(message.qos, QoS::AtLeastOnce);
        assert!(taken.insert(message.topic.to_string(), "first").is_none());
        let message = second.expect_message().await;
        assert_eq!(message.qos, QoS::AtMostOnce, "granted QoS respected");
        assert!(taken.insert(message.topic.to_string(), "second").is_none());
    }
    assert_eq!(taken.len(), JOBS, "every job taken exactly once: {taken:?}");
    first.expect_silence(QUIET).await;
    second.expect_silence(Duration::ZERO).await;
    for job in 0..JOBS {
        assert_eq!(observer.expect_message().await.payload, job.to_string());
    }

    // A member that leaves (its clean session ends) gets no more turns.
    first.disconnect().await;
    for job in JOBS..JOBS + 3 {
        publisher
            .publish(&format!("jobs/{job}"), &job.to_string(), QoS::AtLeastOnce)
            .await;
        assert_eq!(second.expect_message().await.payload, job.to_string());
        assert_eq!(observer.expect_message().await.payload, job.to_string());
    }
    for client in [second, observer, publisher] {
        client.disconnect().await;
    }
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.8.3-3]: with No Local, a client's own messages are not sent back to it; others'
/// messages still are.
#[tokio::test]
async fn mqtt_3_8_3_3_no_local() {
    let gateway = TestGateway::start().await;
    let mut talker = TestClient::v5(gateway.addr, "talker").await;
    let opts = SubscriptionOptions {
        no_local: true,
        ..options(QoS::AtLeastOnce)
    };
    talker
        .subscribe_with(vec![subscription("chat/#", opts)], Properties::default())
        .await;
    talker
        .publish("chat/room", "my own words", QoS::AtLeastOnce)
        .await;
    talker.expect_silence(QUIET).await;

    let mut other = TestClient::v5(gateway.addr, "listener").await;
    other
        .publish("chat/room", "someone else", QoS::AtLeastOnce)
        .await;
    assert_eq!(talker.expect_message().await.payload, "someone else");
    talker.disconnect().await;
    other.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.8.3-4]: No Local on a shared subscription is a Protocol Error: DISCONNECT 0x82.
#[tokio::test]
async fn mqtt_3_8_3_4_no_local_on_shared_subscription_is_protocol_error() {
    let gateway = TestGateway::start().await;
    let mut client = TestClient::v5(gateway.addr, "sharer").await;
    let opts = SubscriptionOptions {
        no_local: true,
        ..options(QoS::AtLeastOnce)
    };
    client
        .send(Packet::Subscribe(SubscribePacket {
            packet_id: 99,
            properties: Properties::default(),
            subscriptions: vec![subscription("$share/g/chat/#", opts)],
        }))
        .await;
    client.expect_refused(ReasonCode::ProtocolError).await;
    gateway.shutdown(WAIT).await;
}

// ----- PUBLISH properties and flow control (5.0) ------------------------------------------------

/// 5.0 [MQTT-3.3.2-12]: the gateway accepts Topic Aliases from 1 to the maximum it announced: a
/// PUBLISH with topic and alias sets it, later ones with an empty topic use it.
#[tokio::test]
async fn mqtt_3_3_2_12_client_topic_alias_accepted() {
    let gateway = TestGateway::start_with(|config| config.broker.topic_alias_maximum = 4).await;
    let mut subscriber = TestClient::v311(gateway.addr, "alias-reader").await;
    subscriber.subscribe("alias/#", QoS::AtMostOnce).await;
    let mut publisher = TestClient::v5(gateway.addr, "alias-writer").await;

    let mut publish = publish_packet("alias/long/topic/name", "set", QoS::AtMostOnce, false);
    publish.properties.topic_alias = Some(4);
    publisher.publish_packet(publish).await;
    let mut publish = publish_packet("", "used", QoS::AtLeastOnce, false);
    publish.properties.topic_alias = Some(4);
    let ack = publisher.publish_packet(publish).await.expect("PUBACK");
    assert_eq!(ack.reason_code, ReasonCode::Success);

    for payload in ["set", "used"] {
        let message = subscriber.expect_message().await;
        assert_eq!(message.topic, "alias/long/topic/name");
        assert_eq!(message.payload, payload);
    }

    // Above the announced maximum: DISCONNECT 0x94 (Topic Alias invalid) [MQTT-3.2.2-17].
    let mut publish = publish_packet("alias/x", "too high", QoS::AtMostOnce, false);
    publish.properties.topic_alias = Some(5);
    publisher.send(Packet::Publish(publish)).await;
    publisher
        .expect_refused(ReasonCode::TopicAliasInvalid)
        .await;
    subscriber.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.3.2-7]: Topic Alias mappings do not outlive the network connection: after a
/// reconnect, an alias set on the old connection is unknown, and using it is a Protocol Error.
#[tokio::test]
async fn mqtt_3_3_2_7_topic_alias_not_carried_to_next_connection() {
    let gateway = TestGateway::start().await;
    let mut subscriber = TestClient::v5(gateway.addr, "alias-watcher").await;
    subscriber.subscribe("carried/#", QoS::AtMostOnce).await;
    let mut connect = connect_packet(ProtocolVersion::V5, "alias-forgetter");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(60);
    let (mut publisher, _) = TestClient::connect_accepted(gateway.addr, connect.clone()).await;
    let mut publish = publish_packet("carried/topic", "set", QoS::AtMostOnce, false);
    publish.properties.topic_alias = Some(1);
    publisher.publish_packet(publish).await;
    assert_eq!(subscriber.expect_message().await.payload, "set");
    publisher.disconnect().await;

    let (mut publisher, connack) = TestClient::connect_accepted(gateway.addr, connect).await;
    assert!(
        connack.session_present,
        "the session survives, its aliases do not"
    );
    let mut publish = publish_packet("", "stale alias", QoS::AtMostOnce, false);
    publish.properties.topic_alias = Some(1);
    publisher.send(Packet::Publish(publish)).await;
    publisher.expect_refused(ReasonCode::ProtocolError).await;
    subscriber.expect_silence(QUIET).await;
    subscriber.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.3.2-11] [MQTT-3.1.2-26] [MQTT-3.1.2-27]: towards a client that announced a Topic
/// Alias Maximum, the gateway uses aliases no greater than it (topic and alias the first time,
/// the alias alone after); towards a client that did not, none.
#[tokio::test]
async fn mqtt_3_3_2_11_gateway_topic_alias_within_client_maximum() {
    let gateway = TestGateway::start().await;
    let mut connect = connect_packet(ProtocolVersion::V5, "alias-taker");
    connect.properties.topic_alias_maximum = Some(1);
    let (mut aliased, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    aliased.subscribe("aliased/#", QoS::AtLeastOnce).await;
    let mut plain = TestClient::v5(gateway.addr, "alias-refuser").await;
    plain.subscribe("aliased/#", QoS::AtLeastOnce).await;

    let mut publisher = TestClient::v5(gateway.addr, "alias-source").await;
    for (topic, payload) in [
        ("aliased/one", "1"),
        ("aliased/one", "2"),
        ("aliased/two", "3"),
    ] {
        publisher.publish(topic, payload, QoS::AtLeastOnce).await;
    }

    let first = aliased.expect_message().await;
    assert_eq!(first.topic, "aliased/one");
    assert_eq!(first.properties.topic_alias, Some(1));
    let second = aliased.expect_message().await;
    assert_eq!(second.topic, "", "the alias stands for the topic");
    assert_eq!(second.properties.topic_alias, Some(1));
    assert_eq!(second.payload, "2");
    let third = aliased.expect_message().await;
    assert_eq!(
        third.topic, "aliased/two",
        "no alias left for a second topic"
    );
    assert!(third.properties.topic_alias.is_none_or(|alias| alias <= 1));

    for payload in ["1", "2", "3"] {
        let message = plain.expect_message().await;
        assert_eq!(message.payload, payload);
        assert!(!message.topic.is_empty());
        assert_eq!(message.properties.topic_alias, None, "[MQTT-3.1.2-27]");
    }
    for client in [aliased, plain, publisher] {
        client.disconnect().await;
    }
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.3.2-6]: the Message Expiry Interval a subscriber receives is the published one
/// minus the time the message waited in the gateway.
#[tokio::test]
async fn mqtt_3_3_2_6_message_expiry_interval_counts_down() {
    let gateway = TestGateway::start().await;
    let mut connect = connect_packet(ProtocolVersion::V5, "expiry-reader");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(60);
    let (mut subscriber, _) = TestClient::connect_accepted(gateway.addr, connect.clone()).await;
    subscriber.subscribe("expiry/#", QoS::AtLeastOnce).await;
    subscriber.disconnect().await;

    let mut publisher = TestClient::v5(gateway.addr, "expiry-writer").await;
    let mut publish = publish_packet("expiry/x", "aging", QoS::AtLeastOnce, false);
    publish.properties.message_expiry_interval = Some(10);
    publisher.publish_packet(publish).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let (mut subscriber, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    let message = subscriber.expect_message().await;
    let remaining = message
        .properties
        .message_expiry_interval
        .expect("Message Expiry Interval forwarded");
    assert!(
        (1..=9).contains(&remaining),
        "remaining {remaining} s of 10 after 1.2 s"
    );
    subscriber.disconnect().await;
    publisher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.3.2-6]: a message resent when the session resumes carries the interval that is
/// left, not the one it was published with.
#[tokio::test]
async fn mqtt_3_3_2_6_resent_message_expiry_counts_down() {
    let gateway = TestGateway::start().await;
    let mut connect = connect_packet(ProtocolVersion::V5, "expiry-resumer");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(60);
    let (mut subscriber, _) = TestClient::connect_accepted(gateway.addr, connect.clone()).await;
    subscriber.subscribe("resent/#", QoS::AtLeastOnce).await;

    let mut publisher = TestClient::v5(gateway.addr, "expiry-source").await;
    let mut publish = publish_packet("resent/x", "unacknowledged", QoS::AtLeastOnce, false);
    publish.properties.message_expiry_interval = Some(10);
    publisher.publish_packet(publish).await;
    let first = subscriber.expect_publish().await;
    assert_eq!(first.properties.message_expiry_interval, Some(10));
    subscriber.drop_connection();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let (mut subscriber, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    let resent = subscriber.expect_message().await;
    assert!(resent.dup);
    let remaining = resent
        .properties
        .message_expiry_interval
        .expect("Message Expiry Interval forwarded");
    assert!(
        (1..=9).contains(&remaining),
        "remaining {remaining} s of 10 after 1.2 s"
    );
    subscriber.disconnect().await;
    publisher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.3.2-5]: a message whose expiry interval passed before delivery started is not
/// delivered; a retained one expires too.
#[tokio::test]
async fn mqtt_3_3_2_5_expired_message_not_delivered() {
    let gateway = TestGateway::start().await;
    let mut connect = connect_packet(ProtocolVersion::V5, "expired-reader");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(60);
    let (mut subscriber, _) = TestClient::connect_accepted(gateway.addr, connect.clone()).await;
    subscriber.subscribe("expired/#", QoS::AtLeastOnce).await;
    subscriber.disconnect().await;

    let mut publisher = TestClient::v5(gateway.addr, "expired-writer").await;
    let mut short = publish_packet("expired/x", "stale", QoS::AtLeastOnce, true);
    short.properties.message_expiry_interval = Some(1);
    publisher.publish_packet(short).await;
    let mut long = publish_packet("expired/y", "fresh", QoS::AtLeastOnce, false);
    long.properties.message_expiry_interval = Some(60);
    publisher.publish_packet(long).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let (mut subscriber, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    assert_eq!(subscriber.expect_message().await.payload, "fresh");
    subscriber.expect_silence(QUIET).await;
    let mut late = TestClient::v5(gateway.addr, "expired-late").await;
    late.subscribe("expired/#", QoS::AtLeastOnce).await;
    late.expect_silence(QUIET).await;
    for client in [subscriber, late, publisher] {
        client.disconnect().await;
    }
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.3.4-7]: a client that sends more unacknowledged QoS 2 PUBLISH packets than the
/// gateway's Receive Maximum is disconnected with 0x93 (Receive Maximum exceeded).
#[tokio::test]
async fn mqtt_3_3_4_7_receive_maximum_exceeded_disconnects_0x93() {
    let gateway = TestGateway::start_with(|config| config.broker.receive_maximum = 2).await;
    let (mut client, connack) =
        TestClient::connect_accepted(gateway.addr, connect_packet(ProtocolVersion::V5, "greedy"))
            .await;
    assert_eq!(connack.properties.receive_maximum, Some(2));
    for id in 1..=2 {
        let mut publish = publish_packet("greedy/x", "pending", QoS::ExactlyOnce, false);
        publish.packet_id = Some(id);
        client.send(Packet::Publish(publish)).await;
        assert!(matches!(client.expect_packet().await, Packet::PubRec(_)));
    }
    let mut publish = publish_packet("greedy/x", "one too many", QoS::ExactlyOnce, false);
    publish.packet_id = Some(3);
    client.send(Packet::Publish(publish)).await;
    client
        .expect_refused(ReasonCode::ReceiveMaximumExceeded)
        .await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.3.4-9] [MQTT-4.9.0-2]: the gateway never has more unacknowledged QoS 1 and 2
/// messages towards a client than the client's Receive Maximum; an acknowledgement frees a slot.
#[tokio::test]
async fn mqtt_3_3_4_9_gateway_respects_client_receive_maximum() {
    let gateway = TestGateway::start().await;
    let mut connect = connect_packet(ProtocolVersion::V5, "slow-reader");
    connect.properties.receive_maximum = Some(2);
    let (mut subscriber, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    subscriber.subscribe("window/#", QoS::AtLeastOnce).await;
    let mut publisher = TestClient::v5(gateway.addr, "window-writer").await;
    for index in 0..5 {
        publisher
            .publish("window/x", &index.to_string(), QoS::AtLeastOnce)
            .await;
    }
    let first = subscriber.expect_publish().await;
    let second = subscriber.expect_publish().await;
    subscriber.expect_silence(QUIET).await;
    subscriber.acknowledge(&first).await;
    let third = subscriber.expect_publish().await;
    assert_eq!(third.payload, "2");
    subscriber.expect_silence(QUIET).await;
    subscriber.acknowledge(&second).await;
    subscriber.acknowledge(&third).await;
    assert_eq!(subscriber.expect_message().await.payload, "3");
    assert_eq!(subscriber.expect_message().await.payload, "4");
    subscriber.disconnect().await;
    publisher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

// ----- `$` topics -----------------------------------------------------------------------------

/// 5.0 and 3.1.1 [MQTT-4.7.2-1]: filters starting with a wildcard do not match topics starting
/// with `$`: a `#` or `+/...` subscriber sees no `$SYS` traffic, while `$SYS/#` sees it.
#[tokio::test]
async fn mqtt_4_7_2_1_dollar_topics_not_matched_by_leading_wildcards() {
    let gateway = TestGateway::start_with(|config| {
        config.broker.sys_interval = Some(Duration::from_millis(100));
    })
    .await;
    let mut everything = TestClient::v311(gateway.addr, "everything").await;
    everything.subscribe("#", QoS::AtMostOnce).await;
    everything
        .subscribe("+/broker/uptime", QoS::AtMostOnce)
        .await;
    let mut system = TestClient::v5(gateway.addr, "system").await;
    system.subscribe("$SYS/#", QoS::AtMostOnce).await;
    assert!(system.expect_message().await.topic.starts_with("$SYS/"));

    // Several `$SYS` periods pass without a single message for `#`.
    everything.expect_silence(Duration::from_millis(400)).await;
    let mut publisher = TestClient::v5(gateway.addr, "ordinary").await;
    publisher
        .publish("plain/topic", "seen", QoS::AtMostOnce)
        .await;
    let message = everything.expect_message().await;
    assert_eq!(message.topic, "plain/topic");
    for client in [everything, system, publisher] {
        client.disconnect().await;
    }
    gateway.shutdown(WAIT).await;
}

/// `$SYS/broker/uptime` and `$SYS/broker/clients/connected` (spec 4.7.2, non-normative) reach a
/// `$SYS/#` subscriber, refreshed every `sys_interval`, and are retained for later subscribers.
#[tokio::test]
async fn mqtt_4_7_2_sys_topics_published() {
    let gateway = TestGateway::start_with(|config| {
        config.broker.sys_interval = Some(Duration::from_millis(100));
    })
    .await;
    let mut system = TestClient::v311(gateway.addr, "sys-reader").await;
    system.subscribe("$SYS/#", QoS::AtMostOnce).await;
    let mut uptime = None;
    let mut connected = None;
    while uptime.is_none() || connected.is_none() {
        let message = system.expect_message().await;
        let value = String::from_utf8(message.payload.to_vec()).expect("UTF-8 value");
        // A refresh (not a retained copy sent at subscribe) knows this client is connected.
        match message.topic.as_str() {
            "$SYS/broker/uptime" => uptime = Some(value),
            "$SYS/broker/clients/connected" if !message.retain => connected = Some(value),
            _ => {}
        }
    }
    let uptime = uptime.expect("uptime");
    assert!(uptime.ends_with(" seconds"), "uptime {uptime:?}");
    assert_eq!(
        connected.as_deref(),
        Some("1"),
        "this client is the only one"
    );

    let mut late = TestClient::v5(gateway.addr, "sys-late").await;
    late.subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce)
        .await;
    let retained = late.expect_message().await;
    assert!(retained.retain, "the last value is retained");
    system.disconnect().await;
    late.disconnect().await;
    gateway.shutdown(WAIT).await;
}
