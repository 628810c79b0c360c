//! Retained messages: stored and replaced, cleared by an empty payload, the RETAIN flag on
//! delivery, and the 5.0 Retain Handling and Retain As Published subscription options.

use super::subscription;
use crate::common::{QUIET, TestClient, TestGateway, WAIT, options};
use bytes::Bytes;
use mqtt_codec::{
    Properties, ProtocolVersion, QoS, ReasonCode, RetainHandling, SubscriptionOptions,
};

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
