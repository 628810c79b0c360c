//! The broker state machine: the [`Broker`], its inputs and where each goes.
//!
//! Inputs arrive through the `handle_*` methods, each with the current time; answers queue up as
//! [`Output`]s for the gateway to perform. The broker never waits for a client: a message for a
//! client whose window is full is queued in its session (bounded), and the gateway enforces the
//! socket side of slow consumers.
//!
//! This file holds the state and dispatches; each concern is a module, and most state is a
//! sub-struct with its own rules that the modules call:
//!
//! | module | what it does | state it owns |
//! | --- | --- | --- |
//! | [`connect`] | CONNECT: accept, refuse, take over, resume | |
//! | [`authentication`] | enhanced authentication and re-authentication | pending exchanges |
//! | [`routing`] | a PUBLISH from a client or a will: checks, retain, match, fan out | |
//! | [`delivery`] | one message to one session: window, queue, PUB* acknowledgements | |
//! | [`subscribe`] | SUBSCRIBE and UNSUBSCRIBE, retained messages on subscribe | |
//! | [`close`] | DISCONNECT, terminate, detach, wills | |
//! | [`admin`] | queries for the API, administrative disconnect, shutdown | |
//! | [`sys`] | the `$SYS` statistics topics | |
//! | [`persist`] | snapshots and restore | |
//! | [`changes`] | records for the store, acknowledgements held until durable | the records |
//! | [`connection`] | | one accepted connection ([`connection::Connection`]) |
//! | [`subscriptions`] | | the tree and the shared groups |
//! | [`retained`] | | retained messages |
//! | [`timers`] | | the deadline heap |
//! | [`output`] | | the output queue and the encoding block |
//! | [`termination`] | why a connection ends ([`Termination`]) | |
//! | [`limits`] | the configured bounds on topics and User Properties | |
//!
//! Sessions are the crate's [`crate::sessions::Sessions`] table.
//!
//! Invariants: a connection is in `connections` from its accepted CONNECT until the broker emits
//! `Output::Close` for it or is told it was lost; a connected session's `connection` points back
//! at it; every subscription of a session is in `subscriptions` and vice versa.

mod admin;
mod authentication;
mod changes;
mod close;
mod cluster;
mod connect;
mod connection;
mod delivery;
mod limits;
mod output;
mod persist;
mod retained;
mod routing;
mod subscribe;
mod subscriptions;
mod sys;
mod termination;
mod timers;

pub use admin::{ClientSummary, RetainedSummary, SubscriptionSummary};
pub use changes::{Change, Persistence, SessionRecord};
pub use cluster::{Forward, InterestChange};
pub use connection::{ConnectionId, ConnectionInfo, Transport};
pub use limits::TopicLimit;
pub use output::{Frame, FrameKind, Output};
pub use persist::{
    Snapshot, StoredEntry, StoredInflight, StoredMessage, StoredSession, StoredSubscription,
};
pub use termination::Termination;

use crate::HashMap;
use crate::auth::AuthHook;
use crate::config::BrokerConfig;
use crate::sessions::Sessions;
use crate::stats::{DropReason, Stats};
use changes::Changes;
use connect::ConnectRequest;
use connection::Connection;
use mqtt_codec::{ConnAckPacket, DecodeError, Packet, Properties, ProtocolVersion, ReasonCode};
use output::Outputs;
use retained::RetainedMessages;
use std::fmt;
use std::time::Instant;
use subscriptions::{Match, Subscriptions};
use timers::{TimerKind, Timers};
use tracing::warn;

