//! The authentication and authorization hook: refused CONNECTs, denied subscriptions and
//! publications, and the 5.0 enhanced authentication exchange (AUTH).

use crate::common::*;
use broker_core::{AuthDecision, AuthHook, ClientIdentity, Output};
use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    AuthPacket, ByteStr, ConnectPacket, DisconnectPacket, Packet, Properties, ProtocolVersion, QoS,
    ReasonCode, encode,
};

/// Rules for the tests: user "mallory" has a bad password, user "eve" is not authorized,
/// nobody may subscribe to `private/#` or publish to `readonly/#`, and the method "token"
/// accepts the data "open sesame", asking once for more with "challenge".
struct Rules;

impl AuthHook for Rules {
    fn authenticate(&mut self, connect: &ConnectPacket, client_id: &str) -> AuthDecision {
        let _ = client_id;
        match connect.properties.authentication_method.as_deref() {
            Some("token") => return AuthDecision::Continue(challenge()),
            Some(_) => return AuthDecision::Refuse(ReasonCode::BadAuthenticationMethod),
            None => {}
        }
        match connect.username.as_deref() {
            Some("mallory") => AuthDecision::Refuse(ReasonCode::BadUserNameOrPassword),
            Some("eve") => AuthDecision::Refuse(ReasonCode::NotAuthorized),
            _ => AuthDecision::Accept(Properties::default()),
        }
    }

    fn continue_authentication(
        &mut self,
        _client: &ClientIdentity<'_>,
        method: &ByteStr,
        properties: &Properties,
    ) -> AuthDecision {
        assert_eq!(method, "token");
        match properties.authentication_data.as_deref() {
            Some(b"open sesame") => AuthDecision::Accept(Properties {
                authentication_data: Some(Bytes::from_static(b"welcome")),
                ..Properties::default()
            }),
            Some(b"more please") => AuthDecision::Continue(challenge()),
            _ => AuthDecision::Refuse(ReasonCode::NotAuthorized),
        }
    }

    fn authorize_subscribe(&mut self, _client: &ClientIdentity<'_>, filter: &str) -> bool {
        !filter.starts_with("private/")
    }

    fn authorize_publish(&mut self, client: &ClientIdentity<'_>, topic: &str) -> bool {
        !(topic.starts_with("readonly/") && client.username != Some("admin"))
    }
}

fn challenge() -> Properties {
    Properties {
        authentication_data: Some(Bytes::from_static(b"challenge")),
        ..Properties::default()
    }
}

fn harness() -> Harness {
    Harness::with_auth(quiet_config(), Box::new(Rules))
}

fn as_user(mut connect: ConnectPacket, username: &str) -> ConnectPacket {
    connect.username = Some(ByteStr::from(username));
    connect.password = Some(Bytes::from_static(b"secret"));
    connect
}

fn with_method(mut connect: ConnectPacket, method: &str) -> ConnectPacket {
    connect.properties.authentication_method = Some(ByteStr::from(method));
    connect
}

fn auth(reason_code: ReasonCode, method: &str, data: &'static [u8]) -> Packet {
    Packet::Auth(AuthPacket {
        reason_code,
        properties: Properties {
            authentication_method: Some(ByteStr::from(method)),
            authentication_data: Some(Bytes::from_static(data)),
            ..Properties::default()
        },
    })
}

fn auth_packets(outputs: &[Output], connection: broker_core::ConnectionId) -> Vec<AuthPacket> {
    sent_to(outputs, connection)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Auth(auth) => Some(auth),
            _ => None,
        })
        .collect()
}

fn wire(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).expect("encodes");
    buf.to_vec()
}

// ----- CONNECT ------------------------------------------------------------------------------

