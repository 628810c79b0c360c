//! The session driven by a fake clock and a scripted broker: packets the broker "sends" are
//! encoded with the codec, and what the client writes is decoded back into packets.

use super::*;
use crate::backoff::Backoff;
use crate::options::{Credentials, WillOptions};
// The scripted broker encodes with the full encoder: it sends what servers send.
use mqtt_codec::{ConnAckPacket, SubAckPacket, UnsubAckPacket, decode, encode};

struct Harness {
    session: Session,
    now: f64,
}

impl Harness {
    fn new(options: Options) -> Self {
        let mut session = Session::new(options, 7, 0.0).expect("valid options");
        assert_eq!(session.poll_event(), Some(Event::OpenTransport));
        Harness { session, now: 0.0 }
    }

    fn v5() -> Self {
        Self::new(Options {
            client_id: "c1".into(),
            reconnect: Some(Backoff {
                min_delay_ms: 100,
                max_delay_ms: 1_000,
            }),
            offline_queue_limit: 10,
            ..Options::default()
        })
    }

    fn version(&self) -> ProtocolVersion {
        self.session.protocol()
    }

    /// Decodes everything the client wrote since the last call.
    fn sent(&mut self) -> Vec<Packet> {
        let mut packets = Vec::new();
        let version = self.version();
        self.session.transmit(|bytes| {
            let mut buffer = BytesMut::from(bytes);
            while let Some(packet) =
                decode(&mut buffer, version, MQTT_MAXIMUM_PACKET_SIZE).expect("valid")
            {
                packets.push(packet);
            }
            assert!(buffer.is_empty(), "a partial packet was written");
        });
        // Everything was handed over at once.
        self.session
            .transmit(|bytes| panic!("{} more bytes", bytes.len()));
        packets
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    fn receive(&mut self, packet: Packet) {
        let mut bytes = BytesMut::new();
        encode(&packet, self.version(), &mut bytes).expect("encodable");
        self.session.handle_data(&bytes, self.now);
    }

    /// Opens the transport, checks CONNECT, answers CONNACK.
    fn connect(&mut self, session_present: bool, properties: Properties) -> ConnectPacket {
        self.session.handle_open(self.now);
        let connect = match self.sent().as_slice() {
            [Packet::Connect(connect)] => connect.clone(),
            other => panic!("expected CONNECT, got {other:?}"),
        };
        self.receive(Packet::ConnAck(ConnAckPacket {
            session_present,
            reason_code: ReasonCode::Success,
            properties,
        }));
        assert_eq!(self.session.state(), State::Connected);
        connect
    }

    fn connected() -> Self {
        let mut harness = Self::v5();
        harness.connect(false, Properties::default());
        harness.events();
        harness
    }

    /// Moves the clock to `at`, firing the timer if it is due.
    fn advance_to(&mut self, at: f64) {
        self.now = at;
        if self.session.poll_timeout().is_some_and(|due| due <= at) {
            self.session.handle_timeout(at);
        }
    }

    fn publish(&mut self, request: RequestId, topic: &str, qos: QoS) -> Result<(), ClientError> {
        let message = OutgoingMessage {
            topic: topic.into(),
            payload: Bytes::from_static(b"hello"),
            qos,
            retain: false,
            properties: Properties::default(),
        };
        self.session.publish(request, message, self.now)
    }

    /// Loses the connection and runs the reconnect up to the new CONNECT, which it returns.
    fn reconnect(&mut self) -> ConnectPacket {
        self.session.handle_transport_closed(self.now);
        let events = self.events();
        let delay = events
            .iter()
            .find_map(|event| match event {
                Event::Reconnecting { delay_ms, .. } => Some(*delay_ms),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no reconnect in {events:?}"));
        assert_eq!(self.session.state(), State::Reconnecting);
        self.advance_to(self.now + f64::from(delay));
        assert_eq!(self.events(), vec![Event::OpenTransport]);
        self.session.handle_open(self.now);
        match self.sent().as_slice() {
            [Packet::Connect(connect)] => connect.clone(),
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    fn connack(&mut self, session_present: bool) {
        self.receive(Packet::ConnAck(ConnAckPacket {
            session_present,
            reason_code: ReasonCode::Success,
            properties: Properties::default(),
        }));
    }
}

fn completed(request: RequestId, result: Result<Completion, ClientError>) -> Event {
    Event::Completed { request, result }
}

fn publish_of(packet: &Packet) -> &PublishPacket {
    match packet {
        Packet::Publish(publish) => publish,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn incoming(topic: &str, qos: QoS, packet_id: Option<u16>) -> Packet {
    Packet::Publish(PublishPacket {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from(topic),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::from_static(b"data"),
    })
}

#[test]
fn connect_carries_the_options() {
    let mut harness = Harness::new(Options {
        client_id: "device-1".into(),
        keep_alive: 15,
        clean: false,
        session_expiry: Some(300),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"secret")),
        will: Some(WillOptions {
            topic: "status/device-1".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Properties::default(),
        }),
        ..Options::default()
    });
    let connect = harness.connect(false, Properties::default());
    assert_eq!(connect.protocol, ProtocolVersion::V5);
    assert_eq!(connect.client_id, "device-1");
    assert_eq!(connect.keep_alive, 15);
    assert!(!connect.clean_start);
    assert_eq!(connect.properties.session_expiry_interval, Some(300));
    assert_eq!(connect.username.as_deref(), Some("user"));
    assert_eq!(connect.password.as_deref(), Some(&b"secret"[..]));
    let will = connect.will.expect("will");
    assert_eq!(
        (will.topic.as_str(), will.qos, will.retain),
        ("status/device-1", QoS::AtLeastOnce, true)
    );
    assert!(matches!(
        harness.events().as_slice(),
        [Event::Connected {
            session_present: false,
            ..
        }]
    ));
}

#[test]
fn mqtt_311_connect_has_no_properties() {
    let mut harness = Harness::new(Options {
        protocol: ProtocolVersion::V311,
        client_id: "old".into(),
        session_expiry: Some(60),
        ..Options::default()
    });
    let connect = harness.connect(false, Properties::default());
    assert_eq!(connect.protocol, ProtocolVersion::V311);
    assert!(connect.clean_start);
    assert!(connect.properties.is_empty());
}

#[test]
fn refused_first_connection_closes_with_the_reason() {
    let mut harness = Harness::v5();
    harness.session.handle_open(0.0);
    harness.sent();
    harness.receive(Packet::ConnAck(ConnAckPacket {
        session_present: false,
        reason_code: ReasonCode::NotAuthorized,
        properties: Properties::default(),
    }));
    let error = ClientError::refused(ReasonCode::NotAuthorized, ProtocolVersion::V5);
    assert_eq!(error.code(), "NOT_AUTHORIZED");
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
    assert_eq!(harness.session.state(), State::Closed);
}

#[test]
fn a_first_connection_that_never_opens_times_out() {
    let mut harness = Harness::v5();
    harness.advance_to(29_999.0);
    assert!(harness.events().is_empty());
    harness.advance_to(30_000.0);
    assert_eq!(
        harness.events()[..2],
        [
            Event::CloseTransport,
            Event::ConnectionLost {
                error: ClientError::ConnectTimeout,
                reconnect: false
            }
        ]
    );
    assert_eq!(harness.session.state(), State::Closed);
}

#[test]
fn publish_at_each_qos_completes_on_its_acknowledgement() {
    let mut harness = Harness::connected();

    harness.publish(1, "a/b", QoS::AtMostOnce).unwrap();
    let sent = harness.sent();
    assert_eq!(publish_of(&sent[0]).packet_id, None);
    assert_eq!(
        harness.events(),
        vec![completed(1, Ok(Completion::Published))]
    );

    harness.publish(2, "a/b", QoS::AtLeastOnce).unwrap();
    let id = publish_of(&harness.sent()[0]).packet_id.expect("id");
    assert!(harness.events().is_empty());
    harness.receive(Packet::PubAck(PubAckPacket::new(id)));
    assert_eq!(
        harness.events(),
        vec![completed(2, Ok(Completion::Published))]
    );

    harness.publish(3, "a/b", QoS::ExactlyOnce).unwrap();
    let id = publish_of(&harness.sent()[0]).packet_id.expect("id");
    harness.receive(Packet::PubRec(PubAckPacket::new(id)));
    assert_eq!(harness.sent(), vec![Packet::PubRel(PubAckPacket::new(id))]);
    assert!(harness.events().is_empty());
    harness.receive(Packet::PubComp(PubAckPacket::new(id)));
    assert_eq!(
        harness.events(),
        vec![completed(3, Ok(Completion::Published))]
    );
    assert_eq!(harness.session.in_flight(), 0);
}

#[test]
fn a_refusing_puback_rejects_the_publish() {
    let mut harness = Harness::connected();
    harness.publish(1, "secret/x", QoS::AtLeastOnce).unwrap();
    let id = publish_of(&harness.sent()[0]).packet_id.unwrap();
    let mut ack = PubAckPacket::new(id);
    ack.reason_code = ReasonCode::NotAuthorized;
    harness.receive(Packet::PubAck(ack));
    assert_eq!(
        harness.events(),
        vec![completed(
            1,
            Err(ClientError::PublishRefused(ReasonCode::NotAuthorized))
        )]
    );
}

#[test]
fn incoming_messages_are_acknowledged_and_qos2_delivered_once() {
    let mut harness = Harness::connected();
    harness.receive(incoming("t/0", QoS::AtMostOnce, None));
    harness.receive(incoming("t/1", QoS::AtLeastOnce, Some(5)));
    assert_eq!(harness.sent(), vec![Packet::PubAck(PubAckPacket::new(5))]);
    harness.receive(incoming("t/2", QoS::ExactlyOnce, Some(6)));
    harness.receive(incoming("t/2", QoS::ExactlyOnce, Some(6)));
    assert_eq!(
        harness.sent(),
        vec![
            Packet::PubRec(PubAckPacket::new(6)),
            Packet::PubRec(PubAckPacket::new(6))
        ]
    );
    let topics: Vec<String> = harness
        .events()
        .into_iter()
        .map(|event| match event {
            Event::Message(publish) => publish.topic.to_string(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(topics, ["t/0", "t/1", "t/2"]);
    harness.receive(Packet::PubRel(PubAckPacket::new(6)));
    assert_eq!(harness.sent(), vec![Packet::PubComp(PubAckPacket::new(6))]);
    // After PUBREL the identifier is free again: a new message with it is delivered.
    harness.receive(incoming("t/3", QoS::ExactlyOnce, Some(6)));
    assert!(matches!(harness.events().as_slice(), [Event::Message(_)]));
}

#[test]
fn subscribe_reports_the_granted_qos_or_the_refusal() {
    let mut harness = Harness::connected();
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        ..SubscriptionOptions::default()
    };
    harness
        .session
        .subscribe(1, "sensors/+/temp", options, Properties::default(), 0.0)
        .unwrap();
    let Packet::Subscribe(subscribe) = &harness.sent()[0] else {
        panic!("expected SUBSCRIBE")
    };
    assert_eq!(subscribe.subscriptions[0].filter, "sensors/+/temp");
    harness.receive(Packet::SubAck(SubAckPacket {
        packet_id: subscribe.packet_id,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::GrantedQoS1],
    }));
    assert_eq!(
        harness.events(),
        vec![completed(
            1,
            Ok(Completion::Subscribed {
                qos: QoS::AtLeastOnce,
                reason_code: ReasonCode::GrantedQoS1
            })
        )]
    );

    harness
        .session
        .subscribe(2, "secret/#", options, Properties::default(), 0.0)
        .unwrap();
    let Packet::Subscribe(subscribe) = &harness.sent()[0] else {
        panic!("expected SUBSCRIBE")
    };
    harness.receive(Packet::SubAck(SubAckPacket {
        packet_id: subscribe.packet_id,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::NotAuthorized],
    }));
    assert_eq!(
        harness.events(),
        vec![completed(
            2,
            Err(ClientError::SubscribeRefused(ReasonCode::NotAuthorized))
        )]
    );
}

#[test]
fn invalid_topics_and_oversized_packets_are_refused_at_once() {
    let properties = Properties {
        maximum_packet_size: Some(100),
        ..Properties::default()
    };
    let mut harness = Harness::v5();
    harness.connect(false, properties);
    harness.events();
    let error = harness.publish(1, "a/+", QoS::AtMostOnce).unwrap_err();
    assert_eq!(error.code(), "INVALID_TOPIC");
    let error = harness
        .session
        .subscribe(
            2,
            "a/#/b",
            SubscriptionOptions::default(),
            Properties::default(),
            0.0,
        )
        .unwrap_err();
    assert_eq!(error.code(), "INVALID_TOPIC");
    let message = OutgoingMessage {
        topic: "big".into(),
        payload: Bytes::from(vec![0; 200]),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    };
    let error = harness.session.publish(3, message, 0.0).unwrap_err();
    assert_eq!(
        error,
        ClientError::PacketTooLarge {
            size: 211,
            maximum: 100
        }
    );
    assert!(harness.sent().is_empty());
    assert!(harness.events().is_empty());
}

#[test]
fn the_receive_maximum_window_holds_back_publishes_in_order() {
    let properties = Properties {
        receive_maximum: Some(1),
        ..Properties::default()
    };
    let mut harness = Harness::v5();
    harness.connect(false, properties);
    harness.events();
    harness.publish(1, "w", QoS::AtLeastOnce).unwrap();
    harness.publish(2, "w", QoS::AtLeastOnce).unwrap();
    harness.publish(3, "w", QoS::AtMostOnce).unwrap();
    let sent = harness.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(harness.session.queued(), 2);
    let first = publish_of(&sent[0]).packet_id.unwrap();
    harness.receive(Packet::PubAck(PubAckPacket::new(first)));
    let sent = harness.sent();
    assert_eq!(
        sent.len(),
        2,
        "the QoS 0 publish follows the QoS 1 before it"
    );
    assert_eq!(publish_of(&sent[1]).qos, QoS::AtMostOnce);
    assert_eq!(
        harness.events(),
        vec![
            completed(1, Ok(Completion::Published)),
            completed(3, Ok(Completion::Published))
        ]
    );
}

#[test]
fn reconnect_resubscribes_resends_in_flight_with_dup_and_flushes_the_queue() {
    let mut harness = Harness::connected();
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    harness
        .session
        .subscribe(1, "a/#", options, Properties::default(), 0.0)
        .unwrap();
    let Packet::Subscribe(subscribe) = &harness.sent()[0] else {
        panic!()
    };
    harness.receive(Packet::SubAck(SubAckPacket {
        packet_id: subscribe.packet_id,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::GrantedQoS1],
    }));
    harness.publish(2, "a/1", QoS::AtLeastOnce).unwrap();
    let in_flight_id = publish_of(&harness.sent()[0]).packet_id.unwrap();
    harness.events();

    harness.session.handle_transport_closed(harness.now);
    let events = harness.events();
    assert_eq!(
        events[0],
        Event::ConnectionLost {
            error: ClientError::ConnectionLost,
            reconnect: true
        }
    );
    let Event::Reconnecting {
        attempt: 1,
        delay_ms,
    } = events[1]
    else {
        panic!("{events:?}")
    };
    assert!((100..200).contains(&delay_ms), "{delay_ms}");
    // Made while offline: queued, not refused.
    harness.publish(3, "a/2", QoS::ExactlyOnce).unwrap();
    harness.publish(4, "a/3", QoS::AtMostOnce).unwrap();
    assert_eq!(harness.session.queued(), 2);

    harness.advance_to(f64::from(delay_ms) - 1.0);
    assert!(harness.events().is_empty());
    harness.advance_to(f64::from(delay_ms));
    assert_eq!(harness.events(), vec![Event::OpenTransport]);
    harness.session.handle_open(harness.now);
    let Packet::Connect(connect) = &harness.sent()[0] else {
        panic!()
    };
    assert!(!connect.clean_start, "5.0 reconnects resume the session");
    harness.connack(false);
    let sent = harness.sent();
    // In-flight first with DUP, then the resubscription, then the offline queue.
    let resent = publish_of(&sent[0]);
    assert!(resent.dup);
    assert_eq!(resent.packet_id, Some(in_flight_id));
    let Packet::Subscribe(resubscribe) = &sent[1] else {
        panic!("{sent:?}")
    };
    assert_eq!(resubscribe.subscriptions[0].filter, "a/#");
    assert_eq!(resubscribe.subscriptions[0].options.qos, QoS::AtLeastOnce);
    assert_eq!(publish_of(&sent[2]).topic, "a/2");
    assert_eq!(publish_of(&sent[3]).topic, "a/3");
    assert!(!publish_of(&sent[2]).dup);
    assert_eq!(sent.len(), 4);
    assert!(matches!(
        harness.events().as_slice(),
        [
            Event::Connected {
                session_present: false,
                ..
            },
            Event::Completed {
                request: 4,
                result: Ok(Completion::Published)
            }
        ]
    ));
    harness.receive(Packet::PubAck(PubAckPacket::new(in_flight_id)));
    assert_eq!(
        harness.events(),
        vec![completed(2, Ok(Completion::Published))]
    );
}

#[test]
fn a_resumed_session_gets_pubrel_again_and_no_resubscription() {
    let mut harness = Harness::connected();
    harness
        .session
        .subscribe(
            1,
            "x",
            SubscriptionOptions::default(),
            Properties::default(),
            0.0,
        )
        .unwrap();
    let Packet::Subscribe(subscribe) = &harness.sent()[0] else {
        panic!()
    };
    harness.receive(Packet::SubAck(SubAckPacket {
        packet_id: subscribe.packet_id,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::Success],
    }));
    harness.publish(2, "x", QoS::ExactlyOnce).unwrap();
    let id = publish_of(&harness.sent()[0]).packet_id.unwrap();
    harness.receive(Packet::PubRec(PubAckPacket::new(id)));
    harness.sent();
    harness.events();
    harness.reconnect();
    harness.connack(true);
    assert_eq!(harness.sent(), vec![Packet::PubRel(PubAckPacket::new(id))]);
    harness.receive(Packet::PubComp(PubAckPacket::new(id)));
    let events = harness.events();
    assert_eq!(
        events.last(),
        Some(&completed(2, Ok(Completion::Published)))
    );
}

#[test]
fn unanswered_subscribe_is_sent_again_after_reconnect() {
    let mut harness = Harness::connected();
    harness
        .session
        .subscribe(
            1,
            "late",
            SubscriptionOptions::default(),
            Properties::default(),
            0.0,
        )
        .unwrap();
    harness.sent();
    harness.reconnect();
    harness.connack(false);
    let sent = harness.sent();
    let [Packet::Subscribe(subscribe)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    harness.receive(Packet::SubAck(SubAckPacket {
        packet_id: subscribe.packet_id,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::Success],
    }));
    assert!(harness.events().contains(&completed(
        1,
        Ok(Completion::Subscribed {
            qos: QoS::AtMostOnce,
            reason_code: ReasonCode::Success
        })
    )));
}

#[test]
fn the_offline_queue_is_bounded_and_overflow_is_refused() {
    let mut harness = Harness::new(Options {
        offline_queue_limit: 2,
        reconnect: Some(Backoff {
            min_delay_ms: 10,
            max_delay_ms: 10,
        }),
        ..Options::default()
    });
    harness.connect(false, Properties::default());
    harness.session.handle_transport_closed(0.0);
    harness.publish(1, "q", QoS::AtLeastOnce).unwrap();
    harness.publish(2, "q", QoS::AtMostOnce).unwrap();
    assert_eq!(
        harness.publish(3, "q", QoS::AtMostOnce),
        Err(ClientError::QueueFull(2))
    );
    assert_eq!(harness.session.queued(), 2);
}

#[test]
fn unsubscribe_forgets_the_filter_for_resubscription() {
    let mut harness = Harness::connected();
    harness
        .session
        .subscribe(
            1,
            "keep",
            SubscriptionOptions::default(),
            Properties::default(),
            0.0,
        )
        .unwrap();
    harness
        .session
        .subscribe(
            2,
            "drop",
            SubscriptionOptions::default(),
            Properties::default(),
            0.0,
        )
        .unwrap();
    for packet in harness.sent() {
        let Packet::Subscribe(subscribe) = packet else {
            panic!()
        };
        harness.receive(Packet::SubAck(SubAckPacket {
            packet_id: subscribe.packet_id,
            properties: Properties::default(),
            reason_codes: vec![ReasonCode::Success],
        }));
    }
    harness
        .session
        .unsubscribe(3, "drop", Properties::default(), 0.0)
        .unwrap();
    let Packet::Unsubscribe(unsubscribe) = &harness.sent()[0] else {
        panic!()
    };
    harness.receive(Packet::UnsubAck(UnsubAckPacket {
        packet_id: unsubscribe.packet_id,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::Success],
    }));
    assert!(harness.events().contains(&completed(
        3,
        Ok(Completion::Unsubscribed {
            reason_code: ReasonCode::Success
        })
    )));
    harness.reconnect();
    harness.connack(false);
    let sent = harness.sent();
    let [Packet::Subscribe(resubscribe)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    let filters: Vec<&str> = resubscribe
        .subscriptions
        .iter()
        .map(|subscription| subscription.filter.as_str())
        .collect();
    assert_eq!(filters, ["keep"]);
}

#[test]
fn keepalive_pings_and_a_silent_broker_triggers_a_reconnect() {
    let mut harness = Harness::new(Options {
        keep_alive: 2,
        reconnect: Some(Backoff::default()),
        ..Options::default()
    });
    harness.connect(false, Properties::default());
    harness.events();
    harness.advance_to(2_000.0);
    assert_eq!(harness.sent(), vec![Packet::PingReq]);
    harness.receive(Packet::PingResp);
    harness.advance_to(4_000.0);
    assert_eq!(harness.sent(), vec![Packet::PingReq]);
    harness.advance_to(5_000.0);
    let sent = harness.sent();
    assert!(matches!(
        sent.as_slice(),
        [Packet::Disconnect(DisconnectPacket {
            reason_code: ReasonCode::KeepAliveTimeout,
            ..
        })]
    ));
    let events = harness.events();
    assert_eq!(events[0], Event::CloseTransport);
    assert_eq!(
        events[1],
        Event::ConnectionLost {
            error: ClientError::KeepAliveTimeout,
            reconnect: true
        }
    );
}

#[test]
fn server_keep_alive_overrides_the_requested_one() {
    let properties = Properties {
        server_keep_alive: Some(1),
        ..Properties::default()
    };
    let mut harness = Harness::v5();
    harness.connect(false, properties);
    assert_eq!(harness.session.poll_timeout(), Some(1_000.0));
}

#[test]
fn the_broker_disconnecting_leads_to_a_reconnect() {
    let mut harness = Harness::connected();
    harness.receive(Packet::Disconnect(DisconnectPacket {
        reason_code: ReasonCode::AdministrativeAction,
        properties: Properties::default(),
    }));
    let events = harness.events();
    assert_eq!(
        events[1],
        Event::ConnectionLost {
            error: ClientError::ServerDisconnected(ReasonCode::AdministrativeAction),
            reconnect: true
        }
    );
    assert_eq!(harness.session.state(), State::Reconnecting);
}

#[test]
fn garbage_from_the_broker_is_a_protocol_error() {
    let mut harness = Harness::connected();
    // Packet type 0 is reserved.
    harness.session.handle_data(&[0x00, 0x00], 0.0);
    assert!(matches!(
        harness.sent().as_slice(),
        [Packet::Disconnect(DisconnectPacket {
            reason_code: ReasonCode::MalformedPacket,
            ..
        })]
    ));
    let events = harness.events();
    let Event::ConnectionLost { error, .. } = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(error.code(), "PROTOCOL_ERROR");
}

#[test]
fn without_reconnect_a_loss_closes_and_rejects_pending_operations() {
    let mut harness = Harness::new(Options {
        reconnect: None,
        ..Options::default()
    });
    harness.connect(false, Properties::default());
    harness.events();
    harness.publish(1, "p", QoS::AtLeastOnce).unwrap();
    harness.session.handle_transport_closed(0.0);
    let events = harness.events();
    assert_eq!(
        events,
        vec![
            Event::ConnectionLost {
                error: ClientError::ConnectionLost,
                reconnect: false
            },
            completed(1, Err(ClientError::Closed)),
            Event::Closed {
                error: Some(ClientError::ConnectionLost)
            },
        ]
    );
    assert_eq!(
        harness.publish(2, "p", QoS::AtMostOnce),
        Err(ClientError::Closed)
    );
}

#[test]
fn refusals_while_reconnecting_retry_only_when_transient() {
    use ProtocolVersion::{V5, V311};
    // The reason, the protocol, whether the client tries again, the error's code and the
    // reason code it reports (a 3.1.1 CONNACK's return code as sent).
    for (reason, protocol, reconnect, code, reason_code) in [
        (ReasonCode::ServerBusy, V5, true, "CONNECTION_REFUSED", 0x89),
        (
            ReasonCode::ServerUnavailable,
            V311,
            true,
            "CONNECTION_REFUSED",
            0x03,
        ),
        (
            ReasonCode::BadUserNameOrPassword,
            V5,
            false,
            "BAD_CREDENTIALS",
            0x86,
        ),
        (
            ReasonCode::BadUserNameOrPassword,
            V311,
            false,
            "BAD_CREDENTIALS",
            0x04,
        ),
        (ReasonCode::NotAuthorized, V5, false, "NOT_AUTHORIZED", 0x87),
        (
            ReasonCode::NotAuthorized,
            V311,
            false,
            "NOT_AUTHORIZED",
            0x05,
        ),
        (
            ReasonCode::BadAuthenticationMethod,
            V5,
            false,
            "CONNECTION_REFUSED",
            0x8C,
        ),
    ] {
        let mut harness = Harness::new(Options {
            protocol,
            client_id: "c1".into(),
            ..Options::default()
        });
        harness.connect(false, Properties::default());
        harness.events();
        harness.reconnect();
        harness.receive(Packet::ConnAck(ConnAckPacket {
            session_present: false,
            reason_code: reason,
            properties: Properties::default(),
        }));
        let events = harness.events();
        let Event::ConnectionLost {
            error,
            reconnect: again,
        } = events[1]
        else {
            panic!("{events:?}");
        };
        assert_eq!(
            (error.code(), error.reason_code(), again),
            (code, Some(reason_code), reconnect),
            "{reason:?} {protocol:?}"
        );
        let expected = if reconnect {
            State::Reconnecting
        } else {
            assert_eq!(events[2..], [Event::Closed { error: Some(error) }]);
            State::Closed
        };
        assert_eq!(harness.session.state(), expected);
    }
}

/// Credentials of the user `user` with `password`.
fn credentials(password: &'static str) -> Credentials {
    Credentials {
        username: Some("user".into()),
        password: Some(Bytes::from_static(password.as_bytes())),
        authentication_data: None,
    }
}

#[test]
fn each_attempt_sends_the_credentials_it_was_given() {
    let mut harness = Harness::new(Options {
        client_id: "c1".into(),
        username: Some("static".into()),
        password: Some(Bytes::from_static(b"static")),
        ..Options::default()
    });
    harness.session.set_credentials(credentials("first"));
    let connect = harness.connect(false, Properties::default());
    assert_eq!(
        (connect.username.as_deref(), connect.password.as_deref()),
        (Some("user"), Some(&b"first"[..]))
    );
    harness.events();
    // A reconnect: the function gives a fresh password.
    harness.session.handle_transport_closed(harness.now);
    harness.events();
    harness.advance_to(harness.now + 60_000.0);
    assert_eq!(harness.events(), vec![Event::OpenTransport]);
    harness.session.set_credentials(credentials("second"));
    let connect = harness.connect(false, Properties::default());
    assert_eq!(connect.password.as_deref(), Some(&b"second"[..]));
    // No user name and no password at all.
    harness.events();
    harness.session.handle_transport_closed(harness.now);
    harness.events();
    harness.advance_to(harness.now + 60_000.0);
    harness.events();
    harness.session.set_credentials(Credentials::default());
    let connect = harness.connect(false, Properties::default());
    assert_eq!((connect.username, connect.password), (None, None));
}

#[test]
fn a_failed_credentials_function_fails_the_attempt_and_the_backoff_goes_on() {
    // The first attempt: connect() rejects, as for any failure of the first attempt.
    let mut harness = Harness::v5();
    harness.session.handle_credentials_failed(0.0);
    let error = ClientError::CredentialsFailed;
    assert_eq!(error.code(), "CREDENTIALS_FAILED");
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

    // A reconnect: the attempt fails, and the next one waits a longer backoff.
    let mut harness = Harness::connected();
    harness.reconnect();
    harness.connack(false);
    harness.events();
    harness.session.handle_transport_closed(harness.now);
    harness.events();
    for attempt in 1..=3 {
        harness.advance_to(harness.now + 60_000.0);
        assert_eq!(harness.events(), vec![Event::OpenTransport]);
        // The socket may be open already: nothing is written before the credentials.
        harness.session.handle_credentials_failed(harness.now);
        assert!(harness.sent().is_empty());
        let events = harness.events();
        assert_eq!(
            events[..2],
            [
                Event::CloseTransport,
                Event::ConnectionLost {
                    error,
                    reconnect: true
                }
            ]
        );
        assert!(
            matches!(events[2], Event::Reconnecting { attempt: a, .. } if a == attempt + 1),
            "{events:?}"
        );
        assert_eq!(harness.session.state(), State::Reconnecting);
    }
    // A failure reported after its attempt ended changes nothing.
    harness.session.handle_credentials_failed(harness.now);
    assert!(harness.events().is_empty());
    harness.advance_to(harness.now + 60_000.0);
    harness.events();
    harness.connect(false, Properties::default());
    harness.session.handle_credentials_failed(harness.now);
    assert_eq!(harness.session.state(), State::Connected);
}

#[test]
fn backoff_grows_with_failed_attempts_and_resets_on_success() {
    let mut harness = Harness::connected();
    let mut delays = Vec::new();
    harness.session.handle_transport_closed(0.0);
    for _ in 0..4 {
        let Some(Event::Reconnecting { delay_ms, .. }) = harness
            .events()
            .into_iter()
            .find(|event| matches!(event, Event::Reconnecting { .. }))
        else {
            panic!("no reconnect")
        };
        delays.push(delay_ms);
        harness.advance_to(harness.now + f64::from(delay_ms));
        harness.session.handle_transport_closed(harness.now);
    }
    // attempt n waits within [100, min(1000, 100 * 2^n)).
    for (index, delay) in delays.iter().enumerate() {
        let ceiling = (100u32 << (index + 1)).min(1_000);
        assert!(
            (100..ceiling).contains(delay),
            "attempt {}: {delay}",
            index + 1
        );
    }
    harness.advance_to(harness.now + 1_000.0);
    harness.events();
    harness.session.handle_open(harness.now);
    harness.sent();
    harness.connack(false);
    harness.session.handle_transport_closed(harness.now);
    let reset = harness.events().into_iter().find_map(|event| match event {
        Event::Reconnecting { attempt, delay_ms } => Some((attempt, delay_ms)),
        _ => None,
    });
    let Some((1, delay_ms)) = reset else {
        panic!("the attempt count was not reset: {reset:?}")
    };
    assert!((100..200).contains(&delay_ms), "{delay_ms}");
}

#[test]
fn end_disconnects_and_rejects_everything_pending() {
    let mut harness = Harness::connected();
    harness.publish(1, "e", QoS::AtLeastOnce).unwrap();
    harness.sent();
    harness.session.end(0.0);
    assert_eq!(
        harness.sent(),
        vec![Packet::Disconnect(DisconnectPacket::default())]
    );
    assert_eq!(
        harness.events(),
        vec![
            Event::CloseTransport,
            completed(1, Err(ClientError::Closed)),
            Event::Closed { error: None },
        ]
    );
    assert_eq!(harness.session.state(), State::Closed);
    assert_eq!(harness.session.poll_timeout(), None);
    assert_eq!(
        harness.session.subscribe(
            2,
            "x",
            SubscriptionOptions::default(),
            Properties::default(),
            0.0
        ),
        Err(ClientError::Closed)
    );
}

#[test]
fn a_packet_split_across_transport_messages_is_reassembled() {
    let mut harness = Harness::connected();
    let mut bytes = BytesMut::new();
    encode(
        &incoming("split/topic", QoS::AtMostOnce, None),
        ProtocolVersion::V5,
        &mut bytes,
    )
    .unwrap();
    encode(
        &incoming("second", QoS::AtMostOnce, None),
        ProtocolVersion::V5,
        &mut bytes,
    )
    .unwrap();
    let (head, tail) = bytes.split_at(5);
    harness.session.handle_data(head, 0.0);
    assert!(harness.events().is_empty());
    harness.session.handle_data(tail, 0.0);
    assert_eq!(harness.events().len(), 2);
}

/// Publishes one message per QoS in `qoses` (requests 1, 2, ...) and returns their packet
/// identifiers, in the order sent.
fn publish_all(harness: &mut Harness, qoses: &[QoS]) -> Vec<u16> {
    for (request, qos) in (1..).zip(qoses) {
        harness.publish(request, "o", *qos).unwrap();
    }
    harness
        .sent()
        .iter()
        .map(|packet| publish_of(packet).packet_id.expect("id"))
        .collect()
}

#[test]
fn acknowledgements_out_of_order_complete_each_publish_once() {
    let mut harness = Harness::connected();
    let qoses = [QoS::ExactlyOnce, QoS::AtLeastOnce, QoS::AtLeastOnce];
    let ids = publish_all(&mut harness, &qoses);
    // The newest first, then the middle one: both finish behind the QoS 2 exchange.
    harness.receive(Packet::PubAck(PubAckPacket::new(ids[2])));
    harness.receive(Packet::PubAck(PubAckPacket::new(ids[1])));
    assert_eq!(
        harness.events(),
        vec![
            completed(3, Ok(Completion::Published)),
            completed(2, Ok(Completion::Published))
        ]
    );
    assert_eq!(harness.session.in_flight(), 1);
    // A repeated acknowledgement finds nothing to complete again.
    harness.receive(Packet::PubAck(PubAckPacket::new(ids[1])));
    assert!(harness.events().is_empty());
    harness.receive(Packet::PubRec(PubAckPacket::new(ids[0])));
    assert_eq!(
        harness.sent(),
        vec![Packet::PubRel(PubAckPacket::new(ids[0]))]
    );
    harness.receive(Packet::PubComp(PubAckPacket::new(ids[0])));
    assert_eq!(
        harness.events(),
        vec![completed(1, Ok(Completion::Published))]
    );
    assert_eq!(harness.session.in_flight(), 0);
    // Every identifier is free again: the next publish may get any of them, and its PUBACK
    // completes it, not a finished one.
    harness.publish(4, "o", QoS::AtLeastOnce).unwrap();
    let id = publish_of(&harness.sent()[0]).packet_id.unwrap();
    harness.receive(Packet::PubAck(PubAckPacket::new(id)));
    assert_eq!(
        harness.events(),
        vec![completed(4, Ok(Completion::Published))]
    );
}

#[test]
fn the_window_counts_only_unfinished_publishes() {
    let properties = Properties {
        receive_maximum: Some(2),
        ..Properties::default()
    };
    let mut harness = Harness::v5();
    harness.connect(false, properties);
    harness.events();
    let ids = publish_all(&mut harness, &[QoS::ExactlyOnce, QoS::AtLeastOnce]);
    harness.publish(3, "o", QoS::AtLeastOnce).unwrap();
    assert!(harness.sent().is_empty(), "the window of 2 is full");
    assert_eq!(harness.session.queued(), 1);
    // The second finishes while the first still waits: that makes room for the third.
    harness.receive(Packet::PubAck(PubAckPacket::new(ids[1])));
    let sent = harness.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(harness.session.in_flight(), 2);
    assert_eq!(harness.session.queued(), 0);
    // A PUBREC leaves the first in the window until its PUBCOMP [MQTT-3.3.4-9].
    harness.receive(Packet::PubRec(PubAckPacket::new(ids[0])));
    harness.publish(4, "o", QoS::AtLeastOnce).unwrap();
    assert_eq!(
        harness.sent(),
        vec![Packet::PubRel(PubAckPacket::new(ids[0]))]
    );
    assert_eq!(harness.session.queued(), 1);
    harness.receive(Packet::PubComp(PubAckPacket::new(ids[0])));
    assert_eq!(publish_of(&harness.sent()[0]).topic, "o");
    assert_eq!(harness.session.in_flight(), 2);
    assert_eq!(
        harness.events(),
        vec![
            completed(2, Ok(Completion::Published)),
            completed(1, Ok(Completion::Published))
        ]
    );
}

#[test]
fn redelivery_after_a_mix_of_acknowledgements_keeps_the_order() {
    for session_present in [true, false] {
        let mut harness = Harness::connected();
        let qoses = [
            QoS::AtLeastOnce,
            QoS::AtLeastOnce,
            QoS::ExactlyOnce,
            QoS::AtLeastOnce,
        ];
        let ids = publish_all(&mut harness, &qoses);
        // The second finishes, the third is at PUBCOMP; the first and fourth wait.
        harness.receive(Packet::PubAck(PubAckPacket::new(ids[1])));
        harness.receive(Packet::PubRec(PubAckPacket::new(ids[2])));
        harness.sent();
        assert_eq!(
            harness.events(),
            vec![completed(2, Ok(Completion::Published))]
        );
        harness.reconnect();
        harness.connack(session_present);
        let sent = harness.sent();
        let (first, fourth) = if session_present {
            assert_eq!(sent.len(), 3, "{sent:?}");
            assert_eq!(sent[1], Packet::PubRel(PubAckPacket::new(ids[2])));
            (&sent[0], &sent[2])
        } else {
            assert_eq!(sent.len(), 2, "{sent:?}");
            (&sent[0], &sent[1])
        };
        for (packet, id) in [(first, ids[0]), (fourth, ids[3])] {
            let publish = publish_of(packet);
            assert!(publish.dup);
            assert_eq!(publish.packet_id, Some(id));
        }
        let events = harness.events();
        // Without a session on the broker the third is complete: it owns the message.
        let third_done = events.contains(&completed(3, Ok(Completion::Published)));
        assert_eq!(third_done, !session_present, "{events:?}");
        assert_eq!(
            harness.session.in_flight(),
            if session_present { 3 } else { 2 }
        );
        harness.session.end(harness.now);
        let closed: Vec<RequestId> = harness
            .events()
            .into_iter()
            .filter_map(|event| match event {
                Event::Completed {
                    request,
                    result: Err(ClientError::Closed),
                } => Some(request),
                _ => None,
            })
            .collect();
        let expected: &[RequestId] = if session_present { &[1, 3, 4] } else { &[1, 4] };
        assert_eq!(closed, expected);
        assert_eq!(harness.session.in_flight(), 0);
    }
}

#[test]
fn every_connect_carries_the_properties_and_the_will() {
    let user_property = (ByteStr::from("origin"), ByteStr::from("test"));
    let mut harness = Harness::new(Options {
        client_id: "c1".into(),
        session_expiry: Some(300),
        maximum_packet_size: Some(4_096),
        will: Some(WillOptions {
            topic: "status/c1".into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties {
                will_delay_interval: Some(5),
                ..Properties::default()
            },
        }),
        properties: Properties {
            user_properties: vec![user_property.clone()],
            ..Properties::default()
        },
        ..Options::default()
    });
    let first = harness.connect(false, Properties::default());
    let again = harness.reconnect();
    assert!(first.clean_start);
    assert!(!again.clean_start, "5.0 reconnects resume the session");
    for connect in [first, again] {
        assert_eq!(connect.client_id, "c1");
        assert_eq!(
            connect.properties.user_properties,
            core::slice::from_ref(&user_property)
        );
        assert_eq!(connect.properties.session_expiry_interval, Some(300));
        assert_eq!(connect.properties.maximum_packet_size, Some(4_096));
        let will = connect.will.expect("will");
        assert_eq!(will.topic, "status/c1");
        assert_eq!(will.properties.will_delay_interval, Some(5));
    }
    assert_eq!(harness.session.client_id(), "c1");
}

#[test]
fn mqtt_311_reconnects_keep_clean_session_as_configured() {
    let mut harness = Harness::new(Options {
        protocol: ProtocolVersion::V311,
        client_id: "old".into(),
        ..Options::default()
    });
    assert!(harness.connect(false, Properties::default()).clean_start);
    assert!(harness.reconnect().clean_start);
}

/// Subscribes to `filter` and answers the SUBACK with `reason_code`.
fn subscribe_granted(
    harness: &mut Harness,
    request: RequestId,
    filter: &str,
    properties: Properties,
    reason_code: ReasonCode,
) {
    harness
        .session
        .subscribe(
            request,
            filter,
            SubscriptionOptions::default(),
            properties,
            harness.now,
        )
        .unwrap();
    let Packet::Subscribe(subscribe) = &harness.sent()[0] else {
        panic!("expected SUBSCRIBE")
    };
    harness.receive(Packet::SubAck(SubAckPacket {
        packet_id: subscribe.packet_id,
        properties: Properties::default(),
        reason_codes: vec![reason_code],
    }));
    harness.events();
}

/// The filters and properties of the SUBSCRIBEs in `sent`.
fn subscribes(sent: &[Packet]) -> Vec<(Vec<String>, Properties)> {
    sent.iter()
        .map(|packet| {
            let Packet::Subscribe(subscribe) = packet else {
                panic!("expected SUBSCRIBE, got {packet:?}")
            };
            let filters = subscribe
                .subscriptions
                .iter()
                .map(|subscription| subscription.filter.to_string())
                .collect();
            (filters, subscribe.properties.clone())
        })
        .collect()
}

#[test]
fn resubscriptions_keep_their_properties_every_time() {
    let mut harness = Harness::connected();
    let identified = Properties {
        subscription_identifiers: vec![7],
        user_properties: vec![(ByteStr::from("k"), ByteStr::from("v"))],
        ..Properties::default()
    };
    subscribe_granted(
        &mut harness,
        1,
        "a",
        Properties::default(),
        ReasonCode::Success,
    );
    subscribe_granted(
        &mut harness,
        2,
        "b",
        identified.clone(),
        ReasonCode::Success,
    );
    subscribe_granted(
        &mut harness,
        3,
        "c",
        Properties::default(),
        ReasonCode::Success,
    );
    // Twice: the SUBACK of the first resubscription makes the filters known again.
    for _ in 0..2 {
        harness.reconnect();
        harness.connack(false);
        let sent = harness.sent();
        assert_eq!(
            subscribes(&sent),
            [
                (vec!["b".to_string()], identified.clone()),
                (
                    vec!["a".to_string(), "c".to_string()],
                    Properties::default()
                ),
            ]
        );
        for packet in &sent {
            let Packet::Subscribe(subscribe) = packet else {
                unreachable!()
            };
            harness.receive(Packet::SubAck(SubAckPacket {
                packet_id: subscribe.packet_id,
                properties: Properties::default(),
                reason_codes: vec![ReasonCode::Success; subscribe.subscriptions.len()],
            }));
        }
        assert!(
            harness
                .events()
                .iter()
                .all(|event| !matches!(event, Event::Error(_)))
        );
    }
}

#[test]
fn a_resubscription_cut_off_is_sent_once_on_the_next_connection() {
    let mut harness = Harness::connected();
    subscribe_granted(
        &mut harness,
        1,
        "a",
        Properties::default(),
        ReasonCode::Success,
    );
    harness.reconnect();
    harness.connack(false);
    assert_eq!(subscribes(&harness.sent()).len(), 1);
    // Lost before its SUBACK; the next connection finds no session either.
    harness.reconnect();
    harness.connack(false);
    let sent = harness.sent();
    assert_eq!(
        subscribes(&sent),
        [(vec!["a".to_string()], Properties::default())]
    );
    let Packet::Subscribe(subscribe) = &sent[0] else {
        unreachable!()
    };
    harness.receive(Packet::SubAck(SubAckPacket {
        packet_id: subscribe.packet_id,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::Success],
    }));
    harness.reconnect();
    harness.connack(false);
    assert_eq!(
        subscribes(&harness.sent()),
        [(vec!["a".to_string()], Properties::default())]
    );
}

#[test]
fn a_refusal_in_a_resubscription_forgets_only_that_filter() {
    let mut harness = Harness::connected();
    subscribe_granted(
        &mut harness,
        1,
        "a",
        Properties::default(),
        ReasonCode::Success,
    );
    subscribe_granted(
        &mut harness,
        2,
        "b",
        Properties::default(),
        ReasonCode::GrantedQoS1,
    );
    // Refused: not remembered, and the filter it replaced is gone too.
    subscribe_granted(
        &mut harness,
        3,
        "b",
        Properties::default(),
        ReasonCode::NotAuthorized,
    );
    subscribe_granted(
        &mut harness,
        4,
        "c",
        Properties::default(),
        ReasonCode::Success,
    );
    harness.reconnect();
    harness.connack(false);
    harness.events();
    let sent = harness.sent();
    assert_eq!(
        subscribes(&sent),
        [(
            vec!["a".to_string(), "c".to_string()],
            Properties::default()
        )]
    );
    let Packet::Subscribe(subscribe) = &sent[0] else {
        unreachable!()
    };
    harness.receive(Packet::SubAck(SubAckPacket {
        packet_id: subscribe.packet_id,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::QuotaExceeded, ReasonCode::Success],
    }));
    assert_eq!(
        harness.events(),
        vec![Event::Error(ClientError::SubscribeRefused(
            ReasonCode::QuotaExceeded
        ))]
    );
    harness.reconnect();
    harness.connack(false);
    assert_eq!(
        subscribes(&harness.sent()),
        [(vec!["c".to_string()], Properties::default())]
    );
}

#[test]
fn answers_out_of_order_complete_each_subscribe_once_and_a_loss_resends_the_rest() {
    let mut harness = Harness::connected();
    for (request, filter) in [(1, "a"), (2, "b"), (3, "c")] {
        harness
            .session
            .subscribe(
                request,
                filter,
                SubscriptionOptions::default(),
                Properties::default(),
                harness.now,
            )
            .unwrap();
    }
    let ids: Vec<u16> = harness
        .sent()
        .iter()
        .map(|packet| match packet {
            Packet::Subscribe(subscribe) => subscribe.packet_id,
            other => panic!("expected SUBSCRIBE, got {other:?}"),
        })
        .collect();
    let granted = Ok(Completion::Subscribed {
        qos: QoS::AtMostOnce,
        reason_code: ReasonCode::Success,
    });
    // The second is answered first (twice: the repeat is an unknown identifier).
    let suback = Packet::SubAck(SubAckPacket {
        packet_id: ids[1],
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::Success],
    });
    harness.receive(suback.clone());
    assert_eq!(harness.events(), vec![completed(2, granted.clone())]);
    harness.receive(suback);
    assert!(matches!(
        harness.events().as_slice(),
        [Event::CloseTransport, Event::ConnectionLost { .. }, ..]
    ));
    // The other two were not answered: they go out again, in order; the second does not.
    harness.advance_to(harness.now + 1_000.0);
    harness.events();
    harness.session.handle_open(harness.now);
    harness.sent();
    harness.connack(true);
    let sent = harness.sent();
    assert_eq!(
        subscribes(&sent),
        [
            (vec!["a".to_string()], Properties::default()),
            (vec!["c".to_string()], Properties::default())
        ]
    );
    for packet in sent.iter().rev() {
        let Packet::Subscribe(subscribe) = packet else {
            unreachable!()
        };
        harness.receive(Packet::SubAck(SubAckPacket {
            packet_id: subscribe.packet_id,
            properties: Properties::default(),
            reason_codes: vec![ReasonCode::Success],
        }));
    }
    let events = harness.events();
    assert_eq!(
        events[events.len() - 2..],
        [completed(3, granted.clone()), completed(1, granted)]
    );
}

mod auth;
