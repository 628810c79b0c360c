//! Loopback tests of bad input: each misbehaving connection gets the specification's answer
//! (5.0: DISCONNECT with the reason code, then close; 3.1.1: close), while two bystanders keep
//! exchanging messages before and after, unaffected. Each test is named after the normative
//! statement it checks (OASIS MQTT 3.1.1 and 5.0 numbering; the doc comment says which).

use crate::common::{Bystanders, TestClient, TestGateway, WAIT, connect_packet, publish_packet};
use mqtt_codec::{Packet, ProtocolVersion, QoS, ReasonCode, encode, encoded_len};
use std::time::Duration;
use tokio::time::Instant;

const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V5, ProtocolVersion::V311];

/// 5.0 and 3.1.1 [MQTT-3.1.0-1]: the first packet must be CONNECT; anything else closes the
/// connection without an answer.
#[tokio::test]
async fn mqtt_3_1_0_1_first_packet_must_be_connect() {
    let gateway = TestGateway::start().await;
    let mut bystanders = Bystanders::join(gateway.addr).await;
    for first in [
        Packet::PingReq,
        Packet::Publish(publish_packet(
            "bystander/news",
            "sneaky",
            QoS::AtMostOnce,
            false,
        )),
    ] {
        let mut client = TestClient::open(gateway.addr).await;
        client.send(first).await;
        client.expect_closed().await;
        bystanders.check().await;
    }
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-3.1.0-2] (3.1.1 [MQTT-3.1.0-2]): a second CONNECT on a connection is a protocol
/// violation: DISCONNECT 0x82 (Protocol Error) for 5.0, then the connection is closed.
#[tokio::test]
async fn mqtt_3_1_0_2_second_connect_is_a_protocol_violation() {
    let gateway = TestGateway::start().await;
    let mut bystanders = Bystanders::join(gateway.addr).await;
    for version in VERSIONS {
        let mut client = TestClient::connect(gateway.addr, version, "repeater").await;
        client
            .send(Packet::Connect(connect_packet(version, "repeater")))
            .await;
        client.expect_refused(ReasonCode::ProtocolError).await;
        bystanders.check().await;
    }
    gateway.shutdown(WAIT).await;
}

/// 5.0 and 3.1.1 [MQTT-3.3.2-2]: a topic name with a wildcard is refused: DISCONNECT 0x90 (Topic
/// Name invalid) for 5.0, then the connection is closed; nothing is delivered.
#[tokio::test]
async fn mqtt_3_3_2_2_wildcard_in_topic_name() {
    let gateway = TestGateway::start().await;
    let mut bystanders = Bystanders::join(gateway.addr).await;
    for version in VERSIONS {
        for topic in ["bystander/+", "bystander/#"] {
            let mut client = TestClient::connect(gateway.addr, version, "wild").await;
            let mut publish = publish_packet(topic, "wild", QoS::AtLeastOnce, false);
            publish.packet_id = Some(1);
            client.send(Packet::Publish(publish)).await;
            client.expect_refused(ReasonCode::TopicNameInvalid).await;
            bystanders.check().await;
        }
    }
    gateway.shutdown(WAIT).await;
}

/// A QoS 0 PUBLISH to `topic` whose topic name bytes are given raw.
fn raw_publish(topic: &[u8], payload: &[u8]) -> Vec<u8> {
    let remaining = 2 + topic.len() + payload.len();
    assert!(remaining < 128, "one-byte remaining length");
    let mut bytes = vec![0x30, remaining as u8];
    bytes.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    bytes.extend_from_slice(topic);
    bytes.extend_from_slice(payload);
    bytes
}

/// 5.0 [MQTT-1.5.4-1] (3.1.1 [MQTT-1.5.3-1]): ill-formed UTF-8 in a topic name (here a lone
/// continuation byte, and an encoded surrogate) makes the packet malformed: DISCONNECT 0x81 for
/// 5.0, then the connection is closed.
#[tokio::test]
async fn mqtt_1_5_4_1_invalid_utf8_topic_closes() {
    let gateway = TestGateway::start().await;
    let mut bystanders = Bystanders::join(gateway.addr).await;
    for version in VERSIONS {
        for topic in [&b"bystander/\x80"[..], &b"bystander/\xed\xa0\x80"[..]] {
            let mut client = TestClient::connect(gateway.addr, version, "mangler").await;
            let mut bytes = raw_publish(topic, b"bad");
            if version.is_v5() {
                // 5.0 has a property length (zero) between the topic and the payload.
                bytes[1] += 1;
                bytes.insert(4 + topic.len(), 0);
            }
            client.send_raw(&bytes).await;
            client.expect_refused(ReasonCode::MalformedPacket).await;
            bystanders.check().await;
        }
    }
    gateway.shutdown(WAIT).await;
}

