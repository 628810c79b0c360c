//! CONNECT and CONNACK: session present, clean start, client identifiers, takeover, packets out
//! of place, decode errors and the CONNACK properties of 5.0.

use crate::common::*;
use broker_core::{BrokerConfig, Output};
use mqtt_codec::{DecodeError, Packet, ProtocolVersion, QoS, ReasonCode, encode};

#[test]
fn mqtt_3_2_2_2_clean_start_gives_session_present_0() {
    let mut h = Harness::new();
    let connack = h.connect_ok(A, v5("client"));
    assert!(!connack.session_present);
    assert_eq!(h.broker.client_id(A), Some("client"));
}

#[test]
fn mqtt_3_2_2_3_resumed_session_gives_session_present_1() {
    let mut h = Harness::new();
    assert!(
        !h.connect_ok(A, v5_persistent("client", 300))
            .session_present
    );
    h.subscribe(A, "t", QoS::AtLeastOnce);
    h.disconnect(A);

    let connack = h.connect_ok(B, v5_persistent("client", 300));
    assert!(connack.session_present);
    // The subscription is part of the resumed session [MQTT-3.1.2-5].
    h.connect_ok(C, v5("publisher"));
    let outputs = h.publish(C, qos0("t", "hello"));
    assert_eq!(payloads(&outputs, B), ["hello"]);
}

#[test]
fn mqtt_3_1_2_6_clean_start_0_without_a_session_creates_one() {
    let mut h = Harness::new();
    let connack = h.connect_ok(A, v5_persistent("fresh", 60));
    assert!(!connack.session_present);
    assert_eq!(h.broker.stats().sessions, 1);
}

#[test]
fn mqtt_3_1_2_4_clean_start_discards_the_existing_session() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("client", 300));
    h.subscribe(A, "t", QoS::AtLeastOnce);
    h.disconnect(A);
    h.connect_ok(B, v5("publisher"));
    h.publish(B, qos1("t", "queued", 1));

    let mut connect = v5_persistent("client", 300);
    connect.clean_start = true;
    let outputs = h.connect(C, connect);
    assert!(!connack(&outputs, C).session_present, "[MQTT-3.2.2-2]");
    assert!(
        publishes(&outputs, C).is_empty(),
        "queued messages went with the session"
    );

    let outputs = h.publish(B, qos0("t", "after"));
    assert!(
        publishes(&outputs, C).is_empty(),
        "subscriptions went with the session"
    );
}

#[test]
fn mqtt_3_2_2_1_v311_clean_session_gives_session_present_0() {
    let mut h = Harness::new();
    h.connect_ok(A, v311_persistent("client"));
    h.disconnect(A);
    let mut connect = v311_persistent("client");
    connect.clean_start = true;
    assert!(!h.connect_ok(B, connect).session_present);
}

#[test]
fn mqtt_3_2_2_2_v311_stored_session_gives_session_present_1() {
    let mut h = Harness::new();
    assert!(!h.connect_ok(A, v311_persistent("client")).session_present);
    h.subscribe(A, "t", QoS::AtLeastOnce);
    h.disconnect(A);
    assert!(h.connect_ok(B, v311_persistent("client")).session_present);
}

#[test]
fn mqtt_3_1_2_6_v311_clean_session_session_ends_with_the_connection() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("client"));
    h.subscribe(A, "t", QoS::AtLeastOnce);
    h.disconnect(A);
    assert_eq!(h.broker.stats().sessions, 0);
    assert!(!h.connect_ok(B, v311_persistent("client")).session_present);
}

#[test]
fn mqtt_3_1_3_8_v311_empty_client_id_with_clean_session_0_is_refused() {
    let mut h = Harness::new();
    let outputs = h.connect(A, v311_persistent(""));
    let connack = connack(&outputs, A);
    assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
    assert!(!connack.session_present, "[MQTT-3.2.2-4]");
    assert!(closed(&outputs, A));
    assert_eq!(
        wire_connack(&outputs, A, ProtocolVersion::V311),
        [0x20, 2, 0, 0x02]
    );
    assert_eq!(h.broker.stats().connections_refused, 1);
    assert_eq!(h.broker.stats().clients_connected, 0);
}

