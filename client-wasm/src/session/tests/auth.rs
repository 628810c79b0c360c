//! Enhanced authentication (MQTT 5.0 AUTH): the exchange of a CONNECT, re-authentication, and
//! the AUTH packets no exchange expects.

use super::*;

const METHOD: &str = "SCRAM-SHA-256";

/// Properties with the client's method and `data`.
fn auth_properties(data: &'static [u8]) -> Properties {
    Properties {
        authentication_method: Some(ByteStr::from(METHOD)),
        authentication_data: Some(Bytes::from_static(data)),
        ..Properties::default()
    }
}

fn auth(reason_code: ReasonCode, data: &'static [u8]) -> Packet {
    Packet::Auth(AuthPacket {
        reason_code,
        properties: auth_properties(data),
    })
}

/// A 5.0 client with an authentication method and initial data, its CONNECT sent.
fn connecting() -> Harness {
    let mut harness = Harness::new(Options {
        client_id: "c1".into(),
        reconnect: Some(Backoff {
            min_delay_ms: 100,
            max_delay_ms: 1_000,
        }),
        properties: auth_properties(b"client-first"),
        ..Options::default()
    });
    harness.session.handle_open(0.0);
    match harness.sent().as_slice() {
        [Packet::Connect(connect)] => {
            assert_eq!(connect.properties, auth_properties(b"client-first"));
        }
        other => panic!("expected CONNECT, got {other:?}"),
    }
    harness
}

/// The client of [`connecting`], accepted in one step.
fn authenticated() -> Harness {
    let mut harness = connecting();
    harness.connack(false);
    harness.events();
    harness
}

/// The reason code of the one DISCONNECT in `sent`.
fn disconnect_reason(sent: Vec<Packet>) -> ReasonCode {
    match sent.as_slice() {
        [Packet::Disconnect(disconnect)] => disconnect.reason_code,
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

fn protocol_error(events: &[Event]) -> bool {
    matches!(
        events,
        [
            Event::CloseTransport,
            Event::ConnectionLost {
                error: ClientError::Protocol(_),
                ..
            },
            ..
        ]
    )
}

#[test]
fn the_connect_exchange_answers_each_auth_and_ends_with_the_connack() {
    let mut harness = connecting();
    harness.receive(auth(ReasonCode::ContinueAuthentication, b"server-first"));
    assert_eq!(
        harness.events(),
        vec![Event::Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: auth_properties(b"server-first"),
        }]
    );
    assert_eq!(harness.session.state(), State::Connecting);
    harness
        .session
        .authenticate(Bytes::from_static(b"client-final"), 0.0);
    assert_eq!(
        harness.sent(),
        vec![auth(ReasonCode::ContinueAuthentication, b"client-final")]
    );
    // A second answer to the same AUTH is not sent.
    harness
        .session
        .authenticate(Bytes::from_static(b"again"), 0.0);
    assert!(harness.sent().is_empty());
    // The CONNACK carries the server's final data for the application to check.
    harness.receive(Packet::ConnAck(ConnAckPacket {
        session_present: false,
        reason_code: ReasonCode::Success,
        properties: auth_properties(b"server-final"),
    }));
    assert_eq!(
        harness.events(),
        vec![Event::Connected {
            session_present: false,
            properties: auth_properties(b"server-final"),
        }]
    );
}

#[test]
fn each_attempt_sends_the_authentication_data_it_was_given() {
    let mut harness = authenticated();
    harness.session.handle_transport_closed(harness.now);
    harness.events();
    harness.advance_to(harness.now + 2_000.0);
    assert_eq!(harness.events(), vec![Event::OpenTransport]);
    harness.session.set_credentials(Credentials {
        authentication_data: Some(Bytes::from_static(b"fresh nonce")),
        ..Credentials::default()
    });
    let connect = harness.connect(false, Properties::default());
    assert_eq!(connect.properties, auth_properties(b"fresh nonce"));
}

#[test]
fn reauthentication_runs_the_same_exchange_and_completes_on_success() {
    let mut harness = authenticated();
    harness
        .session
        .reauthenticate(7, Bytes::from_static(b"client-first"), 0.0)
        .unwrap();
    assert_eq!(
        harness.sent(),
        vec![auth(ReasonCode::ReAuthenticate, b"client-first")]
    );
    // Messages flow meanwhile.
    harness.publish(8, "a", QoS::AtMostOnce).unwrap();
    assert_eq!(harness.sent().len(), 1);
    harness.receive(auth(ReasonCode::ContinueAuthentication, b"server-first"));
    let events = harness.events();
    assert_eq!(
        events[1..],
        [Event::Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: auth_properties(b"server-first"),
        }]
    );
    harness
        .session
        .authenticate(Bytes::from_static(b"client-final"), 0.0);
    assert_eq!(
        harness.sent(),
        vec![auth(ReasonCode::ContinueAuthentication, b"client-final")]
    );
    harness.receive(auth(ReasonCode::Success, b"server-final"));
    assert_eq!(
        harness.events(),
        vec![completed(
            7,
            Ok(Completion::Reauthenticated {
                properties: auth_properties(b"server-final")
            })
        )]
    );
    // Another may follow; empty data sends none.
    harness
        .session
        .reauthenticate(9, Bytes::new(), 0.0)
        .unwrap();
    let Packet::Auth(sent) = &harness.sent()[0] else {
        panic!("expected AUTH")
    };
    assert_eq!(sent.properties.authentication_data, None);
    // An AUTH (success) abbreviated to its reason code ends it too.
    harness.receive(Packet::Auth(AuthPacket {
        reason_code: ReasonCode::Success,
        properties: Properties::default(),
    }));
    assert_eq!(
        harness.events(),
        vec![completed(
            9,
            Ok(Completion::Reauthenticated {
                properties: Properties::default()
            })
        )]
    );
}