#[test]
fn mqtt_3_1_4_2_v5_refused_credentials_get_connack_0x86_and_close() {
    let mut h = harness();
    let outputs = h.connect(A, as_user(v5("client"), "mallory"));
    let connack = connack(&outputs, A);
    assert_eq!(connack.reason_code, ReasonCode::BadUserNameOrPassword);
    assert!(!connack.session_present, "[MQTT-3.2.2-6]");
    assert!(closed(&outputs, A), "[MQTT-3.2.2-7]");
    assert_eq!(sent_to(&outputs, A).len(), 1, "nothing but the CONNACK");
    let stats = h.broker.stats();
    assert_eq!(stats.auth_failures, 1);
    assert_eq!(stats.connections_refused, 1);
    assert_eq!(stats.clients_connected, 0);
    assert_eq!(stats.sessions, 0);
}

#[test]
fn v5_unauthorized_user_gets_connack_0x87() {
    let mut h = harness();
    let outputs = h.connect(A, as_user(v5("client"), "eve"));
    assert_eq!(connack(&outputs, A).reason_code, ReasonCode::NotAuthorized);
    assert!(closed(&outputs, A));
}

#[test]
fn v311_refused_credentials_get_return_code_4_and_unauthorized_5() {
    let mut h = harness();
    let outputs = h.connect(A, as_user(v311("client"), "mallory"));
    let refused = Packet::ConnAck(connack(&outputs, A));
    assert!(closed(&outputs, A));
    assert_eq!(wire(&refused, ProtocolVersion::V311), [0x20, 2, 0, 4]);

    let outputs = h.connect(B, as_user(v311("client"), "eve"));
    let refused = Packet::ConnAck(connack(&outputs, B));
    assert_eq!(wire(&refused, ProtocolVersion::V311), [0x20, 2, 0, 5]);
}

#[test]
fn mqtt_3_2_2_6_refused_connect_leaves_an_existing_session_alone() {
    let mut h = harness();
    h.connect_ok(A, v5_persistent("client", 600));
    h.subscribe(A, "t", QoS::AtLeastOnce);
    // Someone with bad credentials tries the same client identifier.
    let mut intruder = as_user(v5_persistent("client", 600), "mallory");
    intruder.clean_start = true;
    let outputs = h.connect(B, intruder);
    assert!(!connack(&outputs, B).session_present);
    assert!(
        sent_to(&outputs, A).is_empty(),
        "no takeover by a refused client"
    );
    assert!(!closed(&outputs, A));
    assert_eq!(h.broker.client_id(A), Some("client"));
}

#[test]
fn accepted_user_is_reported() {
    let mut h = harness();
    h.connect_ok(A, as_user(v5("client"), "alice"));
    assert_eq!(h.broker.clients()[0].username.as_deref(), Some("alice"));
}

// ----- Authorization of SUBSCRIBE and PUBLISH ------------------------------------------------------

#[test]
fn v5_denied_subscription_gets_0x87_while_others_are_granted() {
    let mut h = harness();
    h.connect_ok(A, v5("client"));
    let outputs = h.send(
        A,
        Packet::Subscribe(subscribe_packet(
            7,
            &[
                ("public/#", options(QoS::AtLeastOnce)),
                ("private/diary", options(QoS::AtLeastOnce)),
                ("news", options(QoS::ExactlyOnce)),
            ],
            None,
        )),
    );
    assert_eq!(
        suback(&outputs, A).reason_codes,
        [
            ReasonCode::GrantedQoS1,
            ReasonCode::NotAuthorized,
            ReasonCode::GrantedQoS2
        ]
    );
    assert!(!closed(&outputs, A));
    assert_eq!(h.broker.stats().subscriptions, 2);

    h.connect_ok(B, as_user(v5("publisher"), "admin"));
    let outputs = h.publish(B, qos0("private/diary", "x"));
    assert!(publishes(&outputs, A).is_empty());
    assert_eq!(payloads(&h.publish(B, qos0("news", "y")), A), ["y"]);
}

