//! Persistent sessions in a cluster: a client resumes its session on another node, with what
//! was queued for it there, and the node it left closes its old connection; a node killed with
//! -9 loses no acknowledged QoS 1 message held for one of its sessions, which its client
//! resumes on another node.

use crate::binary::RunningBinary;
use crate::cluster::{Nats, await_interest, figure, next_message, node};
use crate::common::*;
use mqtt_codec::{ConnAckPacket, ProtocolVersion, QoS, ReasonCode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Connects `client_id` resuming its session (clean start off, expiry 300 s for 5.0).
async fn resume(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
) -> (TestClient, ConnAckPacket) {
    let mut connect = connect_packet(version, client_id);
    connect.clean_start = false;
    if version == ProtocolVersion::V5 {
        connect.properties.session_expiry_interval = Some(300);
    }
    TestClient::connect_accepted(addr, connect).await
}

/// Waits until `node`'s figure `name` reaches `at_least`.
async fn await_figure(node: &crate::common::TestGateway, name: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while figure(node, name).await < at_least {
        assert!(
            Instant::now() < deadline,
            "{name} reached {at_least} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_persistent_session_moves_to_another_node_with_its_queued_messages() {
    let nats = Nats::start();
    let (a, b, c) = (
        node(&nats, "a").await,
        node(&nats, "b").await,
        node(&nats, "c").await,
    );
    let (mut mover, connack) = resume(a.addr, ProtocolVersion::V5, "mover").await;
    assert!(!connack.session_present);
    mover.subscribe("move/#", QoS::AtLeastOnce).await;
    let mut publisher = TestClient::v5(c.addr, "pub-on-c").await;
    await_interest(&mut mover, &mut publisher, "move/probe").await;
    mover.disconnect().await;

    // Queued on a for the offline session: ten QoS 1 messages and a QoS 2 one, from c.
    let received_before = figure(&a, "mqtt_cluster_received_total").await;
    for n in 1..=10 {
        publisher
            .publish_packet(publish_packet(
                "move/n",
                &n.to_string(),
                QoS::AtLeastOnce,
                false,
            ))
            .await;
    }
    publisher
        .publish_packet(publish_packet("move/n", "11", QoS::ExactlyOnce, false))
        .await;
    await_figure(&a, "mqtt_cluster_received_total", received_before + 11.0).await;

    // The client comes back on b: its session, with the eleven messages, in order.
    let (mut mover, connack) = resume(b.addr, ProtocolVersion::V5, "mover").await;
    assert!(connack.session_present, "the session moved from a to b");
    let mut payloads = Vec::new();
    for _ in 0..11 {
        let message = next_message(&mut mover).await;
        payloads.push(String::from_utf8_lossy(&message.payload).into_owned());
        mover.acknowledge(&message).await;
    }
    let expected: Vec<String> = (1..=11).map(|n| n.to_string()).collect();
    assert_eq!(payloads, expected);
    assert_eq!(
        figure(&a, "mqtt_cluster_sessions_released_total").await,
        1.0
    );
    assert_eq!(figure(&b, "mqtt_cluster_sessions_adopted_total").await, 1.0);
    assert_eq!(figure(&b, "mqtt_cluster_session_log_writable").await, 1.0);

    // Its subscription came along: c's messages now reach it on b, once.
    await_interest(&mut mover, &mut publisher, "move/probe").await;
    publisher
        .publish_packet(publish_packet("move/n", "12", QoS::AtLeastOnce, false))
        .await;
    let message = next_message(&mut mover).await;
    assert_eq!(message.payload.as_ref(), b"12");
    mover.acknowledge(&message).await;
    mover.expect_silence(Duration::from_millis(300)).await;

    // Connecting on a while connected on b: b closes its connection as a takeover, and the
    // session (with its subscription) is a's again.
    let (mut back, connack) = resume(a.addr, ProtocolVersion::V5, "mover").await;
    assert!(connack.session_present);
    mover.expect_disconnect(ReasonCode::SessionTakenOver).await;
    await_interest(&mut back, &mut publisher, "move/probe").await;
    publisher
        .publish_packet(publish_packet("move/n", "13", QoS::AtLeastOnce, false))
        .await;
    let message = next_message(&mut back).await;
    assert_eq!(message.payload.as_ref(), b"13");
    back.acknowledge(&message).await;
    back.expect_silence(Duration::from_millis(300)).await;

    // A clean start anywhere ends it: nothing comes back on c.
    let mut connect = connect_packet(ProtocolVersion::V5, "mover");
    connect.properties.session_expiry_interval = Some(300);
    let (fresh, connack) = TestClient::connect_accepted(c.addr, connect).await;
    assert!(!connack.session_present);
    back.expect_disconnect(ReasonCode::SessionTakenOver).await;
    fresh.disconnect().await;
    let (_again, connack) = resume(b.addr, ProtocolVersion::V5, "mover").await;
    assert!(
        connack.session_present,
        "the session of the clean start, empty"
    );
}

#[tokio::test]
async fn a_node_killed_with_kill_9_loses_no_acknowledged_message_of_its_sessions() {
    let nats = Nats::start();
    let mut a = RunningBinary::start(&["--cluster", &nats.url(), "--node-name", "a"]);
    let b = node(&nats, "b").await;

    // A 3.1.1 persistent session on a, offline, and one connected with messages in flight.
    let (mut offline, _) = resume(a.addr, ProtocolVersion::V311, "kept").await;
    offline.subscribe("kill/#", QoS::AtLeastOnce).await;
    offline.disconnect().await;
    let (mut inflight, _) = resume(a.addr, ProtocolVersion::V311, "inflight").await;
    inflight.subscribe("kill/#", QoS::AtLeastOnce).await;

    // Fifty QoS 1 messages published on a, each acknowledged (PUBACK awaited).
    let mut publisher = TestClient::v311(a.addr, "pub-on-a").await;
    for n in 1..=50 {
        let ack = publisher
            .publish_packet(publish_packet(
                "kill/n",
                &n.to_string(),
                QoS::AtLeastOnce,
                false,
            ))
            .await;
        assert!(ack.is_some(), "message {n} acknowledged");
    }
    // The connected session gets them (as many as its window holds) and acknowledges none.
    inflight.expect_publish().await;
    a.kill9();

    let expected: Vec<String> = (1..=50).map(|n| n.to_string()).collect();
    for client_id in ["kept", "inflight"] {
        let (mut resumed, connack) = resume(b.addr, ProtocolVersion::V311, client_id).await;
        assert!(connack.session_present, "{client_id} resumed on b");
        let mut payloads = Vec::new();
        while payloads.len() < 50 {
            let Some(mqtt_codec::Packet::Publish(message)) =
                resumed.try_packet(Duration::from_secs(3)).await
            else {
                panic!("{client_id}: only {payloads:?} arrived");
            };
            let payload = String::from_utf8_lossy(&message.payload).into_owned();
            if !payloads.contains(&payload) {
                payloads.push(payload);
            }
            resumed.acknowledge(&message).await;
        }
        payloads.sort_by_key(|p| p.parse::<u32>().unwrap_or(0));
        assert_eq!(
            payloads, expected,
            "{client_id}: every acknowledged message"
        );
        resumed.expect_silence(Duration::from_millis(300)).await;
    }
    assert_eq!(figure(&b, "mqtt_cluster_sessions_adopted_total").await, 2.0);
}

#[tokio::test]
async fn a_long_log_is_compacted_into_an_image_that_moves_the_same_session() {
    let nats = Nats::start();
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    let (mut offline, _) = resume(a.addr, ProtocolVersion::V5, "long").await;
    offline.subscribe("long/#", QoS::AtLeastOnce).await;
    offline.subscribe("other/#", QoS::AtMostOnce).await;
    offline.unsubscribe("other/#").await;
    offline.disconnect().await;

    // 1,500 messages queued for the offline session: more records than a log keeps before
    // it is replaced by an image.
    let mut publisher = TestClient::v5(a.addr, "pub-on-a").await;
    for n in 1..=1_500 {
        publisher
            .publish_packet(publish_packet(
                "long/n",
                &n.to_string(),
                QoS::AtLeastOnce,
                false,
            ))
            .await;
    }
    await_figure(&a, "mqtt_cluster_session_log_compactions_total", 1.0).await;

    let (mut resumed, connack) = resume(b.addr, ProtocolVersion::V5, "long").await;
    assert!(connack.session_present);
    for n in 1..=1_500 {
        let message = next_message(&mut resumed).await;
        assert_eq!(message.payload.as_ref(), n.to_string().as_bytes());
        resumed.acknowledge(&message).await;
    }
    resumed.expect_silence(Duration::from_millis(300)).await;
    // The image kept the subscription and dropped the one that went.
    let mut other = TestClient::v5(b.addr, "other-pub").await;
    other
        .publish_packet(publish_packet(
            "other/x",
            "not subscribed",
            QoS::AtMostOnce,
            false,
        ))
        .await;
    let mut local = TestClient::v5(b.addr, "pub-on-b").await;
    local
        .publish_packet(publish_packet("long/n", "after", QoS::AtLeastOnce, false))
        .await;
    assert_eq!(next_message(&mut resumed).await.payload.as_ref(), b"after");
}
