//! The change records for the store: applied in order to a model store, they describe exactly
//! what `Broker::snapshot` says outlives a restart, after any sequence of client actions and
//! restarts from the model; and acknowledgements wait for them when persistence is full.

use crate::common::*;
use broker_core::{
    AllowAll, Broker, BrokerConfig, Change, ConnectionId, KeptPublish, Output, Persistence,
    SessionRecord, Snapshot, StoredEntry, StoredInflight, StoredMessage, StoredSession,
    StoredSubscription,
};
use bytes::Bytes;
use mqtt_codec::{
    ByteStr, DisconnectPacket, Packet, PubAckPacket, PublishPacket, QoS, ReasonCode,
    SubscriptionOptions,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

// ----- A model store ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Entry {
    message: u64,
    qos: QoS,
    retain: bool,
    identifiers: Vec<u32>,
    packet_id: Option<u16>,
    released: bool,
}

/// What a store holds after applying the records: the same tables the gateway's store keeps.
#[derive(Debug, Default)]
struct Model {
    retained: BTreeMap<ByteStr, (PublishPacket, Option<Instant>)>,
    sessions: BTreeMap<u64, SessionRecord>,
    subscriptions: BTreeMap<(u64, ByteStr), (SubscriptionOptions, Option<u32>)>,
    messages: HashMap<u64, (PublishPacket, Option<Instant>)>,
    entries: BTreeMap<(u64, u64), Entry>,
    inbound: BTreeSet<(u64, u16)>,
}

