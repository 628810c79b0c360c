//! Slow consumers: a client that stops reading is shed (QoS 0 beyond the outbox limit is
//! dropped) and never stalls the others; a subscriber that reads, even if slower than the
//! publishers, loses nothing because the publishers are slowed down instead.

use crate::common::{TestClient, TestGateway, WAIT, publish_packet};
use crate::web_support::get;
use bytes::Bytes;
use mqtt_codec::{Packet, QoS};
use std::time::Duration;
use tokio::time::Instant;

/// QoS 0 messages dropped for slow consumers so far, from `/metrics`.
async fn slow_consumer_drops(gateway: &TestGateway) -> u64 {
    let response = get(gateway.http, "/metrics").await;
    assert_eq!(response.status, 200);
    let text = response.text();
    let line = text
        .lines()
        .find(|line| line.starts_with("mqtt_messages_dropped_total{reason=\"slow_consumer\"}"))
        .unwrap_or_else(|| panic!("no slow consumer drop counter in\n{text}"));
    let value = line.rsplit(' ').next().expect("a value");
    value.parse::<f64>().expect("a number") as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_stall_the_others() {
    let gateway = TestGateway::start_with(|config| {
        config.outbox_soft_limit = 64 * 1024;
        config.outbox_limit = 512 * 1024;
    })
    .await;
    let mut stalled = TestClient::v5(gateway.addr, "stalled").await;
    stalled.subscribe("flood/#", QoS::AtMostOnce).await;
    let mut reader = TestClient::v5(gateway.addr, "reader").await;
    reader.subscribe("news/#", QoS::AtLeastOnce).await;
    // The counter is the process's, shared with the other tests of this binary.
    let drops_before = slow_consumer_drops(&gateway).await;

    // 16 MiB of QoS 0 for a client that reads nothing: far beyond kernel buffers and outbox.
    let addr = gateway.addr;
    let flood = tokio::spawn(async move {
        let mut flooder = TestClient::v5(addr, "flooder").await;
        let mut publish = publish_packet("flood/x", "", QoS::AtMostOnce, false);
        publish.payload = Bytes::from(vec![b'x'; 4096]);
        for _ in 0..4096 {
            flooder.send(Packet::Publish(publish.clone())).await;
        }
        flooder.ping().await;
        flooder
    });

    // The stall is real before the reader is tested: the stalled client's outbox is full and
    // the gateway is shedding its QoS 0 messages.
    let shedding = Instant::now() + Duration::from_secs(30);
    while slow_consumer_drops(&gateway).await <= drops_before {
        assert!(
            Instant::now() < shedding,
            "the stalled client's outbox never filled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The reader gets every message, in order, each within the client's wait (a few seconds,
    // as a timeout: how fast is the benchmark's business, see `cargo xtask bench`'s latency
    // rows). A broker task that waited for the stalled client would leave it waiting forever.
    let mut announcer = TestClient::v5(gateway.addr, "announcer").await;
    for index in 0..50 {
        announcer
            .publish(&format!("news/{index}"), "fresh", QoS::AtLeastOnce)
            .await;
        let message = reader.expect_message().await;
        assert_eq!(message.topic, format!("news/{index}").as_str());
    }
    let flooder = tokio::time::timeout(Duration::from_secs(30), flood)
        .await
        .expect("the flooding publisher finished: it was slowed, never blocked for good")
        .expect("flood task");
    flooder.disconnect().await;
    gateway.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_subscriber_loses_nothing_from_faster_publishers() {
    let gateway = TestGateway::start_with(|config| {
        config.outbox_soft_limit = 32 * 1024;
        config.outbox_limit = 256 * 1024;
    })
    .await;
    let mut subscriber = TestClient::v311(gateway.addr, "subscriber").await;
    subscriber.subscribe("load/#", QoS::AtMostOnce).await;

    const PUBLISHERS: usize = 4;
    const MESSAGES: usize = 5_000;
    let mut tasks = Vec::new();
    for index in 0..PUBLISHERS {
        let addr = gateway.addr;
        tasks.push(tokio::spawn(async move {
            let mut publisher = TestClient::v311(addr, &format!("publisher-{index}")).await;
            let mut publish = publish_packet(&format!("load/{index}"), "", QoS::AtMostOnce, false);
            publish.payload = Bytes::from(vec![b'p'; 256]);
            for _ in 0..MESSAGES {
                publisher.send(Packet::Publish(publish.clone())).await;
            }
            publisher.ping().await;
            publisher.disconnect().await;
        }));
    }
    // 5 MB in all through a 256 KiB outbox: without backpressure most of it would be shed.
    let mut received = 0;
    while received < PUBLISHERS * MESSAGES {
        subscriber.expect_publish().await;
        received += 1;
    }
    for task in tasks {
        task.await.expect("publisher task");
    }
    gateway.shutdown(WAIT).await;
}
