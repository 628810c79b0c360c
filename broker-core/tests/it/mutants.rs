//! Tests written for mutants that cargo-mutants found the other suites letting through
//! (`cargo xtask mutants`): each names the code it pins down. They sit here, apart from the
//! suites by theme, so that each survivor's test is easy to find from the README's list.

use crate::common::*;
use broker_core::{
    AuthDecision, AuthHook, BrokerConfig, Change, ClientIdentity, DropReason, Output, Persistence,
    SubscriptionTree,
};
use bytes::Bytes;
use mqtt_codec::Will;
use mqtt_codec::{
    AuthPacket, ByteStr, DisconnectPacket, Packet, Properties, PubAckPacket, QoS, ReasonCode,
};
use std::sync::{Arc, Mutex};

/// Three User Properties where the broker allows two.
fn limited() -> BrokerConfig {
    BrokerConfig {
        max_user_properties: 2,
        ..quiet_config()
    }
}

fn three_user_properties() -> Properties {
    Properties {
        user_properties: ["a", "b", "c"]
            .into_iter()
            .map(|name| (ByteStr::from(name), ByteStr::from("1")))
            .collect(),
        ..Properties::default()
    }
}

/// `Broker::config` answers with the configuration the broker was built with, not a default.
#[test]
fn config_is_the_one_given() {
    let harness = Harness::with_config(BrokerConfig {
        max_inflight: 7,
        max_topic_levels: 9,
        version: "mutants".into(),
        ..quiet_config()
    });
    let config = harness.broker.config();
    assert_eq!(config.max_inflight, 7);
    assert_eq!(config.max_topic_levels, 9);
    assert_eq!(config.version, "mutants");
    assert_eq!(config.sys_interval, None);
}

/// The broker's `Debug` form is a summary of its sizes (what a log line about it shows).
#[test]
fn debug_summarises_connections_sessions_subscriptions_and_retained() {
    let mut harness = Harness::new();
    harness.connect_ok(A, v5("a"));
    harness.connect_ok(B, v5_persistent("b", 60));
    harness.subscribe(A, "x/#", QoS::AtMostOnce);
    harness.subscribe(B, "y", QoS::AtLeastOnce);
    harness.subscribe(B, "z", QoS::AtLeastOnce);
    harness.publish(A, retained(qos0("r", "kept")));
    let text = format!("{:?}", harness.broker);
    assert_eq!(
        text,
        "Broker { connections: 2, sessions: 2, subscriptions: 3, retained: 1, .. }"
    );
}

/// A DISCONNECT beyond the User Property limits is not a normal disconnection: the broker
/// answers DISCONNECT 0x97 and the will goes out [MQTT-3.14.2-1].
#[test]
fn a_disconnect_beyond_the_user_property_limits_gets_0x97_and_publishes_the_will() {
    let mut h = Harness::with_config(limited());
    h.connect_ok(B, v5("watcher"));
    h.subscribe(B, "wills/#", QoS::AtMostOnce);
    h.connect_ok(A, with_will(v5("a"), will("wills/a", "gone")));
    let outputs = h.send(
        A,
        Packet::Disconnect(DisconnectPacket {
            reason_code: ReasonCode::Success,
            properties: three_user_properties(),
        }),
    );
    assert_disconnected(&outputs, A, ReasonCode::QuotaExceeded);
    assert_eq!(payloads(&outputs, B), ["gone"]);
}

/// An AUTH beyond the User Property limits gets DISCONNECT 0x97, before anything looks at
/// its authentication method.
#[test]
fn an_auth_beyond_the_user_property_limits_gets_0x97() {
    let mut h = Harness::with_config(limited());
    h.connect_ok(A, v5("a"));
    let outputs = h.send(
        A,
        Packet::Auth(AuthPacket {
            reason_code: ReasonCode::ReAuthenticate,
            properties: three_user_properties(),
        }),
    );
    assert_disconnected(&outputs, A, ReasonCode::QuotaExceeded);
}

/// A session expiry deadline set at an earlier disconnection ends nothing once the client came
/// back and left again: only the latest deadline counts (the timer's generation is stale).
#[test]
fn an_expiry_deadline_from_an_earlier_disconnection_is_void() {
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent("client", 10));
    h.disconnect(A);
    h.advance_and_tick(secs(5));
    assert!(h.connect_ok(B, v5_persistent("client", 10)).session_present);
    h.advance_and_tick(secs(1));
    h.disconnect(B);
    // The first deadline (10 s after the first disconnection) passes; the second (16 s) not.
    h.advance_and_tick(secs(5));
    assert!(h.connect_ok(C, v5_persistent("client", 10)).session_present);
}