#[test]
fn v311_denied_subscription_gets_0x80_while_others_are_granted() {
    let mut h = harness();
    h.connect_ok(A, v311("client"));
    let outputs = h.send(
        A,
        Packet::Subscribe(subscribe_packet(
            7,
            &[
                ("private/diary", options(QoS::AtMostOnce)),
                ("public/#", options(QoS::AtLeastOnce)),
            ],
            None,
        )),
    );
    let suback = suback(&outputs, A);
    assert!(suback.reason_codes[0].is_error());
    assert_eq!(suback.reason_codes[1], ReasonCode::GrantedQoS1);
    // On the wire: packet id 7, then 0x80 and 0x01 [MQTT-3.9.3-2].
    assert_eq!(
        wire(&Packet::SubAck(suback), ProtocolVersion::V311),
        [0x90, 4, 0, 7, 0x80, 0x01]
    );
}

#[test]
fn v5_denied_publish_gets_puback_0x87_and_is_not_delivered() {
    let mut h = harness();
    h.connect_ok(A, v5("client"));
    h.connect_ok(B, v5("listener"));
    h.subscribe(B, "readonly/#", QoS::AtLeastOnce);
    let outputs = h.publish(A, qos1("readonly/config", "hack", 1));
    assert_eq!(
        acks(&outputs, A, is_puback),
        [(1, ReasonCode::NotAuthorized)]
    );
    assert!(publishes(&outputs, B).is_empty());
    assert!(!closed(&outputs, A));

    let outputs = h.publish(A, qos2("readonly/config", "hack", 2));
    assert_eq!(
        acks(&outputs, A, is_pubrec),
        [(2, ReasonCode::NotAuthorized)]
    );
    // A refused QoS 2 message leaves no state: the same id is a new message [MQTT-4.3.3-9].
    let outputs = h.send(A, Packet::PubRel(mqtt_codec::PubAckPacket::new(2)));
    assert_eq!(
        acks(&outputs, A, is_pubcomp),
        [(2, ReasonCode::PacketIdentifierNotFound)]
    );
}

#[test]
fn mqtt_3_3_5_2_v311_denied_publish_is_acknowledged_positively_and_dropped() {
    let mut h = harness();
    h.connect_ok(A, v311("client"));
    h.connect_ok(B, v311("listener"));
    h.subscribe(B, "readonly/#", QoS::AtLeastOnce);
    let outputs = h.publish(A, qos1("readonly/config", "hack", 1));
    assert_eq!(acks(&outputs, A, is_puback), [(1, ReasonCode::Success)]);
    assert!(publishes(&outputs, B).is_empty());
    assert!(!closed(&outputs, A));
    let outputs = h.publish(A, retained(qos0("readonly/config", "hack")));
    assert!(publishes(&outputs, B).is_empty());
    assert_eq!(h.broker.stats().retained_messages, 0, "not stored either");
}

#[test]
fn authorized_user_may_publish_where_others_may_not() {
    let mut h = harness();
    h.connect_ok(A, as_user(v5("client"), "admin"));
    h.connect_ok(B, v5("listener"));
    h.subscribe(B, "readonly/#", QoS::AtLeastOnce);
    let outputs = h.publish(A, qos1("readonly/config", "ok", 1));
    assert_eq!(acks(&outputs, A, is_puback), [(1, ReasonCode::Success)]);
    assert_eq!(payloads(&outputs, B), ["ok"]);
}

// ----- Enhanced authentication ---------------------------------------------------------------

#[test]
fn mqtt_4_12_0_1_default_hook_refuses_an_authentication_method_with_0x8c() {
    let mut h = Harness::new();
    let outputs = h.connect(A, with_method(v5("client"), "SCRAM-SHA-1"));
    assert_eq!(
        connack(&outputs, A).reason_code,
        ReasonCode::BadAuthenticationMethod
    );
    assert!(closed(&outputs, A));
    assert!(auth_packets(&outputs, A).is_empty());
    assert_eq!(h.broker.stats().auth_failures, 1);
}