impl Model {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Retained { topic, message } => match message {
                Some(message) => {
                    self.retained
                        .insert(topic, (message.0.to_packet(), message.1));
                }
                None => {
                    self.retained.remove(&topic);
                }
            },
            Change::Session(record) => {
                self.sessions.insert(record.id, *record);
            }
            Change::SessionRemoved { session } => {
                self.sessions.remove(&session);
                self.subscriptions.retain(|(s, _), _| *s != session);
                self.entries.retain(|(s, _), _| *s != session);
                self.inbound.retain(|(s, _)| *s != session);
                self.collect_messages();
            }
            Change::Subscribed {
                session,
                filter,
                options,
                identifier,
            } => {
                assert!(self.sessions.contains_key(&session), "subscribed unknown");
                self.subscriptions
                    .insert((session, filter), (options, identifier));
            }
            Change::Unsubscribed { session, filter } => {
                assert!(self.subscriptions.remove(&(session, filter)).is_some());
            }
            Change::Message {
                id,
                publish,
                expires_at,
            } => {
                assert!(
                    self.messages
                        .insert(id, (publish.to_packet(), expires_at))
                        .is_none()
                );
            }
            Change::Queued {
                session,
                entry,
                message,
                qos,
                retain,
                identifiers,
                packet_id,
            } => {
                assert!(self.sessions.contains_key(&session), "queued to unknown");
                assert!(self.messages.contains_key(&message), "unknown message");
                let entry_value = Entry {
                    message,
                    qos,
                    retain,
                    identifiers,
                    packet_id,
                    released: false,
                };
                assert!(
                    self.entries.insert((session, entry), entry_value).is_none(),
                    "entry numbers are not reused"
                );
            }
            Change::Sent {
                session,
                entry,
                packet_id,
            } => {
                let entry = self.entries.get_mut(&(session, entry)).expect("sent entry");
                entry.packet_id = Some(packet_id);
            }
            Change::Released { session, entry } => {
                let entry = self.entries.get_mut(&(session, entry)).expect("entry");
                assert!(entry.packet_id.is_some(), "released before sent");
                entry.released = true;
            }
            Change::Completed { session, entry } => {
                assert!(
                    self.entries.remove(&(session, entry)).is_some(),
                    "completed"
                );
                self.collect_messages();
            }
            Change::Qos2Received { session, packet_id } => {
                self.inbound.insert((session, packet_id));
            }
            Change::Qos2Released { session, packet_id } => {
                assert!(self.inbound.remove(&(session, packet_id)));
            }
        }
    }

    /// Drops the messages no entry refers to, as the store does.
    fn collect_messages(&mut self) {
        let referenced: BTreeSet<u64> = self.entries.values().map(|e| e.message).collect();
        self.messages.retain(|id, _| referenced.contains(id));
    }

    fn entry_publish(&self, entry: &Entry) -> (PublishPacket, Option<Instant>) {
        let (message, expires_at) = &self.messages[&entry.message];
        let mut publish = message.clone();
        publish.qos = entry.qos;
        publish.retain = entry.retain;
        publish.properties.subscription_identifiers = entry.identifiers.clone();
        (publish, *expires_at)
    }

    /// What a store would give back at a start at `now`: durations left, 0 if passed.
    fn load(&self, now: Instant) -> Snapshot {
        let left = |at: Option<Instant>| at.map(|at| at.saturating_duration_since(now));
        let stored = |(publish, at): (PublishPacket, Option<Instant>)| StoredMessage {
            publish: KeptPublish::new(publish),
            expires_in: left(at),
        };
        let retained = self
            .retained
            .values()
            .filter(|(_, at)| at.is_none_or(|at| at > now))
            .map(|message| stored(message.clone()))
            .collect();
        let sessions = self
            .sessions
            .values()
            .map(|record| {
                let id = record.id;
                let of_session = |(s, _): &&(u64, u64)| *s == id;
                let entries: Vec<(&(u64, u64), &Entry)> = self
                    .entries
                    .iter()
                    .filter(|(key, _)| of_session(key))
                    .collect();
                StoredSession {
                    id,
                    client_id: record.client_id.clone(),
                    protocol: record.protocol,
                    expiry_interval: record.expiry_interval,
                    expires_in: left(record.expires_at),
                    connected: record.connected,
                    subscriptions: self
                        .subscriptions
                        .iter()
                        .filter(|((s, _), _)| *s == id)
                        .map(|((_, filter), (options, identifier))| StoredSubscription {
                            filter: filter.clone(),
                            options: *options,
                            identifier: *identifier,
                        })
                        .collect(),
                    inflight: entries
                        .iter()
                        .filter(|(_, e)| e.packet_id.is_some())
                        .map(|((_, number), e)| StoredInflight {
                            entry: *number,
                            packet_id: e.packet_id.unwrap(),
                            message: stored(self.entry_publish(e)),
                            released: e.released,
                        })
                        .collect(),
                    queue: entries
                        .iter()
                        .filter(|(_, e)| e.packet_id.is_none())
                        .map(|((_, number), e)| StoredEntry {
                            entry: *number,
                            message: stored(self.entry_publish(e)),
                        })
                        .collect(),
                    inbound_qos2: self
                        .inbound
                        .iter()
                        .filter(|(s, _)| *s == id)
                        .map(|(_, packet_id)| *packet_id)
                        .collect(),
                    next_packet_id: 1,
                    will: record.will.as_deref().cloned(),
                    will_in: left(record.will_at),
                }
            })
            .collect();
        Snapshot {
            retained,
            sessions,
            next_message_id: self.messages.keys().max().map_or(1, |id| id + 1),
        }
    }
}

