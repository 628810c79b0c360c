//! Known bytes <-> packet values for every packet type in every version, derived by hand from
//! the figures of the MQTT 3.1, 3.1.1 and 5.0 specifications.

use crate::common::{self, decode_one, hex};
use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    AuthPacket, ByteStr, ConnAckPacket, ConnectPacket, DisconnectPacket, EncodeError, Packet,
    Properties,
    ProtocolVersion::{self, V5, V31, V311},
    PubAckPacket, PublishPacket, QoS, ReasonCode, RetainHandling, SubAckPacket, SubscribePacket,
    Subscription, SubscriptionOptions, UnsubAckPacket, UnsubscribePacket, Will, decode, encode,
    encode_from_client, encoded_len, encoded_len_from_client, packet_length,
};

fn s(text: &'static str) -> ByteStr {
    ByteStr::from_static(text)
}

fn b(bytes: &'static [u8]) -> Bytes {
    Bytes::from_static(bytes)
}

fn connect(protocol: ProtocolVersion, client_id: &'static str) -> ConnectPacket {
    ConnectPacket {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: s(client_id),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

fn publish(
    qos: QoS,
    topic: &'static str,
    packet_id: Option<u16>,
    payload: &'static [u8],
) -> Packet {
    Packet::Publish(PublishPacket {
        dup: false,
        qos,
        retain: false,
        topic: s(topic),
        packet_id,
        properties: Properties::default(),
        payload: b(payload),
    })
}

fn subscription(filter: &'static str, qos: QoS) -> Subscription {
    Subscription {
        filter: s(filter),
        options: SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        },
    }
}

/// Packets whose encoding is unique, so bytes -> value and value -> bytes both hold.
fn bijective_cases() -> Vec<(&'static str, ProtocolVersion, &'static str, Packet)> {
    let will_connect = Packet::Connect(ConnectPacket {
        keep_alive: 10,
        will: Some(Will {
            topic: s("w/t"),
            payload: b(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        username: Some(s("u")),
        password: Some(b(&[1, 2])),
        ..connect(V311, "c")
    });
    let v5_connect = Packet::Connect(ConnectPacket {
        properties: Properties {
            session_expiry_interval: Some(60),
            receive_maximum: Some(20),
            user_properties: vec![(s("a"), s("b"))],
            ..Properties::default()
        },
        ..connect(V5, "c")
    });
    // 5.0 allows a password without a user name, and an empty client identifier.
    let v5_will_connect = Packet::Connect(ConnectPacket {
        clean_start: false,
        will: Some(Will {
            topic: s("t"),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties {
                will_delay_interval: Some(5),
                ..Properties::default()
            },
        }),
        password: Some(b(b"pw")),
        ..connect(V5, "")
    });
    let v5_publish = Packet::Publish(PublishPacket {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: s("a"),
        packet_id: Some(5),
        properties: Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(30),
            topic_alias: Some(3),
            user_properties: vec![(s("k"), s("v"))],
            subscription_identifiers: vec![1, 300],
            ..Properties::default()
        },
        payload: b(b"hi"),
    });
    let aliased_publish = Packet::Publish(PublishPacket {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: ByteStr::new(),
        packet_id: None,
        properties: Properties {
            topic_alias: Some(7),
            ..Properties::default()
        },
        payload: Bytes::new(),
    });
    let reason = |reason_code, properties| PubAckPacket {
        packet_id: 1,
        reason_code,
        properties,
    };
    let reason_string = Properties {
        reason_string: Some(s("e")),
        ..Properties::default()
    };
    vec![
        (
            "3.1.1 CONNECT, clean session, keep alive 60",
            V311,
            "10 0F 00 04 'MQTT' 04 02 00 3C 00 03 'abc'",
            Packet::Connect(connect(V311, "abc")),
        ),
        (
            "3.1.1 CONNECT with will, user name and password",
            V311,
            "10 1E 00 04 'MQTT' 04 EE 00 0A 00 01 'c' 00 03 'w/t' 00 03 'bye' 00 01 'u' 00 02 01 02",
            will_connect,
        ),
        (
            "3.1 CONNECT",
            V31,
            "10 10 00 06 'MQIsdp' 03 02 00 3C 00 02 'id'",
            Packet::Connect(connect(V31, "id")),
        ),
        (
            "5.0 CONNECT with properties",
            V5,
            "10 1D 00 04 'MQTT' 05 02 00 3C 0F 11 00 00 00 3C 21 00 14 26 00 01 'a' 00 01 'b' 00 01 'c'",
            v5_connect,
        ),
        (
            "5.0 CONNECT with will properties and a password alone",
            V5,
            "10 1C 00 04 'MQTT' 05 44 00 3C 00 00 00 05 18 00 00 00 05 00 01 't' 00 00 00 02 'pw'",
            v5_will_connect,
        ),
        (
            "3.1.1 CONNACK, session present",
            V311,
            "20 02 01 00",
            Packet::ConnAck(ConnAckPacket {
                session_present: true,
                reason_code: ReasonCode::Success,
                properties: Properties::default(),
            }),
        ),
        (
            "3.1.1 CONNACK, bad user name or password",
            V311,
            "20 02 00 04",
            Packet::ConnAck(ConnAckPacket {
                session_present: false,
                reason_code: ReasonCode::BadUserNameOrPassword,
                properties: Properties::default(),
            }),
        ),
        (
            "3.1 CONNACK, identifier rejected",
            V31,
            "20 02 00 02",
            Packet::ConnAck(ConnAckPacket {
                session_present: false,
                reason_code: ReasonCode::ClientIdentifierNotValid,
                properties: Properties::default(),
            }),
        ),
        (
            "5.0 CONNACK with properties",
            V5,
            "20 0A 00 00 07 12 00 01 'x' 22 00 0A",
            Packet::ConnAck(ConnAckPacket {
                session_present: false,
                reason_code: ReasonCode::Success,
                properties: Properties {
                    assigned_client_identifier: Some(s("x")),
                    topic_alias_maximum: Some(10),
                    ..Properties::default()
                },
            }),
        ),
        (
            "5.0 CONNACK, not authorized",
            V5,
            "20 03 00 87 00",
            Packet::ConnAck(ConnAckPacket {
                session_present: false,
                reason_code: ReasonCode::NotAuthorized,
                properties: Properties::default(),
            }),
        ),
        (
            "3.1.1 PUBLISH QoS 0",
            V311,
            "30 0A 00 03 'a/b' 'hello'",
            publish(QoS::AtMostOnce, "a/b", None, b"hello"),
        ),
        (
            "3.1.1 PUBLISH QoS 1, DUP and RETAIN",
            V311,
            "3B 07 00 01 't' 00 0A 'xy'",
            Packet::Publish(PublishPacket {
                dup: true,
                retain: true,
                ..match publish(QoS::AtLeastOnce, "t", Some(10), b"xy") {
                    Packet::Publish(publish) => publish,
                    _ => unreachable!(),
                }
            }),
        ),
        (
            "3.1 PUBLISH QoS 2, empty payload",
            V31,
            "34 05 00 01 't' FF FF",
            publish(QoS::ExactlyOnce, "t", Some(0xFFFF), b""),
        ),
        (
            "5.0 PUBLISH QoS 0 without properties",
            V5,
            "30 0B 00 03 'a/b' 00 'hello'",
            publish(QoS::AtMostOnce, "a/b", None, b"hello"),
        ),
        (
            "5.0 PUBLISH with properties and two subscription identifiers",
            V5,
            "32 1E 00 01 'a' 00 05 16 01 01 02 00 00 00 1E 0B 01 0B AC 02 23 00 03 26 00 01 'k' 00 01 'v' 'hi'",
            v5_publish,
        ),
        (
            "5.0 PUBLISH with an empty topic and a topic alias",
            V5,
            "30 06 00 00 03 23 00 07",
            aliased_publish,
        ),
        (
            "3.1.1 PUBACK",
            V311,
            "40 02 00 0A",
            Packet::PubAck(PubAckPacket::new(10)),
        ),
        (
            "3.1.1 PUBREC",
            V311,
            "50 02 00 0A",
            Packet::PubRec(PubAckPacket::new(10)),
        ),
        (
            "3.1.1 PUBREL",
            V311,
            "62 02 00 0A",
            Packet::PubRel(PubAckPacket::new(10)),
        ),
        (
            "3.1.1 PUBCOMP",
            V311,
            "70 02 00 0A",
            Packet::PubComp(PubAckPacket::new(10)),
        ),
        (
            "3.1 PUBREL",
            V31,
            "62 02 01 00",
            Packet::PubRel(PubAckPacket::new(256)),
        ),
        (
            "5.0 PUBACK short form",
            V5,
            "40 02 00 01",
            Packet::PubAck(PubAckPacket::new(1)),
        ),
        (
            "5.0 PUBACK with a reason code alone",
            V5,
            "40 03 00 01 10",
            Packet::PubAck(reason(
                ReasonCode::NoMatchingSubscribers,
                Properties::default(),
            )),
        ),
        (
            "5.0 PUBREC with a reason string",
            V5,
            "50 08 00 01 80 04 1F 00 01 'e'",
            Packet::PubRec(reason(ReasonCode::UnspecifiedError, reason_string.clone())),
        ),
        (
            "5.0 PUBREL, packet identifier not found",
            V5,
            "62 03 00 01 92",
            Packet::PubRel(reason(
                ReasonCode::PacketIdentifierNotFound,
                Properties::default(),
            )),
        ),
        (
            "5.0 PUBCOMP with a reason string",
            V5,
            "70 08 00 01 00 04 1F 00 01 'e'",
            Packet::PubComp(reason(ReasonCode::Success, reason_string.clone())),
        ),
        (
            "3.1.1 SUBSCRIBE, two filters",
            V311,
            "82 0C 00 01 00 03 'a/+' 01 00 01 '#' 02",
            Packet::Subscribe(SubscribePacket {
                packet_id: 1,
                properties: Properties::default(),
                subscriptions: vec![
                    subscription("a/+", QoS::AtLeastOnce),
                    subscription("#", QoS::ExactlyOnce),
                ],
            }),
        ),
        (
            "5.0 SUBSCRIBE with options and a subscription identifier",
            V5,
            "82 16 00 01 02 0B 07 00 0A '$share/g/a' 29 00 01 'b' 04",
            Packet::Subscribe(SubscribePacket {
                packet_id: 1,
                properties: Properties {
                    subscription_identifiers: vec![7],
                    ..Properties::default()
                },
                subscriptions: vec![
                    Subscription {
                        filter: s("$share/g/a"),
                        options: SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            no_local: false,
                            retain_as_published: true,
                            retain_handling: RetainHandling::DoNotSend,
                        },
                    },
                    Subscription {
                        filter: s("b"),
                        options: SubscriptionOptions {
                            no_local: true,
                            ..SubscriptionOptions::default()
                        },
                    },
                ],
            }),
        ),
        (
            "3.1.1 SUBACK with a failure",
            V311,
            "90 05 00 01 01 80 02",
            Packet::SubAck(SubAckPacket {
                packet_id: 1,
                properties: Properties::default(),
                reason_codes: vec![
                    ReasonCode::GrantedQoS1,
                    ReasonCode::UnspecifiedError,
                    ReasonCode::GrantedQoS2,
                ],
            }),
        ),
        (
            "5.0 SUBACK with a reason string",
            V5,
            "90 0C 00 01 04 1F 00 01 'r' 00 01 02 8F A2",
            Packet::SubAck(SubAckPacket {
                packet_id: 1,
                properties: Properties {
                    reason_string: Some(s("r")),
                    ..Properties::default()
                },
                reason_codes: vec![
                    ReasonCode::GRANTED_QOS_0,
                    ReasonCode::GrantedQoS1,
                    ReasonCode::GrantedQoS2,
                    ReasonCode::TopicFilterInvalid,
                    ReasonCode::WildcardSubscriptionsNotSupported,
                ],
            }),
        ),
        (
            "3.1.1 UNSUBSCRIBE",
            V311,
            "A2 07 00 02 00 03 'a/b'",
            Packet::Unsubscribe(UnsubscribePacket {
                packet_id: 2,
                properties: Properties::default(),
                filters: vec![s("a/b")],
            }),
        ),
        (
            "5.0 UNSUBSCRIBE",
            V5,
            "A2 0A 00 01 00 00 02 'ab' 00 01 '#'",
            Packet::Unsubscribe(UnsubscribePacket {
                packet_id: 1,
                properties: Properties::default(),
                filters: vec![s("ab"), s("#")],
            }),
        ),
        (
            "3.1.1 UNSUBACK",
            V311,
            "B0 02 00 02",
            Packet::UnsubAck(UnsubAckPacket {
                packet_id: 2,
                properties: Properties::default(),
                reason_codes: vec![],
            }),
        ),
        (
            "5.0 UNSUBACK",
            V5,
            "B0 05 00 01 00 00 11",
            Packet::UnsubAck(UnsubAckPacket {
                packet_id: 1,
                properties: Properties::default(),
                reason_codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
            }),
        ),
        ("3.1.1 PINGREQ", V311, "C0 00", Packet::PingReq),
        ("3.1.1 PINGRESP", V311, "D0 00", Packet::PingResp),
        ("5.0 PINGREQ", V5, "C0 00", Packet::PingReq),
        ("3.1 PINGRESP", V31, "D0 00", Packet::PingResp),
        (
            "3.1.1 DISCONNECT",
            V311,
            "E0 00",
            Packet::Disconnect(DisconnectPacket::default()),
        ),
        (
            "5.0 DISCONNECT short form",
            V5,
            "E0 00",
            Packet::Disconnect(DisconnectPacket::default()),
        ),
        (
            "5.0 DISCONNECT with a reason code alone",
            V5,
            "E0 01 8B",
            Packet::Disconnect(DisconnectPacket {
                reason_code: ReasonCode::ServerShuttingDown,
                properties: Properties::default(),
            }),
        ),
        (
            "5.0 DISCONNECT with a session expiry interval",
            V5,
            "E0 07 00 05 11 00 00 00 00",
            Packet::Disconnect(DisconnectPacket {
                reason_code: ReasonCode::NORMAL_DISCONNECTION,
                properties: Properties {
                    session_expiry_interval: Some(0),
                    ..Properties::default()
                },
            }),
        ),
        (
            "5.0 AUTH short form",
            V5,
            "F0 00",
            Packet::Auth(AuthPacket::default()),
        ),
        (
            "5.0 AUTH, continue with a method",
            V5,
            "F0 06 18 04 15 00 01 'm'",
            Packet::Auth(AuthPacket {
                reason_code: ReasonCode::ContinueAuthentication,
                properties: Properties {
                    authentication_method: Some(s("m")),
                    ..Properties::default()
                },
            }),
        ),
    ]
}

#[test]
fn known_bytes_decode_to_known_packets() {
    for (name, version, bytes, expected) in bijective_cases() {
        let bytes = hex(bytes);
        let decoded = decode_one(&bytes, version).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}");
        assert_eq!(packet_length(&bytes), Ok(Some(bytes.len())), "{name}");
    }
}

#[test]
fn known_packets_encode_to_known_bytes() {
    for (name, version, bytes, packet) in bijective_cases() {
        let bytes = hex(bytes);
        let mut buf = BytesMut::new();
        encode(&packet, version, &mut buf).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(buf[..], bytes[..], "{name}");
        assert_eq!(encoded_len(&packet, version), Ok(bytes.len()), "{name}");
    }
}

#[test]
fn the_client_encoder_writes_client_packets_alike_and_refuses_server_packets() {
    for (name, version, bytes, packet) in bijective_cases() {
        let server_only = match &packet {
            Packet::ConnAck(_) => Some("CONNACK"),
            Packet::SubAck(_) => Some("SUBACK"),
            Packet::UnsubAck(_) => Some("UNSUBACK"),
            Packet::PingResp => Some("PINGRESP"),
            _ => None,
        };
        let mut buf = BytesMut::from(&b"before"[..]);
        let written = encode_from_client(&packet, version, &mut buf);
        let len = encoded_len_from_client(&packet, version);
        match server_only {
            Some(packet) => {
                let refused = Err(EncodeError::ServerOnly { packet });
                assert_eq!(written, refused, "{name}");
                assert_eq!(len.map(|_| ()), refused, "{name}");
                assert_eq!(&buf[..], b"before", "{name}: nothing written");
            }
            None => {
                assert_eq!(written, Ok(()), "{name}");
                assert_eq!(buf[6..], hex(bytes)[..], "{name}");
                assert_eq!(len, Ok(buf.len() - 6), "{name}");
            }
        }
    }
}

#[test]
fn connect_is_decoded_by_its_own_protocol_level() {
    let bytes = hex("10 0E 00 04 'MQTT' 05 02 00 3C 00 00 01 'c'");
    for version in common::VERSIONS {
        match decode_one(&bytes, version) {
            Ok(Packet::Connect(connect)) => assert_eq!(connect.protocol, V5),
            other => panic!("{other:?}"),
        }
    }
    let bytes = hex("10 0C 00 04 'MQTT' 04 02 00 3C 00 00");
    match decode_one(&bytes, V5) {
        Ok(Packet::Connect(connect)) => {
            assert_eq!(connect.protocol, V311);
            assert_eq!(connect.client_id, "");
        }
        other => panic!("{other:?}"),
    }
}

/// Forms that decode but are not what the encoder writes (long forms, non-minimal lengths,
/// 3.1 leniency), and values the 3.x encoder has to map.
#[test]
fn alternative_encodings_decode() {
    let cases: Vec<(&str, ProtocolVersion, &str, Packet)> = vec![
        (
            "5.0 PUBACK, Success written out",
            V5,
            "40 03 00 01 00",
            Packet::PubAck(PubAckPacket::new(1)),
        ),
        (
            "5.0 PUBACK, empty properties written out",
            V5,
            "40 04 00 01 00 00",
            Packet::PubAck(PubAckPacket::new(1)),
        ),
        (
            "5.0 DISCONNECT, normal disconnection written out",
            V5,
            "E0 01 00",
            Packet::Disconnect(DisconnectPacket::default()),
        ),
        (
            "5.0 AUTH, Success written out",
            V5,
            "F0 02 00 00",
            Packet::Auth(AuthPacket::default()),
        ),
        (
            "non-minimal remaining length",
            V311,
            "C0 80 00",
            Packet::PingReq,
        ),
        (
            "3.1 SUBSCRIBE retried with DUP",
            V31,
            "8A 06 00 01 00 01 'a' 00",
            Packet::Subscribe(SubscribePacket {
                packet_id: 1,
                properties: Properties::default(),
                subscriptions: vec![subscription("a", QoS::AtMostOnce)],
            }),
        ),
        (
            "3.1 CONNACK ignores the reserved first byte",
            V31,
            "20 02 01 00",
            Packet::ConnAck(ConnAckPacket {
                session_present: false,
                reason_code: ReasonCode::Success,
                properties: Properties::default(),
            }),
        ),
        (
            "5.0 user properties keep their order and may repeat",
            V5,
            "E0 10 00 0E 26 00 01 'k' 00 01 '1' 26 00 01 'k' 00 01 '2'",
            Packet::Disconnect(DisconnectPacket {
                reason_code: ReasonCode::Success,
                properties: Properties {
                    user_properties: vec![(s("k"), s("1")), (s("k"), s("2"))],
                    ..Properties::default()
                },
            }),
        ),
    ];
    for (name, version, bytes, expected) in cases {
        let decoded = decode_one(&hex(bytes), version).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}");
    }
}

