//! The limits a public broker needs, over real sockets: each flag set low, crossed by a client,
//! and answered as the README's "Limits and their defaults" table says.

use crate::common::*;
use bytes::BytesMut;
use mqtt_codec::{
    ByteStr, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscription, encode_from_client,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn subscription(filter: &str) -> Subscription {
    Subscription {
        filter: ByteStr::from(filter),
        options: options(QoS::AtLeastOnce),
    }
}

async fn subscribe_codes(client: &mut TestClient, filters: &[&str]) -> Vec<ReasonCode> {
    let subscriptions = filters.iter().map(|f| subscription(f)).collect();
    client
        .subscribe_with(subscriptions, Properties::default())
        .await
        .reason_codes
}

#[tokio::test]
async fn max_subscriptions_per_client_refuses_extra_filters_with_0x97() {
    let gateway = TestGateway::start_with(|config| {
        config.broker.max_subscriptions_per_client = 2;
    })
    .await;
    let granted = ReasonCode::GrantedQoS1;
    let mut client = TestClient::v5(gateway.addr, "many-filters").await;
    assert_eq!(
        subscribe_codes(&mut client, &["a", "b", "c"]).await,
        [granted, granted, ReasonCode::QuotaExceeded]
    );
    // Replacing one it holds is not one more.
    assert_eq!(subscribe_codes(&mut client, &["a"]).await, [granted]);
    let mut old = TestClient::v311(gateway.addr, "many-filters-311").await;
    assert_eq!(
        subscribe_codes(&mut old, &["a", "b", "c"]).await,
        [granted, granted, ReasonCode::UnspecifiedError]
    );
}

#[tokio::test]
async fn max_topic_length_and_levels_refuse_filters_with_0x8f_and_publishes_with_0x90() {
    let gateway = TestGateway::start_with(|config| {
        config.broker.max_topic_length = 32;
        config.broker.max_topic_levels = 3;
    })
    .await;
    let mut subscriber = TestClient::v5(gateway.addr, "topic-subscriber").await;
    assert_eq!(
        subscribe_codes(&mut subscriber, &["a/b/#", "a/b/c/#", &"x".repeat(33)]).await,
        [
            ReasonCode::GrantedQoS1,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::TopicFilterInvalid
        ]
    );

    let mut publisher = TestClient::v5(gateway.addr, "topic-publisher").await;
    let ack = publisher
        .publish_packet(publish_packet("a/b/c/d", "m", QoS::AtLeastOnce, false))
        .await
        .expect("PUBACK");
    assert_eq!(ack.reason_code, ReasonCode::TopicNameInvalid);
    let ack = publisher
        .publish_packet(publish_packet("a/b/c", "m", QoS::AtLeastOnce, false))
        .await
        .expect("PUBACK");
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(&subscriber.expect_message().await.topic[..], "a/b/c");
    // A QoS 0 PUBLISH has no acknowledgement to refuse it in. (On a topic the subscriber's
    // filter matches, so that its silence below shows the message went nowhere.)
    publisher
        .send(Packet::Publish(publish_packet(
            &format!("a/b/{}", "y".repeat(29)),
            "m",
            QoS::AtMostOnce,
            false,
        )))
        .await;
    publisher.expect_refused(ReasonCode::TopicNameInvalid).await;
    // 3.1.1 has no refusing acknowledgement at all.
    let mut old = TestClient::v311(gateway.addr, "topic-publisher-311").await;
    old.send(Packet::Publish(publish_packet(
        "a/b/c/d",
        "m",
        QoS::AtMostOnce,
        false,
    )))
    .await;
    old.expect_closed().await;
    subscriber.expect_silence(QUIET).await;
}

#[tokio::test]
async fn max_user_properties_refuse_a_publish_with_0x97() {
    let gateway = TestGateway::start_with(|config| {
        config.broker.max_user_properties = 2;
        config.broker.max_user_properties_bytes = 64;
    })
    .await;
    let mut client = TestClient::v5(gateway.addr, "properties").await;
    let with = |pairs: Vec<(String, String)>| {
        let mut publish = publish_packet("t", "m", QoS::AtLeastOnce, false);
        publish.properties.user_properties = pairs
            .into_iter()
            .map(|(n, v)| (ByteStr::from(n), ByteStr::from(v)))
            .collect();
        publish
    };
    let pair = |n: &str, v: String| (n.to_string(), v);
    let cases = [
        (
            vec![pair("a", "1".into()), pair("b", "2".into())],
            ReasonCode::NoMatchingSubscribers,
        ),
        (
            vec![
                pair("a", "1".into()),
                pair("b", "2".into()),
                pair("c", "3".into()),
            ],
            ReasonCode::QuotaExceeded,
        ),
        (
            vec![pair("long", "v".repeat(61))],
            ReasonCode::QuotaExceeded,
        ),
        (
            vec![pair("long", "v".repeat(60))],
            ReasonCode::NoMatchingSubscribers,
        ),
    ];
    for (pairs, expected) in cases {
        let ack = client.publish_packet(with(pairs)).await.expect("PUBACK");
        assert_eq!(ack.reason_code, expected);
    }
    client.ping().await;
}

#[tokio::test]
async fn max_keep_alive_is_told_to_5_0_clients_and_refuses_3_1_1_clients_above_it() {
    let gateway = TestGateway::start_with(|config| {
        config.broker.max_keep_alive = Some(1);
    })
    .await;
    let mut connect = connect_packet(ProtocolVersion::V5, "forever");
    connect.keep_alive = 0;
    let (mut client, connack) = TestClient::connect_accepted(gateway.addr, connect).await;
    assert_eq!(connack.properties.server_keep_alive, Some(1));
    // Held to it: open until shortly before 1.5 s of silence, then disconnected (a loose but
    // real bound, 1 s beyond the deadline, on when).
    client.expect_silence(Duration::from_millis(1300)).await;
    match client
        .expect_packet_within(Duration::from_millis(1200))
        .await
    {
        Packet::Disconnect(disconnect) => {
            assert_eq!(disconnect.reason_code, ReasonCode::KeepAliveTimeout)
        }
        other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
    }
    client.expect_closed().await;

    // No 3.1.1 return code fits: the connection is closed without CONNACK [MQTT-3.2.2-6].
    let mut old = TestClient::open(gateway.addr).await;
    old.set_version(ProtocolVersion::V311);
    old.send(Packet::Connect(connect_packet(
        ProtocolVersion::V311,
        "old",
    )))
    .await;
    old.expect_closed().await;
    let mut short = connect_packet(ProtocolVersion::V311, "old-but-short");
    short.keep_alive = 1;
    TestClient::connect_accepted(gateway.addr, short).await;
}

#[tokio::test]
async fn max_client_id_len_accepts_the_limit_and_refuses_one_beyond() {
    let gateway = TestGateway::start_with(|config| {
        config.broker.max_client_id_len = 30;
    })
    .await;
    for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
        TestClient::connect(gateway.addr, version, &"a".repeat(30)).await;
        let connect = connect_packet(version, &"b".repeat(31));
        let (mut client, connack) = TestClient::connect_with(gateway.addr, connect).await;
        // 5.0: 0x85; 3.1.1: 0x02, which reads back as the same reason.
        assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
        client.expect_closed().await;
    }
}

