//! Byte streams recorded between Debian's mosquitto 2.0.11 clients and broker (see
//! `tests/fixtures/capture.py` for the exact commands): each stream decodes fully into the
//! expected packets, and re-encoding each packet gives back the bytes mosquitto wrote.

use bytes::BytesMut;
use mqtt_codec::{
    ConnectPacket, Packet, ProtocolVersion, PublishPacket, QoS, ReasonCode, decode, encode,
};

/// One recorded connection: its client-to-server and server-to-client streams, one packet
/// per line in hex.
struct Fixture {
    name: &'static str,
    c2s: &'static str,
    s2c: &'static str,
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture {
            name: $name,
            c2s: include_str!(concat!("../fixtures/", $name, ".c2s.hex")),
            s2c: include_str!(concat!("../fixtures/", $name, ".s2c.hex")),
        }
    };
}

fn fixtures() -> Vec<Fixture> {
    vec![
        fixture!("pub31"),
        fixture!("sub311"),
        fixture!("pub311q0"),
        fixture!("pub311q1"),
        fixture!("pub311q2"),
        fixture!("unsub311"),
        fixture!("sub5"),
        fixture!("pub5q0"),
        fixture!("pub5q1"),
        fixture!("pub5q2"),
        fixture!("unsub5"),
        fixture!("auth5"),
    ]
}

fn lines(stream: &str) -> Vec<Vec<u8>> {
    stream
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.split_whitespace()
                .map(|pair| u8::from_str_radix(pair, 16).expect("hex"))
                .collect()
        })
        .collect()
}

/// Decodes a whole stream at once, as a transport would after one large read.
fn decode_stream(name: &str, packets: &[Vec<u8>], version: ProtocolVersion) -> Vec<Packet> {
    let mut buf = BytesMut::from(&packets.concat()[..]);
    let mut decoded = Vec::new();
    loop {
        match decode(&mut buf, version, 1 << 20) {
            Ok(Some(packet)) => decoded.push(packet),
            Ok(None) => break,
            Err(error) => panic!("{name}: packet {}: {error}", decoded.len()),
        }
    }
    assert!(buf.is_empty(), "{name}: {} bytes left over", buf.len());
    assert_eq!(decoded.len(), packets.len(), "{name}");
    decoded
}

/// Mosquitto writes some properties in an order other than ours (ascending identifiers): the
/// broker's CONNACK puts Topic Alias Maximum before Receive Maximum, and a forwarded PUBLISH
/// gets its Message Expiry Interval moved after the other properties. Property order carries
/// no meaning, so for those packets the same bytes in another order are the right answer.
fn property_order_differs(version: ProtocolVersion, packet: &Packet) -> bool {
    version.is_v5()
        && match packet {
            Packet::ConnAck(connack) => connack.properties.topic_alias_maximum.is_some(),
            Packet::Publish(publish) => {
                publish.properties.message_expiry_interval.is_some()
                    && !publish.properties.user_properties.is_empty()
            }
            _ => false,
        }
}

fn check_reencoding(name: &str, version: ProtocolVersion, packets: &[Packet], bytes: &[Vec<u8>]) {
    for (packet, original) in packets.iter().zip(bytes) {
        let mut buf = BytesMut::new();
        encode(packet, version, &mut buf).unwrap_or_else(|e| panic!("{name}: {e}"));
        if property_order_differs(version, packet) && buf[..] != original[..] {
            let (mut ours, mut theirs) = (buf.to_vec(), original.clone());
            ours.sort_unstable();
            theirs.sort_unstable();
            assert_eq!(ours, theirs, "{name}: {packet:?}");
            let mut again = buf.clone();
            assert_eq!(
                decode(&mut again, version, 1 << 20),
                Ok(Some(packet.clone()))
            );
        } else {
            assert_eq!(buf[..], original[..], "{name}: {packet:?}");
        }
    }
}

struct Connection {
    version: ProtocolVersion,
    c2s: Vec<Packet>,
    s2c: Vec<Packet>,
}

fn load(fixture: &Fixture) -> Connection {
    let c2s_bytes = lines(fixture.c2s);
    // The server learns the version from CONNECT, whatever it assumed before.
    let first = decode_stream(fixture.name, &c2s_bytes[..1], ProtocolVersion::V311);
    let Packet::Connect(ConnectPacket { protocol, .. }) = first[0] else {
        panic!("{}: the first packet is not CONNECT", fixture.name);
    };
    let c2s = decode_stream(fixture.name, &c2s_bytes, protocol);
    let s2c_bytes = lines(fixture.s2c);
    let s2c = decode_stream(fixture.name, &s2c_bytes, protocol);
    check_reencoding(fixture.name, protocol, &c2s, &c2s_bytes);
    check_reencoding(fixture.name, protocol, &s2c, &s2c_bytes);
    Connection {
        version: protocol,
        c2s,
        s2c,
    }
}