#[test]
fn older_versions_map_five_point_oh_reason_codes() {
    let connack = |reason_code| {
        Packet::ConnAck(ConnAckPacket {
            session_present: false,
            reason_code,
            properties: Properties {
                reason_string: Some(s("dropped in 3.1.1")),
                ..Properties::default()
            },
        })
    };
    let cases: Vec<(ProtocolVersion, Packet, &str)> = vec![
        (V311, connack(ReasonCode::Banned), "20 02 00 05"),
        (V311, connack(ReasonCode::ServerBusy), "20 02 00 03"),
        (
            V31,
            connack(ReasonCode::UnsupportedProtocolVersion),
            "20 02 00 01",
        ),
        (
            V311,
            Packet::SubAck(SubAckPacket {
                packet_id: 3,
                properties: Properties::default(),
                reason_codes: vec![ReasonCode::NotAuthorized, ReasonCode::GrantedQoS2],
            }),
            "90 04 00 03 80 02",
        ),
        (
            V311,
            Packet::PubAck(PubAckPacket {
                packet_id: 3,
                reason_code: ReasonCode::NoMatchingSubscribers,
                properties: Properties::default(),
            }),
            "40 02 00 03",
        ),
        (
            V311,
            Packet::Disconnect(DisconnectPacket {
                reason_code: ReasonCode::ServerShuttingDown,
                properties: Properties::default(),
            }),
            "E0 00",
        ),
        (
            V311,
            Packet::UnsubAck(UnsubAckPacket {
                packet_id: 3,
                properties: Properties::default(),
                reason_codes: vec![ReasonCode::Success],
            }),
            "B0 02 00 03",
        ),
        (
            V31,
            Packet::ConnAck(ConnAckPacket {
                session_present: true,
                reason_code: ReasonCode::Success,
                properties: Properties::default(),
            }),
            "20 02 00 00",
        ),
    ];
    for (version, packet, bytes) in cases {
        let mut buf = BytesMut::new();
        encode(&packet, version, &mut buf).unwrap();
        assert_eq!(buf[..], hex(bytes)[..], "{packet:?}");
    }
}