/// The parts of a snapshot a store must reproduce, in a canonical order. Expiry times are
/// compared as instants (`now` + time left), and the QoS 2 identifiers as a set.
fn canonical(snapshot: &Snapshot, now: Instant) -> impl PartialEq + std::fmt::Debug + use<> {
    let at = |left: Option<Duration>| left.map(|left| now + left);
    let mut retained: Vec<(ByteStr, Bytes, QoS, Option<Instant>)> = snapshot
        .retained
        .iter()
        .filter(|m| !m.publish.topic.starts_with('$'))
        .map(|m| {
            let p = &m.publish;
            (p.topic.clone(), p.payload.clone(), p.qos, at(m.expires_in))
        })
        .collect();
    retained.sort_by(|a, b| a.0.cmp(&b.0));
    let mut sessions: Vec<_> = snapshot
        .sessions
        .iter()
        .map(|s| {
            let mut subscriptions = s.subscriptions.clone();
            subscriptions.sort_by(|a, b| a.filter.cmp(&b.filter));
            let mut inbound = s.inbound_qos2.clone();
            inbound.sort_unstable();
            let message = |m: &StoredMessage| (m.publish.clone(), at(m.expires_in));
            (
                s.id,
                s.client_id.clone(),
                s.expiry_interval,
                s.connected,
                (!s.connected).then(|| at(s.expires_in)),
                subscriptions,
                s.inflight
                    .iter()
                    .map(|m| (m.entry, m.packet_id, m.released, message(&m.message)))
                    .collect::<Vec<_>>(),
                s.queue
                    .iter()
                    .map(|q| (q.entry, message(&q.message)))
                    .collect::<Vec<_>>(),
                inbound,
                s.will
                    .as_ref()
                    .map(|w| (w.topic.clone(), w.payload.clone())),
                at(s.will_in),
            )
        })
        .collect();
    sessions.sort_by_key(|s| s.0);
    (retained, sessions)
}

// ----- The property ----------------------------------------------------------------------------

const CLIENTS: [&str; 3] = ["c0", "c1", "c2"];
const FILTERS: [&str; 4] = ["a", "a/+", "#", "$share/g/a"];
const TOPICS: [&str; 2] = ["a", "a/b"];

#[derive(Clone, Debug)]
enum Kind {
    /// 5.0 with a session expiry of this many seconds.
    V5(u32),
    /// 3.1.1 with clean session 0.
    V311Persistent,
    /// 3.1.1 with clean session 1.
    V311Clean,
}

#[derive(Clone, Debug)]
enum Op {
    Connect {
        client: usize,
        kind: Kind,
        clean_start: bool,
        will_delay: Option<u32>,
    },
    Lose(usize),
    Disconnect(usize, Option<u32>),
    Subscribe(usize, usize, u8),
    Unsubscribe(usize, usize),
    Publish {
        client: usize,
        topic: usize,
        qos: u8,
        retain: bool,
        empty: bool,
        expiry: Option<u32>,
    },
    /// A client acknowledges (one step of) one message it received.
    Acknowledge(usize, usize),
    /// A client sends PUBREL for one of its QoS 2 messages that got PUBREC.
    Release(usize, usize),
    Advance(u64),
    /// The broker stops (a crash: nothing is saved beyond the records) and restarts from the
    /// model store.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS.len();
    let kind = prop_oneof![
        prop_oneof![Just(0u32), Just(30), Just(u32::MAX)].prop_map(Kind::V5),
        Just(Kind::V311Persistent),
        Just(Kind::V311Clean),
    ];
    prop_oneof![
        3 => (client.clone(), kind, any::<bool>(), prop::option::of(0..40u32)).prop_map(
            |(client, kind, clean_start, will_delay)| Op::Connect { client, kind, clean_start, will_delay }),
        1 => client.clone().prop_map(Op::Lose),
        1 => (client.clone(), prop::option::of(prop_oneof![Just(0u32), Just(20)]))
            .prop_map(|(c, e)| Op::Disconnect(c, e)),
        2 => (client.clone(), 0..FILTERS.len(), 0..3u8).prop_map(|(c, f, q)| Op::Subscribe(c, f, q)),
        1 => (client.clone(), 0..FILTERS.len()).prop_map(|(c, f)| Op::Unsubscribe(c, f)),
        6 => (client.clone(), 0..TOPICS.len(), 0..3u8, any::<bool>(), prop::bool::weighted(0.1),
              prop::option::weighted(0.2, 1..60u32))
            .prop_map(|(client, topic, qos, retain, empty, expiry)| Op::Publish {
                client, topic, qos, retain, empty, expiry }),
        5 => (client.clone(), any::<usize>()).prop_map(|(c, i)| Op::Acknowledge(c, i)),
        2 => (client, any::<usize>()).prop_map(|(c, i)| Op::Release(c, i)),
        1 => (0..50u64).prop_map(Op::Advance),
        1 => Just(Op::Restart),
    ]
}

