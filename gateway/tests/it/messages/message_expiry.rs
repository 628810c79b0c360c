//! 5.0 Message Expiry Interval: counted down while a message waits, on resend too, and an
//! expired message (retained ones included) is not delivered.

use crate::common::{QUIET, TestClient, TestGateway, WAIT, connect_packet, publish_packet};
use mqtt_codec::{ProtocolVersion, QoS};
use std::time::Duration;

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