#[test]
fn publish_topic_and_payload_are_slices_of_the_frame() {
    let mut buf = BytesMut::from(&hex("30 0A 00 03 'a/b' 'hello' C0 00")[..]);
    let frame_start = buf.as_ptr() as usize;
    let Some(Packet::Publish(publish)) = decode(&mut buf, V311, 1024).unwrap() else {
        panic!("expected PUBLISH");
    };
    assert_eq!(publish.topic.as_ptr() as usize, frame_start + 4);
    assert_eq!(publish.payload.as_ptr() as usize, frame_start + 7);
    // The next packet is left in place.
    assert_eq!(buf[..], [0xC0, 0x00]);
    assert_eq!(decode(&mut buf, V311, 1024), Ok(Some(Packet::PingReq)));
    assert_eq!(decode(&mut buf, V311, 1024), Ok(None));
}

#[test]
fn incomplete_input_consumes_nothing() {
    let bytes = hex("30 0A 00 03 'a/b' 'hello'");
    for len in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..len]);
        assert_eq!(decode(&mut buf, V311, usize::MAX), Ok(None), "{len} bytes");
        assert_eq!(buf.len(), len);
    }
    assert_eq!(packet_length(&[]), Ok(None));
    assert_eq!(packet_length(&[0x30]), Ok(None));
    assert_eq!(packet_length(&[0x30, 0x80]), Ok(None));
    assert_eq!(packet_length(&[0x30, 0x80, 0x01]), Ok(Some(3 + 128)));
    assert_eq!(
        packet_length(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]),
        Ok(Some(5 + 268_435_455))
    );
}

