//! One row per decoding rule: bytes that break it, and the exact error they must produce.

use crate::common::{self, hex};
use bytes::BytesMut;
use mqtt_codec::{
    DecodeError::{self, *},
    ProtocolVersion::{self, V5, V31, V311},
    decode,
    topic::TopicError,
};

fn malformed(packet: &'static str) -> DecodeError {
    // The detail text is prose; the table checks the variant and the packet it names.
    Malformed { packet, detail: "" }
}

fn invalid_value(property: u8) -> DecodeError {
    InvalidPropertyValue {
        property,
        detail: "",
    }
}

fn same(expected: &DecodeError, actual: &DecodeError) -> bool {
    match (expected, actual) {
        (Malformed { packet: a, .. }, Malformed { packet: b, .. }) => a == b,
        (InvalidPropertyValue { property: a, .. }, InvalidPropertyValue { property: b, .. }) => {
            a == b
        }
        _ => expected == actual,
    }
}

#[rustfmt::skip]
fn rules() -> Vec<(&'static str, ProtocolVersion, &'static str, DecodeError)> {
    vec![
        // Fixed header.
        ("packet type 0 is reserved", V311, "00 00", ReservedPacketType(0)),
        ("AUTH before 5.0 (3.1.1)", V311, "F0 00", AuthBeforeV5),
        ("AUTH before 5.0 (3.1)", V31, "F0 00", AuthBeforeV5),
        ("PUBREL flags must be 0010", V311, "60 02 00 01", InvalidHeaderFlags { packet: "PUBREL", flags: 0 }),
        ("SUBSCRIBE flags must be 0010", V5, "80 06 00 01 00 01 'a' 00", InvalidHeaderFlags { packet: "SUBSCRIBE", flags: 0 }),
        ("UNSUBSCRIBE flags must be 0010", V311, "A3 05 00 01 00 01 'a'", InvalidHeaderFlags { packet: "UNSUBSCRIBE", flags: 3 }),
        ("DUP on SUBSCRIBE only tolerated in 3.1", V311, "8A 06 00 01 00 01 'a' 00", InvalidHeaderFlags { packet: "SUBSCRIBE", flags: 0x0A }),
        ("PINGREQ flags must be 0", V311, "C1 00", InvalidHeaderFlags { packet: "PINGREQ", flags: 1 }),
        ("CONNECT flags must be 0", V311, "12 00", InvalidHeaderFlags { packet: "CONNECT", flags: 2 }),
        ("PUBACK flags must be 0", V5, "48 02 00 01", InvalidHeaderFlags { packet: "PUBACK", flags: 8 }),
        ("AUTH flags must be 0", V5, "F1 00", InvalidHeaderFlags { packet: "AUTH", flags: 1 }),
        ("remaining length in more than 4 bytes", V311, "30 FF FF FF FF", RemainingLengthTooLong),
        // Lengths.
        ("field past the remaining length", V311, "30 03 00 05 'a'", malformed("PUBLISH")),
        ("truncated packet identifier", V311, "40 01 00", malformed("PUBACK")),
        ("truncated CONNECT", V311, "10 02 00 04", malformed("CONNECT")),
        ("trailing bytes after PUBACK", V311, "40 03 00 01 00", malformed("PUBACK")),
        ("PINGREQ with a body", V311, "C0 01 00", malformed("PINGREQ")),
        ("one-byte property value past the property length", V5, "30 06 00 01 't' 01 01 00", malformed("PUBLISH")),
        ("3.1.1 DISCONNECT with a body", V311, "E0 01 00", malformed("DISCONNECT")),
        ("3.1.1 CONNACK with extra bytes", V311, "20 03 00 00 00", malformed("CONNACK")),
        ("3.1.1 UNSUBACK with reason codes", V311, "B0 03 00 01 00", malformed("UNSUBACK")),
        // Strings.
        ("ill-formed UTF-8", V311, "30 04 00 02 C3 28", InvalidUtf8),
        ("UTF-16 surrogate in UTF-8", V311, "30 05 00 03 ED A0 80", InvalidUtf8),
        ("overlong UTF-8", V311, "30 04 00 02 C0 AF", InvalidUtf8),
        ("U+0000 in a topic", V311, "30 04 00 02 'a' 00", NullCharacter),
        ("U+0000 in a client identifier", V311, "10 0D 00 04 'MQTT' 04 02 00 3C 00 01 00", NullCharacter),
        ("ill-formed UTF-8 in a property", V5, "E0 07 00 05 1F 00 02 C3 28", InvalidUtf8),
        ("U+0000 in a user property", V5, "E0 09 00 07 26 00 01 'k' 00 01 00", NullCharacter),
        // PUBLISH.
        ("PUBLISH QoS 3", V311, "36 05 00 01 't' 00 01", InvalidQoS),
        ("DUP with QoS 0", V311, "38 03 00 01 't'", DupWithQoS0),
        ("PUBLISH packet identifier 0", V311, "32 05 00 01 't' 00 00", ZeroPacketIdentifier),
        ("wildcard in a topic name", V311, "30 05 00 03 'a/+'", Topic(TopicError::WildcardInName)),
        ("empty topic name in 3.1.1", V311, "30 02 00 00", Topic(TopicError::Empty)),
        ("empty topic in 5.0 without a topic alias", V5, "30 03 00 00 00", EmptyTopicWithoutAlias),
        ("empty topic in 5.0 with other properties", V5, "30 05 00 00 02 01 01", EmptyTopicWithoutAlias),
        ("wildcard in a response topic", V5, "30 09 00 01 't' 05 08 00 02 'a#'", Topic(TopicError::WildcardInName)),
        // Packet identifiers.
        ("PUBACK packet identifier 0", V311, "40 02 00 00", ZeroPacketIdentifier),
        ("SUBSCRIBE packet identifier 0", V311, "82 06 00 00 00 01 'a' 00", ZeroPacketIdentifier),
        ("UNSUBACK packet identifier 0", V5, "B0 02 00 00", ZeroPacketIdentifier),
        // SUBSCRIBE and UNSUBSCRIBE.
        ("misplaced + in a filter", V311, "82 08 00 01 00 03 'a+b' 00", Topic(TopicError::SingleLevelWildcardMisplaced)),
        ("empty filter", V311, "82 05 00 01 00 00 00", Topic(TopicError::Empty)),
        ("shared subscription without a filter", V5, "82 0D 00 01 00 00 07 '$share/' 00", Topic(TopicError::InvalidSharedSubscription)),
        ("misplaced # in an UNSUBSCRIBE filter", V311, "A2 06 00 01 00 02 'a#'", Topic(TopicError::MultiLevelWildcardMisplaced)),
        ("SUBSCRIBE without filters", V311, "82 02 00 01", NoTopicFilters { packet: "SUBSCRIBE" }),
        ("5.0 SUBSCRIBE without filters", V5, "82 03 00 01 00", NoTopicFilters { packet: "SUBSCRIBE" }),
        ("UNSUBSCRIBE without filters", V311, "A2 02 00 01", NoTopicFilters { packet: "UNSUBSCRIBE" }),
        ("3.1.1 subscription options upper bits", V311, "82 06 00 01 00 01 'a' 04", InvalidSubscriptionOptions(0x04)),
        ("3.1.1 subscription QoS 3", V311, "82 06 00 01 00 01 'a' 03", InvalidSubscriptionOptions(0x03)),
        ("5.0 subscription options bits 6-7", V5, "82 07 00 01 00 00 01 'a' 40", InvalidSubscriptionOptions(0x40)),
        ("5.0 retain handling 3", V5, "82 07 00 01 00 00 01 'a' 30", InvalidSubscriptionOptions(0x30)),
        ("5.0 subscription QoS 3", V5, "82 07 00 01 00 00 01 'a' 03", InvalidSubscriptionOptions(0x03)),
        ("5.0 no local on a shared subscription", V5, "82 10 00 01 00 00 0A '$share/g/a' 04", NoLocalOnSharedSubscription),
        // CONNECT.
        ("CONNECT reserved flag", V311, "10 0D 00 04 'MQTT' 04 03 00 3C 00 01 'c'", ConnectReservedFlag),
        ("will QoS without a will", V311, "10 0D 00 04 'MQTT' 04 0A 00 3C 00 01 'c'", InvalidWillFlags),
        ("will retain without a will", V311, "10 0D 00 04 'MQTT' 04 22 00 3C 00 01 'c'", InvalidWillFlags),
        ("will QoS 3", V311, "10 0D 00 04 'MQTT' 04 1E 00 3C 00 01 'c'", InvalidWillFlags),
        ("wildcard in a will topic", V311, "10 14 00 04 'MQTT' 04 06 00 3C 00 01 'c' 00 03 'a/#' 00 00", Topic(TopicError::WildcardInName)),
        ("password without user name in 3.1.1", V311, "10 0D 00 04 'MQTT' 04 42 00 3C 00 01 'c'", PasswordWithoutUsername),
        ("password without user name in 3.1", V31, "10 10 00 06 'MQIsdp' 03 42 00 3C 00 02 'id'", PasswordWithoutUsername),
        ("unsupported protocol level", V311, "10 0D 00 04 'MQTT' 06 02 00 3C 00 01 'c'", UnsupportedProtocol { name: "MQTT".into(), level: 6 }),
        ("MQIsdp with level 4", V311, "10 0F 00 06 'MQIsdp' 04 02 00 3C 00 01 'c'", UnsupportedProtocol { name: "MQIsdp".into(), level: 4 }),
        // CONNACK.
        ("3.1.1 CONNACK return code 6", V311, "20 02 00 06", InvalidReasonCode { packet: "CONNACK", code: 6 }),
        ("CONNACK reserved acknowledge flags", V311, "20 02 02 00", malformed("CONNACK")),
        ("3.1.1 session present with a refusal", V311, "20 02 01 05", malformed("CONNACK")),
        ("5.0 session present with a failure", V5, "20 03 01 87 00", malformed("CONNACK")),
        // 5.0 reason codes per packet type.
        ("reason code not defined for CONNACK", V5, "20 03 00 04 00", InvalidReasonCode { packet: "CONNACK", code: 0x04 }),
        ("undefined reason code", V5, "20 03 00 05 00", InvalidReasonCode { packet: "CONNACK", code: 0x05 }),
        ("PUBACK 0x92", V5, "40 03 00 01 92", InvalidReasonCode { packet: "PUBACK", code: 0x92 }),
        ("PUBREC 0x92", V5, "50 03 00 01 92", InvalidReasonCode { packet: "PUBREC", code: 0x92 }),
        ("PUBREL 0x10", V5, "62 03 00 01 10", InvalidReasonCode { packet: "PUBREL", code: 0x10 }),
        ("PUBCOMP 0x80", V5, "70 03 00 01 80", InvalidReasonCode { packet: "PUBCOMP", code: 0x80 }),
        ("3.1.1 SUBACK 0x03", V311, "90 03 00 01 03", InvalidReasonCode { packet: "SUBACK", code: 0x03 }),
        ("5.0 SUBACK 0x11", V5, "90 04 00 01 00 11", InvalidReasonCode { packet: "SUBACK", code: 0x11 }),
        ("5.0 UNSUBACK 0x01", V5, "B0 04 00 01 00 01", InvalidReasonCode { packet: "UNSUBACK", code: 0x01 }),
        ("5.0 DISCONNECT 0x01", V5, "E0 01 01", InvalidReasonCode { packet: "DISCONNECT", code: 0x01 }),
        ("AUTH 0x01", V5, "F0 01 01", InvalidReasonCode { packet: "AUTH", code: 0x01 }),
        ("AUTH 0x87", V5, "F0 02 87 00", InvalidReasonCode { packet: "AUTH", code: 0x87 }),
        // Properties.
        ("unknown property 0x05", V5, "E0 04 00 02 05 00", UnknownProperty(0x05)),
        ("unknown property 0xFF", V5, "E0 04 00 02 FF 00", UnknownProperty(0xFF)),
        ("Topic Alias in DISCONNECT", V5, "E0 05 00 03 23 00 01", PropertyNotAllowed { packet: "DISCONNECT", property: 0x23 }),
        ("Session Expiry in PUBLISH", V5, "30 09 00 01 't' 05 11 00 00 00 01", PropertyNotAllowed { packet: "PUBLISH", property: 0x11 }),
        ("Topic Alias in CONNECT", V5, "10 11 00 04 'MQTT' 05 02 00 3C 03 23 00 01 00 01 'c'", PropertyNotAllowed { packet: "CONNECT", property: 0x23 }),
        ("Session Expiry in will properties", V5, "10 19 00 04 'MQTT' 05 06 00 3C 00 00 01 'c' 05 11 00 00 00 01 00 01 't' 00 00", PropertyNotAllowed { packet: "will", property: 0x11 }),
        ("duplicate Session Expiry", V5, "E0 0C 00 0A 11 00 00 00 01 11 00 00 00 02", DuplicateProperty(0x11)),
        ("two Subscription Identifiers in SUBSCRIBE", V5, "82 0B 00 01 04 0B 01 0B 02 00 01 'a' 00", DuplicateProperty(0x0B)),
        ("duplicate Reason String", V5, "40 0C 00 01 00 08 1F 00 01 'a' 1F 00 01 'b'", DuplicateProperty(0x1F)),
        ("Subscription Identifier 0", V5, "82 09 00 01 02 0B 00 00 01 'a' 00", invalid_value(0x0B)),
        ("Receive Maximum 0", V5, "20 06 00 00 03 21 00 00", invalid_value(0x21)),
        ("Maximum Packet Size 0", V5, "20 08 00 00 05 27 00 00 00 00", invalid_value(0x27)),
        ("Topic Alias 0", V5, "30 07 00 01 't' 03 23 00 00", invalid_value(0x23)),
        ("Payload Format Indicator 2", V5, "30 06 00 01 't' 02 01 02", invalid_value(0x01)),
        ("Maximum QoS 2", V5, "20 05 00 00 02 24 02", invalid_value(0x24)),
        ("Retain Available 2", V5, "20 05 00 00 02 25 02", invalid_value(0x25)),
        ("Wildcard Subscription Available 2", V5, "20 05 00 00 02 28 02", invalid_value(0x28)),
        ("Subscription Identifier Available 2", V5, "20 05 00 00 02 29 02", invalid_value(0x29)),
        ("Shared Subscription Available 2", V5, "20 05 00 00 02 2A 02", invalid_value(0x2A)),
        ("Request Problem Information 2", V5, "10 10 00 04 'MQTT' 05 02 00 3C 02 17 02 00 01 'c'", invalid_value(0x17)),
        ("Request Response Information 2", V5, "10 10 00 04 'MQTT' 05 02 00 3C 02 19 02 00 01 'c'", invalid_value(0x19)),
        ("Authentication Data without a method", V5, "10 12 00 04 'MQTT' 05 02 00 3C 04 16 00 01 'x' 00 01 'c'", invalid_value(0x16)),
        ("property length past the packet", V5, "40 04 00 01 00 05", malformed("PUBACK")),
        ("property value past the property length", V5, "40 08 00 01 00 02 1F 00 01 'a'", malformed("PUBACK")),
        ("property length in more than 4 bytes", V5, "40 08 00 01 00 FF FF FF FF 01", VariableByteIntegerTooLong),
    ]
}