fn names(packets: &[Packet]) -> Vec<&'static str> {
    packets.iter().map(Packet::name).collect()
}

fn connect(packet: &Packet) -> &ConnectPacket {
    match packet {
        Packet::Connect(connect) => connect,
        other => panic!("expected CONNECT, got {other:?}"),
    }
}

fn publish(packet: &Packet) -> &PublishPacket {
    match packet {
        Packet::Publish(publish) => publish,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[test]
fn every_fixture_decodes_and_reencodes_byte_for_byte() {
    for fixture in fixtures() {
        let connection = load(&fixture);
        let connect = connect(&connection.c2s[0]);
        assert_eq!(connect.client_id, fixture.name);
        assert_eq!(connect.keep_alive, 60);
        assert!(connect.clean_start);
        assert_eq!(connection.s2c[0].name(), "CONNACK");
    }
}

#[test]
fn mqtt_3_1_publisher() {
    let connection = load(&fixture!("pub31"));
    assert_eq!(connection.version, ProtocolVersion::V31);
    assert_eq!(names(&connection.c2s), ["CONNECT", "PUBLISH", "DISCONNECT"]);
    assert_eq!(names(&connection.s2c), ["CONNACK", "PUBACK"]);
    let message = publish(&connection.c2s[1]);
    assert_eq!(message.topic, "fixtures/v31/q1");
    assert_eq!(message.qos, QoS::AtLeastOnce);
    assert_eq!(message.payload, "old");
}

#[test]
fn mqtt_3_1_1_subscriber_receives_each_qos() {
    let connection = load(&fixture!("sub311"));
    assert_eq!(connection.version, ProtocolVersion::V311);
    assert_eq!(
        names(&connection.c2s),
        [
            "CONNECT",
            "SUBSCRIBE",
            "PUBACK",
            "PUBREC",
            "PUBCOMP",
            "DISCONNECT"
        ]
    );
    assert_eq!(
        names(&connection.s2c),
        [
            "CONNACK", "SUBACK", "PUBLISH", "PUBLISH", "PUBLISH", "PUBREL"
        ]
    );
    let Packet::Subscribe(subscribe) = &connection.c2s[1] else {
        unreachable!()
    };
    assert_eq!(subscribe.subscriptions[0].filter, "fixtures/v311/#");
    assert_eq!(subscribe.subscriptions[0].options.qos, QoS::ExactlyOnce);
    let Packet::SubAck(suback) = &connection.s2c[1] else {
        unreachable!()
    };
    assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS2]);
    let messages: Vec<_> = connection.s2c[2..5].iter().map(publish).collect();
    assert_eq!(
        messages
            .iter()
            .map(|m| (m.topic.as_str(), m.qos, &m.payload[..]))
            .collect::<Vec<_>>(),
        [
            ("fixtures/v311/q0", QoS::AtMostOnce, &b"hello"[..]),
            ("fixtures/v311/q1", QoS::AtLeastOnce, &b"retained"[..]),
            ("fixtures/v311/q2", QoS::ExactlyOnce, &b"exactly-once"[..]),
        ]
    );
    // Forwarded live, so not retained, though published with RETAIN.
    assert!(!messages[1].retain);
}

#[test]
fn mqtt_3_1_1_publisher_with_will_and_credentials() {
    let connection = load(&fixture!("pub311q1"));
    let connect = connect(&connection.c2s[0]);
    assert_eq!(connect.username.as_deref(), Some("user"));
    assert_eq!(connect.password.as_deref(), Some(&b"secret"[..]));
    let will = connect.will.as_ref().expect("a will");
    assert_eq!(will.topic, "fixtures/v311/will");
    assert_eq!(will.payload, "gone");
    assert_eq!(will.qos, QoS::AtLeastOnce);
    assert!(will.retain);
    let message = publish(&connection.c2s[1]);
    assert!(message.retain);
    assert_eq!(message.packet_id, Some(1));

    let connection = load(&fixture!("pub311q2"));
    assert_eq!(
        names(&connection.c2s),
        ["CONNECT", "PUBLISH", "PUBREL", "DISCONNECT"]
    );
    assert_eq!(names(&connection.s2c), ["CONNACK", "PUBREC", "PUBCOMP"]);

    let connection = load(&fixture!("unsub311"));
    let Packet::Unsubscribe(unsubscribe) = &connection.c2s[2] else {
        unreachable!()
    };
    assert_eq!(unsubscribe.filters, ["fixtures/v311/x"]);
    let Packet::UnsubAck(unsuback) = &connection.s2c[2] else {
        unreachable!()
    };
    assert_eq!(unsuback.packet_id, unsubscribe.packet_id);
    assert!(unsuback.reason_codes.is_empty());
}