#[test]
fn encode_appends_and_checks_limits() {
    use mqtt_codec::EncodeError;
    let mut buf = BytesMut::from(&b"xy"[..]);
    encode(&Packet::PingReq, V311, &mut buf).unwrap();
    assert_eq!(buf[..], [b'x', b'y', 0xC0, 0x00]);

    let long = ByteStr::from("a".repeat(65_536));
    let too_long_topic = Packet::Publish(PublishPacket {
        topic: long.clone(),
        ..match publish(QoS::AtMostOnce, "t", None, b"") {
            Packet::Publish(publish) => publish,
            _ => unreachable!(),
        }
    });
    let mut buf = BytesMut::new();
    assert_eq!(
        encode(&too_long_topic, V311, &mut buf),
        Err(EncodeError::FieldTooLong(65_536))
    );
    assert!(buf.is_empty(), "nothing written on error");

    let huge = Packet::Publish(PublishPacket {
        payload: Bytes::from(vec![0u8; mqtt_codec::MAX_REMAINING_LENGTH]),
        ..match publish(QoS::AtMostOnce, "t", None, b"") {
            Packet::Publish(publish) => publish,
            _ => unreachable!(),
        }
    });
    assert_eq!(
        encoded_len(&huge, V311),
        Err(EncodeError::PacketTooLarge(
            mqtt_codec::MAX_REMAINING_LENGTH + 3
        ))
    );

    let mismatched = publish(QoS::AtLeastOnce, "t", None, b"");
    assert_eq!(
        encoded_len(&mismatched, V311),
        Err(EncodeError::PacketIdentifierMismatch)
    );
    let mismatched = publish(QoS::AtMostOnce, "t", Some(1), b"");
    assert_eq!(
        encoded_len(&mismatched, V5),
        Err(EncodeError::PacketIdentifierMismatch)
    );

    for version in [V31, V311] {
        assert_eq!(
            encoded_len(&Packet::Auth(AuthPacket::default()), version),
            Err(EncodeError::NotInVersion {
                packet: "AUTH",
                version
            })
        );
    }

    let big_identifier = Packet::Subscribe(SubscribePacket {
        packet_id: 1,
        properties: Properties {
            subscription_identifiers: vec![268_435_456],
            ..Properties::default()
        },
        subscriptions: vec![subscription("a", QoS::AtMostOnce)],
    });
    assert_eq!(
        encoded_len(&big_identifier, V5),
        Err(EncodeError::VariableByteIntegerTooLarge(268_435_456))
    );

    let long_user_property = Packet::Disconnect(DisconnectPacket {
        reason_code: ReasonCode::Success,
        properties: Properties {
            user_properties: vec![(s("k"), long)],
            ..Properties::default()
        },
    });
    assert_eq!(
        encoded_len(&long_user_property, V5),
        Err(EncodeError::FieldTooLong(65_536))
    );
}

