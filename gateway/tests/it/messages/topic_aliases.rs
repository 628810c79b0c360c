//! 5.0 Topic Aliases both ways: the client's within the gateway's maximum and only for one
//! connection, the gateway's within the client's maximum.

use crate::common::{QUIET, TestClient, TestGateway, WAIT, connect_packet, publish_packet};
use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};

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