#[test]
fn mqtt_4_12_0_2_enhanced_authentication_continue_then_accept() {
    let mut h = harness();
    let outputs = h.connect(A, with_method(v5("client"), "token"));
    let challenges = auth_packets(&outputs, A);
    assert_eq!(challenges.len(), 1);
    assert_eq!(
        challenges[0].reason_code,
        ReasonCode::ContinueAuthentication
    );
    assert_eq!(
        challenges[0].properties.authentication_method.as_deref(),
        Some("token"),
        "[MQTT-4.12.0-5]"
    );
    assert_eq!(
        challenges[0].properties.authentication_data.as_deref(),
        Some(&b"challenge"[..])
    );
    assert!(!closed(&outputs, A));
    assert_eq!(h.broker.client_id(A), None, "not connected until accepted");

    // A second round.
    let outputs = h.send(
        A,
        auth(ReasonCode::ContinueAuthentication, "token", b"more please"),
    );
    let challenges = auth_packets(&outputs, A);
    assert_eq!(challenges.len(), 1);
    assert_eq!(
        challenges[0].reason_code,
        ReasonCode::ContinueAuthentication
    );

    let outputs = h.send(
        A,
        auth(ReasonCode::ContinueAuthentication, "token", b"open sesame"),
    );
    let connack = connack(&outputs, A);
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(
        connack.properties.authentication_method.as_deref(),
        Some("token"),
        "[MQTT-4.12.0-5]"
    );
    assert_eq!(
        connack.properties.authentication_data.as_deref(),
        Some(&b"welcome"[..])
    );
    assert_eq!(h.broker.client_id(A), Some("client"));
    h.subscribe(A, "t", QoS::AtMostOnce);
}

#[test]
fn mqtt_4_12_0_4_enhanced_authentication_refused_gets_connack_and_close() {
    let mut h = harness();
    h.connect(A, with_method(v5("client"), "token"));
    let outputs = h.send(
        A,
        auth(ReasonCode::ContinueAuthentication, "token", b"wrong"),
    );
    assert_eq!(connack(&outputs, A).reason_code, ReasonCode::NotAuthorized);
    assert!(closed(&outputs, A));
    assert_eq!(h.broker.client_id(A), None);
    assert_eq!(h.broker.stats().auth_failures, 1);
}

#[test]
fn mqtt_4_12_0_5_auth_with_another_method_is_refused() {
    let mut h = harness();
    h.connect(A, with_method(v5("client"), "token"));
    let outputs = h.send(
        A,
        auth(ReasonCode::ContinueAuthentication, "other", b"open sesame"),
    );
    assert_eq!(connack(&outputs, A).reason_code, ReasonCode::ProtocolError);
    assert!(closed(&outputs, A));
}

#[test]
fn mqtt_3_14_0_1_other_packet_during_authentication_gets_connack_not_disconnect() {
    // Only AUTH or DISCONNECT may come before the CONNACK [MQTT-3.1.2-30]; the broker answers
    // with a CONNACK, since no DISCONNECT may precede a successful one [MQTT-3.14.0-1].
    let mut h = harness();
    h.connect(A, with_method(v5("client"), "token"));
    let outputs = h.send(A, Packet::PingReq);
    assert_eq!(connack(&outputs, A).reason_code, ReasonCode::ProtocolError);
    assert_eq!(disconnect_reason(&outputs, A), None);
    assert!(closed(&outputs, A));
    assert!(
        h.send(A, Packet::PingReq)
            .iter()
            .all(|o| matches!(o, Output::Close { .. }))
    );
}

#[test]
fn mqtt_3_1_2_30_disconnect_during_authentication_just_closes() {
    let mut h = harness();
    h.connect(A, with_method(v5("client"), "token"));
    let outputs = h.send(A, Packet::Disconnect(DisconnectPacket::default()));
    assert_eq!(outputs, vec![Output::Close { connection: A }]);
    assert_eq!(h.broker.stats().clients_connected, 0);
}