/// The broker state machine. See the module documentation.
pub struct Broker {
    config: BrokerConfig,
    auth: Box<dyn AuthHook>,
    /// Boxed, so that the table holds pointers: a table has up to twice as many slots as
    /// entries, and a `Connection` is far larger than a pointer.
    connections: HashMap<ConnectionId, Box<Connection>>,
    pending_authentications: HashMap<ConnectionId, ConnectRequest>,
    sessions: Sessions,
    subscriptions: Subscriptions,
    retained: RetainedMessages,
    timers: Timers,
    outputs: Outputs,
    /// The records for the store, and the acknowledgements waiting for them.
    changes: Changes,
    stats: Stats,
    started_at: Instant,
    next_assigned_id: u64,
    /// Scratch space for matches, kept to avoid an allocation per PUBLISH.
    matches: Vec<Match>,
    /// Set when a message was queued for a congested online client; see `take_congestion`.
    congested: bool,
    /// The messages published here for the other nodes of a cluster; None on a single node
    /// (see cluster.rs).
    forwards: Option<Vec<cluster::Forward>>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("connections", &self.connections.len())
            .field("sessions", &self.sessions.len())
            .field("subscriptions", &self.subscriptions.len())
            .field("retained", &self.retained.len())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker with `config`, asking `auth` about clients. `now` starts the uptime clock and the
    /// `$SYS` timer.
    pub fn new(config: BrokerConfig, auth: Box<dyn AuthHook>, now: Instant) -> Self {
        let mut timers = Timers::default();
        if config.sys_interval.is_some() {
            // The first publication is due at once, so the retained `$SYS` topics exist from
            // the start (as in Mosquitto); later ones follow every interval.
            timers.schedule(now, TimerKind::Sys);
        }
        Broker {
            changes: Changes::new(config.persistence),
            config,
            auth,
            connections: HashMap::default(),
            pending_authentications: HashMap::default(),
            sessions: Sessions::default(),
            subscriptions: Subscriptions::default(),
            retained: RetainedMessages::default(),
            timers,
            outputs: Outputs::default(),
            stats: Stats::default(),
            started_at: now,
            next_assigned_id: 1,
            matches: Vec::new(),
            congested: false,
            forwards: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        let sent = self.outputs.sent();
        stats.packets_sent = sent.packets;
        stats.publish_sent = sent.publish;
        stats.publish_bytes_sent = sent.publish_bytes;
        stats.clients_connected = self.connections.len() as u64;
        stats.sessions = self.sessions.len() as u64;
        stats.subscriptions = self.subscriptions.len() as u64;
        stats.retained_messages = self.retained.len() as u64;
        stats.queued_messages = self
            .sessions
            .iter()
            .map(|s| s.pending_messages() as u64)
            .sum();
        stats
    }

    /// Adds transport byte counts, which only the gateway sees.
    pub fn record_bytes(&mut self, received: u64, sent: u64) {
        self.stats.bytes_received += received;
        self.stats.bytes_sent += sent;
    }

    /// Counts a message the gateway dropped on its side.
    pub fn record_drop(&mut self, reason: DropReason) {
        self.stats.record_drop(reason);
    }

    /// The next output to perform, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop()
    }

    /// The earliest time at which [`Broker::handle_timeout`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The client identifier of an accepted connection.
    pub fn client_id(&self, connection: ConnectionId) -> Option<&str> {
        let session = self.connections.get(&connection)?.session;
        self.sessions.try_get(session).map(|s| s.client_id.as_str())
    }

    /// Whether a message was queued for a congested online client since the last call. The
    /// gateway then briefly pauses reading from the client whose packets it just handled.
    pub fn take_congestion(&mut self) -> bool {
        std::mem::take(&mut self.congested)
    }

