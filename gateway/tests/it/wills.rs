//! Loopback tests of will messages: published when a connection is lost, not after a normal
//! DISCONNECT, retained on request, and held back by the 5.0 Will Delay Interval. Each test is
//! named after the normative statement it checks (OASIS MQTT 3.1.1 and 5.0 numbering; the doc
//! comment says which).

use crate::common::{QUIET, TestClient, TestGateway, WAIT, connect_packet, will};
use mqtt_codec::{DisconnectPacket, Packet, ProtocolVersion, QoS, ReasonCode};
use std::time::Duration;
use tokio::time::Instant;

/// 5.0 and 3.1.1 [MQTT-3.1.2-8]: when the network connection is lost without DISCONNECT (here
/// the client's socket is simply dropped), the gateway publishes the will.
#[tokio::test]
async fn mqtt_3_1_2_8_will_published_on_abnormal_loss() {
    let gateway = TestGateway::start().await;
    let mut watcher = TestClient::v5(gateway.addr, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
        let mut connect = connect_packet(version, "doomed");
        let mut last_words = will("wills/doomed", "gone");
        last_words.qos = QoS::AtLeastOnce;
        connect.will = Some(last_words);
        let (mut doomed, _) = TestClient::connect_accepted(gateway.addr, connect).await;
        doomed.ping().await;
        doomed.drop_connection();

        let message = watcher.expect_message().await;
        assert_eq!(message.topic, "wills/doomed", "{version:?}");
        assert_eq!(message.payload, "gone");
        assert_eq!(message.qos, QoS::AtLeastOnce);
        assert!(!message.retain, "[MQTT-3.1.2-14]");
    }
    watcher.expect_silence(QUIET).await;
    watcher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 and 3.1.1 [MQTT-3.14.4-3] [MQTT-3.1.2-10]: a normal DISCONNECT discards the will; 5.0
/// reason 0x04 (Disconnect with Will Message) asks for it to be published.
#[tokio::test]
async fn mqtt_3_14_4_3_will_discarded_on_normal_disconnect() {
    let gateway = TestGateway::start().await;
    let mut watcher = TestClient::v311(gateway.addr, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtMostOnce).await;
    for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
        let mut connect = connect_packet(version, "polite");
        connect.will = Some(will("wills/polite", "unexpected end"));
        let (polite, _) = TestClient::connect_accepted(gateway.addr, connect).await;
        polite.disconnect().await;
        watcher.expect_silence(QUIET).await;
    }

    let mut connect = connect_packet(ProtocolVersion::V5, "dramatic");
    connect.will = Some(will("wills/dramatic", "as requested"));
    let (mut dramatic, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    dramatic
        .send(Packet::Disconnect(DisconnectPacket {
            reason_code: ReasonCode::DisconnectWithWillMessage,
            ..DisconnectPacket::default()
        }))
        .await;
    dramatic.expect_closed().await;
    assert_eq!(watcher.expect_message().await.payload, "as requested");
    watcher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.1.2-15] (3.1.1 [MQTT-3.1.2-17]): a will with Will Retain 1 is published as a
/// retained message, so later subscribers get it too.
#[tokio::test]
async fn mqtt_3_1_2_15_will_retain_publishes_retained_message() {
    let gateway = TestGateway::start().await;
    let mut connect = connect_packet(ProtocolVersion::V311, "sensor");
    let mut status = will("status/sensor", "offline");
    status.retain = true;
    connect.will = Some(status);
    let (mut sensor, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    sensor.ping().await;
    sensor.drop_connection();

    // The will is published when the gateway notices the loss; a round trip by another client
    // does not prove that, so retry the subscription briefly.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut late = TestClient::v5(gateway.addr, "late").await;
        late.subscribe("status/#", QoS::AtMostOnce).await;
        match late.try_packet(QUIET).await {
            Some(Packet::Publish(message)) => {
                assert_eq!(message.payload, "offline");
                assert!(message.retain);
                late.disconnect().await;
                break;
            }
            Some(other) => panic!("expected the retained will, got {other:?}"),
            None if Instant::now() < deadline => late.disconnect().await,
            None => panic!("no retained will within {WAIT:?}"),
        }
    }
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.1.2-8] with a Will Delay Interval: the will waits for the delay after the loss.
#[tokio::test]
async fn mqtt_3_1_2_8_will_published_after_will_delay() {
    let gateway = TestGateway::start().await;
    let mut watcher = TestClient::v5(gateway.addr, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtMostOnce).await;
    let mut connect = connect_packet(ProtocolVersion::V5, "lingering");
    connect.properties.session_expiry_interval = Some(30);
    let mut delayed = will("wills/lingering", "finally");
    delayed.properties.will_delay_interval = Some(1);
    connect.will = Some(delayed);
    let (mut lingering, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    lingering.ping().await;
    lingering.drop_connection();

    // Not before shortly short of the delay, then published (the exact instant is the broker
    // core's, tested with its fake clock).
    watcher.expect_silence(Duration::from_millis(800)).await;
    let message = watcher.expect_message().await;
    assert_eq!(message.payload, "finally");
    assert_eq!(
        message.properties.will_delay_interval, None,
        "the delay is not forwarded"
    );
    watcher.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.1.3-9]: a new connection for the session before the Will Delay Interval passed
/// cancels the will.
#[tokio::test]
async fn mqtt_3_1_3_9_reconnect_within_will_delay_cancels_will() {
    let gateway = TestGateway::start().await;
    let mut watcher = TestClient::v5(gateway.addr, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtMostOnce).await;
    let mut connect = connect_packet(ProtocolVersion::V5, "flaky");
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(30);
    let mut delayed = will("wills/flaky", "should not appear");
    delayed.properties.will_delay_interval = Some(1);
    connect.will = Some(delayed);
    let (mut flaky, _) = TestClient::connect_accepted(gateway.addr, connect.clone()).await;
    // The positive control: the same will, lost at the same time, not cancelled.
    let mut gone = connect.clone();
    gone.client_id = "gone".into();
    let mut its_will = will("wills/gone", "as expected");
    its_will.properties.will_delay_interval = Some(1);
    gone.will = Some(its_will);
    let (mut gone, _) = TestClient::connect_accepted(gateway.addr, gone).await;
    flaky.ping().await;
    gone.ping().await;
    flaky.drop_connection();
    gone.drop_connection();

    let mut back = connect;
    back.will = None;
    let (back, connack) = TestClient::connect_accepted(gateway.addr, back).await;
    assert!(connack.session_present);
    // Only the will of the one that did not come back, and nothing after it.
    assert_eq!(watcher.expect_message().await.payload, "as expected");
    watcher.expect_silence(Duration::from_millis(700)).await;
    back.disconnect().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.1.2-8]: the will is published when the session ends, even if the Will Delay
/// Interval is longer than the Session Expiry Interval.
#[tokio::test]
async fn mqtt_3_1_2_8_will_published_when_session_ends_first() {
    let gateway = TestGateway::start().await;
    let mut watcher = TestClient::v5(gateway.addr, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtMostOnce).await;
    let mut connect = connect_packet(ProtocolVersion::V5, "short-lived");
    connect.properties.session_expiry_interval = Some(1);
    let mut delayed = will("wills/short-lived", "session over");
    delayed.properties.will_delay_interval = Some(3600);
    connect.will = Some(delayed);
    let (mut client, _) = TestClient::connect_accepted(gateway.addr, connect).await;
    client.ping().await;
    client.drop_connection();

    let message = watcher.expect_message().await;
    assert_eq!(message.payload, "session over");
    watcher.disconnect().await;
    gateway.shutdown(WAIT).await;
}