#[test]
fn a_reauthentication_that_the_broker_refuses_fails_with_its_disconnect() {
    let mut harness = authenticated();
    harness
        .session
        .reauthenticate(7, Bytes::from_static(b"stale"), 0.0)
        .unwrap();
    harness.sent();
    harness.receive(Packet::Disconnect(DisconnectPacket {
        reason_code: ReasonCode::NotAuthorized,
        properties: Properties::default(),
    }));
    let error = ClientError::ServerDisconnected(ReasonCode::NotAuthorized);
    let events = harness.events();
    assert_eq!(
        events[..3],
        [
            Event::CloseTransport,
            completed(7, Err(error)),
            Event::ConnectionLost {
                error,
                reconnect: true
            },
        ]
    );
    assert_eq!(harness.session.state(), State::Reconnecting);
}

#[test]
fn reauthenticate_needs_a_method_a_connection_and_no_other_under_way() {
    // No authentication method.
    let mut harness = Harness::connected();
    let refused = harness.session.reauthenticate(1, Bytes::new(), 0.0);
    assert_eq!(
        refused.map_err(|error| error.code()),
        Err("INVALID_OPTIONS")
    );
    // One under way already.
    let mut harness = authenticated();
    harness
        .session
        .reauthenticate(1, Bytes::new(), 0.0)
        .unwrap();
    let refused = harness.session.reauthenticate(2, Bytes::new(), 0.0);
    assert_eq!(
        refused.map_err(|error| error.code()),
        Err("INVALID_OPTIONS")
    );
    harness.sent();
    // Not connected.
    harness.session.handle_transport_closed(0.0);
    assert_eq!(
        harness.events()[0],
        completed(1, Err(ClientError::ConnectionLost))
    );
    assert_eq!(
        harness.session.reauthenticate(3, Bytes::new(), 0.0),
        Err(ClientError::ConnectionLost)
    );
    harness.session.end(0.0);
    assert_eq!(
        harness.session.reauthenticate(4, Bytes::new(), 0.0),
        Err(ClientError::Closed)
    );
    // end() during one.
    let mut harness = authenticated();
    harness
        .session
        .reauthenticate(5, Bytes::new(), 0.0)
        .unwrap();
    harness.session.end(0.0);
    assert!(
        harness
            .events()
            .contains(&completed(5, Err(ClientError::Closed)))
    );
    // MQTT 3.1.1 has no enhanced authentication.
    let options = Options {
        protocol: ProtocolVersion::V311,
        properties: auth_properties(b""),
        ..Options::default()
    };
    assert_eq!(
        Session::new(options, 0, 0.0)
            .err()
            .map(|error| error.code()),
        Some("INVALID_OPTIONS")
    );
}