#[test]
fn mqtt_3_1_3_6_v311_empty_client_id_with_clean_session_is_assigned_one() {
    let mut h = Harness::new();
    let connack = h.connect_ok(A, v311(""));
    assert!(!connack.session_present);
    // 3.1.1 has no property to tell the client; the broker still uses a unique identifier.
    assert!(connack.properties.assigned_client_identifier.is_none());
    let assigned = h.broker.client_id(A).expect("connected").to_string();
    assert!(!assigned.is_empty());
}

#[test]
fn mqtt_3_2_2_16_v5_empty_client_id_gets_an_assigned_client_identifier() {
    let mut h = Harness::new();
    let first = h.connect_ok(A, v5(""));
    let second = h.connect_ok(B, v5(""));
    let first_id = first
        .properties
        .assigned_client_identifier
        .expect("assigned [MQTT-3.1.3-7]");
    let second_id = second
        .properties
        .assigned_client_identifier
        .expect("assigned");
    assert_ne!(
        first_id, second_id,
        "a new identifier not used by any other session"
    );
    assert_eq!(h.broker.client_id(A), Some(first_id.as_str()));
    assert_eq!(h.broker.client_id(B), Some(second_id.as_str()));
}

#[test]
fn v5_empty_client_id_with_clean_start_0_is_accepted_with_a_new_identifier() {
    let mut h = Harness::new();
    let connack = h.connect_ok(A, v5_persistent("", 60));
    assert!(!connack.session_present);
    assert!(connack.properties.assigned_client_identifier.is_some());
}

#[test]
fn v31_empty_client_id_is_refused_with_identifier_rejected() {
    let mut h = Harness::new();
    let outputs = h.connect(A, v31(""));
    assert_eq!(
        connack(&outputs, A).reason_code,
        ReasonCode::ClientIdentifierNotValid
    );
    assert!(closed(&outputs, A));
    // 3.1 has no session present flag: the byte is reserved.
    assert_eq!(
        wire_connack(&outputs, A, ProtocolVersion::V31),
        [0x20, 2, 0, 0x02]
    );
}

#[test]
fn v31_client_with_an_identifier_is_accepted() {
    let mut h = Harness::new();
    h.connect_ok(A, v31("old-client"));
    h.subscribe(A, "t", QoS::AtMostOnce);
    h.connect_ok(B, v311("publisher"));
    assert_eq!(payloads(&h.publish(B, qos0("t", "x")), A), ["x"]);
}

#[test]
fn mqtt_3_1_3_8_client_id_longer_than_the_maximum_is_refused_with_0x85() {
    let mut h = Harness::with_config(BrokerConfig {
        max_client_id_len: 8,
        ..quiet_config()
    });
    let outputs = h.connect(A, v5("much-too-long"));
    let connack = connack(&outputs, A);
    assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
    assert!(connack.properties.reason_string.is_some());
    assert!(closed(&outputs, A), "[MQTT-3.2.2-7]");
    h.connect_ok(B, v5("short"));
}