#[test]
fn a_field_of_exactly_65535_bytes_encodes_and_decodes() {
    // The largest a two-byte length prefix can state (spec 1.5.4): the bound is inclusive.
    let longest = ByteStr::from("a".repeat(65_535));
    let packet = Packet::Disconnect(DisconnectPacket {
        reason_code: ReasonCode::Success,
        properties: Properties {
            user_properties: vec![(s("k"), longest)],
            ..Properties::default()
        },
    });
    let mut buf = BytesMut::new();
    encode(&packet, V5, &mut buf).expect("65,535 bytes fit a field");
    assert_eq!(encoded_len(&packet, V5), Ok(buf.len()));
    assert_eq!(decode(&mut buf, V5, usize::MAX), Ok(Some(packet)));
}

#[test]
fn the_largest_subscription_identifier_encodes_and_decodes() {
    // 268,435,455 is the largest Variable Byte Integer (spec 1.5.5, 3.8.2.1.2): the bound is
    // inclusive.
    let packet = Packet::Subscribe(SubscribePacket {
        packet_id: 1,
        properties: Properties {
            subscription_identifiers: vec![268_435_455],
            ..Properties::default()
        },
        subscriptions: vec![subscription("a", QoS::AtMostOnce)],
    });
    let mut buf = BytesMut::new();
    encode(&packet, V5, &mut buf).expect("the largest identifier encodes");
    assert_eq!(encoded_len(&packet, V5), Ok(buf.len()));
    assert_eq!(decode(&mut buf, V5, usize::MAX), Ok(Some(packet)));
}

