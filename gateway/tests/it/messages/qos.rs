//! QoS 1 and 2 flows in both directions, redelivery with DUP when a session resumes, in-order
//! delivery, packets that arrive in pieces, and delivery stopping at UNSUBSCRIBE.

use crate::common::{QUIET, TestClient, TestGateway, WAIT, connect_packet, publish_packet};
use mqtt_codec::{
    ByteStr, Packet, Properties, ProtocolVersion, PubAckPacket, QoS, ReasonCode, UnsubscribePacket,
};
use std::time::Duration;

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