/// A client writing QoS 0 PUBLISH packets as fast as its socket takes them.
struct Flooder {
    /// Bytes of one PUBLISH on the wire.
    packet_len: usize,
    stop: Arc<AtomicBool>,
    writer: tokio::task::JoinHandle<()>,
    reader: tokio::net::tcp::OwnedReadHalf,
}

impl Flooder {
    async fn start(addr: std::net::SocketAddr, topic: &str, payload_len: usize) -> Flooder {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut buf = BytesMut::new();
        let connect = Packet::Connect(connect_packet(ProtocolVersion::V5, "flooder"));
        encode_from_client(&connect, ProtocolVersion::V5, &mut buf).expect("encode");
        stream.write_all(&buf).await.expect("CONNECT");
        let mut connack = [0u8; 64];
        let read = tokio::time::timeout(WAIT, stream.read(&mut connack))
            .await
            .expect("CONNACK in time")
            .expect("CONNACK");
        assert!(
            read > 0 && connack[0] == 0x20,
            "CONNACK, got {:?}",
            &connack[..read]
        );

        let mut one = BytesMut::new();
        let payload = "p".repeat(payload_len);
        let publish = Packet::Publish(publish_packet(topic, &payload, QoS::AtMostOnce, false));
        encode_from_client(&publish, ProtocolVersion::V5, &mut one).expect("encode");
        let packet_len = one.len();
        let batch = one.repeat(64);
        let (reader, mut writer) = stream.into_split();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let writer = tokio::spawn(async move {
            while !stopped.load(Ordering::Relaxed) {
                // Bounded, so a stop is seen even while the socket is full.
                match tokio::time::timeout(Duration::from_millis(50), writer.write_all(&batch))
                    .await
                {
                    Ok(Ok(())) | Err(_) => {}
                    Ok(Err(_)) => return,
                }
            }
        });
        Flooder {
            packet_len,
            stop,
            writer,
            reader,
        }
    }