#[test]
fn each_rule_produces_its_error() {
    for (rule, version, bytes, expected) in rules() {
        let mut buf = BytesMut::from(&hex(bytes)[..]);
        match decode(&mut buf, version, usize::MAX) {
            Err(actual) if same(&expected, &actual) => {
                // Every message cites where its rule comes from.
                let message = actual.to_string();
                assert!(
                    message.contains("MQTT-") || message.contains("spec "),
                    "{rule}: message {message:?} cites no spec clause"
                );
            }
            other => panic!("{rule}: expected {expected:?}, got {other:?}"),
        }
    }
}

#[test]
fn oversized_packet_is_refused_from_its_fixed_header() {
    // A 5-byte fixed header announcing the largest possible packet, and nothing else.
    let header = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];
    let mut buf = BytesMut::from(&header[..]);
    assert_eq!(
        decode(&mut buf, V311, 1024 * 1024),
        Err(PacketTooLarge {
            size: 268_435_460,
            maximum: 1024 * 1024
        })
    );

    // With a huge maximum the decoder waits, and neither reserves nor allocates for it.
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(&header);
    let capacity = buf.capacity();
    for version in common::VERSIONS {
        assert_eq!(decode(&mut buf, version, usize::MAX), Ok(None));
        assert_eq!(buf.capacity(), capacity);
        assert_eq!(buf.len(), header.len());
    }

    // The limit counts the fixed header too.
    let mut buf = BytesMut::from(&hex("30 0A 00 03 'a/b' 'hello'")[..]);
    assert_eq!(
        decode(&mut buf, V311, 11),
        Err(PacketTooLarge {
            size: 12,
            maximum: 11
        })
    );
    let mut buf = BytesMut::from(&hex("30 0A 00 03 'a/b' 'hello'")[..]);
    assert!(matches!(decode(&mut buf, V311, 12), Ok(Some(_))));
}