    /// A packet received on an accepted connection.
    pub fn handle_packet(&mut self, connection: ConnectionId, packet: Packet, now: Instant) {
        self.stats.packets_received += 1;
        if let Some(pending) = self.pending_authentications.remove(&connection) {
            self.handle_pending_authentication(connection, pending, packet, now);
            return;
        }
        let Some(conn) = self.connections.get_mut(&connection) else {
            // Never accepted (the first packet must be CONNECT [MQTT-3.1.0-1]) or closed by us
            // already, with packets still on their way: close, and say nothing more.
            tracing::debug!(connection = %connection, "{} on a connection without session", packet.name());
            self.outputs.close(connection);
            return;
        };
        conn.last_activity = now;
        // Packets whose refusal has no acknowledgement of its own (PUBLISH and SUBSCRIBE are
        // answered in theirs).
        let properties = match &packet {
            Packet::PubAck(ack)
            | Packet::PubRec(ack)
            | Packet::PubRel(ack)
            | Packet::PubComp(ack) => Some(&ack.properties),
            Packet::Unsubscribe(unsubscribe) => Some(&unsubscribe.properties),
            Packet::Disconnect(disconnect) => Some(&disconnect.properties),
            Packet::Auth(auth) => Some(&auth.properties),
            _ => None,
        };
        if properties.is_some_and(|p| !limits::user_properties_within(&self.config, [p])) {
            self.terminate(connection, Termination::UserPropertiesOverLimit, now);
            return;
        }
        let result = match packet {
            Packet::Publish(publish) => self.handle_publish(connection, publish, now),
            Packet::PubAck(ack) => {
                self.handle_puback(connection, ack, now);
                Ok(())
            }
            Packet::PubRec(ack) => {
                self.handle_pubrec(connection, ack, now);
                Ok(())
            }
            Packet::PubRel(ack) => {
                self.handle_pubrel(connection, ack);
                Ok(())
            }
            Packet::PubComp(ack) => {
                self.handle_pubcomp(connection, ack, now);
                Ok(())
            }
            Packet::Subscribe(subscribe) => self.handle_subscribe(connection, subscribe, now),
            Packet::Unsubscribe(unsubscribe) => {
                self.handle_unsubscribe(connection, unsubscribe);
                Ok(())
            }
            Packet::PingReq => {
                self.emit(connection, &Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(disconnect) => self.handle_disconnect(connection, disconnect, now),
            Packet::Auth(auth) => self.handle_reauthentication(connection, auth),
            Packet::Connect(_) => Err(Termination::SecondConnect),
            other => Err(Termination::ServerOnlyPacket(other.name())),
        };
        if let Err(termination) = result {
            self.terminate(connection, termination, now);
        }
    }

    /// Bytes on a connection could not be decoded. The broker answers as the specification
    /// says (CONNACK or DISCONNECT with the reason, then close) and logs it once.
    pub fn handle_decode_error(
        &mut self,
        connection: ConnectionId,
        error: &DecodeError,
        info: &ConnectionInfo,
        now: Instant,
    ) {
        if self.connections.contains_key(&connection)
            || self.pending_authentications.contains_key(&connection)
        {
            self.terminate(connection, Termination::Malformed(error.clone()), now);
            return;
        }
        // Before CONNECT was accepted: an unsupported protocol level gets CONNACK 0x01 so the
        // client learns why [MQTT-3.1.2-2]; anything else just closes [MQTT-4.8.0-1].
        warn!(connection = %connection, peer = %info.remote_address, "closing connection: {error}");
        self.stats.connections_refused += 1;
        if let DecodeError::UnsupportedProtocol { .. } = error {
            self.emit(
                connection,
                &Packet::ConnAck(ConnAckPacket {
                    session_present: false,
                    reason_code: ReasonCode::UnsupportedProtocolVersion,
                    properties: Properties::default(),
                }),
            );
        }
        self.outputs.close(connection);
    }

    /// The network connection ended without the broker closing it (peer vanished, socket
    /// error, or after a close the broker requested: then this is a no-op).
    pub fn handle_connection_lost(&mut self, connection: ConnectionId, now: Instant) {
        self.pending_authentications.remove(&connection);
        if self.connections.contains_key(&connection) {
            self.detach(connection, true, now);
        }
    }

    /// Runs every deadline that is due at `now`: keep alive timeouts, delayed wills, session
    /// expiry and `$SYS` publication.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, kind)) = self.timers.pop_due(now) {
            match kind {
                TimerKind::Sys => {
                    self.publish_sys(now);
                    if let Some(interval) = self.config.sys_interval {
                        let next = timers::next_period(at, interval, now);
                        self.timers.schedule(next, TimerKind::Sys);
                    }
                }
                TimerKind::KeepAlive(connection) => {
                    let Some(conn) = self.connections.get(&connection) else {
                        continue;
                    };
                    let deadline = conn.keep_alive_deadline();
                    if deadline <= now {
                        let keep_alive = conn.keep_alive;
                        self.terminate(connection, Termination::KeepAliveTimeout(keep_alive), now);
                    } else {
                        self.timers.schedule(deadline, kind);
                    }
                }
                TimerKind::CredentialsExpiry(connection) => {
                    if self.connections.contains_key(&connection) {
                        self.terminate(connection, Termination::CredentialsExpired, now);
                    }
                }
                TimerKind::WillDelay {
                    session,
                    generation,
                } => {
                    if let Some(current) = self.sessions.try_get_mut(session)
                        && current.generation == generation
                        && let Some(will) = current.pending_will.take()
                    {
                        self.record_session(session, None);
                        self.publish_will(will, now);
                    }
                }
                TimerKind::SessionExpiry {
                    session,
                    generation,
                } => {
                    let expired = self
                        .sessions
                        .try_get(session)
                        .is_some_and(|s| s.generation == generation && s.connection.is_none());
                    if expired {
                        if let Some(will) = self.sessions.get_mut(session).pending_will.take() {
                            self.publish_will(will, now);
                        }
                        self.remove_session(session);
                    }
                }
            }
        }
    }

    /// Queues a control packet for `connection`, encoded with its protocol version and within
    /// its Maximum Packet Size.
    fn emit(&mut self, connection: ConnectionId, packet: &Packet) {
        let (protocol, maximum) = self.limits_of(connection);
        self.outputs.send(connection, protocol, maximum, packet);
    }

    /// The protocol version a connection's packets are encoded with, and the client's Maximum
    /// Packet Size: the accepted (or being authenticated) CONNECT's, else 3.1.1 and none, which
    /// is what a client that sent no understandable CONNECT gets.
    fn limits_of(&self, connection: ConnectionId) -> (ProtocolVersion, Option<u32>) {
        if let Some(conn) = self.connections.get(&connection) {
            (conn.protocol, conn.maximum_packet_size)
        } else if let Some(pending) = self.pending_authentications.get(&connection) {
            let connect = &pending.connect;
            (connect.protocol, connect.properties.maximum_packet_size)
        } else {
            (ProtocolVersion::V311, None)
        }
    }
}
