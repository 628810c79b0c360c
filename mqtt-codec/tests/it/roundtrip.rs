//! Property tests: for every version, arbitrary valid packets survive encode -> decode
//! unchanged and decode incrementally; arbitrary and mutated bytes never make the decoder panic.

use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    AuthPacket, ByteStr, ConnAckPacket, ConnectPacket, DisconnectPacket, Packet, Properties,
    ProtocolVersion::{self, V5, V31, V311},
    PubAckPacket, PublishPacket, QoS, ReasonCode, RetainHandling, SubAckPacket, SubscribePacket,
    Subscription, SubscriptionOptions, UnsubAckPacket, UnsubscribePacket, Will, decode, encode,
    encoded_len, property_id as id,
};
use proptest::{option, prelude::*, sample::select};

// Reason codes MQTT 5.0 defines per packet type, written out again here from the
// specification's tables so that the decoder's lists are checked against an independent copy.
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_CODES: &[u8] = &[0x00, 0x92];
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];
/// What 3.1/3.1.1 CONNACK return codes 0-5 decode to.
const CONNECT_RETURN_CODES: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
/// What 3.1.1 SUBACK return codes decode to.
const SUBACK_RETURN_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];

// Property identifiers each packet (or the will) allows, from the same tables.
const CONNECT_PROPERTIES: &[u8] = &[0x11, 0x21, 0x27, 0x22, 0x19, 0x17, 0x26, 0x15, 0x16];
const WILL_PROPERTIES: &[u8] = &[0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26];
const CONNACK_PROPERTIES: &[u8] = &[
    0x11, 0x21, 0x24, 0x25, 0x27, 0x12, 0x22, 0x1F, 0x26, 0x28, 0x29, 0x2A, 0x13, 0x1A, 0x1C, 0x15,
    0x16,
];
const PUBLISH_PROPERTIES: &[u8] = &[0x01, 0x02, 0x23, 0x08, 0x09, 0x26, 0x0B, 0x03];
const ACK_PROPERTIES: &[u8] = &[0x1F, 0x26];
const SUBSCRIBE_PROPERTIES: &[u8] = &[0x0B, 0x26];
const UNSUBSCRIBE_PROPERTIES: &[u8] = &[0x26];
const DISCONNECT_PROPERTIES: &[u8] = &[0x11, 0x1F, 0x26, 0x1C];
const AUTH_PROPERTIES: &[u8] = &[0x15, 0x16, 0x1F, 0x26];

fn reason(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    select(codes).prop_map(|code| ReasonCode::from_u8(code).expect("a defined code"))
}

/// Any text without U+0000, including multi-byte characters.
fn text(max: usize) -> impl Strategy<Value = ByteStr> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(|chars| {
        let text: String = chars
            .into_iter()
            .map(|c| if c == '\0' { 'z' } else { c })
            .collect();
        ByteStr::from(text)
    })
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9 $_é€😀-]{1,6}",
        Just("$SYS".to_string()),
    ]
}

