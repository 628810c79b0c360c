//! Several subscriptions meeting one message: overlapping subscriptions of one client (one
//! copy, highest QoS, every Subscription Identifier), shared subscriptions, and No Local.

use super::{subscription, with_identifier};
use crate::common::{QUIET, TestClient, TestGateway, WAIT, options};
use mqtt_codec::{Packet, Properties, QoS, ReasonCode, SubscribePacket, SubscriptionOptions};
use std::collections::HashMap;
use std::time::Duration;

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
