//! 5.0 flow control: Receive Maximum in both directions.

use crate::common::{QUIET, TestClient, TestGateway, WAIT, connect_packet, publish_packet};
use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode};

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