#[test]
fn every_error_maps_to_a_reason_code() {
    for (rule, _, _, expected) in rules() {
        let code = expected.reason_code();
        assert!(code.is_error(), "{rule}: {code}");
    }
}

#[test]
fn errors_with_a_reason_code_of_their_own_get_it() {
    use mqtt_codec::ReasonCode;
    let cases = [
        (
            PacketTooLarge {
                size: 12,
                maximum: 11,
            },
            ReasonCode::PacketTooLarge,
        ),
        (
            UnsupportedProtocol {
                name: "MQTT".into(),
                level: 6,
            },
            ReasonCode::UnsupportedProtocolVersion,
        ),
        (
            Topic(TopicError::WildcardInName),
            ReasonCode::TopicNameInvalid,
        ),
        (ZeroPacketIdentifier, ReasonCode::ProtocolError),
        (DuplicateProperty(0x11), ReasonCode::ProtocolError),
        (Topic(TopicError::Empty), ReasonCode::MalformedPacket),
        (InvalidUtf8, ReasonCode::MalformedPacket),
    ];
    for (error, code) in cases {
        assert_eq!(error.reason_code(), code, "{error:?}");
    }
}

#[test]
fn a_client_refuses_the_packets_only_clients_send() {
    use mqtt_codec::{Packet, decode_from_server};
    let refused = [
        ("CONNECT", "10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00"),
        ("SUBSCRIBE", "82 06 00 01 00 01 61 00"),
        ("UNSUBSCRIBE", "a2 05 00 01 00 01 61"),
        ("PINGREQ", "c0 00"),
    ];
    for (packet, bytes) in refused {
        let mut buf = BytesMut::from(&hex(bytes)[..]);
        assert!(
            decode(&mut buf.clone(), V311, usize::MAX).is_ok(),
            "{packet}"
        );
        let error = decode_from_server(&mut buf, V311, usize::MAX).unwrap_err();
        assert_eq!(error, UnexpectedPacket { packet });
        assert_eq!(error.reason_code(), mqtt_codec::ReasonCode::ProtocolError);
    }
    let mut buf = BytesMut::from(&hex("d0 00")[..]);
    assert_eq!(
        decode_from_server(&mut buf, V311, usize::MAX).unwrap(),
        Some(Packet::PingResp)
    );
}