#[test]
fn mqtt_3_14_0_1_decode_error_during_authentication_gets_connack_not_disconnect() {
    let mut h = harness();
    h.connect(A, with_method(v5("client"), "token"));
    h.broker
        .handle_decode_error(A, &mqtt_codec::DecodeError::InvalidQoS, &info(), h.now);
    let outputs = h.drain();
    assert_eq!(
        connack(&outputs, A).reason_code,
        ReasonCode::MalformedPacket
    );
    assert_eq!(disconnect_reason(&outputs, A), None);
    assert!(closed(&outputs, A));
}

#[test]
fn mqtt_3_14_0_1_shutdown_during_authentication_sends_no_disconnect() {
    let mut h = harness();
    h.connect(A, with_method(v5("client"), "token"));
    h.broker.handle_shutdown(h.now);
    let outputs = h.drain();
    assert_eq!(disconnect_reason(&outputs, A), None);
    assert!(closed(&outputs, A));
}

#[test]
fn connection_lost_during_authentication_is_forgotten() {
    let mut h = harness();
    h.connect(A, with_method(v5("client"), "token"));
    assert!(h.lose(A).is_empty());
    let outputs = h.send(
        A,
        auth(ReasonCode::ContinueAuthentication, "token", b"open sesame"),
    );
    assert_eq!(outputs, vec![Output::Close { connection: A }]);
}

#[test]
fn v311_client_cannot_start_an_exchange() {
    // The hook asks to continue, but 3.1.1 has no AUTH packet: refused, not stuck.
    let mut h = harness();
    let mut connect = v311("client");
    connect.properties.authentication_method = Some(ByteStr::from("token"));
    let outputs = h.connect(A, connect);
    assert!(connack(&outputs, A).reason_code.is_error());
    assert!(closed(&outputs, A));
    assert!(auth_packets(&outputs, A).is_empty());
}

#[test]
fn mqtt_4_12_1_1_reauthentication_accepted() {
    let mut h = harness();
    h.connect(A, with_method(v5("client"), "token"));
    h.send(
        A,
        auth(ReasonCode::ContinueAuthentication, "token", b"open sesame"),
    );
    let outputs = h.send(A, auth(ReasonCode::ReAuthenticate, "token", b"open sesame"));
    let answers = auth_packets(&outputs, A);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].reason_code, ReasonCode::Success);
    assert_eq!(
        answers[0].properties.authentication_method.as_deref(),
        Some("token")
    );
    assert!(!closed(&outputs, A));
}

#[test]
fn mqtt_4_12_1_2_failed_reauthentication_disconnects() {
    let mut h = harness();
    h.connect(A, with_method(v5("client"), "token"));
    h.send(
        A,
        auth(ReasonCode::ContinueAuthentication, "token", b"open sesame"),
    );
    let outputs = h.send(A, auth(ReasonCode::ReAuthenticate, "token", b"expired"));
    assert_disconnected(&outputs, A, ReasonCode::NotAuthorized);
}

#[test]
fn mqtt_4_12_1_1_reauthentication_with_another_method_is_a_protocol_error() {
    let mut h = harness();
    h.connect(A, with_method(v5("client"), "token"));
    h.send(
        A,
        auth(ReasonCode::ContinueAuthentication, "token", b"open sesame"),
    );
    let outputs = h.send(A, auth(ReasonCode::ReAuthenticate, "other", b"x"));
    assert_disconnected(&outputs, A, ReasonCode::ProtocolError);
}

#[test]
fn mqtt_4_12_0_7_auth_without_a_method_in_connect_is_a_protocol_error() {
    let mut h = harness();
    h.connect_ok(A, v5("client"));
    let outputs = h.send(A, auth(ReasonCode::ReAuthenticate, "token", b"x"));
    assert_disconnected(&outputs, A, ReasonCode::ProtocolError);
}

