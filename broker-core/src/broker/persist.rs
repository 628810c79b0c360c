//! The state that outlives a restart as one value, a [`Snapshot`]: retained messages and
//! persistent sessions (subscriptions, messages in flight and queued, QoS 2 identifiers
//! awaiting PUBREL, the will). The gateway's store keeps it current from the change records
//! (see [`changes`](super::changes)) and builds a snapshot only at start, for
//! [`Broker::restore`]; [`Broker::snapshot`] is the reference the records are tested against.
//!
//! Times in a snapshot are durations remaining at the moment it was taken, because `Instant`s
//! mean nothing to another process.

use super::Broker;
use super::timers::TimerKind;
use crate::session::{InflightMessage, KeptPublish, QueuedMessage};
use mqtt_codec::{ByteStr, ProtocolVersion, SubscriptionOptions, Will};
use std::time::{Duration, Instant};

/// A message with the time it has left, if it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// The message as it will be sent (no packet identifier), kept compact: a restart may
    /// restore millions.
    pub publish: KeptPublish,
    /// Time left before it expires.
    pub expires_in: Option<Duration>,
}

/// A message queued for a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// Its number within the session (see [`Change::Queued`](super::Change::Queued)).
    pub entry: u64,
    /// The message as it will be sent.
    pub message: StoredMessage,
}

/// A message in flight towards a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredInflight {
    /// Its number within the session (see [`Change::Queued`](super::Change::Queued)).
    pub entry: u64,
    /// Its packet identifier.
    pub packet_id: u16,
    /// The message.
    pub message: StoredMessage,
    /// PUBREC received: only PUBCOMP is awaited.
    pub released: bool,
}

/// One subscription of a stored session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The filter as subscribed (with `$share/...` if shared).
    pub filter: ByteStr,
    /// Its options.
    pub options: SubscriptionOptions,
    /// Its subscription identifier.
    pub identifier: Option<u32>,
}

/// A session that outlives its connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    /// The session's store identifier (see [`SessionRecord`](super::SessionRecord)).
    pub id: u64,
    /// Client identifier.
    pub client_id: ByteStr,
    /// Protocol of its last connection.
    pub protocol: ProtocolVersion,
    /// Session expiry interval, seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// Time left before the session expires, for a session whose client was not connected.
    pub expires_in: Option<Duration>,
    /// The client was connected when the state was saved: at restore its connection is taken
    /// as lost then, so the session starts its full expiry interval and its will its delay.
    pub connected: bool,
    /// Subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// Messages in flight, in send order.
    pub inflight: Vec<StoredInflight>,
    /// Messages queued behind the window, in order.
    pub queue: Vec<StoredEntry>,
    /// QoS 2 packet identifiers received from the client and awaiting PUBREL.
    pub inbound_qos2: Vec<u16>,
    /// The next packet identifier to try.
    pub next_packet_id: u16,
    /// The will: of the connected client, or one waiting for its delay.
    pub will: Option<Will>,
    /// Time left before a waiting will is published (not set while `connected`).
    pub will_in: Option<Duration>,
}

/// Everything that survives a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Retained messages, by topic order.
    pub retained: Vec<StoredMessage>,
    /// Persistent sessions, by client identifier order.
    pub sessions: Vec<StoredSession>,
    /// Above every message identifier the store holds (see
    /// [`Change::Message`](super::Change::Message)).
    pub next_message_id: u64,
}

impl Snapshot {
    /// The snapshot as it stands `elapsed` later: times shortened, what expired meanwhile gone.
    pub fn aged(mut self, elapsed: Duration) -> Snapshot {
        let age = |left: Option<Duration>| left.map(|d| d.saturating_sub(elapsed));
        let alive = |message: &StoredMessage| message.expires_in.is_none_or(|d| d > elapsed);
        self.retained.retain(alive);
        for message in &mut self.retained {
            message.expires_in = age(message.expires_in);
        }
        self.sessions
            .retain(|session| session.expires_in.is_none_or(|d| d > elapsed));
        for session in &mut self.sessions {
            session.expires_in = age(session.expires_in);
            session.queue.retain(|queued| alive(&queued.message));
            for queued in &mut session.queue {
                queued.message.expires_in = age(queued.message.expires_in);
            }
            for inflight in &mut session.inflight {
                inflight.message.expires_in = age(inflight.message.expires_in);
            }
            session.will_in = age(session.will_in);
        }
        self
    }
}