#[test]
fn a_packet_of_the_largest_remaining_length_is_sized_and_one_more_byte_is_refused() {
    // 268,435,455 is the largest remaining length (spec 2.2.3): the bound is inclusive. Only
    // sized, not written: the zeroed payload is never touched, so it costs no memory.
    let largest = 268_435_455;
    let topic_field = 2 + 1;
    let packet = |payload_len: usize| {
        let mut packet = publish(QoS::AtMostOnce, "t", None, b"");
        if let Packet::Publish(publish) = &mut packet {
            publish.payload = Bytes::from(vec![0u8; payload_len]);
        }
        packet
    };
    assert_eq!(
        encoded_len(&packet(largest - topic_field), V311),
        Ok(1 + 4 + largest)
    );
    assert_eq!(
        encoded_len(&packet(largest - topic_field + 1), V311),
        Err(EncodeError::PacketTooLarge(largest + 1))
    );
}

#[test]
fn reason_codes_say_whether_they_fail_and_what_they_mean() {
    for code in ReasonCode::ALL {
        assert_eq!(code.is_error(), code.as_u8() >= 0x80, "{code:?}");
        assert!(!code.description().is_empty(), "{code:?}");
    }
    assert!(!ReasonCode::Success.is_error());
    assert!(!ReasonCode::GrantedQoS2.is_error());
    assert!(ReasonCode::UnspecifiedError.is_error());
    assert_eq!(ReasonCode::PacketTooLarge.description(), "packet too large");
    assert_eq!(
        ReasonCode::PacketTooLarge.to_string(),
        "packet too large (0x95)"
    );
    assert_eq!(ReasonCode::Success.to_string(), "success (0x00)");
}