/// Accepts the method "single-step" at once, and asks every other client to continue,
/// method or not (a hook that forgets [MQTT-4.12.0-6]).
struct SingleStep;

impl AuthHook for SingleStep {
    fn authenticate(&mut self, connect: &ConnectPacket, _client_id: &str) -> AuthDecision {
        match connect.properties.authentication_method.as_deref() {
            Some("single-step") => AuthDecision::Accept(Properties::default()),
            _ => AuthDecision::Continue(Properties::default()),
        }
    }
}

#[test]
fn mqtt_4_12_0_5_connack_of_an_exchange_accepted_at_once_carries_the_method() {
    let mut h = Harness::with_auth(quiet_config(), Box::new(SingleStep));
    let connack = h.connect_ok(A, with_method(v5("client"), "single-step"));
    assert_eq!(
        connack.properties.authentication_method.as_deref(),
        Some("single-step")
    );
}

#[test]
fn mqtt_4_12_0_6_no_auth_packet_to_a_client_that_named_no_method() {
    let mut h = Harness::with_auth(quiet_config(), Box::new(SingleStep));
    let outputs = h.connect(A, v5("client"));
    assert!(auth_packets(&outputs, A).is_empty());
    assert!(connack(&outputs, A).reason_code.is_error());
    assert!(closed(&outputs, A));
}