/// A QoS 0 PUBLISH whose encoding for `version` takes exactly `size` bytes.
fn sized_publish(version: ProtocolVersion, size: usize) -> mqtt_codec::PublishPacket {
    let mut publish = publish_packet("bulky/x", "", QoS::AtMostOnce, false);
    let empty = encoded_len(&Packet::Publish(publish.clone()), version).expect("encodable");
    // Past 127 bytes of remaining length its header takes two bytes, not one.
    let payload = size - empty - 1;
    publish.payload = bytes::Bytes::from(vec![b'x'; payload]);
    let packet = Packet::Publish(publish.clone());
    assert_eq!(encoded_len(&packet, version).expect("encodable"), size);
    publish
}

/// 5.0 [MQTT-3.2.2-15] and the 0x95 rule after it: a packet larger than the Maximum Packet Size
/// announced in CONNACK gets DISCONNECT 0x95 (Packet too large) for 5.0, then the connection is
/// closed (3.1.1: closed).
#[tokio::test]
async fn mqtt_3_2_2_15_oversized_packet_disconnects_0x95() {
    let gateway = TestGateway::start_with(|config| config.broker.max_packet_size = 1024).await;
    let mut bystanders = Bystanders::join(gateway.addr).await;
    for version in VERSIONS {
        let (mut client, connack) =
            TestClient::connect_accepted(gateway.addr, connect_packet(version, "bulky")).await;
        if version.is_v5() {
            assert_eq!(connack.properties.maximum_packet_size, Some(1024));
        }
        // Exactly the maximum is fine; one byte more is not.
        let exactly = sized_publish(version, 1024);
        client.publish_packet(exactly).await;
        client.ping().await;
        let too_big = sized_publish(version, 1025);
        client.send(Packet::Publish(too_big)).await;
        client.expect_refused(ReasonCode::PacketTooLarge).await;
        bystanders.check().await;
    }
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-4.13.1-1] (3.1.1 [MQTT-4.8.0-1]): bytes that are not an MQTT packet close the
/// connection: before CONNECT without an answer, after it with DISCONNECT 0x81 for 5.0.
#[tokio::test]
async fn mqtt_4_13_1_1_garbage_bytes_close_connection() {
    let gateway = TestGateway::start().await;
    let mut bystanders = Bystanders::join(gateway.addr).await;
    // Not a CONNECT at all (type 4 with flags), then an HTTP request line.
    for garbage in [&b"\x4f\x00garbage"[..], &b"GET / HTTP/1.1\r\n\r\n"[..]] {
        let mut client = TestClient::open(gateway.addr).await;
        client.send_raw(garbage).await;
        client.expect_closed().await;
        bystanders.check().await;
    }
    for version in VERSIONS {
        let mut client = TestClient::connect(gateway.addr, version, "babbler").await;
        // PINGREQ with a non-zero remaining length and flags [MQTT-2.2.2-2].
        client.send_raw(b"\xc7\x03\x01\x02\x03").await;
        client.expect_refused(ReasonCode::MalformedPacket).await;
        bystanders.check().await;
    }
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-4.13.1-1] (3.1.1 [MQTT-4.8.0-1], spec 2.2.1): packet type 0 is reserved, and 15 is
/// reserved before 5.0 (AUTH in 5.0, where one without an authentication method is a Protocol
/// Error); either closes the connection.
#[tokio::test]
async fn mqtt_4_13_1_1_reserved_packet_types_close_connection() {
    let gateway = TestGateway::start().await;
    let mut bystanders = Bystanders::join(gateway.addr).await;
    for (version, bytes, reason) in [
        (
            ProtocolVersion::V5,
            &b"\x00\x00"[..],
            ReasonCode::MalformedPacket,
        ),
        (
            ProtocolVersion::V311,
            &b"\x00\x00"[..],
            ReasonCode::MalformedPacket,
        ),
        (
            ProtocolVersion::V5,
            &b"\xf0\x00"[..],
            ReasonCode::ProtocolError,
        ),
        (
            ProtocolVersion::V311,
            &b"\xf0\x00"[..],
            ReasonCode::ProtocolError,
        ),
    ] {
        let mut client = TestClient::connect(gateway.addr, version, "reserved").await;
        client.send_raw(bytes).await;
        client.expect_refused(reason).await;
        bystanders.check().await;
    }
    let mut client = TestClient::open(gateway.addr).await;
    client.send_raw(b"\x00\x00").await;
    client.expect_closed().await;
    bystanders.check().await;
    gateway.shutdown(WAIT).await;
}

