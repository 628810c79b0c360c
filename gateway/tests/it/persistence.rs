//! The embedded store: retained messages and persistent sessions survive a restart of the
//! gateway on the same data directory; so do the QoS 1 and 2 flows in flight in both
//! directions, at a graceful restart (SIGTERM) and at a kill -9.

use crate::binary::RunningBinary;
use crate::common::{TestClient, connect_packet, init_logging, publish_packet, test_config};
use broker_core::AllowAll;
use gateway::Gateway;
use mqtt_codec::{ConnectPacket, Packet, ProtocolVersion, PubAckPacket, PublishPacket, QoS};
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test]
async fn retained_messages_and_persistent_sessions_survive_a_restart() {
    init_logging();
    let config = test_config();
    let gateway = Gateway::start(config.clone(), Box::new(AllowAll))
        .await
        .unwrap();
    let addr = gateway.mqtt_addresses()[0];

    // A 3.1.1 client with clean session 0 subscribes, then leaves.
    let mut keeper_connect = connect_packet(ProtocolVersion::V311, "keeper");
    keeper_connect.clean_start = false;
    let (mut keeper, _) = TestClient::connect_accepted(addr, keeper_connect.clone()).await;
    keeper.subscribe("store/#", QoS::AtLeastOnce).await;
    keeper.disconnect().await;

    let mut publisher = TestClient::v5(addr, "publisher").await;
    publisher
        .publish_retained("store/retained", "kept", QoS::AtLeastOnce)
        .await;
    publisher
        .publish("store/queued", "waiting", QoS::AtLeastOnce)
        .await;
    publisher.disconnect().await;
    gateway.shutdown(Duration::from_secs(5)).await.unwrap();

    let gateway = Gateway::start(config.clone(), Box::new(AllowAll))
        .await
        .unwrap();
    let addr = gateway.mqtt_addresses()[0];

    let mut fresh = TestClient::v5(addr, "fresh").await;
    fresh.subscribe("store/#", QoS::AtLeastOnce).await;
    let retained = fresh.expect_message().await;
    assert_eq!(retained.topic, "store/retained");
    assert_eq!(&retained.payload[..], b"kept");
    assert!(
        retained.retain,
        "a retained message sent on subscribe has RETAIN set"
    );

    let (mut keeper, connack) = TestClient::connect_accepted(addr, keeper_connect).await;
    assert!(
        connack.session_present,
        "the session came back from the store"
    );
    let first = keeper.expect_message().await;
    let second = keeper.expect_message().await;
    assert_eq!(
        (first.topic.as_str(), &first.payload[..]),
        ("store/retained", &b"kept"[..])
    );
    assert_eq!(
        (second.topic.as_str(), &second.payload[..]),
        ("store/queued", &b"waiting"[..])
    );
    // The restored subscription still routes new messages.
    publisher = TestClient::v5(addr, "publisher").await;
    publisher
        .publish("store/live", "new", QoS::AtMostOnce)
        .await;
    match keeper.expect_packet().await {
        Packet::Publish(publish) => assert_eq!(publish.topic, "store/live"),
        other => panic!("expected the live message, got {other:?}"),
    }

    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    let _ = std::fs::remove_dir_all(&config.data_dir);
}

/// A 5.0 CONNECT for a session kept 600 s; `resume`: clean start 0.
fn persistent(client_id: &str, resume: bool) -> ConnectPacket {
    let mut connect = connect_packet(ProtocolVersion::V5, client_id);
    connect.clean_start = !resume;
    connect.properties.session_expiry_interval = Some(600);
    connect
}