/// What a client remembers between steps.
#[derive(Default)]
struct Client {
    connection: Option<ConnectionId>,
    v5: bool,
    /// Messages received and not fully acknowledged: packet id, QoS, PUBREL received.
    received: Vec<(u16, QoS, bool)>,
    /// Its QoS 2 messages that got PUBREC, awaiting its PUBREL.
    to_release: Vec<u16>,
    next_packet_id: u16,
}

struct World {
    harness: Harness,
    model: Model,
    clients: Vec<Client>,
    next_connection: u64,
    records: Vec<Change>,
}

fn config() -> BrokerConfig {
    BrokerConfig {
        persistence: Persistence::Relaxed,
        max_inflight: 2,
        ..quiet_config()
    }
}

fn qos(bits: u8) -> QoS {
    QoS::from_bits(bits).unwrap()
}

impl World {
    fn new() -> Self {
        World {
            harness: Harness::with_config(config()),
            model: Model::default(),
            clients: (0..CLIENTS.len()).map(|_| Client::default()).collect(),
            next_connection: 100,
            records: Vec::new(),
        }
    }

    /// Feeds what the broker sent to each client into that client's memory.
    fn observe(&mut self, outputs: &[Output]) {
        for client in &mut self.clients {
            let Some(connection) = client.connection else {
                continue;
            };
            for packet in sent_to(outputs, connection) {
                match packet {
                    Packet::Publish(p) if p.qos != QoS::AtMostOnce => {
                        let id = p.packet_id.unwrap();
                        if !client.received.iter().any(|(known, _, _)| *known == id) {
                            client.received.push((id, p.qos, false));
                        }
                    }
                    Packet::PubRel(ack) => {
                        if let Some(r) = client.received.iter_mut().find(|r| r.0 == ack.packet_id) {
                            r.2 = true;
                        }
                    }
                    Packet::PubRec(ack) if !ack.reason_code.is_error() => {
                        client.to_release.push(ack.packet_id);
                    }
                    _ => {}
                }
            }
            if closed(outputs, connection) {
                client.connection = None;
                client.received.clear();
                client.to_release.clear();
            }
        }
    }