fn remaining(now: Instant, at: Option<Instant>) -> Option<Duration> {
    at.map(|at| at.saturating_duration_since(now))
}

fn stored(now: Instant, message: &QueuedMessage) -> StoredMessage {
    StoredMessage {
        publish: message.publish.clone(),
        expires_in: remaining(now, message.expires_at),
    }
}

fn queued(now: Instant, entry: u64, message: StoredMessage) -> QueuedMessage {
    QueuedMessage {
        publish: message.publish,
        expires_at: message.expires_in.map(|d| now + d),
        entry,
    }
}

impl Broker {
    /// The retained messages and persistent sessions as of `now`. Sessions that end with their
    /// connection (expiry 0, clean session) are not part of it.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let mut retained: Vec<StoredMessage> = self
            .retained
            .iter_kept(now)
            .map(|(publish, expires_at)| StoredMessage {
                publish: publish.clone(),
                expires_in: remaining(now, expires_at),
            })
            .collect();
        retained.sort_by(|a, b| a.publish.topic.cmp(&b.publish.topic));

        let mut sessions: Vec<StoredSession> = self
            .sessions
            .iter()
            .filter(|s| s.expiry_interval > 0)
            .map(|session| {
                let generation = session.generation;
                let expires_in = match (session.connection, session.expiry_interval) {
                    (Some(_), _) | (_, u32::MAX) => None,
                    (None, _) => self.timers.time_left(now, |kind| {
                        matches!(kind, TimerKind::SessionExpiry { generation: g, .. } if *g == generation)
                    }),
                };
                let mut subscriptions: Vec<StoredSubscription> = session
                    .subscriptions
                    .iter()
                    .map(|(filter, s)| StoredSubscription {
                        filter: filter.clone(),
                        options: s.options,
                        identifier: s.identifier,
                    })
                    .collect();
                subscriptions.sort_by(|a, b| a.filter.cmp(&b.filter));
                let mut inbound_qos2: Vec<u16> = session.inbound_qos2.iter().copied().collect();
                inbound_qos2.sort_unstable();
                let connection = session.connection.and_then(|c| self.connections.get(&c));
                let connected_will = connection.and_then(|c| c.will.as_deref().cloned());
                let will_in = session.pending_will.as_ref().map(|_| {
                    let left = self.timers.time_left(now, |kind| {
                        matches!(kind, TimerKind::WillDelay { generation: g, .. } if *g == generation)
                    });
                    left.unwrap_or_default()
                });
                let will = session.pending_will.as_deref().cloned().or(connected_will);
                StoredSession {
                    id: session.store_id,
                    client_id: session.client_id.clone(),
                    protocol: session.protocol,
                    expiry_interval: session.expiry_interval,
                    expires_in,
                    subscriptions,
                    inflight: session
                        .inflight
                        .iter()
                        .map(|m| StoredInflight {
                            entry: m.message.entry,
                            packet_id: m.packet_id,
                            message: stored(now, &m.message),
                            released: m.released,
                        })
                        .collect(),
                    queue: session
                        .queue
                        .iter()
                        .map(|m| StoredEntry {
                            entry: m.entry,
                            message: stored(now, m),
                        })
                        .collect(),
                    inbound_qos2,
                    next_packet_id: session.next_packet_id,
                    connected: session.connection.is_some(),
                    will,
                    will_in,
                }
            })
            .collect();
        sessions.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Snapshot {
            retained,
            sessions,
            next_message_id: self.changes.next_message_id_peek(),
        }
    }

    /// Loads a snapshot into a broker that has no sessions or retained messages yet. Every
    /// restored session is offline, its expiry counting from `now`; a session, message or will
    /// whose time ran out while the broker was down (time left 0) expires at the first
    /// [`Broker::handle_timeout`]. The restored state is taken to be in the store already:
    /// only what changes from here on is recorded.
    pub fn restore(&mut self, snapshot: Snapshot, now: Instant) {
        self.changes.reserve_message_ids(snapshot.next_message_id);
        self.retained.reserve(snapshot.retained.len());
        for message in snapshot.retained {
            let expires_at = message.expires_in.map(|d| now + d);
            self.retained.insert(message.publish, expires_at);
        }
        for stored in snapshot.sessions {
            if self.sessions.contains(&stored.client_id) {
                continue;
            }
            let connected = stored.connected;
            let (key, will_at) = self.restore_session(stored, now);
            if connected {
                // The store learns that the session is offline now, and since when.
                self.record_session(key, will_at);
            }
        }
    }

    /// Puts one stored session, whose client id no live session has, into the broker, offline:
    /// its expiry counting from `now` (or, if `stored.connected`, its full interval, and its
    /// will's delay, starting now). Records nothing. A session with id 0 gets a new one.
    /// Returns its key and when its will is due.
    pub(super) fn restore_session(
        &mut self,
        stored: StoredSession,
        now: Instant,
    ) -> (crate::session::SessionKey, Option<Instant>) {
        // Id 0: a session from elsewhere (another node), which gets a new id here.
        if stored.id != 0 {
            self.sessions.reserve_store_id(stored.id);
        }
        let key = self
            .sessions
            .create(stored.client_id.clone(), stored.protocol);
        let generation = self.sessions.next_generation(key);
        let session = self.sessions.get_mut(key);
        if stored.id != 0 {
            session.store_id = stored.id;
        }
        session.recorded = self.changes.enabled() && stored.expiry_interval > 0;
        let entries = stored.inflight.iter().map(|m| m.entry);
        let last_entry = entries.chain(stored.queue.iter().map(|q| q.entry)).max();
        session.next_entry = last_entry.unwrap_or(0) + 1;
        let expiry = stored.expiry_interval;
        let (expires_in, will_in) = if stored.connected {
            // The connection was lost when the broker stopped: the session and the will
            // start counting now, as they would have then.
            let seconds = |s: u32| Duration::from_secs(u64::from(s));
            let will_delay = stored
                .will
                .as_ref()
                .map(|will| seconds(will.properties.will_delay_interval.unwrap_or(0).min(expiry)));
            ((expiry != u32::MAX).then(|| seconds(expiry)), will_delay)
        } else {
            (stored.expires_in, stored.will_in)
        };
        session.expires_at = expires_in.map(|left| now + left);
        session.expiry_interval = expiry;
        session.next_packet_id = stored.next_packet_id.max(1);
        session.inbound_qos2 = stored.inbound_qos2.into_iter().collect();
        session.inflight = stored
            .inflight
            .into_iter()
            .map(|m| InflightMessage {
                packet_id: m.packet_id,
                message: queued(now, m.entry, m.message),
                released: m.released,
            })
            .collect();
        for queued_entry in stored.queue {
            session.push_queue(queued(now, queued_entry.entry, queued_entry.message));
        }
        let will_at = will_in.map(|left| now + left);
        if let (Some(will), Some(at)) = (stored.will, will_at) {
            session.pending_will = Some(Box::new(will));
            let kind = TimerKind::WillDelay {
                session: key,
                generation,
            };
            self.timers.schedule(at, kind);
        }
        if let Some(left) = expires_in {
            let kind = TimerKind::SessionExpiry {
                session: key,
                generation,
            };
            self.timers.schedule(now + left, kind);
        }
        for subscription in stored.subscriptions {
            let StoredSubscription {
                filter,
                options,
                identifier,
            } = subscription;
            self.subscribe(key, &filter, options, identifier);
        }
        (key, will_at)
    }
}