#[test]
fn an_answer_for_a_connection_that_ended_is_dropped() {
    let mut harness = connecting();
    harness.receive(auth(ReasonCode::ContinueAuthentication, b"server-first"));
    harness.events();
    harness.session.handle_transport_closed(0.0);
    harness.events();
    harness
        .session
        .authenticate(Bytes::from_static(b"late"), 0.0);
    harness.session.handle_credentials_failed(0.0);
    assert!(harness.sent().is_empty());
    assert!(harness.events().is_empty());
    // A CONNACK that did not wait for the answer: the answer is not sent after it.
    let mut harness = connecting();
    harness.receive(auth(ReasonCode::ContinueAuthentication, b"server-first"));
    harness.connack(false);
    harness.events();
    harness
        .session
        .authenticate(Bytes::from_static(b"late"), 0.0);
    assert!(harness.sent().is_empty());
}

#[test]
fn an_application_without_an_answer_fails_the_attempt_or_the_connection() {
    // During the CONNECT's exchange: a DISCONNECT, and the first attempt fails for good.
    let mut harness = connecting();
    harness.receive(auth(ReasonCode::ContinueAuthentication, b"server-first"));
    harness.events();
    harness.session.handle_credentials_failed(0.0);
    assert_eq!(
        disconnect_reason(harness.sent()),
        ReasonCode::UnspecifiedError
    );
    let error = ClientError::CredentialsFailed;
    assert_eq!(
        harness.events(),
        vec![
            Event::CloseTransport,
            Event::ConnectionLost {
                error,
                reconnect: false
            },
            Event::Closed { error: Some(error) },
        ]
    );
    // During a re-authentication: it fails, and the client reconnects.
    let mut harness = authenticated();
    harness
        .session
        .reauthenticate(3, Bytes::new(), 0.0)
        .unwrap();
    harness.receive(auth(ReasonCode::ContinueAuthentication, b"server-first"));
    harness.sent();
    harness.events();
    harness.session.handle_credentials_failed(0.0);
    assert!(matches!(harness.sent().as_slice(), [Packet::Disconnect(_)]));
    let events = harness.events();
    assert_eq!(
        events[..3],
        [
            Event::CloseTransport,
            completed(3, Err(error)),
            Event::ConnectionLost {
                error,
                reconnect: true
            },
        ]
    );
}

#[test]
fn an_auth_that_no_exchange_expects_is_a_protocol_error() {
    let other_method = Packet::Auth(AuthPacket {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: Properties {
            authentication_method: Some(ByteStr::from("OTHER")),
            ..Properties::default()
        },
    });
    // (the client, the broker's AUTH) in a table: each closes the connection with a
    // DISCONNECT (protocol error).
    let cases: Vec<(&str, Harness, Packet)> = vec![
        (
            "no method in CONNECT",
            {
                let mut harness = Harness::v5();
                harness.session.handle_open(0.0);
                harness.sent();
                harness
            },
            auth(ReasonCode::ContinueAuthentication, b"x"),
        ),
        (
            "success before CONNACK",
            connecting(),
            auth(ReasonCode::Success, b"x"),
        ),
        (
            "re-authenticate from the broker",
            connecting(),
            auth(ReasonCode::ReAuthenticate, b"x"),
        ),
        ("another method", connecting(), other_method),
        (
            "continue with no re-authentication under way",
            authenticated(),
            auth(ReasonCode::ContinueAuthentication, b"x"),
        ),
        (
            "success with no re-authentication under way",
            authenticated(),
            auth(ReasonCode::Success, b"x"),
        ),
        (
            "continue before the answer to the last one",
            {
                let mut harness = connecting();
                harness.receive(auth(ReasonCode::ContinueAuthentication, b"1"));
                harness.events();
                harness
            },
            auth(ReasonCode::ContinueAuthentication, b"2"),
        ),
    ];
    for (case, mut harness, packet) in cases {
        harness.receive(packet);
        let reason = disconnect_reason(harness.sent());
        assert_eq!(reason, ReasonCode::ProtocolError, "{case}");
        assert!(protocol_error(&harness.events()), "{case}");
    }
}