#[test]
fn mqtt_3_1_4_3_takeover_disconnects_existing_connection() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("client"));
    h.subscribe(A, "t", QoS::AtMostOnce);

    let outputs = h.connect(B, v5("client"));
    assert_disconnected(&outputs, A, ReasonCode::SessionTakenOver);
    assert_eq!(connack(&outputs, B).reason_code, ReasonCode::Success);
    // The old connection is closed before the new one is acknowledged.
    let close_at = outputs
        .iter()
        .position(|o| matches!(o, Output::Close { connection } if *connection == A))
        .unwrap();
    let connack_at = outputs
        .iter()
        .position(|o| matches!(o, Output::Send { connection, .. } if *connection == B))
        .unwrap();
    assert!(close_at < connack_at);
    assert_eq!(h.broker.client_id(B), Some("client"));
    assert_eq!(h.broker.client_id(A), None);
    assert_eq!(h.broker.stats().clients_connected, 1);

    // The new connection works; the old one is gone (a late packet just closes it again).
    h.subscribe(B, "t", QoS::AtMostOnce);
    h.connect_ok(C, v5("publisher"));
    let outputs = h.publish(C, qos0("t", "to the new one"));
    assert_eq!(payloads(&outputs, B), ["to the new one"]);
    assert!(publishes(&outputs, A).is_empty());
    let outputs = h.send(A, Packet::PingReq);
    assert!(sent_to(&outputs, A).is_empty());
    assert!(closed(&outputs, A));
    assert!(
        h.lose(A).is_empty(),
        "a lost notice after our close is harmless"
    );
}

#[test]
fn mqtt_3_1_4_2_v311_takeover_closes_existing_connection_without_disconnect() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("client"));
    let outputs = h.connect(B, v311("client"));
    assert!(
        sent_to(&outputs, A).is_empty(),
        "3.1.1 has no server DISCONNECT"
    );
    assert!(closed(&outputs, A));
    assert_eq!(connack(&outputs, B).reason_code, ReasonCode::Success);
}

#[test]
fn takeover_with_clean_start_0_resumes_the_session() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("client", 300));
    h.subscribe(A, "t", QoS::AtLeastOnce);
    h.connect_ok(C, v5("publisher"));
    // In flight and unacknowledged on the old connection.
    let outputs = h.publish(C, qos1("t", "m1", 1));
    assert_eq!(publishes(&outputs, A)[0].packet_id, Some(1));

    let outputs = h.connect(B, v5_persistent("client", 300));
    assert_disconnected(&outputs, A, ReasonCode::SessionTakenOver);
    assert!(connack(&outputs, B).session_present);
    let resent = publishes(&outputs, B);
    assert_eq!(resent.len(), 1);
    assert!(resent[0].dup);
    assert_eq!(resent[0].packet_id, Some(1));

    let outputs = h.publish(C, qos0("t", "m2"));
    assert_eq!(payloads(&outputs, B), ["m2"]);
}

#[test]
fn takeover_with_clean_start_1_starts_a_new_session() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("client", 300));
    h.subscribe(A, "t", QoS::AtLeastOnce);
    let outputs = h.connect(B, v5("client"));
    assert!(!connack(&outputs, B).session_present);
    h.connect_ok(C, v5("publisher"));
    assert!(publishes(&h.publish(C, qos0("t", "x")), B).is_empty());
    // The positive control: subscribed again, the new session gets it.
    h.subscribe(B, "t", QoS::AtLeastOnce);
    assert_eq!(payloads(&h.publish(C, qos0("t", "y")), B), ["y"]);
}

#[test]
fn mqtt_3_1_0_2_second_connect_on_a_connection_is_a_protocol_error() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("client"));
    let outputs = h.send(A, Packet::Connect(v5("client")));
    assert_disconnected(&outputs, A, ReasonCode::ProtocolError);
    assert!(
        sent_to(&outputs, A)
            .iter()
            .all(|p| !matches!(p, Packet::ConnAck(_))),
        "no second CONNACK [MQTT-3.2.0-2]"
    );
    assert_eq!(h.broker.stats().clients_connected, 0);
}

#[test]
fn mqtt_3_1_0_2_second_connect_through_handle_connect_is_a_protocol_error() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("client"));
    let outputs = h.connect(A, v311("other"));
    assert!(
        sent_to(&outputs, A).is_empty(),
        "3.1.1: no DISCONNECT, no CONNACK"
    );
    assert!(closed(&outputs, A));
    assert_eq!(h.broker.client_id(A), None);
}

