//! `$` topics: not matched by leading wildcards, and the `$SYS` statistics.

use crate::common::{TestClient, TestGateway, WAIT};
use mqtt_codec::QoS;
use std::time::Duration;

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