fn topic_name() -> impl Strategy<Value = ByteStr> {
    prop::collection::vec(level(), 1..4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("non-empty", |name| !name.is_empty())
        .prop_map(ByteStr::from)
}

fn topic_filter() -> impl Strategy<Value = ByteStr> {
    let filter_level = prop_oneof![3 => level(), 1 => Just("+".to_string())];
    (
        prop::collection::vec(filter_level, 1..4),
        any::<bool>(),
        option::weighted(0.2, "[a-z]{1,4}"),
    )
        .prop_map(|(mut levels, multi_level, share)| {
            if multi_level {
                levels.push("#".to_string());
            }
            let filter = levels.join("/");
            match share {
                Some(group) => format!("$share/{group}/{filter}"),
                None => filter,
            }
        })
        .prop_filter("valid filter", |filter| {
            mqtt_codec::topic::validate_topic_filter(filter).is_ok()
        })
        .prop_map(ByteStr::from)
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn boolean_byte() -> impl Strategy<Value = Option<u8>> {
    option::of(0u8..=1)
}

/// Every property with a valid value; `restrict` then keeps those a packet allows.
fn any_properties() -> impl Strategy<Value = Properties> {
    let messages = (
        boolean_byte(),
        option::of(any::<u32>()),
        option::of(text(6)),
        option::of(topic_name()),
        option::of(bytes(6)),
        prop::collection::vec(1u32..=268_435_455, 0..3),
        option::of(any::<u32>()),
    );
    let session = (
        option::of(text(6)),
        option::of(any::<u16>()),
        option::of(text(6)),
        option::of(bytes(6)),
        boolean_byte(),
        option::of(any::<u32>()),
        boolean_byte(),
        option::of(text(6)),
        option::of(text(6)),
        option::of(text(6)),
    );
    let limits = (
        option::of(1..=u16::MAX),
        option::of(any::<u16>()),
        option::of(1..=u16::MAX),
        boolean_byte(),
        boolean_byte(),
        prop::collection::vec((text(4), text(4)), 0..3),
        option::of(1..=u32::MAX),
        boolean_byte(),
        boolean_byte(),
        boolean_byte(),
    );
    (messages, session, limits).prop_map(|(messages, session, limits)| Properties {
        payload_format_indicator: messages.0,
        message_expiry_interval: messages.1,
        content_type: messages.2,
        response_topic: messages.3,
        correlation_data: messages.4,
        subscription_identifiers: messages.5,
        session_expiry_interval: messages.6,
        assigned_client_identifier: session.0,
        server_keep_alive: session.1,
        authentication_method: session.2,
        authentication_data: session.3,
        request_problem_information: session.4,
        will_delay_interval: session.5,
        request_response_information: session.6,
        response_information: session.7,
        server_reference: session.8,
        reason_string: session.9,
        receive_maximum: limits.0,
        topic_alias_maximum: limits.1,
        topic_alias: limits.2,
        maximum_qos: limits.3,
        retain_available: limits.4,
        user_properties: limits.5,
        maximum_packet_size: limits.6,
        wildcard_subscription_available: limits.7,
        subscription_identifier_available: limits.8,
        shared_subscription_available: limits.9,
    })
}

/// Clears every property that `allowed` does not list.
fn restrict(mut p: Properties, allowed: &[u8]) -> Properties {
    fn keep<T>(field: &mut Option<T>, property: u8, allowed: &[u8]) {
        if !allowed.contains(&property) {
            *field = None;
        }
    }
    keep(
        &mut p.payload_format_indicator,
        id::PAYLOAD_FORMAT_INDICATOR,
        allowed,
    );
    keep(
        &mut p.message_expiry_interval,
        id::MESSAGE_EXPIRY_INTERVAL,
        allowed,
    );
    keep(&mut p.content_type, id::CONTENT_TYPE, allowed);
    keep(&mut p.response_topic, id::RESPONSE_TOPIC, allowed);
    keep(&mut p.correlation_data, id::CORRELATION_DATA, allowed);
    if !allowed.contains(&id::SUBSCRIPTION_IDENTIFIER) {
        p.subscription_identifiers.clear();
    }
    keep(
        &mut p.session_expiry_interval,
        id::SESSION_EXPIRY_INTERVAL,
        allowed,
    );
    keep(
        &mut p.assigned_client_identifier,
        id::ASSIGNED_CLIENT_IDENTIFIER,
        allowed,
    );
    keep(&mut p.server_keep_alive, id::SERVER_KEEP_ALIVE, allowed);
    keep(
        &mut p.authentication_method,
        id::AUTHENTICATION_METHOD,
        allowed,
    );
    keep(&mut p.authentication_data, id::AUTHENTICATION_DATA, allowed);
    keep(
        &mut p.request_problem_information,
        id::REQUEST_PROBLEM_INFORMATION,
        allowed,
    );
    keep(&mut p.will_delay_interval, id::WILL_DELAY_INTERVAL, allowed);
    keep(
        &mut p.request_response_information,
        id::REQUEST_RESPONSE_INFORMATION,
        allowed,
    );
    keep(
        &mut p.response_information,
        id::RESPONSE_INFORMATION,
        allowed,
    );
    keep(&mut p.server_reference, id::SERVER_REFERENCE, allowed);
    keep(&mut p.reason_string, id::REASON_STRING, allowed);
    keep(&mut p.receive_maximum, id::RECEIVE_MAXIMUM, allowed);
    keep(&mut p.topic_alias_maximum, id::TOPIC_ALIAS_MAXIMUM, allowed);
    keep(&mut p.topic_alias, id::TOPIC_ALIAS, allowed);
    keep(&mut p.maximum_qos, id::MAXIMUM_QOS, allowed);
    keep(&mut p.retain_available, id::RETAIN_AVAILABLE, allowed);
    if !allowed.contains(&id::USER_PROPERTY) {
        p.user_properties.clear();
    }
    keep(&mut p.maximum_packet_size, id::MAXIMUM_PACKET_SIZE, allowed);
    keep(
        &mut p.wildcard_subscription_available,
        id::WILDCARD_SUBSCRIPTION_AVAILABLE,
        allowed,
    );
    keep(
        &mut p.subscription_identifier_available,
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        allowed,
    );
    keep(
        &mut p.shared_subscription_available,
        id::SHARED_SUBSCRIPTION_AVAILABLE,
        allowed,
    );
    p
}

/// Properties a packet allows in `version`: none before 5.0.
fn properties(version: ProtocolVersion, allowed: &'static [u8]) -> BoxedStrategy<Properties> {
    if version.is_v5() {
        any_properties()
            .prop_map(move |p| restrict(p, allowed))
            .boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = (
        topic_name(),
        bytes(8),
        qos(),
        any::<bool>(),
        properties(version, WILL_PROPERTIES),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    (
        any::<bool>(),
        any::<u16>(),
        text(12),
        option::of(will),
        option::of(text(8)),
        option::of(bytes(8)),
        properties(version, CONNECT_PROPERTIES),
    )
        .prop_map(
            move |(
                clean_start,
                keep_alive,
                client_id,
                will,
                mut username,
                password,
                mut properties,
            )| {
                // Before 5.0 a password needs a user name.
                if !version.is_v5() && password.is_some() && username.is_none() {
                    username = Some(ByteStr::new());
                }
                // Authentication Data needs an Authentication Method.
                if properties.authentication_method.is_none() {
                    properties.authentication_data = None;
                }
                Packet::Connect(ConnectPacket {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                })
            },
        )
}

fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if version.is_v5() {
        CONNACK_CODES
    } else {
        CONNECT_RETURN_CODES
    };
    (
        any::<bool>(),
        reason(codes),
        properties(version, CONNACK_PROPERTIES),
    )
        .prop_map(move |(session_present, reason_code, properties)| {
            Packet::ConnAck(ConnAckPacket {
                // 3.1 has no session present flag, and refusals never carry one.
                session_present: session_present
                    && version != V31
                    && reason_code == ReasonCode::Success,
                reason_code,
                properties,
            })
        })
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        packet_id(),
        properties(version, PUBLISH_PROPERTIES),
        bytes(40),
    )
        .prop_map(
            move |(qos, dup, retain, topic, drop_topic, packet_id, properties, payload)| {
                let aliased = properties.topic_alias.is_some();
                Packet::Publish(PublishPacket {
                    dup: dup && qos != QoS::AtMostOnce,
                    qos,
                    retain,
                    // 5.0 may leave the topic empty when a Topic Alias stands for it.
                    topic: if aliased && drop_topic {
                        ByteStr::new()
                    } else {
                        topic
                    },
                    packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
                    properties,
                    payload,
                })
            },
        )
}

fn acknowledgement(
    version: ProtocolVersion,
    codes: &'static [u8],
) -> impl Strategy<Value = PubAckPacket> {
    let reason_code = if version.is_v5() {
        reason(codes).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (
        packet_id(),
        reason_code,
        properties(version, ACK_PROPERTIES),
    )
        .prop_map(|(packet_id, reason_code, properties)| PubAckPacket {
            packet_id,
            reason_code,
            properties,
        })
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let options = (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(
        move |(qos, no_local, retain_as_published, retain_handling)| {
            if !version.is_v5() {
                return SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                };
            }
            SubscriptionOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling: match retain_handling {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendIfNew,
                    _ => RetainHandling::DoNotSend,
                },
            }
        },
    );
    let subscription = (topic_filter(), options).prop_map(|(filter, mut options)| {
        // No Local cannot be set on a shared subscription.
        if filter.starts_with("$share/") {
            options.no_local = false;
        }
        Subscription { filter, options }
    });
    (
        packet_id(),
        properties(version, SUBSCRIBE_PROPERTIES),
        prop::collection::vec(subscription, 1..4),
    )
        .prop_map(|(packet_id, mut properties, subscriptions)| {
            // SUBSCRIBE carries at most one Subscription Identifier.
            properties.subscription_identifiers.truncate(1);
            Packet::Subscribe(SubscribePacket {
                packet_id,
                properties,
                subscriptions,
            })
        })
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if version.is_v5() {
        SUBACK_CODES
    } else {
        SUBACK_RETURN_CODES
    };
    (
        packet_id(),
        properties(version, ACK_PROPERTIES),
        prop::collection::vec(reason(codes), 0..5),
    )
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::SubAck(SubAckPacket {
                packet_id,
                properties,
                reason_codes,
            })
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        properties(version, UNSUBSCRIBE_PROPERTIES),
        prop::collection::vec(topic_filter(), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(UnsubscribePacket {
                packet_id,
                properties,
                filters,
            })
        })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let max_codes = if version.is_v5() { 5 } else { 1 };
    (
        packet_id(),
        properties(version, ACK_PROPERTIES),
        prop::collection::vec(reason(UNSUBACK_CODES), 0..max_codes),
    )
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::UnsubAck(UnsubAckPacket {
                packet_id,
                properties,
                reason_codes,
            })
        })
}

fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let reason_code = if version.is_v5() {
        reason(DISCONNECT_CODES).boxed()
    } else {
        Just(ReasonCode::NORMAL_DISCONNECTION).boxed()
    };
    (reason_code, properties(version, DISCONNECT_PROPERTIES)).prop_map(
        |(reason_code, properties)| {
            Packet::Disconnect(DisconnectPacket {
                reason_code,
                properties,
            })
        },
    )
}

fn auth() -> impl Strategy<Value = Packet> {
    (reason(AUTH_CODES), properties(V5, AUTH_PROPERTIES)).prop_map(|(reason_code, properties)| {
        Packet::Auth(AuthPacket {
            reason_code,
            properties,
        })
    })
}

/// Any packet that is valid in `version`.
fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        1 => connect(version),
        1 => connack(version),
        4 => publish(version),
        1 => acknowledgement(version, PUBACK_CODES).prop_map(Packet::PubAck),
        1 => acknowledgement(version, PUBACK_CODES).prop_map(Packet::PubRec),
        1 => acknowledgement(version, PUBREL_CODES).prop_map(Packet::PubRel),
        1 => acknowledgement(version, PUBREL_CODES).prop_map(Packet::PubComp),
        1 => subscribe(version),
        1 => suback(version),
        1 => unsubscribe(version),
        1 => unsuback(version),
        1 => Just(Packet::PingReq),
        1 => Just(Packet::PingResp),
        1 => disconnect(version),
    ];
    if version.is_v5() {
        prop_oneof![14 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    prop_oneof![
        packet(V31).prop_map(|p| (V31, p)),
        packet(V311).prop_map(|p| (V311, p)),
        packet(V5).prop_map(|p| (V5, p)),
    ]
}

fn encoded(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).expect("a valid packet encodes");
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn encode_then_decode_is_the_identity((version, packet) in versioned_packet()) {
        let mut buf = encoded(&packet, version);
        prop_assert_eq!(encoded_len(&packet, version), Ok(buf.len()));
        let decoded = decode(&mut buf, version, usize::MAX);
        prop_assert_eq!(decoded, Ok(Some(packet)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn a_packet_fed_byte_by_byte_is_none_until_its_last_byte(
        (version, packet) in versioned_packet(),
    ) {
        let bytes = encoded(&packet, version);
        let mut buf = BytesMut::new();
        for (index, &byte) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let result = decode(&mut buf, version, usize::MAX);
            if index + 1 < bytes.len() {
                prop_assert_eq!(result, Ok(None));
                prop_assert_eq!(buf.len(), index + 1);
            } else {
                prop_assert_eq!(result, Ok(Some(packet.clone())));
                prop_assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn packets_back_to_back_decode_in_order(
        (version, packets) in select(vec![V31, V311, V5]).prop_flat_map(|version| {
            (Just(version), prop::collection::vec(packet(version), 1..6))
        }),
    ) {
        let mut buf = BytesMut::new();
        for packet in &packets {
            encode(packet, version, &mut buf).unwrap();
        }
        for packet in packets {
            prop_assert_eq!(decode(&mut buf, version, usize::MAX), Ok(Some(packet)));
        }
        prop_assert_eq!(decode(&mut buf, version, usize::MAX), Ok(None));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        max in prop_oneof![Just(16usize), Just(usize::MAX)],
    ) {
        for version in crate::common::VERSIONS {
            decode_all_and_reencode(&bytes, version, max)?;
        }
    }

    #[test]
    fn mutated_packets_never_panic(
        (version, packet) in versioned_packet(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encoded(&packet, version).to_vec();
        for (index, byte) in mutations {
            let position = index.index(bytes.len());
            bytes[position] = byte;
        }
        for version in crate::common::VERSIONS {
            decode_all_and_reencode(&bytes, version, usize::MAX)?;
        }
    }
}

/// Decodes packets until the bytes run out or an error; whatever decodes must re-encode and
/// decode to the same value. Each packet decoded must consume bytes: a decoder that returned a
/// packet without taking it from the buffer would otherwise keep this loop (and the test) going
/// for ever instead of failing.
fn decode_all_and_reencode(
    bytes: &[u8],
    version: ProtocolVersion,
    max: usize,
) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        let Ok(Some(packet)) = decode(&mut buf, version, max) else {
            break;
        };
        prop_assert!(buf.len() < before, "{:?} consumed no bytes", packet);
        let mut again = BytesMut::new();
        prop_assert!(encode(&packet, version, &mut again).is_ok(), "{:?}", packet);
        prop_assert_eq!(decode(&mut again, version, usize::MAX), Ok(Some(packet)));
    }
    Ok(())
}

#[test]
fn strategies_cover_every_packet_type_in_every_version() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    for version in crate::common::VERSIONS {
        let strategy = packet(version);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            seen.insert(strategy.new_tree(&mut runner).unwrap().current().name());
        }
        let expected = if version.is_v5() { 15 } else { 14 };
        assert_eq!(seen.len(), expected, "{version:?}: {seen:?}");
    }
}