#[test]
fn mqtt_3_1_2_29_acknowledgements_carry_no_reason_string() {
    // Whatever Request Problem Information says, the broker keeps reason strings to CONNACK
    // and DISCONNECT, where they are always allowed.
    let mut h = harness();
    let mut connect = v5("client");
    connect.properties.request_problem_information = Some(0);
    h.connect_ok(A, connect);
    let outputs = h.publish(A, qos1("readonly/x", "denied", 1));
    let outputs2 = h.send(
        A,
        Packet::Subscribe(subscribe_packet(
            2,
            &[("private/x", options(QoS::AtMostOnce))],
            None,
        )),
    );
    let packets: Vec<Packet> = sent_to(&outputs, A)
        .into_iter()
        .chain(sent_to(&outputs2, A))
        .collect();
    // Exactly the two refusals, so the checks below cannot pass on nothing.
    assert!(
        matches!(&packets[..], [Packet::PubAck(puback), Packet::SubAck(suback)]
            if puback.reason_code == ReasonCode::NotAuthorized
                && suback.reason_codes == [ReasonCode::NotAuthorized]),
        "{packets:#?}"
    );
    for packet in &packets {
        let properties = match packet {
            Packet::PubAck(ack) => &ack.properties,
            Packet::SubAck(ack) => &ack.properties,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(properties.reason_string, None);
        assert!(properties.user_properties.is_empty());
    }
}

/// Records the user name each AUTH step is asked about, and accepts the second step.
struct RecordsIdentity(std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>);

impl AuthHook for RecordsIdentity {
    fn authenticate(&mut self, _connect: &ConnectPacket, _client_id: &str) -> AuthDecision {
        AuthDecision::Continue(Properties::default())
    }

    fn continue_authentication(
        &mut self,
        client: &ClientIdentity<'_>,
        _method: &ByteStr,
        _properties: &Properties,
    ) -> AuthDecision {
        self.0
            .lock()
            .unwrap()
            .push(client.username.map(str::to_string));
        AuthDecision::Accept(Properties::default())
    }
}

#[test]
fn an_exchange_sees_the_user_name_the_gateway_verified_as_re_authentication_does() {
    // The gateway may establish the user before the CONNECT reaches the broker (SCRAM's `n=`
    // name, which the CONNECT need not repeat): the hook sees that name during the exchange,
    // the one the session gets and that re-authentication is asked about.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut h = Harness::with_auth(quiet_config(), Box::new(RecordsIdentity(seen.clone())));
    let grant = broker_core::Grant {
        username: Some(ByteStr::from("verified")),
        ..broker_core::Grant::default()
    };
    let mut connect = with_method(v5("client"), "token");
    connect.username = Some(ByteStr::from("claimed"));
    h.connect_with(
        A,
        connect,
        broker_core::Authentication::Verified(Box::new(grant)),
    );
    let outputs = h.send(A, auth(ReasonCode::ContinueAuthentication, "token", b"x"));
    assert_eq!(connack(&outputs, A).reason_code, ReasonCode::Success);
    h.send(A, auth(ReasonCode::ReAuthenticate, "token", b"x"));
    // Without a verified name, the CONNECT's.
    h.connect_with(
        B,
        as_user(with_method(v5("other"), "token"), "claimed"),
        broker_core::Authentication::Unchecked,
    );
    h.send(B, auth(ReasonCode::ContinueAuthentication, "token", b"x"));
    let seen = seen.lock().unwrap().clone();
    let names: Vec<_> = seen.iter().map(Option::as_deref).collect();
    assert_eq!(names, [Some("verified"), Some("verified"), Some("claimed")]);
}

// ----- Authorization by identity -------------------------------------------------------------

/// Allows only the user "alice", and only as client "alice-phone", to subscribe or publish
/// (a will included) under `team/`; everything else is open. So each check must be handed the
/// connection's user name and client identifier.
struct TeamOfAlice;

impl AuthHook for TeamOfAlice {
    fn authorize_subscribe(&mut self, client: &ClientIdentity<'_>, filter: &str) -> bool {
        !filter.starts_with("team/") || is_alice(client)
    }

    fn authorize_publish(&mut self, client: &ClientIdentity<'_>, topic: &str) -> bool {
        !topic.starts_with("team/") || is_alice(client)
    }
}

fn is_alice(client: &ClientIdentity<'_>) -> bool {
    client.username == Some("alice") && client.client_id == "alice-phone"
}

#[test]
fn authorization_sees_the_user_name_and_client_id_of_each_connection() {
    let mut h = Harness::with_auth(quiet_config(), Box::new(TeamOfAlice));
    let leaves_a_will = |connect| with_will(connect, will("team/gone", "bye"));
    // The will is authorized at CONNECT with the CONNECT's identity.
    let outputs = h.connect(A, leaves_a_will(as_user(v5("alice-phone"), "bob")));
    assert_eq!(connack(&outputs, A).reason_code, ReasonCode::NotAuthorized);
    h.connect_ok(A, leaves_a_will(as_user(v5("alice-phone"), "alice")));
    h.connect_ok(B, as_user(v5("bob-phone"), "bob"));
    h.connect_ok(C, as_user(v5("alice-laptop"), "alice"));

    // Subscriptions: alice on her phone only.
    h.subscribe(A, "team/#", QoS::AtLeastOnce);
    for connection in [B, C] {
        let outputs = h.send(
            connection,
            Packet::Subscribe(subscribe_packet(
                7,
                &[("team/#", options(QoS::AtLeastOnce))],
                None,
            )),
        );
        assert_eq!(
            suback(&outputs, connection).reason_codes,
            [ReasonCode::NotAuthorized]
        );
    }

    // Publications: the same.
    let outputs = h.publish(B, qos1("team/news", "from bob", 1));
    assert_eq!(
        acks(&outputs, B, is_puback),
        [(1, ReasonCode::NotAuthorized)]
    );
    let outputs = h.publish(C, qos1("team/news", "from the laptop", 1));
    assert_eq!(
        acks(&outputs, C, is_puback),
        [(1, ReasonCode::NotAuthorized)]
    );
    assert!(publishes(&outputs, A).is_empty());
    let outputs = h.publish(A, qos1("team/news", "from alice", 1));
    assert_eq!(acks(&outputs, A, is_puback), [(1, ReasonCode::Success)]);
    assert_eq!(payloads(&outputs, A), ["from alice"]);
}