#[test]
fn byte_str_from_utf8_keeps_valid_text_and_refuses_the_rest() {
    let text = ByteStr::from_utf8(Bytes::from_static("a/é".as_bytes())).expect("valid UTF-8");
    assert_eq!(text, "a/é");
    assert!(ByteStr::from_utf8(Bytes::from_static(&[0x61, 0xC3, 0x28])).is_err());
}

#[test]
fn a_topic_of_65535_bytes_is_valid_and_one_more_is_too_long() {
    use mqtt_codec::topic::{TopicError, validate_topic_filter, validate_topic_name};
    let longest = "a".repeat(65_535);
    assert_eq!(validate_topic_filter(&longest), Ok(()));
    assert_eq!(validate_topic_name(&longest), Ok(()));
    let longest_filter = format!("{}/#", "a".repeat(65_533));
    assert_eq!(validate_topic_filter(&longest_filter), Ok(()));
    let too_long = "a".repeat(65_536);
    assert_eq!(validate_topic_filter(&too_long), Err(TopicError::TooLong));
    assert_eq!(validate_topic_name(&too_long), Err(TopicError::TooLong));
}

#[test]
fn byte_str_compares_formats_and_converts_as_its_text() {
    let text = ByteStr::from("a/b");
    assert!(text == *"a/b");
    assert!(text != *"a/c");
    assert!(text == "a/b");
    assert!(text != "a/c");
    assert_eq!(format!("{text}"), "a/b");
    assert_eq!(format!("{text:?}"), r#""a/b""#);
    let as_ref: &str = text.as_ref();
    assert_eq!(as_ref, "a/b");
    let detached = text.detached();
    assert_eq!(detached, text);
    assert_ne!(
        detached.as_bytes().as_ptr(),
        text.as_bytes().as_ptr(),
        "a copy of its own"
    );
    assert_eq!(text.into_bytes(), Bytes::from_static(b"a/b"));
}

#[test]
fn encode_reserves_once_for_a_publish() {
    let packet = publish(QoS::AtLeastOnce, "a/b", Some(1), &[7u8; 16 * 1024]);
    let len = encoded_len(&packet, V5).unwrap();
    let mut buf = BytesMut::new();
    encode(&packet, V5, &mut buf).unwrap();
    assert_eq!(buf.len(), len);
    // One reservation of the exact size: no growth beyond it.
    assert_eq!(buf.capacity(), len);
}