    /// Stops writing and checks that the gateway did not close the connection.
    async fn stop_and_check_open(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.writer.await;
        let mut byte = [0u8; 1];
        match tokio::time::timeout(QUIET, self.reader.read(&mut byte)).await {
            Err(_) => {}
            Ok(result) => panic!("the flooder was disconnected: {result:?}"),
        }
    }
}

#[tokio::test]
async fn max_inbound_rate_slows_a_flooder_to_the_rate_without_slowing_others() {
    const RATE: u64 = 200_000;
    let gateway = TestGateway::start_with(|config| {
        config.max_inbound_rate = Some(RATE);
    })
    .await;
    let mut counter = TestClient::v5(gateway.addr, "counter").await;
    counter.subscribe("flood/#", QoS::AtMostOnce).await;
    let mut calm = TestClient::v5(gateway.addr, "calm").await;

    let flooder = Flooder::start(gateway.addr, "flood/x", 1000).await;
    // Past the first second's burst, count what the gateway forwards for three seconds, while
    // the calm client measures round trips.
    let counting = tokio::spawn(async move {
        let warm_up = Instant::now() + Duration::from_millis(1500);
        let end = warm_up + Duration::from_secs(3);
        let mut counted = 0u64;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            if let Some(Packet::Publish(_)) = counter.try_packet(end - now).await
                && Instant::now() >= warm_up
            {
                counted += 1;
            }
        }
        counted
    });
    let mut round_trips = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(4500) {
        let sent = Instant::now();
        calm.ping().await;
        round_trips.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counted = counting.await.expect("counter");
    let packet_len = flooder.packet_len as u64;
    flooder.stop_and_check_open().await;

    // The bound is a promise: over the 3 s counted, no more than 3 s at the rate, plus the
    // reads at either end of the window (one second's burst at most). A gateway without the
    // bound reads a local flooder at tens of MB/s. How close to the rate it gets, and the calm
    // client's round trips, are figures for a benchmark, not assertions here (a loaded machine
    // reads the flooder more slowly and answers later): the calm client's pings only have to
    // be answered, each within the client's wait, which `ping` checks.
    let measured = counted * packet_len / 3;
    round_trips.sort();
    let median = round_trips[round_trips.len() / 2];
    let worst = round_trips[round_trips.len() - 1];
    println!(
        "flooder read at {measured} B/s (bound {RATE} B/s); calm client: median round trip \
         {median:?}, worst {worst:?}"
    );
    assert!(counted > 0, "the flooder was read at all");
    assert!(
        counted * packet_len <= 4 * RATE,
        "{measured} B/s against a bound of {RATE} B/s"
    );
}