/// A recorded session's packet identifier follows from its entry's number (`entry % 65535 + 1`),
/// so that a message whose send was not recorded goes out again under the same one: checked on
/// the records of messages sent at once and of messages sent later from the queue.
#[test]
fn a_recorded_packet_identifier_follows_from_the_entry_number() {
    let mut h = Harness::with_config(BrokerConfig {
        persistence: Persistence::Relaxed,
        max_inflight: 2,
        ..quiet_config()
    });
    h.connect_ok(B, v5_persistent("sub", 3600));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.connect_ok(A, v5("pub"));
    let mut in_flight = Vec::new();
    for packet_id in 1..=4 {
        in_flight.extend(publishes(&h.publish(A, qos1("t", "m", packet_id)), B));
    }
    assert_eq!(in_flight.len(), 2, "the window is 2");
    // Acknowledging the two in flight sends the two queued ones.
    for publish in in_flight {
        let outputs = h.puback(B, publish.packet_id.expect("QoS 1"));
        assert_eq!(publishes(&outputs, B).len(), 1, "{outputs:#?}");
    }
    let mut records = Vec::new();
    h.broker.take_changes(&mut records);
    let mut sent = Vec::new();
    for record in records {
        match record {
            Change::Queued {
                entry,
                packet_id: Some(packet_id),
                ..
            }
            | Change::Sent {
                entry, packet_id, ..
            } => sent.push((entry, packet_id)),
            _ => {}
        }
    }
    assert_eq!(sent.len(), 4, "{sent:?}");
    for (entry, packet_id) in sent {
        assert_eq!(u64::from(packet_id), entry % 65_535 + 1, "entry {entry}");
    }
}

/// The queue's byte bound counts what is queued now: bytes that left the queue for the client
/// make room again.
#[test]
fn bytes_that_left_the_queue_make_room_again() {
    let mut h = Harness::with_config(BrokerConfig {
        max_queued_bytes: 10,
        ..quiet_config()
    });
    h.connect_ok(A, v5("publisher"));
    h.connect_ok(B, v5_persistent("subscriber", 300));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.disconnect(B);
    h.publish(A, qos1("t", "123456", 1));
    let outputs = h.connect(C, v5_persistent("subscriber", 300));
    let delivered = publishes(&outputs, C);
    assert_eq!(delivered.len(), 1, "{outputs:#?}");
    h.puback(C, delivered[0].packet_id.expect("QoS 1"));
    h.disconnect(C);
    h.publish(A, qos1("t", "1234567890", 2));
    let outputs = h.connect(D, v5_persistent("subscriber", 300));
    assert_eq!(payloads(&outputs, D), ["1234567890"]);
    assert_eq!(h.broker.stats().dropped_for(DropReason::QueueFull), 0);
}

/// An assigned client identifier is one no session has, even when a client chose the very
/// identifier the broker would assign next [MQTT-3.1.3-6]: that client is not taken over.
#[test]
fn an_assigned_identifier_skips_one_a_client_chose() {
    let mut first = Harness::new();
    let would_assign = first
        .connect_ok(A, v5(""))
        .properties
        .assigned_client_identifier
        .expect("assigned");
    let mut h = Harness::new();
    h.connect_ok(A, v5_persistent(would_assign.as_str(), 60));
    let outputs = h.connect(B, v5(""));
    let assigned = connack(&outputs, B)
        .properties
        .assigned_client_identifier
        .expect("assigned");
    assert_ne!(assigned, would_assign);
    assert!(!closed(&outputs, A), "{outputs:#?}");
    assert_eq!(h.broker.client_id(A), Some(would_assign.as_str()));
}

/// The shutdown DISCONNECT carries a reason string beside 0x8B: paho 1.6 reads a DISCONNECT's
/// reason code only in the long form, which a property forces.
#[test]
fn the_shutdown_disconnect_carries_a_reason_string() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("five"));
    h.broker.handle_shutdown(h.now);
    let outputs = h.drain();
    let disconnect = sent_to(&outputs, A)
        .into_iter()
        .find_map(|packet| match packet {
            Packet::Disconnect(disconnect) => Some(disconnect),
            _ => None,
        })
        .expect("a DISCONNECT");
    assert_eq!(disconnect.reason_code, ReasonCode::ServerShuttingDown);
    assert_eq!(
        disconnect.properties.reason_string.as_deref(),
        Some("server shutting down")
    );
}

/// The method "token" takes the data "ok" and refuses anything else, after one challenge.
struct Token;

impl AuthHook for Token {
    fn authenticate(&mut self, connect: &mqtt_codec::ConnectPacket, _: &str) -> AuthDecision {
        match connect.properties.authentication_method.as_deref() {
            Some("token") => AuthDecision::Continue(Properties::default()),
            _ => AuthDecision::Accept(Properties::default()),
        }
    }

