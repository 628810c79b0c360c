//! What changed in the state that outlives a restart, as records for the gateway's store.
//!
//! The broker appends a [`Change`] whenever retained messages or a persistent session (one
//! whose expiry interval is not 0) change; the gateway takes them with
//! [`Broker::take_changes`] and writes them in batches. Applied in order to an empty store, the
//! records describe exactly the state [`Broker::snapshot`] returns, so a store never copies the
//! whole state to stay current.
//!
//! A message that several persistent sessions hold is one [`Change::Message`], referred to by
//! each session's [`Change::Queued`] entry. Entries are numbered per session in the order the
//! session received them, which is also the order they go out in.
//!
//! With [`Persistence::Full`], an acknowledgement that promises a recorded change (the PUBACK or
//! PUBREC of a message that reached a persistent session or the retained set, the SUBACK of a
//! persistent session) is held until the gateway reports the records up to it durable
//! ([`Broker::changes_durable`]). Later acknowledgements on the same connection wait behind it,
//! so a client sees them in order.
//!
//! Times are `Instant`s, as everywhere in the core; the store turns them into wall-clock times.

use super::Broker;
use super::connection::ConnectionId;
use crate::session::KeptPublish;
use crate::session::SessionKey;
use mqtt_codec::{ByteStr, Packet, ProtocolVersion, QoS, SubscriptionOptions, Will};
use std::collections::VecDeque;
use std::time::Instant;

/// Whether the broker records changes, and whether acknowledgements wait for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing is recorded (no store).
    #[default]
    Off,
    /// Changes are recorded; acknowledgements do not wait for the store.
    Relaxed,
    /// Changes are recorded, and acknowledgements that promise one wait until it is durable.
    Full,
}

/// A persistent session's own fields: everything but its subscriptions, messages and QoS 2
/// identifiers, which have records of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session's store identifier, unique among the sessions of a store.
    pub id: u64,
    /// Its client identifier.
    pub client_id: ByteStr,
    /// Protocol of its last connection.
    pub protocol: ProtocolVersion,
    /// Session expiry interval, seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// When the session expires: set while no client is connected and the interval is finite.
    pub expires_at: Option<Instant>,
    /// Whether a client is connected to it. A store that reads `true` at start lost the
    /// connection in a crash: see [`StoredSession::connected`](super::StoredSession::connected).
    pub connected: bool,
    /// The will: of the connected client, or one waiting for its delay.
    pub will: Option<Box<Will>>,
    /// When a waiting will is due.
    pub will_at: Option<Instant>,
}

/// One change to the state that outlives a restart. A record is small (128 bytes at most,
/// what is large is boxed, and a message shares its bytes with the broker's copy): a burst of
/// records waits in memory until the store has written it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A message was retained on `topic` (`Some`), or the topic's retained message cleared.
    Retained {
        /// The topic.
        topic: ByteStr,
        /// The message and when it expires.
        message: Option<(KeptPublish, Option<Instant>)>,
    },
    /// A persistent session was created, or one of its own fields changed.
    Session(Box<SessionRecord>),
    /// A session ended: it goes with everything it held.
    SessionRemoved {
        /// The session's store identifier.
        session: u64,
    },
    /// A subscription was added or replaced.
    Subscribed {
        /// The session's store identifier.
        session: u64,
        /// The filter as subscribed (with `$share/...` if shared).
        filter: ByteStr,
        /// Its options.
        options: SubscriptionOptions,
        /// Its subscription identifier.
        identifier: Option<u32>,
    },
    /// A subscription was removed.
    Unsubscribed {
        /// The session's store identifier.
        session: u64,
        /// The filter.
        filter: ByteStr,
    },
    /// A message that one or more entries will refer to, as published (no packet
    /// identifier). It is no longer needed once no entry refers to it.
    Message {
        /// Its identifier, unique in the store.
        id: u64,
        /// The message as the first session holding it received it.
        publish: KeptPublish,
        /// When it expires.
        expires_at: Option<Instant>,
    },
    /// A message entered a session's queue, or went straight into flight (`packet_id`).
    Queued {
        /// The session's store identifier.
        session: u64,
        /// The entry's number within the session.
        entry: u64,
        /// The [`Change::Message`] it holds.
        message: u64,
        /// The QoS it is delivered at.
        qos: QoS,
        /// The retain flag it is delivered with.
        retain: bool,
        /// The subscription identifiers it carries.
        identifiers: Vec<u32>,
        /// Its packet identifier, if it was sent.
        packet_id: Option<u16>,
    },
    /// A queued entry was sent with `packet_id`.
    Sent {
        /// The session's store identifier.
        session: u64,
        /// The entry.
        entry: u64,
        /// Its packet identifier.
        packet_id: u16,
    },
    /// A QoS 2 entry's PUBREC arrived: only PUBCOMP is awaited.
    Released {
        /// The session's store identifier.
        session: u64,
        /// The entry.
        entry: u64,
    },
    /// An entry left the session: acknowledged, refused, expired or discarded.
    Completed {
        /// The session's store identifier.
        session: u64,
        /// The entry.
        entry: u64,
    },
    /// A QoS 2 message from the client was delivered; its packet identifier awaits PUBREL.
    Qos2Received {
        /// The session's store identifier.
        session: u64,
        /// The packet identifier.
        packet_id: u16,
    },
    /// The client's PUBREL for a QoS 2 packet identifier arrived.
    Qos2Released {
        /// The session's store identifier.
        session: u64,
        /// The packet identifier.
        packet_id: u16,
    },
}