#[test]
fn mqtt_3_1_0_1_packets_before_connect_close_the_connection() {
    let mut h = Harness::new();
    for packet in [
        Packet::PingReq,
        Packet::Publish(qos0("t", "x")),
        Packet::Subscribe(subscribe_packet(
            1,
            &[("t", options(QoS::AtMostOnce))],
            None,
        )),
    ] {
        let outputs = h.send(A, packet);
        assert_eq!(outputs, vec![Output::Close { connection: A }]);
    }
    assert_eq!(h.broker.stats().clients_connected, 0);
}

#[test]
fn mqtt_3_12_4_1_pingreq_is_answered_with_pingresp() {
    let mut h = Harness::new();
    h.connect_ok(A, v311("client"));
    let outputs = h.send(A, Packet::PingReq);
    assert_eq!(sent_to(&outputs, A), vec![Packet::PingResp]);
    assert!(!closed(&outputs, A));
}

#[test]
fn server_only_packets_from_a_client_are_a_protocol_error() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("client"));
    let outputs = h.send(A, Packet::PingResp);
    assert_disconnected(&outputs, A, ReasonCode::ProtocolError);
}

#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level_gets_connack_0x01_then_close() {
    let mut h = Harness::new();
    let error = DecodeError::UnsupportedProtocol {
        name: "MQTT".into(),
        level: 9,
    };
    h.broker.handle_decode_error(A, &error, &info(), h.now);
    let outputs = h.drain();
    assert_eq!(
        connack(&outputs, A).reason_code,
        ReasonCode::UnsupportedProtocolVersion
    );
    assert!(closed(&outputs, A));
    assert_eq!(
        wire_connack(&outputs, A, ProtocolVersion::V311),
        [0x20, 2, 0, 0x01]
    );
}

#[test]
fn mqtt_4_8_0_1_malformed_first_packet_closes_without_answer() {
    let mut h = Harness::new();
    h.broker
        .handle_decode_error(A, &DecodeError::ConnectReservedFlag, &info(), h.now);
    let outputs = h.drain();
    assert_eq!(outputs, vec![Output::Close { connection: A }]);
    assert_eq!(h.broker.stats().connections_refused, 1);
}

#[test]
fn mqtt_4_13_1_1_malformed_packet_after_connect_disconnects_with_its_reason() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("client"));
    h.broker
        .handle_decode_error(A, &DecodeError::InvalidQoS, &info(), h.now);
    let outputs = h.drain();
    assert_disconnected(&outputs, A, ReasonCode::MalformedPacket);
    assert_eq!(h.broker.client_id(A), None);
}

#[test]
fn mqtt_3_2_2_13_will_retain_without_retain_support_is_refused_with_0x9a() {
    let mut h = Harness::with_config(BrokerConfig {
        retain_available: false,
        ..quiet_config()
    });
    let mut last_will = will("status/client", "gone");
    last_will.retain = true;
    let outputs = h.connect(A, with_will(v5("client"), last_will));
    assert_eq!(
        connack(&outputs, A).reason_code,
        ReasonCode::RetainNotSupported
    );
    assert!(closed(&outputs, A));
}

#[test]
fn mqtt_3_2_2_14_retained_publish_without_retain_support_disconnects_with_0x9a() {
    let mut h = Harness::with_config(BrokerConfig {
        retain_available: false,
        ..quiet_config()
    });
    let connack = h.connect_ok(A, v5("client"));
    assert_eq!(connack.properties.retain_available, Some(0));
    let outputs = h.publish(A, retained(qos0("t", "x")));
    assert_disconnected(&outputs, A, ReasonCode::RetainNotSupported);
}