    fn continue_authentication(
        &mut self,
        _client: &ClientIdentity<'_>,
        _method: &ByteStr,
        properties: &Properties,
    ) -> AuthDecision {
        match properties.authentication_data.as_deref() {
            Some(b"ok") => AuthDecision::Accept(Properties::default()),
            _ => AuthDecision::Refuse(ReasonCode::NotAuthorized),
        }
    }
}

fn with_token(mut connect: mqtt_codec::ConnectPacket) -> mqtt_codec::ConnectPacket {
    connect.properties.authentication_method = Some(ByteStr::from("token"));
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

/// An AUTH that does not continue the exchange (another method) refuses the CONNECT and counts
/// as an authentication failure, once.
#[test]
fn an_auth_with_another_method_counts_one_authentication_failure() {
    let mut h = Harness::with_auth(quiet_config(), Box::new(Token));
    h.connect(A, with_token(v5("client")));
    let outputs = h.send(A, auth(ReasonCode::ContinueAuthentication, "other", b"ok"));
    assert!(connack(&outputs, A).reason_code.is_error());
    assert!(closed(&outputs, A));
    assert_eq!(h.broker.stats().auth_failures, 1);
}

/// A refused re-authentication counts as an authentication failure, once.
#[test]
fn a_refused_reauthentication_counts_one_authentication_failure() {
    let mut h = Harness::with_auth(quiet_config(), Box::new(Token));
    h.connect(A, with_token(v5("client")));
    let outputs = h.send(A, auth(ReasonCode::ContinueAuthentication, "token", b"ok"));
    assert_eq!(connack(&outputs, A).reason_code, ReasonCode::Success);
    assert_eq!(h.broker.stats().auth_failures, 0);
    let outputs = h.send(A, auth(ReasonCode::ReAuthenticate, "token", b"wrong"));
    assert!(closed(&outputs, A), "{outputs:#?}");
    assert_eq!(h.broker.stats().auth_failures, 1);
}

/// A snapshot's next message identifier is above every message identifier recorded, so that a
/// broker restored from it never gives a new message the identifier of a stored one.
#[test]
fn a_snapshot_s_next_message_identifier_is_above_every_recorded_one() {
    let mut h = Harness::with_config(BrokerConfig {
        persistence: Persistence::Relaxed,
        ..quiet_config()
    });
    h.connect_ok(B, v5_persistent("sub", 3600));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.lose(B);
    h.connect_ok(A, v5("pub"));
    for packet_id in 1..=3 {
        h.publish(A, qos1("t", "m", packet_id));
    }
    let mut records = Vec::new();
    h.broker.take_changes(&mut records);
    let highest = records
        .iter()
        .filter_map(|record| match record {
            Change::Message { id, .. } => Some(*id),
            _ => None,
        })
        .max()
        .expect("messages were recorded");
    assert!(highest >= 3, "three messages: {highest}");
    assert!(h.broker.snapshot(h.now).next_message_id > highest);
}

/// `SubscriptionTree::is_empty` says whether any entry is left.
#[test]
fn a_subscription_tree_with_an_entry_is_not_empty() {
    let mut tree = SubscriptionTree::new();
    assert!(tree.is_empty());
    tree.insert("a/+", 1, "first");
    assert!(!tree.is_empty());
    tree.remove("a/+", &1);
    assert!(tree.is_empty());
}

/// Once a held acknowledgement went out, the connection has none held: a later one that
/// promises nothing goes out at once.
#[test]
fn after_a_held_acknowledgement_went_out_the_next_is_not_held() {
    let mut h = Harness::with_config(BrokerConfig {
        persistence: Persistence::Full,
        ..quiet_config()
    });
    h.connect_ok(B, v5_persistent("sub", 3600));
    let subscribe = subscribe_packet(1, &[("t", options(QoS::AtLeastOnce))], None);
    h.send(B, Packet::Subscribe(subscribe));
    let total = h.broker.take_changes(&mut Vec::new());
    h.broker.changes_durable(total);
    h.lose(B);
    h.connect_ok(A, v5("pub"));
    let outputs = h.publish(A, qos1("t", "stored", 1));
    assert!(
        acks(&outputs, A, is_puback).is_empty(),
        "held: {outputs:#?}"
    );
    let total = h.broker.take_changes(&mut Vec::new());
    h.broker.changes_durable(total);
    assert_eq!(acks(&h.drain(), A, is_puback), [(1, ReasonCode::Success)]);
    let outputs = h.publish(A, qos1("nobody", "not stored", 2));
    assert_eq!(
        acks(&outputs, A, is_puback),
        [(2, ReasonCode::NoMatchingSubscribers)]
    );
}

/// Whether an acknowledgement held for the store slows the publisher down: only once as many
/// are held as the broker's Receive Maximum, not for the first.
#[test]
fn held_acknowledgements_congest_only_at_the_receive_maximum() {
    let mut h = Harness::with_config(BrokerConfig {
        persistence: Persistence::Full,
        receive_maximum: 2,
        ..quiet_config()
    });
    h.connect_ok(B, v5_persistent("sub", 3600));
    let subscribe = subscribe_packet(1, &[("t", options(QoS::AtLeastOnce))], None);
    h.send(B, Packet::Subscribe(subscribe));
    let total = h.broker.take_changes(&mut Vec::new());
    h.broker.changes_durable(total);
    h.lose(B);
    h.connect_ok(A, v5("pub"));
    assert!(!h.broker.take_congestion());
    h.publish(A, qos1("t", "one", 1));
    assert!(!h.broker.take_congestion(), "one held of two");
    h.publish(A, qos1("t", "two", 2));
    assert!(h.broker.take_congestion(), "two held of two");
}

/// The warnings logged while `run` goes, captured by a `tracing` subscriber of this thread.
fn warnings_during(run: impl FnOnce()) -> Vec<String> {
    struct Capture(Arc<Mutex<Vec<String>>>);
    struct Message(String);
    impl tracing::field::Visit for Message {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
    }
    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::WARN {
                let mut message = Message(String::new());
                event.record(&mut message);
                self.0.lock().expect("not poisoned").push(message.0);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
    let lines = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::with_default(Capture(Arc::clone(&lines)), run);
    Arc::try_unwrap(lines)
        .expect("the subscriber is gone")
        .into_inner()
        .expect("not poisoned")
}

/// A client the broker disconnects gets one warning line; one whose session was taken over by
/// a new connection is not warned about (the takeover is the client's own doing).
#[test]
fn a_termination_is_one_warning_and_a_takeover_none() {
    let mut h = Harness::new();
    let mut connect = v5("sleepy");
    connect.keep_alive = 10;
    h.connect_ok(A, connect);
    h.connect_ok(B, v5("twice"));
    let warnings = warnings_during(|| {
        h.advance_and_tick(secs(16));
    });
    let disconnecting: Vec<_> = warnings
        .iter()
        .filter(|line| line.starts_with("disconnecting client"))
        .collect();
    assert_eq!(disconnecting.len(), 1, "{warnings:?}");
    assert!(disconnecting[0].contains("sleepy"), "{warnings:?}");
    let warnings = warnings_during(|| {
        let outputs = h.connect(C, v5("twice"));
        assert!(closed(&outputs, B), "taken over: {outputs:#?}");
    });
    assert!(
        !warnings
            .iter()
            .any(|line| line.starts_with("disconnecting client")),
        "{warnings:?}"
    );
}

/// A hook that asks every client to continue an exchange.
struct AlwaysContinue;

impl AuthHook for AlwaysContinue {
    fn authenticate(&mut self, _: &mqtt_codec::ConnectPacket, _: &str) -> AuthDecision {
        AuthDecision::Continue(Properties::default())
    }
}

/// A hook that wants an exchange from a client that named no method (or cannot, in 3.1.1)
/// refuses the CONNECT and counts one authentication failure [MQTT-4.12.0-6].
#[test]
fn an_exchange_without_a_method_counts_one_authentication_failure() {
    for (connection, connect) in [(A, v5("five")), (B, v311("three"))] {
        let mut h = Harness::with_auth(quiet_config(), Box::new(AlwaysContinue));
        let outputs = h.connect(connection, connect);
        assert!(connack(&outputs, connection).reason_code.is_error());
        assert!(closed(&outputs, connection));
        assert_eq!(h.broker.stats().auth_failures, 1);
    }
}

/// A persistent subscriber to `t` at `qos` that received two messages, acknowledged neither and
/// lost its connection; it comes back on C with a Receive Maximum of 1, so the first message
/// goes out again and the second is owed. Returns the two packet identifiers.
fn two_in_flight_one_resent(h: &mut Harness, qos: QoS) -> (u16, u16) {
    h.connect_ok(B, v5_persistent("sub", 3600));
    h.subscribe(B, "t", qos);
    h.connect_ok(A, v5("pub"));
    let mut ids = Vec::new();
    for (packet_id, payload) in [(1, "one"), (2, "two")] {
        let outputs = h.publish(A, publish_packet("t", qos, payload, packet_id));
        ids.extend(
            publishes(&outputs, B)
                .iter()
                .map(|p| p.packet_id.expect("QoS > 0")),
        );
    }
    assert_eq!(ids.len(), 2);
    h.lose(B);
    let mut again = v5_persistent("sub", 3600);
    again.properties.receive_maximum = Some(1);
    let outputs = h.connect(C, again);
    let resent = publishes(&outputs, C);
    assert_eq!(resent.len(), 1, "{outputs:#?}");
    assert_eq!(resent[0].packet_id, Some(ids[0]));
    assert!(resent[0].dup);
    (ids[0], ids[1])
}

/// The owed message acknowledged out of turn (the client knew its identifier from the earlier
/// connection) is owed no more: nothing goes out again because of it.
#[test]
fn an_owed_message_acknowledged_out_of_turn_is_owed_no_more() {
    let mut h = Harness::new();
    let (first, second) = two_in_flight_one_resent(&mut h, QoS::AtLeastOnce);
    let outputs = h.puback(C, second);
    assert!(publishes(&outputs, C).is_empty(), "{outputs:#?}");
    let outputs = h.puback(C, first);
    assert!(sent_to(&outputs, C).is_empty(), "{outputs:#?}");
    let outputs = h.publish(A, qos1("t", "three", 3));
    assert_eq!(payloads(&outputs, C), ["three"]);
}

/// A PUBREC for the owed QoS 2 message gets its PUBREL when its turn comes, not at once; the
/// message then counts as released and its PUBREL is what goes out again.
#[test]
fn a_pubrec_for_an_owed_message_gets_its_pubrel_in_turn() {
    let mut h = Harness::new();
    let (first, second) = two_in_flight_one_resent(&mut h, QoS::ExactlyOnce);
    let outputs = h.send(C, Packet::PubRec(PubAckPacket::new(second)));
    assert!(
        sent_to(&outputs, C).is_empty(),
        "not its turn: {outputs:#?}"
    );
    let outputs = h.send(C, Packet::PubRec(PubAckPacket::new(first)));
    assert_eq!(acks(&outputs, C, is_pubrel), [(first, ReasonCode::Success)]);
    let outputs = h.send(C, Packet::PubComp(PubAckPacket::new(first)));
    assert_eq!(
        acks(&outputs, C, is_pubrel),
        [(second, ReasonCode::Success)]
    );
    assert!(publishes(&outputs, C).is_empty(), "{outputs:#?}");
}

/// Every entry queued for a recorded session is recorded as completed once it left for good:
/// a message that expired in the queue while the client was away is done when the client
/// comes back (and is not sent).
#[test]
fn a_message_expired_in_the_queue_is_recorded_as_completed() {
    let mut h = Harness::with_config(BrokerConfig {
        persistence: Persistence::Relaxed,
        ..quiet_config()
    });
    h.connect_ok(B, v5_persistent("sub", 3600));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.lose(B);
    h.connect_ok(A, v5("pub"));
    let mut publish = qos1("t", "short-lived", 1);
    publish.properties.message_expiry_interval = Some(5);
    h.publish(A, publish);
    h.advance(secs(10));
    let outputs = h.connect(C, v5_persistent("sub", 3600));
    assert!(publishes(&outputs, C).is_empty(), "{outputs:#?}");
    assert_eq!(h.broker.stats().dropped_for(DropReason::Expired), 1);
    let mut records = Vec::new();
    h.broker.take_changes(&mut records);
    let queued: Vec<u64> = records
        .iter()
        .filter_map(|record| match record {
            Change::Queued { entry, .. } => Some(*entry),
            _ => None,
        })
        .collect();
    let completed: Vec<u64> = records
        .iter()
        .filter_map(|record| match record {
            Change::Completed { entry, .. } => Some(*entry),
            _ => None,
        })
        .collect();
    assert_eq!(queued.len(), 1, "{records:#?}");
    assert_eq!(completed, queued, "{records:#?}");
}

/// A full queue is logged once when it starts dropping, not once per message dropped.
#[test]
fn a_full_queue_is_one_warning_however_many_are_dropped() {
    let mut h = Harness::with_config(BrokerConfig {
        max_queued_messages: 1,
        ..quiet_config()
    });
    h.connect_ok(B, v5_persistent("sub", 3600));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.lose(B);
    h.connect_ok(A, v5("pub"));
    let warnings = warnings_during(|| {
        for packet_id in 1..=4 {
            h.publish(A, qos1("t", "m", packet_id));
        }
    });
    assert_eq!(h.broker.stats().dropped_for(DropReason::QueueFull), 3);
    let full: Vec<_> = warnings
        .iter()
        .filter(|line| line.contains("is full"))
        .collect();
    assert_eq!(full.len(), 1, "{warnings:?}");
}

/// An online subscriber behind a window of 1, for the congestion tests.
fn slow_subscriber(config: BrokerConfig) -> Harness {
    let mut h = Harness::with_config(config);
    let mut subscriber = v5("slow");
    subscriber.properties.receive_maximum = Some(1);
    h.connect_ok(B, subscriber);
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.connect_ok(A, v5("pub"));
    h
}

/// The publisher is slowed down once an online client's queue is half full by count: not
/// before.
#[test]
fn congestion_starts_when_the_queue_is_half_full_by_count() {
    let mut h = slow_subscriber(BrokerConfig {
        max_queued_messages: 3,
        ..quiet_config()
    });
    h.publish(A, qos1("t", "in flight", 1));
    assert!(!h.broker.take_congestion());
    h.publish(A, qos1("t", "queued", 2));
    assert!(!h.broker.take_congestion(), "1 of 3 queued");
    h.publish(A, qos1("t", "queued", 3));
    assert!(h.broker.take_congestion(), "2 of 3 queued");
}

/// The publisher is slowed down once an online client's queue is half full by bytes: not
/// before.
#[test]
fn congestion_starts_when_the_queue_is_half_full_by_bytes() {
    let mut h = slow_subscriber(BrokerConfig {
        max_queued_bytes: 3,
        ..quiet_config()
    });
    h.publish(A, qos1("t", "in flight", 1));
    assert!(!h.broker.take_congestion());
    h.publish(A, qos1("t", "a", 2));
    assert!(!h.broker.take_congestion(), "1 of 3 bytes queued");
    h.publish(A, qos1("t", "bc", 3));
    assert!(h.broker.take_congestion(), "3 of 3 bytes queued");
}

/// The broker's Topic Alias Maximum is the largest alias a client may use: that one works, one
/// more is out of range (0x94) [MQTT-3.3.2-9].
#[test]
fn the_topic_alias_maximum_itself_is_a_valid_alias() {
    let mut h = Harness::with_config(BrokerConfig {
        topic_alias_maximum: 2,
        ..quiet_config()
    });
    h.connect_ok(B, v5("sub"));
    h.subscribe(B, "t", QoS::AtMostOnce);
    h.connect_ok(A, v5("pub"));
    let mut first = qos0("t", "named");
    first.properties.topic_alias = Some(2);
    let outputs = h.publish(A, first);
    assert!(!closed(&outputs, A), "{outputs:#?}");
    let mut second = qos0("", "by alias");
    second.properties.topic_alias = Some(2);
    let outputs = h.publish(A, second);
    assert_eq!(payloads(&outputs, B), ["by alias"]);
    let mut beyond = qos0("t", "too far");
    beyond.properties.topic_alias = Some(3);
    let outputs = h.publish(A, beyond);
    assert_disconnected(&outputs, A, ReasonCode::TopicAliasInvalid);
}

fn full_persistence() -> Harness {
    Harness::with_config(BrokerConfig {
        persistence: Persistence::Full,
        ..quiet_config()
    })
}

/// While the store cannot write, a retained message is refused (it would have to be stored)
/// even with nobody subscribed, and a QoS 1 message that only clean sessions receive goes
/// through: they keep nothing.
#[test]
fn while_the_store_cannot_write_retained_is_refused_and_clean_sessions_still_receive() {
    let mut h = full_persistence();
    h.connect_ok(B, v5("clean"));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.broker.set_store_writable(false);
    h.connect_ok(A, v5("pub"));
    let outputs = h.publish(A, retained(qos1("r", "kept", 1)));
    assert_eq!(
        acks(&outputs, A, is_puback),
        [(1, ReasonCode::QuotaExceeded)]
    );
    let outputs = h.publish(A, qos1("t", "passing", 2));
    assert_eq!(acks(&outputs, A, is_puback), [(2, ReasonCode::Success)]);
    assert_eq!(payloads(&outputs, B), ["passing"]);
}

/// A SUBACK that promises nothing (a clean session's subscription) is not held behind another
/// client's changes that are not durable yet.
#[test]
fn a_clean_session_s_suback_is_not_held_behind_others_changes() {
    let mut h = full_persistence();
    h.connect_ok(B, v5_persistent("kept", 3600));
    let subscribe = subscribe_packet(1, &[("t", options(QoS::AtLeastOnce))], None);
    let outputs = h.send(B, Packet::Subscribe(subscribe));
    assert!(sent_to(&outputs, B).is_empty(), "held: {outputs:#?}");
    h.connect_ok(A, v5("clean"));
    let outputs = h.subscribe(A, "t", QoS::AtLeastOnce);
    assert_eq!(suback(&outputs, A).reason_codes, [ReasonCode::GrantedQoS1]);
}

/// The full-queue warning comes again only after the queue drained completely: a queue that
/// only went down by one and filled up again is the same episode.
#[test]
fn a_full_queue_warns_again_only_after_it_drained() {
    let mut h = Harness::with_config(BrokerConfig {
        max_queued_messages: 2,
        ..quiet_config()
    });
    h.connect_ok(B, v5_persistent("sub", 3600));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.lose(B);
    h.connect_ok(A, v5("pub"));
    let mut packet_ids = 1..;
    let mut publish = |h: &mut Harness| {
        let packet_id = packet_ids.next().expect("endless");
        h.publish(A, qos1("t", "m", packet_id))
    };
    let warnings = warnings_during(|| {
        for _ in 0..3 {
            publish(&mut h);
        }
        // Back with a window of one: one message leaves the queue, one stays.
        let mut again = v5_persistent("sub", 3600);
        again.properties.receive_maximum = Some(1);
        let outputs = h.connect(C, again);
        assert_eq!(publishes(&outputs, C).len(), 1, "{outputs:#?}");
        for _ in 0..2 {
            publish(&mut h);
        }
    });
    assert_eq!(h.broker.stats().dropped_for(DropReason::QueueFull), 2);
    let full: Vec<_> = warnings
        .iter()
        .filter(|line| line.contains("is full"))
        .collect();
    assert_eq!(full.len(), 1, "{warnings:?}");
}

/// The will a connection keeps shares nothing with the buffer its CONNECT was read from: it
/// may live as long as the session, and must not pin a whole read buffer meanwhile.
#[test]
fn a_kept_will_shares_nothing_with_the_connect_s_buffer() {
    let read_buffer = Bytes::from(b"will/agone".to_vec());
    let mut connect = v5("a");
    connect.will = Some(Will {
        topic: ByteStr::from_utf8(read_buffer.slice(..6)).expect("text"),
        payload: read_buffer.slice(6..),
        ..will("unused", "unused")
    });
    let mut h = Harness::new();
    h.connect_ok(B, v5("watcher"));
    h.subscribe(B, "will/#", QoS::AtMostOnce);
    h.connect_ok(A, connect);
    assert!(
        read_buffer.is_unique(),
        "the broker kept a part of the buffer"
    );
    let outputs = h.lose(A);
    assert_eq!(payloads(&outputs, B), ["gone"]);
}

/// Refuses every PUBLISH under `readonly/`.
struct ReadOnly;

impl AuthHook for ReadOnly {
    fn authorize_publish(&mut self, _: &ClientIdentity<'_>, topic: &str) -> bool {
        !topic.starts_with("readonly/")
    }
}

/// A refused PUBLISH is logged once per client and topic, and for at most 64 topics per
/// connection: a client retrying in a loop, or walking through topics, costs a bounded number
/// of log lines.
#[test]
fn refused_publications_are_logged_once_per_topic_and_for_64_topics_at_most() {
    let mut h = Harness::with_auth(quiet_config(), Box::new(ReadOnly));
    h.connect_ok(A, v5("writer"));
    let refusals = |warnings: &[String]| {
        warnings
            .iter()
            .filter(|line| line.contains("not authorized"))
            .count()
    };
    let warnings = warnings_during(|| {
        for topic in ["readonly/a", "readonly/a", "readonly/b", "readonly/a"] {
            let outputs = h.publish(A, qos1(topic, "no", 1));
            assert_eq!(
                acks(&outputs, A, is_puback),
                [(1, ReasonCode::NotAuthorized)]
            );
        }
    });
    assert_eq!(refusals(&warnings), 2, "{warnings:?}");
    let warnings = warnings_during(|| {
        for n in 0..70 {
            h.publish(A, qos0(&format!("readonly/{n}"), "no"));
        }
    });
    assert_eq!(refusals(&warnings), 62, "64 topics in all: {warnings:?}");
}

/// A broker with persistence on, a retained message and a persistent session whose queue holds
/// one message, each expiring in 10 s (the session in 100 s), and its snapshot.
fn snapshot_with_expiries(persistence: Persistence) -> (Harness, broker_core::Snapshot) {
    let mut h = Harness::with_config(BrokerConfig {
        persistence,
        ..quiet_config()
    });
    h.connect_ok(B, v5_persistent("sub", 100));
    h.subscribe(B, "t", QoS::AtLeastOnce);
    h.lose(B);
    h.connect_ok(A, v5("pub"));
    let mut kept = retained(qos0("r", "kept"));
    kept.properties.message_expiry_interval = Some(10);
    h.publish(A, kept);
    let mut queued = qos1("t", "queued", 1);
    queued.properties.message_expiry_interval = Some(10);
    h.publish(A, queued);
    let snapshot = h.broker.snapshot(h.now);
    (h, snapshot)
}

/// `Snapshot::aged` shortens every time left by the time elapsed and drops what expired
/// meanwhile, at the very second it expires too.
#[test]
fn an_aged_snapshot_shortens_what_is_left_and_drops_what_expired() {
    let (_, snapshot) = snapshot_with_expiries(Persistence::Relaxed);
    let aged = snapshot.clone().aged(secs(4));
    assert_eq!(aged.retained.len(), 1);
    assert_eq!(aged.retained[0].expires_in, Some(secs(6)));
    assert_eq!(aged.sessions.len(), 1);
    assert_eq!(aged.sessions[0].expires_in, Some(secs(96)));
    assert_eq!(aged.sessions[0].queue.len(), 1);
    assert_eq!(aged.sessions[0].queue[0].message.expires_in, Some(secs(6)));
    let aged = snapshot.clone().aged(secs(10));
    assert!(aged.retained.is_empty(), "expired at 10 s");
    assert_eq!(aged.sessions.len(), 1);
    assert!(aged.sessions[0].queue.is_empty(), "expired at 10 s");
    assert!(
        snapshot.aged(secs(100)).sessions.is_empty(),
        "expired at 100 s"
    );
}

/// A restored session numbers new entries after the ones it holds, and records nothing when
/// the broker it is restored into has persistence off.
#[test]
fn a_restored_session_numbers_entries_after_its_own_and_records_only_with_persistence() {
    let (_, snapshot) = snapshot_with_expiries(Persistence::Relaxed);
    let held = snapshot.sessions[0].queue[0].entry;
    for (persistence, recorded) in [(Persistence::Relaxed, true), (Persistence::Off, false)] {
        let mut h = Harness::with_config(BrokerConfig {
            persistence,
            ..quiet_config()
        });
        h.broker.restore(snapshot.clone(), h.now);
        h.connect_ok(A, v5("pub"));
        h.publish(A, qos1("t", "later", 1));
        let mut records = Vec::new();
        h.broker.take_changes(&mut records);
        let entries: Vec<u64> = records
            .iter()
            .filter_map(|record| match record {
                Change::Queued { entry, .. } => Some(*entry),
                _ => None,
            })
            .collect();
        if recorded {
            assert_eq!(entries, [held + 1], "{records:#?}");
        } else {
            assert!(records.is_empty(), "{records:#?}");
        }
    }
}

/// The DISCONNECT for a QoS 0 PUBLISH beyond the topic limits says which limit and by how much
/// in its reason string.
#[test]
fn a_topic_beyond_the_limits_is_named_in_the_reason_string() {
    let mut h = Harness::with_config(BrokerConfig {
        max_topic_length: 16,
        max_topic_levels: 2,
        ..quiet_config()
    });
    for (connection, topic, says) in [
        (A, "a".repeat(17), "17 bytes, above the maximum of 16"),
        (B, "a/b/c".to_string(), "3 levels, above the maximum of 2"),
    ] {
        h.connect_ok(connection, v5(&format!("client-{connection:?}")));
        let outputs = h.publish(connection, qos0(&topic, "x"));
        assert_disconnected(&outputs, connection, ReasonCode::TopicNameInvalid);
        let reason_string = sent_to(&outputs, connection)
            .into_iter()
            .find_map(|packet| match packet {
                Packet::Disconnect(disconnect) => disconnect.properties.reason_string,
                _ => None,
            })
            .expect("a reason string");
        assert!(reason_string.contains(says), "{reason_string}");
    }
}

/// Challenges with a long Reason String.
struct Chatty;

impl AuthHook for Chatty {
    fn authenticate(&mut self, _: &mqtt_codec::ConnectPacket, _: &str) -> AuthDecision {
        AuthDecision::Continue(Properties {
            reason_string: Some(ByteStr::from("x".repeat(200))),
            ..Properties::default()
        })
    }
}

/// An AUTH that would exceed the client's Maximum Packet Size goes without its Reason String
/// rather than not at all [MQTT-3.15.2-2].
#[test]
fn an_auth_too_large_for_the_client_goes_without_its_reason_string() {
    let mut h = Harness::with_auth(quiet_config(), Box::new(Chatty));
    let mut connect = with_token(v5("client"));
    connect.properties.maximum_packet_size = Some(64);
    let outputs = h.connect(A, connect);
    let auths: Vec<AuthPacket> = sent_to(&outputs, A)
        .into_iter()
        .filter_map(|packet| match packet {
            Packet::Auth(auth) => Some(auth),
            _ => None,
        })
        .collect();
    assert_eq!(auths.len(), 1, "{outputs:#?}");
    assert_eq!(auths[0].reason_code, ReasonCode::ContinueAuthentication);
    assert_eq!(auths[0].properties.reason_string, None);
    assert_eq!(
        auths[0].properties.authentication_method.as_deref(),
        Some("token")
    );
}

/// Small packets are encoded one after the other into one shared block, not an allocation
/// each: two consecutive frames sit side by side in memory.
#[test]
fn consecutive_small_frames_share_one_block() {
    let mut h = Harness::new();
    h.connect_ok(A, v5("pub"));
    let mut outputs = h.publish(A, qos1("nobody", "one", 1));
    outputs.extend(h.publish(A, qos1("nobody", "two", 2)));
    let frames: Vec<&bytes::Bytes> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send { frame, .. } => Some(&frame.bytes),
            Output::Close { .. } => None,
        })
        .collect();
    assert_eq!(frames.len(), 2, "{outputs:#?}");
    let first_end = frames[0].as_ptr() as usize + frames[0].len();
    assert_eq!(frames[1].as_ptr() as usize, first_end);
}