    fn step(&mut self, op: Op) {
        let outputs = match op {
            Op::Connect {
                client,
                kind,
                clean_start,
                will_delay,
            } => {
                if let Some(old) = self.clients[client].connection {
                    let outputs = self.harness.lose(old);
                    self.observe(&outputs);
                    self.clients[client].connection = None;
                }
                let id = CLIENTS[client];
                let mut connect = match kind {
                    Kind::V5(expiry) => {
                        let mut connect = v5_persistent(id, expiry);
                        connect.clean_start = clean_start;
                        connect
                    }
                    Kind::V311Persistent => v311_persistent(id),
                    Kind::V311Clean => v311(id),
                };
                if let Some(delay) = will_delay {
                    let mut will = will(&format!("will/{id}"), "gone");
                    if connect.protocol.is_v5() {
                        will.properties.will_delay_interval = Some(delay);
                    }
                    connect.will = Some(will);
                }
                let connection = ConnectionId(self.next_connection);
                self.next_connection += 1;
                let state = &mut self.clients[client];
                state.connection = Some(connection);
                state.v5 = connect.protocol.is_v5();
                state.received.clear();
                state.to_release.clear();
                self.harness.connect(connection, connect)
            }
            Op::Lose(client) => match self.clients[client].connection.take() {
                Some(connection) => self.harness.lose(connection),
                None => Vec::new(),
            },
            Op::Disconnect(client, expiry) => match self.clients[client].connection {
                Some(connection) => {
                    let mut disconnect = DisconnectPacket::default();
                    if self.clients[client].v5 {
                        disconnect.properties.session_expiry_interval = expiry;
                    }
                    self.harness
                        .send(connection, Packet::Disconnect(disconnect))
                }
                None => Vec::new(),
            },
            Op::Subscribe(client, filter, bits) => match self.clients[client].connection {
                Some(connection) => self
                    .harness
                    .subscribe(connection, FILTERS[filter], qos(bits)),
                None => Vec::new(),
            },
            Op::Unsubscribe(client, filter) => match self.clients[client].connection {
                Some(connection) => self.harness.unsubscribe(connection, &[FILTERS[filter]]),
                None => Vec::new(),
            },
            Op::Publish {
                client,
                topic,
                qos: bits,
                retain,
                empty,
                expiry,
            } => match self.clients[client].connection {
                Some(connection) => {
                    let state = &mut self.clients[client];
                    state.next_packet_id = state.next_packet_id % 60_000 + 1;
                    let payload = if empty { "" } else { "m" };
                    let mut publish =
                        publish_packet(TOPICS[topic], qos(bits), payload, state.next_packet_id);
                    publish.retain = retain;
                    if state.v5 {
                        publish.properties.message_expiry_interval = expiry;
                    }
                    self.harness.publish(connection, publish)
                }
                None => Vec::new(),
            },
            Op::Acknowledge(client, index) => {
                let state = &mut self.clients[client];
                match state.connection {
                    Some(connection) if !state.received.is_empty() => {
                        let index = index % state.received.len();
                        let (id, qos, released) = state.received[index];
                        let ack = PubAckPacket::new(id);
                        let packet = match (qos, released) {
                            (QoS::AtLeastOnce, _) => Packet::PubAck(ack),
                            (_, false) => Packet::PubRec(ack),
                            (_, true) => Packet::PubComp(ack),
                        };
                        if qos == QoS::AtLeastOnce || released {
                            state.received.remove(index);
                        }
                        self.harness.send(connection, packet)
                    }
                    _ => Vec::new(),
                }
            }
            Op::Release(client, index) => {
                let state = &mut self.clients[client];
                match state.connection {
                    Some(connection) if !state.to_release.is_empty() => {
                        let id = state.to_release.remove(index % state.to_release.len());
                        let pubrel = Packet::PubRel(PubAckPacket::new(id));
                        self.harness.send(connection, pubrel)
                    }
                    _ => Vec::new(),
                }
            }
            Op::Advance(seconds) => self.harness.advance_and_tick(secs(seconds)),
            Op::Restart => {
                let now = self.harness.now;
                let snapshot = self.model.load(now);
                // The store drops expired retained messages as it loads them.
                self.model
                    .retained
                    .retain(|_, (_, at)| at.is_none_or(|at| at > now));
                let mut broker = Broker::new(config(), Box::new(AllowAll), now);
                broker.restore(snapshot, now);
                self.harness.broker = broker;
                for client in &mut self.clients {
                    *client = Client {
                        next_packet_id: client.next_packet_id,
                        ..Client::default()
                    };
                }
                // Whatever a restart itself records (sessions whose connection it lost).
                self.harness.tick()
            }
        };
        self.observe(&outputs);
        self.harness.broker.take_changes(&mut self.records);
        for change in self.records.drain(..) {
            self.model.apply(change);
        }
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        let now = self.harness.now;
        let broker = canonical(&self.harness.broker.snapshot(now), now);
        let model = canonical(&self.model.load(now), now);
        prop_assert_eq!(broker, model);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// After every step, the store the records built holds what the broker says outlives a
    /// restart; and a broker restarted from that store goes on recording correctly.
    #[test]
    fn the_records_rebuild_the_persistent_state(ops in prop::collection::vec(op(), 1..60)) {
        let mut world = World::new();
        for op in ops {
            world.step(op);
            world.check()?;
        }
    }
}

// ----- Acknowledgements after durable ----------------------------------------------------------

fn full() -> Harness {
    Harness::with_config(BrokerConfig {
        persistence: Persistence::Full,
        ..quiet_config()
    })
}

/// Subscribes at QoS 1 without expecting the SUBACK at once.
fn subscribe_held(harness: &mut Harness, connection: ConnectionId, filter: &str) -> Vec<Output> {
    let subscribe = subscribe_packet(1, &[(filter, options(QoS::AtLeastOnce))], None);
    harness.send(connection, Packet::Subscribe(subscribe))
}

/// Connects a persistent subscriber to `t` at QoS 1 on B, then lets it go offline.
fn offline_subscriber(harness: &mut Harness) {
    harness.connect_ok(B, v5_persistent("sub", 3600));
    let suback = subscribe_held(harness, B, "t");
    assert!(sent_to(&suback, B).is_empty(), "SUBACK waits for the store");
    let total = harness.broker.take_changes(&mut Vec::new());
    harness.broker.changes_durable(total);
    assert!(matches!(
        sent_to(&harness.drain(), B)[..],
        [Packet::SubAck(_)]
    ));
    harness.lose(B);
}

#[test]
fn a_puback_for_a_stored_message_waits_until_it_is_durable() {
    let mut harness = full();
    offline_subscriber(&mut harness);
    harness.connect_ok(A, v5("pub"));
    let outputs = harness.publish(A, qos1("t", "kept", 1));
    assert!(sent_to(&outputs, A).is_empty(), "{outputs:#?}");
    let mut records = Vec::new();
    let total = harness.broker.take_changes(&mut records);
    assert!(
        records.iter().any(|r| matches!(r, Change::Queued { .. })),
        "{records:#?}"
    );
    harness.broker.changes_durable(total - 1);
    assert!(harness.drain().is_empty(), "not before the last record");
    harness.broker.changes_durable(total);
    let acks = sent_to(&harness.drain(), A);
    assert!(
        matches!(&acks[..], [Packet::PubAck(ack)] if ack.packet_id == 1 && ack.reason_code == ReasonCode::Success),
        "{acks:#?}"
    );
}

#[test]
fn a_message_for_clean_sessions_only_is_acknowledged_at_once() {
    let mut harness = full();
    harness.connect_ok(B, v5("clean-sub"));
    harness.subscribe(B, "t", QoS::AtLeastOnce);
    harness.connect_ok(A, v5("pub"));
    let outputs = harness.publish(A, qos1("t", "m", 1));
    assert!(
        matches!(&sent_to(&outputs, A)[..], [Packet::PubAck(_)]),
        "{outputs:#?}"
    );
    let outputs = harness.publish(A, retained(qos1("r", "m", 2)));
    assert!(
        sent_to(&outputs, A).is_empty(),
        "a retained message is stored"
    );
}

#[test]
fn a_later_acknowledgement_waits_behind_a_held_one() {
    let mut harness = full();
    offline_subscriber(&mut harness);
    harness.connect_ok(A, v5("pub"));
    harness.publish(A, qos1("t", "stored", 1));
    let outputs = harness.publish(A, qos1("elsewhere", "not stored", 2));
    assert!(
        sent_to(&outputs, A).is_empty(),
        "PUBACK 2 may not overtake 1"
    );
    let total = harness.broker.take_changes(&mut Vec::new());
    harness.broker.changes_durable(total);
    let ids: Vec<u16> = sent_to(&harness.drain(), A)
        .iter()
        .filter_map(|p| is_puback(p).map(|a| a.packet_id))
        .collect();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn a_message_is_recorded_once_for_every_session_holding_it() {
    let mut harness = full();
    for (connection, id) in [(B, "s1"), (C, "s2")] {
        harness.connect_ok(connection, v5_persistent(id, 3600));
        subscribe_held(&mut harness, connection, "t");
    }
    harness.lose(B);
    harness.connect_ok(A, v5("pub"));
    let mut records = Vec::new();
    harness.broker.take_changes(&mut records);
    records.clear();
    harness.publish(A, qos1("t", "shared", 1));
    harness.broker.take_changes(&mut records);
    let messages = records
        .iter()
        .filter(|r| matches!(r, Change::Message { .. }))
        .count();
    let entries: Vec<Option<u16>> = records
        .iter()
        .filter_map(|r| match r {
            Change::Queued { packet_id, .. } => Some(*packet_id),
            _ => None,
        })
        .collect();
    assert_eq!(messages, 1, "{records:#?}");
    assert_eq!(entries.len(), 2, "{records:#?}");
    // The offline session queues it; the online one has it in flight at once.
    assert!(entries.contains(&None) && entries.iter().any(Option::is_some));
}

#[test]
fn while_the_store_cannot_write_a_message_it_would_hold_is_refused() {
    let mut harness = full();
    offline_subscriber(&mut harness);
    harness.broker.set_store_writable(false);
    harness.connect_ok(A, v5("pub5"));
    let outputs = harness.publish(A, qos1("t", "refused", 1));
    let acks = sent_to(&outputs, A);
    assert!(
        matches!(&acks[..], [Packet::PubAck(ack)] if ack.reason_code == ReasonCode::QuotaExceeded),
        "{acks:#?}"
    );
    // A message nobody stores still goes through.
    let outputs = harness.publish(A, qos1("elsewhere", "fine", 2));
    assert!(
        matches!(&sent_to(&outputs, A)[..], [Packet::PubAck(ack)] if !ack.reason_code.is_error())
    );
    // QoS 0 has no acknowledgement to break.
    harness.publish(A, qos0("t", "qos0"));

    harness.connect_ok(C, v311("pub311"));
    let outputs = harness.publish(C, qos1("t", "refused", 1));
    assert!(closed(&outputs, C), "3.1.1 can only close: {outputs:#?}");
    assert!(sent_to(&outputs, C).is_empty());

    harness.broker.set_store_writable(true);
    harness.publish(A, qos1("t", "accepted", 3));
    let total = harness.broker.take_changes(&mut Vec::new());
    harness.broker.changes_durable(total);
    let acks = sent_to(&harness.drain(), A);
    assert!(
        matches!(&acks[..], [Packet::PubAck(ack)] if ack.packet_id == 3 && ack.reason_code == ReasonCode::Success),
        "{acks:#?}"
    );
    // Only the accepted message reached the session.
    harness.connect_ok(B, v5_persistent("sub", 3600));
    assert_eq!(payloads(&harness.drain(), B), Vec::<String>::new());
}

#[test]
fn a_session_whose_client_was_connected_at_a_crash_starts_its_expiry_and_will_at_restart() {
    let mut harness = Harness::with_config(BrokerConfig {
        persistence: Persistence::Relaxed,
        ..quiet_config()
    });
    harness.connect_ok(B, v5("watcher"));
    harness.subscribe(B, "will/#", QoS::AtMostOnce);
    let mut will = will("will/dev", "gone");
    will.properties.will_delay_interval = Some(5);
    harness.connect_ok(A, with_will(v5_persistent("dev", 60), will));
    let mut model = Model::default();
    let mut records = Vec::new();
    harness.broker.take_changes(&mut records);
    for change in records {
        model.apply(change);
    }
    // The crash: a new broker, an hour later, from the store.
    let later = harness.now + secs(3600);
    let mut broker = Broker::new(config(), Box::new(AllowAll), later);
    broker.restore(model.load(later), later);
    harness.broker = broker;
    harness.now = later;
    harness.connect_ok(B, v5("watcher"));
    harness.subscribe(B, "will/#", QoS::AtMostOnce);
    assert!(payloads(&harness.advance_and_tick(secs(4)), B).is_empty());
    assert_eq!(payloads(&harness.advance_and_tick(secs(1)), B), ["gone"]);
    // The session itself lasts its full interval from the restart.
    let connack = harness.connect_ok(C, v5_persistent("dev", 60));
    assert!(connack.session_present);
}

/// Makes every change so far durable and returns what was sent then.
fn commit(harness: &mut Harness) -> Vec<Output> {
    let total = harness.broker.take_changes(&mut Vec::new());
    harness.broker.changes_durable(total);
    harness.drain()
}

#[test]
fn a_pubcomp_waits_until_the_released_identifier_is_durable() {
    let mut harness = full();
    harness.connect_ok(A, v5_persistent("pub", 3600));
    harness.publish(A, qos2("nobody", "m", 5));
    assert!(matches!(
        &sent_to(&commit(&mut harness), A)[..],
        [Packet::PubRec(_)]
    ));
    let outputs = harness.send(A, Packet::PubRel(PubAckPacket::new(5)));
    assert!(sent_to(&outputs, A).is_empty(), "{outputs:#?}");
    assert!(
        matches!(&sent_to(&commit(&mut harness), A)[..], [Packet::PubComp(c)] if c.packet_id == 5)
    );
}

#[test]
fn a_pubrel_to_a_subscriber_waits_until_its_release_is_durable() {
    let mut harness = full();
    harness.connect_ok(B, v5_persistent("sub", 3600));
    let subscribe = subscribe_packet(1, &[("t", options(QoS::ExactlyOnce))], None);
    harness.send(B, Packet::Subscribe(subscribe));
    commit(&mut harness);
    harness.connect_ok(A, v5("pub"));
    // Delivered at once; only acknowledgements wait.
    let delivered = harness.publish(A, qos2("t", "m", 1));
    let publish = &publishes(&delivered, B)[0];
    commit(&mut harness);
    let packet_id = publish.packet_id.unwrap();
    let outputs = harness.send(B, Packet::PubRec(PubAckPacket::new(packet_id)));
    assert!(sent_to(&outputs, B).is_empty(), "{outputs:#?}");
    assert!(
        matches!(&sent_to(&commit(&mut harness), B)[..], [Packet::PubRel(r)] if r.packet_id == packet_id)
    );
}

/// A burst of records waits in vectors that keep their capacity: a record stays small.
#[test]
fn a_change_record_is_small() {
    assert!(size_of::<Change>() <= 128, "{}", size_of::<Change>());
}

#[test]
fn a_message_whose_send_was_not_durable_goes_out_again_under_the_same_identifier() {
    let mut harness = Harness::with_config(config());
    let mut model = Model::default();
    let apply = |harness: &mut Harness, model: &mut Model| {
        let mut records = Vec::new();
        harness.broker.take_changes(&mut records);
        for change in records {
            model.apply(change);
        }
    };
    harness.connect_ok(B, v5_persistent("sub", 3600));
    let subscribe = subscribe_packet(1, &[("t", options(QoS::ExactlyOnce))], None);
    harness.send(B, Packet::Subscribe(subscribe));
    // One message goes all the way through first, so identifiers have moved on.
    harness.connect_ok(A, v5("pub"));
    let outputs = harness.publish(A, qos2("t", "zero", 9));
    let id = publishes(&outputs, B)[0].packet_id.unwrap();
    harness.send(B, Packet::PubRec(PubAckPacket::new(id)));
    harness.send(B, Packet::PubComp(PubAckPacket::new(id)));
    harness.lose(B);
    for (n, payload) in ["one", "two", "three"].iter().enumerate() {
        harness.publish(A, qos2("t", payload, n as u16 + 1));
    }
    apply(&mut harness, &mut model);
    // The subscriber comes back and receives them; the broker dies before recording that.
    let outputs = harness.connect(ConnectionId(50), v5_persistent("sub", 3600));
    let first: Vec<(u16, String)> = publishes(&outputs, ConnectionId(50))
        .iter()
        .map(|p| {
            (
                p.packet_id.unwrap(),
                String::from_utf8_lossy(&p.payload).into(),
            )
        })
        .collect();
    assert_eq!(first.len(), 2, "the window of config(): {outputs:#?}");
    let mut unrecorded = Vec::new();
    harness.broker.take_changes(&mut unrecorded);
    assert!(unrecorded.iter().any(|r| matches!(r, Change::Sent { .. })));

    let now = harness.now;
    let mut broker = Broker::new(config(), Box::new(AllowAll), now);
    broker.restore(model.load(now), now);
    harness.broker = broker;
    let outputs = harness.connect(ConnectionId(51), v5_persistent("sub", 3600));
    let again: Vec<(u16, String)> = publishes(&outputs, ConnectionId(51))
        .iter()
        .map(|p| {
            (
                p.packet_id.unwrap(),
                String::from_utf8_lossy(&p.payload).into(),
            )
        })
        .collect();
    assert_eq!(again, first);
}