#[test]
fn v5_connack_announces_the_broker_limits() {
    let mut h = Harness::with_config(BrokerConfig {
        receive_maximum: 10,
        max_packet_size: 4096,
        topic_alias_maximum: 5,
        max_session_expiry: 600,
        ..quiet_config()
    });
    let connack = h.connect_ok(A, v5_persistent("client", 3600));
    let properties = connack.properties;
    assert_eq!(properties.receive_maximum, Some(10));
    assert_eq!(properties.maximum_packet_size, Some(4096));
    assert_eq!(properties.topic_alias_maximum, Some(5));
    // The granted session expiry is announced when it differs from the request.
    assert_eq!(properties.session_expiry_interval, Some(600));
    assert_eq!(properties.retain_available, None, "retain is available");
    assert_eq!(properties.server_keep_alive, None);
    assert_eq!(properties.assigned_client_identifier, None);
    assert_eq!(properties.authentication_method, None, "[MQTT-4.12.0-6]");

    let connack = h.connect_ok(B, v5_persistent("other", 60));
    assert_eq!(connack.properties.session_expiry_interval, None);
}

#[test]
fn v311_connack_carries_no_properties_on_the_wire() {
    let mut h = Harness::new();
    let outputs = h.connect(A, v311("client"));
    assert_eq!(
        wire_connack(&outputs, A, ProtocolVersion::V311),
        [0x20, 2, 0, 0]
    );
}

#[test]
fn connection_lost_before_any_connect_is_harmless() {
    let mut h = Harness::new();
    assert!(h.lose(A).is_empty());
    h.connect_ok(A, v5("client"));
    assert!(h.lose(A).is_empty());
    assert!(h.lose(A).is_empty());
    assert_eq!(h.broker.stats().clients_connected, 0);
}

#[test]
fn client_ids_are_distinct_sessions() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("one"));
    h.connect_ok(B, v5("two"));
    assert_eq!(h.broker.stats().clients_connected, 2);
    assert_eq!(h.broker.stats().clients_maximum, 2);
    let clients = h.broker.clients();
    let ids: Vec<&str> = clients.iter().map(|c| c.client_id.as_str()).collect();
    assert_eq!(ids, ["one", "two"]);
    assert_eq!(clients[0].protocol, ProtocolVersion::V5);
    assert_eq!(clients[0].remote_address, "127.0.0.1:50000");
}

/// The CONNACK sent to `connection` as the bytes a client of `version` would receive.
fn wire_connack(
    outputs: &[Output],
    connection: broker_core::ConnectionId,
    version: ProtocolVersion,
) -> Vec<u8> {
    let packet = Packet::ConnAck(connack(outputs, connection));
    let mut buf = bytes::BytesMut::new();
    encode(&packet, version, &mut buf).expect("CONNACK encodes");
    buf.to_vec()
}

/// Found by the `broker_core_sequences` fuzz target: a CONNACK larger than the client's
/// Maximum Packet Size was skipped, yet the connection was accepted, so the client's first
/// packet was a PUBLISH [MQTT-3.2.0-1]. Such a client is now refused with 0x95, bare, and takes
/// over nothing.
#[test]
fn mqtt_3_2_0_1_a_connack_too_large_for_the_client_refuses_the_connect() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("a", 60));
    h.subscribe(A, "t", QoS::AtLeastOnce);
    let mut tiny = v5_persistent("a", 60);
    tiny.clean_start = false;
    tiny.properties.maximum_packet_size = Some(16);
    tiny.properties.request_response_information = Some(1);
    let outputs = h.connect(B, tiny);
    let connack = connack(&outputs, B);
    assert_eq!(connack.reason_code, ReasonCode::PacketTooLarge);
    assert!(closed(&outputs, B));
    for output in &outputs {
        if let Output::Send { frame, .. } = output {
            assert!(frame.bytes.len() <= 16, "{outputs:#?}");
        }
    }
    // The older connection and its session are untouched.
    assert!(!closed(&outputs, A), "{outputs:#?}");
    assert_eq!(h.broker.stats().clients_connected, 1);
    assert_eq!(h.broker.subscriptions().len(), 1);
    // A maximum the CONNACK fits in is accepted as before.
    let mut small = v5("b");
    small.properties.maximum_packet_size = Some(64);
    h.connect_ok(C, small);
}