#[test]
fn mqtt_5_subscriber_sees_publish_properties() {
    let connection = load(&fixture!("sub5"));
    assert_eq!(connection.version, ProtocolVersion::V5);
    let connect = connect(&connection.c2s[0]);
    assert_eq!(connect.properties.session_expiry_interval, Some(60));
    // mosquitto_sub -C 3 asks for at most 3 messages in flight.
    assert_eq!(connect.properties.receive_maximum, Some(3));
    let Packet::Subscribe(subscribe) = &connection.c2s[1] else {
        unreachable!()
    };
    assert_eq!(
        subscribe.properties.user_properties,
        [("s".into(), "t".into())]
    );
    let Packet::ConnAck(connack) = &connection.s2c[0] else {
        unreachable!()
    };
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(connack.properties.topic_alias_maximum, Some(10));
    assert_eq!(connack.properties.receive_maximum, Some(20));

    let hello = publish(&connection.s2c[2]);
    assert_eq!(hello.topic, "fixtures/v5/q0");
    assert_eq!(hello.payload, "hello");
    assert_eq!(hello.properties.user_properties, [("a".into(), "b".into())]);
    assert!(matches!(
        hello.properties.message_expiry_interval,
        Some(1..=30)
    ));

    let json = publish(&connection.s2c[3]);
    assert_eq!(json.payload, r#"{"n":1}"#);
    assert_eq!(json.properties.payload_format_indicator, Some(1));
    assert_eq!(
        json.properties.content_type.as_deref(),
        Some("application/json")
    );
    assert_eq!(
        json.properties.response_topic.as_deref(),
        Some("fixtures/v5/reply")
    );
    assert_eq!(
        json.properties.correlation_data.as_deref(),
        Some(&b"42"[..])
    );

    assert_eq!(publish(&connection.s2c[4]).qos, QoS::ExactlyOnce);
}

#[test]
fn mqtt_5_publishers() {
    let connection = load(&fixture!("pub5q1"));
    let connect = connect(&connection.c2s[0]);
    assert_eq!(connect.username.as_deref(), Some("user"));
    let will = connect.will.as_ref().expect("a will");
    assert_eq!(will.qos, QoS::ExactlyOnce);
    assert_eq!(will.properties.will_delay_interval, Some(5));
    assert_eq!(will.properties.user_properties, [("w".into(), "x".into())]);

    let connection = load(&fixture!("pub5q2"));
    let properties = &connect_of(&connection).properties;
    assert_eq!(properties.request_problem_information, Some(1));
    assert_eq!(properties.receive_maximum, Some(10));
    assert_eq!(properties.topic_alias_maximum, Some(4));
    assert_eq!(properties.maximum_packet_size, Some(65_536));
    let Packet::Disconnect(disconnect) = &connection.c2s[3] else {
        unreachable!()
    };
    assert_eq!(
        disconnect.properties.user_properties,
        [("bye".into(), "now".into())]
    );

    let connection = load(&fixture!("unsub5"));
    let Packet::Unsubscribe(unsubscribe) = &connection.c2s[2] else {
        unreachable!()
    };
    assert_eq!(
        unsubscribe.properties.user_properties,
        [("u".into(), "v".into())]
    );
    let Packet::UnsubAck(unsuback) = &connection.s2c[2] else {
        unreachable!()
    };
    assert_eq!(unsuback.reason_codes, [ReasonCode::Success]);
    // mosquitto_sub -W ends with reason 0x04 in the one-byte short form.
    let Packet::Disconnect(disconnect) = &connection.c2s[3] else {
        unreachable!()
    };
    assert_eq!(
        disconnect.reason_code,
        ReasonCode::DisconnectWithWillMessage
    );

    let connection = load(&fixture!("auth5"));
    assert_eq!(
        connect_of(&connection)
            .properties
            .authentication_method
            .as_deref(),
        Some("SCRAM-SHA-1")
    );
    let Packet::ConnAck(connack) = &connection.s2c[0] else {
        unreachable!()
    };
    assert_eq!(connack.reason_code, ReasonCode::BadAuthenticationMethod);
}

fn connect_of(connection: &Connection) -> &ConnectPacket {
    connect(&connection.c2s[0])
}
