//! The embedded store: retained messages and persistent sessions survive a restart of the
//! gateway on the same data directory.

use crate::common::{TestClient, connect_packet, init_logging, test_config};
use broker_core::AllowAll;
use gateway::Gateway;
use mqtt_codec::{Packet, ProtocolVersion, QoS};
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