/// The next packet, which must be a PUBLISH.
async fn expect_publish(client: &mut TestClient) -> PublishPacket {
    match client.expect_packet().await {
        Packet::Publish(publish) => publish,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// What the subscriber holds unfinished when the gateway goes down: the packet ids of a QoS 1
/// message it never acknowledged, of a QoS 2 message it answered with PUBREC (the gateway's
/// PUBREL came, its PUBCOMP never went out), and of a QoS 2 message it never acknowledged.
struct Unfinished {
    qos1: u16,
    released: u16,
    qos2: u16,
}

/// Sets up the flows in flight: a subscriber (persistent) gets three messages and leaves them
/// unfinished as [`Unfinished`] says; a publisher (persistent) has the third one's PUBREC and
/// has not sent its PUBREL (packet id 3). With `--durability full` (the default), each
/// acknowledgement that came promises what it acknowledged is stored. Returns the two clients
/// too, to be kept connected until the gateway goes.
async fn flows_in_flight(addr: SocketAddr) -> (Unfinished, [TestClient; 2]) {
    let (mut subscriber, _) = TestClient::connect_accepted(addr, persistent("holder", false)).await;
    subscriber.subscribe("inflight/#", QoS::ExactlyOnce).await;
    let (mut publisher, _) = TestClient::connect_accepted(addr, persistent("sender", false)).await;

    let mut one = publish_packet("inflight/one", "one", QoS::AtLeastOnce, false);
    one.packet_id = Some(1);
    publisher.publish_packet(one).await;
    let mut two = publish_packet("inflight/two", "two", QoS::ExactlyOnce, false);
    two.packet_id = Some(2);
    publisher.publish_packet(two).await;
    let mut three = publish_packet("inflight/three", "three", QoS::ExactlyOnce, false);
    three.packet_id = Some(3);
    publisher.send(Packet::Publish(three)).await;
    match publisher.expect_packet().await {
        Packet::PubRec(ack) => assert_eq!((ack.packet_id, ack.reason_code.is_error()), (3, false)),
        other => panic!("expected PUBREC 3, got {other:?}"),
    }

    let mut unfinished = Vec::new();
    for (topic, qos) in [
        ("inflight/one", QoS::AtLeastOnce),
        ("inflight/two", QoS::ExactlyOnce),
        ("inflight/three", QoS::ExactlyOnce),
    ] {
        let publish = expect_publish(&mut subscriber).await;
        assert_eq!(
            (publish.topic.as_str(), publish.qos, publish.dup),
            (topic, qos, false)
        );
        unfinished.push(publish.packet_id.expect("QoS 1 and 2 carry an id"));
    }
    let released = unfinished[1];
    subscriber
        .send(Packet::PubRec(PubAckPacket::new(released)))
        .await;
    match subscriber.expect_packet().await {
        Packet::PubRel(ack) => assert_eq!(ack.packet_id, released),
        other => panic!("expected PUBREL {released}, got {other:?}"),
    }
    let unfinished = Unfinished {
        qos1: unfinished[0],
        released,
        qos2: unfinished[2],
    };
    (unfinished, [subscriber, publisher])
}

/// After the restart: the subscriber resumes and gets its unfinished deliveries again, in order,
/// with their packet ids [MQTT-4.4.0-1] (PUBLISH with DUP for the unacknowledged ones
/// [MQTT-3.3.1-1], PUBREL for the released one); the publisher resumes, its QoS 2 message still
/// awaiting release: a resent PUBLISH is answered PUBREC and not delivered again
/// [MQTT-4.3.3-10], its PUBREL gets PUBCOMP 0x00 (not 0x92, an unknown id). Each message is
/// delivered exactly once more, which a marker published last shows: it is the next thing the
/// subscriber gets.
async fn flows_resume(addr: SocketAddr, unfinished: Unfinished) {
    let (mut subscriber, connack) =
        TestClient::connect_accepted(addr, persistent("holder", true)).await;
    assert!(
        connack.session_present,
        "the subscriber's session came back"
    );
    let one = expect_publish(&mut subscriber).await;
    assert_eq!(
        (one.topic.as_str(), one.qos, one.dup, one.packet_id),
        (
            "inflight/one",
            QoS::AtLeastOnce,
            true,
            Some(unfinished.qos1)
        )
    );
    match subscriber.expect_packet().await {
        Packet::PubRel(ack) => assert_eq!(ack.packet_id, unfinished.released),
        other => panic!("expected PUBREL {}, got {other:?}", unfinished.released),
    }
    let three = expect_publish(&mut subscriber).await;
    assert_eq!(
        (three.topic.as_str(), three.qos, three.dup, three.packet_id),
        (
            "inflight/three",
            QoS::ExactlyOnce,
            true,
            Some(unfinished.qos2)
        )
    );

    let (mut publisher, connack) =
        TestClient::connect_accepted(addr, persistent("sender", true)).await;
    assert!(connack.session_present, "the publisher's session came back");
    let mut again = publish_packet("inflight/three", "three", QoS::ExactlyOnce, false);
    again.dup = true;
    again.packet_id = Some(3);
    publisher.send(Packet::Publish(again)).await;
    match publisher.expect_packet().await {
        Packet::PubRec(ack) => assert_eq!((ack.packet_id, ack.reason_code.is_error()), (3, false)),
        other => panic!("expected PUBREC 3, got {other:?}"),
    }
    publisher.send(Packet::PubRel(PubAckPacket::new(3))).await;
    match publisher.expect_packet().await {
        Packet::PubComp(ack) => assert_eq!(
            (ack.packet_id, ack.reason_code),
            (3, mqtt_codec::ReasonCode::Success),
            "the id was still awaiting release"
        ),
        other => panic!("expected PUBCOMP 3, got {other:?}"),
    }

    subscriber.acknowledge(&one).await;
    subscriber
        .send(Packet::PubComp(PubAckPacket::new(unfinished.released)))
        .await;
    subscriber.acknowledge(&three).await;
    publisher
        .publish("inflight/marker", "marker", QoS::AtLeastOnce)
        .await;
    let next = subscriber.expect_message().await;
    assert_eq!(
        next.topic, "inflight/marker",
        "nothing is delivered twice: {next:?}"
    );
    subscriber.disconnect().await;
    publisher.disconnect().await;
}

/// The flows in flight survive SIGTERM: the store is written at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_in_flight_survive_a_graceful_restart() {
    let data_dir = test_config().data_dir;
    let mut binary = RunningBinary::start_in(&data_dir, &[]);
    let (unfinished, clients) = flows_in_flight(binary.addr).await;
    let status = tokio::task::block_in_place(|| binary.terminate(Duration::from_secs(5)));
    assert!(status.success(), "exit status {status}");
    drop((binary, clients));
    let binary = RunningBinary::start_in(&data_dir, &[]);
    flows_resume(binary.addr, unfinished).await;
    drop(binary);
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// The flows in flight survive a kill -9 once their acknowledgements went out: with
/// `--durability full` each was held until what it promises was on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_in_flight_survive_a_kill_9() {
    let data_dir = test_config().data_dir;
    let mut binary = RunningBinary::start_in(&data_dir, &[]);
    let (unfinished, clients) = flows_in_flight(binary.addr).await;
    binary.kill9();
    drop((binary, clients));
    let binary = RunningBinary::start_in(&data_dir, &[]);
    flows_resume(binary.addr, unfinished).await;
    drop(binary);
    let _ = std::fs::remove_dir_all(&data_dir);
}
