//! A model store: the change records applied in order, as the gateway's store applies them.
//! The same model as broker-core's `tests/it/changes.rs` (which checks it against
//! `Broker::snapshot` under a narrower set of operations); here it is checked after every fuzzed
//! step whenever the broker records changes.

use broker_core::{
    Change, KeptPublish, SessionRecord, Snapshot, StoredEntry, StoredInflight, StoredMessage,
    StoredSession, StoredSubscription,
};
use bytes::Bytes;
use mqtt_codec::{ByteStr, PublishPacket, QoS, SubscriptionOptions};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

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
pub(crate) struct Model {
    retained: BTreeMap<ByteStr, (PublishPacket, Option<Instant>)>,
    sessions: BTreeMap<u64, SessionRecord>,
    subscriptions: BTreeMap<(u64, ByteStr), (SubscriptionOptions, Option<u32>)>,
    messages: HashMap<u64, (PublishPacket, Option<Instant>)>,
    entries: BTreeMap<(u64, u64), Entry>,
    inbound: BTreeSet<(u64, u16)>,
}

impl Model {
    pub(crate) fn apply(&mut self, change: Change) {
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
    pub(crate) fn load(&self, now: Instant) -> Snapshot {
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
pub(crate) fn canonical(
    snapshot: &Snapshot,
    now: Instant,
) -> impl PartialEq + std::fmt::Debug + use<> {
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

impl Model {
    /// The store drops expired retained messages as it loads them at a start.
    pub(crate) fn drop_expired_retained(&mut self, now: Instant) {
        self.retained
            .retain(|_, (_, at)| at.is_none_or(|at| at > now));
    }
}