/// 5.0 [MQTT-1.5.5-1] and spec 2.1.4: the remaining length takes at most four bytes; a fifth
/// continuation makes the packet malformed (DISCONNECT 0x81 for 5.0), then the connection is
/// closed, however large the length would have been.
#[tokio::test]
async fn mqtt_1_5_5_1_remaining_length_over_four_bytes_is_malformed() {
    let gateway = TestGateway::start().await;
    let mut bystanders = Bystanders::join(gateway.addr).await;
    for version in VERSIONS {
        let mut client = TestClient::connect(gateway.addr, version, "endless").await;
        client.send_raw(b"\x30\xff\xff\xff\xff\x01").await;
        client.expect_refused(ReasonCode::MalformedPacket).await;
        bystanders.check().await;
    }
    gateway.shutdown(WAIT).await;
}

/// 3.1.1 spec 3.1.4 (item 1) and 5.0 spec 3.1.4: a connection that sends no CONNECT within a
/// reasonable time is closed (here the configured connect timeout, 300 ms); one that sends half
/// a CONNECT too.
#[tokio::test]
async fn mqtt_3_1_4_connect_timeout_closes_silent_connection() {
    let gateway = TestGateway::start_with(|config| {
        config.connect_timeout = Duration::from_millis(300);
    })
    .await;
    let mut bystanders = Bystanders::join(gateway.addr).await;

    let mut silent = TestClient::open(gateway.addr).await;
    let mut partial = TestClient::open(gateway.addr).await;
    let mut connect = bytes::BytesMut::new();
    encode(
        &Packet::Connect(connect_packet(ProtocolVersion::V311, "half")),
        ProtocolVersion::V311,
        &mut connect,
    )
    .expect("encodes");
    partial.send_raw(&connect[..connect.len() / 2]).await;
    let opened = Instant::now();
    silent.expect_closed().await;
    partial.expect_closed().await;
    assert!(
        opened.elapsed() >= Duration::from_millis(250),
        "closed after {:?}, before the connect timeout",
        opened.elapsed()
    );
    bystanders.check().await;
    gateway.shutdown(WAIT).await;
}

/// The gateway's bound on open connections: one more connection than allowed is closed at once,
/// without disturbing the others, and a slot that frees up can be used again.
#[tokio::test]
async fn max_connections_refuses_extra_connections() {
    // The two bystanders and one more.
    let gateway = TestGateway::start_with(|config| config.max_connections = 3).await;
    let mut bystanders = Bystanders::join(gateway.addr).await;
    let third = TestClient::v311(gateway.addr, "third").await;

    let mut fourth = TestClient::open(gateway.addr).await;
    fourth
        .send(Packet::Connect(connect_packet(
            ProtocolVersion::V5,
            "fourth",
        )))
        .await;
    fourth.expect_closed().await;
    bystanders.check().await;

    third.disconnect().await;
    // The slot is free once the gateway has finished with the closed connection.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut retry = TestClient::open(gateway.addr).await;
        retry
            .send(Packet::Connect(connect_packet(
                ProtocolVersion::V5,
                "fourth",
            )))
            .await;
        match retry.try_packet(Duration::from_millis(200)).await {
            Some(Packet::ConnAck(connack)) => {
                assert_eq!(connack.reason_code, ReasonCode::Success);
                retry.disconnect().await;
                break;
            }
            Some(other) => panic!("expected CONNACK, got {other:?}"),
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None => panic!("no slot freed within {WAIT:?}"),
        }
    }
    bystanders.check().await;
    gateway.shutdown(WAIT).await;
}