/// An acknowledgement waiting for the changes before it to be durable.
#[derive(Debug)]
struct HeldAck {
    /// The number of changes recorded when it was held.
    after: u64,
    connection: ConnectionId,
    packet: Packet,
}

/// The records not yet taken, and the acknowledgements waiting for the store.
///
/// Invariant: `held` is in the order its acknowledgements were produced, so `after` never
/// decreases along it.
#[derive(Debug, Default)]
pub(super) struct Changes {
    mode: Persistence,
    records: Vec<Change>,
    /// Changes recorded since the start.
    total: u64,
    /// Changes the gateway reported durable.
    durable: u64,
    held: VecDeque<HeldAck>,
    next_message: u64,
    /// Whether the store can write; while it cannot, messages it would have to hold are refused.
    writable: bool,
}

impl Changes {
    pub fn new(mode: Persistence) -> Self {
        Changes {
            mode,
            writable: true,
            next_message: 1,
            ..Changes::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.mode != Persistence::Off
    }

    pub fn writable(&self) -> bool {
        self.writable
    }

    pub fn push(&mut self, change: Change) {
        if self.enabled() {
            self.records.push(change);
            self.total += 1;
        }
    }

    /// The number of changes recorded so far: an acknowledgement produced now promises all of
    /// them.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// A new message identifier.
    pub fn next_message_id(&mut self) -> u64 {
        let id = self.next_message;
        self.next_message += 1;
        id
    }

    /// The identifier the next message gets.
    pub fn next_message_id_peek(&self) -> u64 {
        self.next_message
    }

    /// Makes sure new message identifiers are above those of restored messages.
    pub fn reserve_message_ids(&mut self, next: u64) {
        self.next_message = self.next_message.max(next);
    }

    /// Whether an acknowledgement on a connection with `held_before` acknowledgements already
    /// waiting must wait too: it promises changes not yet durable, or an earlier one on the
    /// connection waits.
    fn must_hold(&self, promises_changes: bool, held_before: u32) -> bool {
        self.mode == Persistence::Full
            && (held_before > 0 || (promises_changes && self.total > self.durable))
    }
}

impl Broker {
    /// Moves the changes recorded since the last call into `into`, and returns how many have
    /// been recorded since the start: the number to report to [`Broker::changes_durable`] once
    /// they are written.
    pub fn take_changes(&mut self, into: &mut Vec<Change>) -> u64 {
        into.append(&mut self.changes.records);
        self.changes.total
    }

    /// The first `count` changes are durable: the acknowledgements that waited for them go out.
    pub fn changes_durable(&mut self, count: u64) {
        self.changes.durable = self.changes.durable.max(count);
        while self
            .changes
            .held
            .front()
            .is_some_and(|held| held.after <= self.changes.durable)
        {
            let held = self.changes.held.pop_front().expect("checked");
            if let Some(conn) = self.connections.get_mut(&held.connection) {
                conn.held_acks -= 1;
                self.emit(held.connection, &held.packet);
            }
        }
    }

    /// Whether the store can write. While it cannot, a QoS 1 or 2 message that would have to be
    /// stored is refused (5.0: 0x97 Quota exceeded; 3.1.1: the connection is closed) instead
    /// of acknowledged and lost.
    pub fn set_store_writable(&mut self, writable: bool) {
        self.changes.writable = writable;
    }

    /// Records a session's own fields after they changed: it becomes recorded if its expiry
    /// interval is not 0, and a recorded one whose interval became 0 is removed from the
    /// store. `will_at` is when its pending will is due, if it has one.
    pub(super) fn record_session(&mut self, key: SessionKey, will_at: Option<Instant>) {
        if !self.changes.enabled() {
            return;
        }
        let session = self.sessions.get_mut(key);
        if session.expiry_interval == 0 {
            if session.recorded {
                session.recorded = false;
                let removed = Change::SessionRemoved {
                    session: session.store_id,
                };
                self.changes.push(removed);
            }
            return;
        }
        session.recorded = true;
        let connection = session.connection.and_then(|c| self.connections.get(&c));
        let will = match connection {
            Some(conn) => conn.will.clone(),
            None => session.pending_will.clone(),
        };
        let record = SessionRecord {
            id: session.store_id,
            client_id: session.client_id.clone(),
            protocol: session.protocol,
            expiry_interval: session.expiry_interval,
            expires_at: session.expires_at,
            connected: connection.is_some(),
            will,
            will_at: will_at.filter(|_| session.pending_will.is_some()),
        };
        self.changes.push(Change::Session(Box::new(record)));
    }

    /// Sends an acknowledgement, or holds it until every change recorded so far is durable:
    /// if it promises one (`promises_changes`), or an earlier acknowledgement on the
    /// connection is held.
    pub(super) fn acknowledge(
        &mut self,
        connection: ConnectionId,
        packet: Packet,
        promises_changes: bool,
    ) {
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        if !self.changes.must_hold(promises_changes, conn.held_acks) {
            self.emit(connection, &packet);
            return;
        }
        conn.held_acks += 1;
        // A 3.1.1 publisher has no receive maximum: one that runs ahead of the store is slowed
        // down like one that runs ahead of its consumers.
        if conn.held_acks >= u32::from(self.config.receive_maximum) {
            self.congested = true;
        }
        self.changes.held.push_back(HeldAck {
            after: self.changes.total,
            connection,
            packet,
        });
    }
}
