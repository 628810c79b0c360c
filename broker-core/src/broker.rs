//! The broker state machine: connections, sessions, routing, acknowledgements and deadlines.
//!
//! Inputs arrive through the `handle_*` methods, each with the current time; answers queue up as
//! [`Output`]s for the gateway to perform. The broker never waits for a client: a message for a
//! client whose window is full is queued in its session (bounded), and the gateway enforces the
//! socket side of slow consumers.
//!
//! Invariants: a connection is in `connections` from its accepted CONNECT (or the start of an
//! enhanced authentication) until the broker emits `Output::Close` for it or is told it was
//! lost; a connected session's `connection` points back at it; every subscription of a session
//! is in the tree (or its shared group) and vice versa.

mod persist;

pub use persist::{Snapshot, StoredInflight, StoredMessage, StoredSession, StoredSubscription};

use crate::HashMap;
use crate::auth::{AuthDecision, AuthHook, ClientIdentity};
use crate::config::BrokerConfig;
use crate::session::{
    InflightMessage, LazyMap, QueuedMessage, Session, SessionKey, SessionSubscription,
};
use crate::session_index::SessionIndex;
use crate::stats::{DropReason, Stats};
use crate::tree::SubscriptionTree;
use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    AuthPacket, ByteStr, ConnAckPacket, ConnectPacket, DecodeError, DisconnectPacket, Packet,
    Properties, ProtocolVersion, PubAckPacket, PublishPacket, QoS, ReasonCode, RetainHandling,
    SubAckPacket, SubscribePacket, SubscriptionOptions, UnsubAckPacket, UnsubscribePacket, Will,
    encode, encoded_len, topic,
};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Identifies one network connection; chosen by the gateway, unique for the broker's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The transport a connection arrived on, for the API and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// MQTT over plain TCP.
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket.
    WebSocket,
    /// MQTT over WebSocket over TLS.
    WebSocketTls,
}

impl Transport {
    /// Short name used in metrics labels and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::WebSocket => "ws",
            Transport::WebSocketTls => "wss",
        }
    }
}

/// Facts about a connection that the broker reports but does not act on.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// How the client reached us.
    pub transport: Transport,
    /// The peer's address, as text; shared by the connection's task and the broker.
    pub remote_address: Arc<str>,
}

/// What the broker asks the gateway to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write `frame` to the connection.
    Send {
        /// Target connection.
        connection: ConnectionId,
        /// The encoded packet.
        frame: Frame,
    },
    /// Flush what was sent before, then close the connection. The broker has already forgotten
    /// it; telling the broker it was lost afterwards is harmless.
    Close {
        /// The connection to close.
        connection: ConnectionId,
    },
}

/// One packet, encoded for its connection's protocol version.
///
/// The broker encodes, not the transport, so that a message going to many subscribers is
/// encoded once per protocol version and its bytes shared: fan-out then costs a reference count
/// per subscriber instead of a packet copy and an encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The packet's bytes.
    pub bytes: Bytes,
    /// The protocol version it was encoded with.
    pub protocol: ProtocolVersion,
    /// What the gateway needs to know about it when the connection is slow.
    pub kind: FrameKind,
}

/// What kind of packet a [`Frame`] holds, as far as the gateway's outbox policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// An application message.
    Publish {
        /// Its delivery QoS: QoS 0 may be shed for a consumer that does not keep up.
        qos: QoS,
        /// It sets up an outbound topic alias, so it must reach the client even then: every
        /// later message using the alias would be meaningless without it.
        sets_alias: bool,
    },
    /// Any other packet.
    Control,
}

/// What sending a plain QoS 0 copy needs of its receiver's connection, looked up once.
#[derive(Clone, Copy)]
struct PlainReceiver {
    connection: ConnectionId,
    protocol: ProtocolVersion,
    maximum_packet_size: Option<u32>,
}

/// The encodings of one message's plain QoS 0 copies, by protocol version and retain flag,
/// while it is being routed.
#[derive(Default)]
struct SharedFrames([Option<Bytes>; 6]);

impl SharedFrames {
    fn slot(&mut self, protocol: ProtocolVersion, retain: bool) -> &mut Option<Bytes> {
        let version = match protocol {
            ProtocolVersion::V31 => 0,
            ProtocolVersion::V311 => 1,
            ProtocolVersion::V5 => 2,
        };
        &mut self.0[version * 2 + usize::from(retain)]
    }
}

/// One connected client, for the HTTP API.
#[derive(Clone, Debug)]
pub struct ClientSummary {
    /// Client identifier.
    pub client_id: String,
    /// Connection identifier.
    pub connection: ConnectionId,
    /// Transport.
    pub transport: Transport,
    /// Protocol version.
    pub protocol: ProtocolVersion,
    /// Peer address.
    pub remote_address: String,
    /// User name, if any.
    pub username: Option<String>,
    /// When the CONNECT was accepted.
    pub connected_at: Instant,
    /// Keep alive in force, seconds.
    pub keep_alive: u16,
    /// Subscriptions held by its session.
    pub subscriptions: usize,
    /// Messages queued or in flight towards it.
    pub queued: usize,
}

/// One subscription, for the HTTP API.
#[derive(Clone, Debug)]
pub struct SubscriptionSummary {
    /// Client identifier of the session.
    pub client_id: String,
    /// Filter as subscribed (with `$share/...` if shared).
    pub filter: String,
    /// Options.
    pub options: SubscriptionOptions,
    /// Whether the session's client is connected.
    pub online: bool,
}

/// One retained message, for the HTTP API.
#[derive(Clone, Debug)]
pub struct RetainedSummary {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
}

/// A retained message; the publish is kept as received, with the retain flag set.
#[derive(Clone, Debug)]
struct RetainedMessage {
    publish: PublishPacket,
    expires_at: Option<Instant>,
}

/// Per-connection state. Connection state lives for one network connection; everything that
/// must survive a reconnect lives in the session.
#[derive(Debug)]
struct Connection {
    session: SessionKey,
    info: ConnectionInfo,
    protocol: ProtocolVersion,
    username: Option<ByteStr>,
    connected_at: Instant,
    last_activity: Instant,
    /// Keep alive in force, seconds (0: none).
    keep_alive: u16,
    /// Boxed: most clients leave no will, and a `Will` is large.
    will: Option<Box<Will>>,
    /// The client's Receive Maximum: QoS 1/2 messages it accepts in flight.
    client_receive_maximum: u16,
    /// The client's Maximum Packet Size, if it set one.
    client_maximum_packet_size: Option<u32>,
    /// Topic aliases the client accepts from us.
    client_topic_alias_maximum: u16,
    /// Aliases we assigned for outgoing topics.
    outbound_aliases: LazyMap<ByteStr, u16>,
    /// Aliases the client assigned for incoming topics.
    inbound_aliases: LazyMap<u16, ByteStr>,
    /// The authentication method of the CONNECT, for re-authentication; boxed as only
    /// enhanced authentication sets it.
    authentication_method: Option<Box<ByteStr>>,
    /// The Session Expiry Interval the CONNECT asked for (before the broker's cap): only a
    /// CONNECT with 0 forbids setting one at DISCONNECT.
    requested_session_expiry: u32,
}

/// A connection that sent CONNECT with enhanced authentication and has not been accepted yet.
#[derive(Debug)]
struct PendingAuthentication {
    connect: ConnectPacket,
    client_id: ByteStr,
    assigned: bool,
    info: ConnectionInfo,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Sys,
    KeepAlive(ConnectionId),
    WillDelay {
        session: SessionKey,
        generation: u64,
    },
    SessionExpiry {
        session: SessionKey,
        generation: u64,
    },
}

/// One match of a PUBLISH against a subscription, collected before delivery.
#[derive(Clone, Copy, Debug)]
struct Match {
    session: SessionKey,
    /// The shared group that chose this session; each group's delivery is its own copy.
    group: Option<usize>,
    options: SubscriptionOptions,
    identifier: Option<u32>,
}

/// What the tree stores per (filter, key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subscriber {
    Session(SessionKey),
    Group(usize),
}

#[derive(Clone, Copy, Debug)]
struct SubscriberEntry {
    options: SubscriptionOptions,
    identifier: Option<u32>,
}

/// A shared subscription group: `$share/{name}/{filter}`; messages go to one member in turn.
#[derive(Debug)]
struct SharedGroup {
    members: Vec<(SessionKey, SubscriberEntry)>,
    next: usize,
}

/// Something that ends a connection from the broker's side.
struct Termination {
    reason: ReasonCode,
    detail: String,
}

/// The broker state machine. See the module documentation.
pub struct Broker {
    config: BrokerConfig,
    auth: Box<dyn AuthHook>,
    /// Boxed, so that the table holds pointers: a table has up to twice as many slots as
    /// entries, and a `Connection` is far larger than a pointer.
    connections: HashMap<ConnectionId, Box<Connection>>,
    pending_authentications: HashMap<ConnectionId, PendingAuthentication>,
    /// Boxed for the same reason as `connections`: the vector grows by doubling.
    sessions: Vec<Option<Box<Session>>>,
    free_sessions: Vec<SessionKey>,
    session_index: SessionIndex,
    tree: SubscriptionTree<Subscriber, SubscriberEntry>,
    groups: Vec<Option<SharedGroup>>,
    free_groups: Vec<usize>,
    group_index: HashMap<ByteStr, usize>,
    retained: HashMap<ByteStr, RetainedMessage>,
    timers: BinaryHeap<Reverse<(Instant, TimerKind)>>,
    outputs: std::collections::VecDeque<Output>,
    /// Where packets are encoded; frames are split off it.
    scratch: BytesMut,
    stats: Stats,
    started_at: Instant,
    next_generation: u64,
    next_assigned_id: u64,
    /// Scratch space for matches, kept to avoid an allocation per PUBLISH.
    matches: Vec<Match>,
    /// Set when a message was queued for a congested online client; see `take_congestion`.
    congested: bool,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("connections", &self.connections.len())
            .field("sessions", &self.session_index.len())
            .field("subscriptions", &self.tree.len())
            .field("retained", &self.retained.len())
            .finish_non_exhaustive()
    }
}

/// Seconds, rounded up, until `deadline`.
fn seconds_until(now: Instant, deadline: Instant) -> u32 {
    let remaining = deadline.saturating_duration_since(now);
    let seconds = remaining.as_secs() + u64::from(remaining.subsec_nanos() > 0);
    u32::try_from(seconds).unwrap_or(u32::MAX)
}

fn keep_alive_deadline(last_activity: Instant, keep_alive: u16) -> Instant {
    // The server allows one and a half keep alive periods [MQTT-3.1.2-22] (in 3.1.1,
    // [MQTT-3.1.2-24]).
    last_activity + Duration::from_millis(u64::from(keep_alive) * 1500)
}

impl Broker {
    /// A broker with `config`, asking `auth` about clients. `now` starts the uptime clock and the
    /// `$SYS` timer.
    pub fn new(config: BrokerConfig, auth: Box<dyn AuthHook>, now: Instant) -> Self {
        let mut broker = Broker {
            config,
            auth,
            connections: HashMap::default(),
            pending_authentications: HashMap::default(),
            sessions: Vec::new(),
            free_sessions: Vec::new(),
            session_index: SessionIndex::default(),
            tree: SubscriptionTree::new(),
            groups: Vec::new(),
            free_groups: Vec::new(),
            group_index: HashMap::default(),
            retained: HashMap::default(),
            timers: BinaryHeap::new(),
            outputs: std::collections::VecDeque::new(),
            scratch: BytesMut::new(),
            stats: Stats::default(),
            started_at: now,
            next_generation: 1,
            next_assigned_id: 1,
            matches: Vec::new(),
            congested: false,
        };
        if broker.config.sys_interval.is_some() {
            // The first publication is due at once, so the retained `$SYS` topics exist from
            // the start (as in Mosquitto); later ones follow every interval.
            broker.timers.push(Reverse((now, TimerKind::Sys)));
        }
        broker
    }

    /// The configuration in force.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.clients_connected = self.connections.len() as u64;
        stats.sessions = self.session_index.len() as u64;
        stats.subscriptions = self.tree.len() as u64
            + self
                .groups
                .iter()
                .flatten()
                .map(|g| g.members.len() as u64)
                .sum::<u64>()
            - self.groups.iter().flatten().count() as u64;
        stats.retained_messages = self.retained.len() as u64;
        stats.queued_messages = self
            .sessions
            .iter()
            .flatten()
            .map(|s| (s.queue.len() + s.inflight.len()) as u64)
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
        self.outputs.pop_front()
    }

    /// The earliest time at which [`Broker::handle_timeout`] has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// The client identifier of an accepted connection.
    pub fn client_id(&self, connection: ConnectionId) -> Option<&str> {
        let session = self.connections.get(&connection)?.session;
        self.sessions[session]
            .as_ref()
            .map(|s| s.client_id.as_str())
    }

    fn session(&self, key: SessionKey) -> &Session {
        self.sessions[key]
            .as_ref()
            .expect("session key refers to a live session")
    }

    fn session_mut(&mut self, key: SessionKey) -> &mut Session {
        self.sessions[key]
            .as_mut()
            .expect("session key refers to a live session")
    }

    /// Queues `packet` for `connection`, encoded with its protocol version.
    fn emit(&mut self, connection: ConnectionId, packet: Packet) {
        let protocol = self.protocol_of(connection);
        self.emit_as(connection, protocol, packet);
    }

    /// The protocol version a connection's packets are encoded with: the accepted (or being
    /// authenticated) CONNECT's, else 3.1.1, which is what a client that sent no understandable
    /// CONNECT gets.
    fn protocol_of(&self, connection: ConnectionId) -> ProtocolVersion {
        if let Some(conn) = self.connections.get(&connection) {
            conn.protocol
        } else if let Some(pending) = self.pending_authentications.get(&connection) {
            pending.connect.protocol
        } else {
            ProtocolVersion::V311
        }
    }

    /// Queues `packet` for `connection`, encoded with `protocol`: for connections the broker
    /// has not registered (yet, or any more).
    fn emit_as(&mut self, connection: ConnectionId, protocol: ProtocolVersion, packet: Packet) {
        let kind = match &packet {
            Packet::Publish(publish) => FrameKind::Publish {
                qos: publish.qos,
                sets_alias: publish.properties.topic_alias.is_some() && !publish.topic.is_empty(),
            },
            _ => FrameKind::Control,
        };
        let Some(bytes) = self.encode(&packet, protocol) else {
            return;
        };
        self.push_frame(
            connection,
            Frame {
                bytes,
                protocol,
                kind,
            },
        );
    }

    fn push_frame(&mut self, connection: ConnectionId, frame: Frame) {
        self.stats.packets_sent += 1;
        self.outputs.push_back(Output::Send { connection, frame });
    }

    /// Encodes into the shared scratch block, so that frames are slices of one allocation
    /// rather than one allocation each.
    fn encode(&mut self, packet: &Packet, protocol: ProtocolVersion) -> Option<Bytes> {
        if self.scratch.capacity() < 4096 {
            self.scratch.reserve(64 * 1024);
        }
        match encode(packet, protocol, &mut self.scratch) {
            Ok(()) => {
                let bytes = self.scratch.split().freeze();
                // One huge packet must not keep a huge block alive for every later frame.
                if self.scratch.capacity() > 1 << 20 {
                    self.scratch = BytesMut::new();
                }
                Some(bytes)
            }
            Err(error) => {
                // Only a packet beyond the protocol's size limits fails to encode: the broker
                // checked what it could, so this is worth a warning, and the packet is skipped.
                self.scratch.clear();
                warn!("cannot encode {} for {protocol:?}: {error}", packet.name());
                None
            }
        }
    }

    fn identity_of(&self, connection: &Connection) -> (ByteStr, Option<ByteStr>) {
        (
            self.session(connection.session).client_id.clone(),
            connection.username.clone(),
        )
    }

    // ----- CONNECT ----------------------------------------------------------------------------

    /// A new connection's CONNECT packet (decoded by the transport, which also enforces that it
    /// comes first [MQTT-3.1.0-1]).
    pub fn handle_connect(
        &mut self,
        connection: ConnectionId,
        connect: ConnectPacket,
        info: ConnectionInfo,
        now: Instant,
    ) {
        self.stats.packets_received += 1;
        let protocol = connect.protocol;
        if self.connections.contains_key(&connection)
            || self.pending_authentications.contains_key(&connection)
        {
            self.terminate(
                connection,
                Termination {
                    reason: ReasonCode::ProtocolError,
                    detail: "second CONNECT on one connection [MQTT-3.1.0-2]".into(),
                },
                now,
            );
            return;
        }

        let (client_id, assigned) = if connect.client_id.is_empty() {
            // 3.1 requires an identifier; 3.1.1 allows an empty one only with clean session
            // (3.1.1: [MQTT-3.1.3-7] [MQTT-3.1.3-8]); 5.0 always assigns one [MQTT-3.1.3-6].
            let allowed = match protocol {
                ProtocolVersion::V31 => false,
                ProtocolVersion::V311 => connect.clean_start,
                ProtocolVersion::V5 => true,
            };
            if !allowed {
                self.refuse_connect(
                    connection,
                    protocol,
                    ReasonCode::ClientIdentifierNotValid,
                    &info,
                    "empty client identifier without clean session [MQTT-3.1.3-8]",
                );
                return;
            }
            (self.assign_client_id(), true)
        } else {
            // Detached: the id lives as long as the session, the read buffer should not.
            (connect.client_id.detached(), false)
        };
        if client_id.len() > self.config.max_client_id_len {
            self.refuse_connect(
                connection,
                protocol,
                ReasonCode::ClientIdentifierNotValid,
                &info,
                "client identifier longer than the configured maximum",
            );
            return;
        }
        if let Some(will) = &connect.will
            && will.retain
            && !self.config.retain_available
        {
            self.refuse_connect(
                connection,
                protocol,
                ReasonCode::RetainNotSupported,
                &info,
                "will retain requested but retained messages are disabled [MQTT-3.2.2-13]",
            );
            return;
        }

        match self.auth.authenticate(&connect, &client_id) {
            AuthDecision::Accept(properties) => {
                // Accepted in one step, the CONNACK still names the method [MQTT-4.12.0-5].
                let properties = with_method(properties, &connect);
                self.accept_connect(
                    connection, connect, client_id, assigned, info, properties, now,
                )
            }
            // An exchange needs a 5.0 client that named a method: the server must not send
            // AUTH to any other [MQTT-4.12.0-6].
            AuthDecision::Continue(properties)
                if protocol.is_v5() && connect.properties.authentication_method.is_some() =>
            {
                self.emit_as(
                    connection,
                    protocol,
                    Packet::Auth(AuthPacket {
                        reason_code: ReasonCode::ContinueAuthentication,
                        properties: with_method(properties, &connect),
                    }),
                );
                self.pending_authentications.insert(
                    connection,
                    PendingAuthentication {
                        connect,
                        client_id,
                        assigned,
                        info,
                    },
                );
            }
            AuthDecision::Continue(_) => {
                self.stats.auth_failures += 1;
                self.refuse_connect(
                    connection,
                    protocol,
                    ReasonCode::BadAuthenticationMethod,
                    &info,
                    "authentication exchange requested, but the client named no method",
                );
            }
            AuthDecision::Refuse(reason) => {
                self.stats.auth_failures += 1;
                self.refuse_connect(
                    connection,
                    protocol,
                    reason,
                    &info,
                    "authentication refused",
                );
            }
        }
    }

    fn assign_client_id(&mut self) -> ByteStr {
        loop {
            let candidate = ByteStr::from(format!("auto-{:012x}", self.next_assigned_id));
            self.next_assigned_id += 1;
            if !self.session_index.contains(&self.sessions, &candidate) {
                return candidate;
            }
        }
    }

    fn refuse_connect(
        &mut self,
        connection: ConnectionId,
        protocol: ProtocolVersion,
        reason: ReasonCode,
        info: &ConnectionInfo,
        detail: &str,
    ) {
        warn!(
            connection = %connection,
            peer = %info.remote_address,
            "refusing CONNECT: {reason}: {detail}"
        );
        self.stats.connections_refused += 1;
        let mut properties = Properties::default();
        if protocol.is_v5() {
            properties.reason_string = Some(ByteStr::from(detail));
        }
        self.emit_as(
            connection,
            protocol,
            Packet::ConnAck(ConnAckPacket {
                session_present: false,
                reason_code: reason,
                properties,
            }),
        );
        self.outputs.push_back(Output::Close { connection });
    }

    #[allow(clippy::too_many_arguments)]
    fn accept_connect(
        &mut self,
        connection: ConnectionId,
        connect: ConnectPacket,
        client_id: ByteStr,
        assigned: bool,
        info: ConnectionInfo,
        auth_properties: Properties,
        now: Instant,
    ) {
        let protocol = connect.protocol;

        // A will is a publication like any other: a client may not leave one on a topic it could
        // not publish to itself, or dropping the connection would get past the ACL. Refuse at
        // CONNECT, where the client learns why [MQTT-3.1.4-2].
        if let Some(will) = &connect.will {
            let identity = ClientIdentity {
                client_id: &client_id,
                username: connect.username.as_deref(),
            };
            if !self.auth.authorize_publish(&identity, &will.topic) {
                self.refuse_connect(
                    connection,
                    protocol,
                    ReasonCode::NotAuthorized,
                    &info,
                    "publishing the will topic is not authorized",
                );
                return;
            }
        }

        // Take over an existing connection with the same identifier [MQTT-3.1.4-3].
        if let Some(existing_key) = self.session_index.get(&self.sessions, &client_id)
            && let Some(existing) = self.session(existing_key).connection
        {
            let old_peer = self
                .connections
                .get(&existing)
                .map(|c| c.info.remote_address.clone())
                .unwrap_or_default();
            info!(
                client_id = %client_id,
                "client {client_id:?} connected again from {} ({}); closing its older connection from {old_peer} (session taken over)",
                info.remote_address, connection
            );
            self.terminate(
                existing,
                Termination {
                    reason: ReasonCode::SessionTakenOver,
                    detail: "another connection used the same client identifier".into(),
                },
                now,
            );
        }

        let requested_expiry = match protocol {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
            // 3.1.1: a clean session ends with the connection, otherwise it lasts forever.
            _ if connect.clean_start => 0,
            _ => u32::MAX,
        };
        let expiry = requested_expiry.min(self.config.max_session_expiry);

        let existing = self.session_index.get(&self.sessions, &client_id);
        let (session_key, session_present) = match existing {
            Some(key) if !connect.clean_start => (key, true),
            Some(key) => {
                self.remove_session(key);
                (self.create_session(client_id.clone(), protocol), false)
            }
            None => (self.create_session(client_id.clone(), protocol), false),
        };
        let generation = self.next_generation;
        self.next_generation += 1;
        {
            let session = self.session_mut(session_key);
            session.connection = Some(connection);
            session.generation = generation;
            session.expiry_interval = expiry;
            session.protocol = protocol;
            // A reconnect before the will delay elapsed cancels the will [MQTT-3.1.3-9].
            session.pending_will = None;
        }

        // Only a 5.0 client can be told to use another keep alive (Server Keep Alive in the
        // CONNACK); an older one goes on pinging at its own pace, so its own value is the one to
        // enforce [MQTT-3.2.2-22].
        let keep_alive = match self.config.server_keep_alive {
            Some(server_keep_alive) if protocol.is_v5() => server_keep_alive,
            _ => connect.keep_alive,
        };
        let properties = &connect.properties;
        let conn = Connection {
            session: session_key,
            info,
            protocol,
            username: connect.username.as_ref().map(ByteStr::detached),
            connected_at: now,
            last_activity: now,
            keep_alive,
            will: connect.will.as_ref().map(detached_will),
            client_receive_maximum: properties.receive_maximum.unwrap_or(u16::MAX),
            client_maximum_packet_size: properties.maximum_packet_size,
            client_topic_alias_maximum: properties.topic_alias_maximum.unwrap_or(0),
            outbound_aliases: LazyMap::new(),
            inbound_aliases: LazyMap::new(),
            authentication_method: properties.authentication_method.clone().map(Box::new),
            requested_session_expiry: requested_expiry,
        };
        self.connections.insert(connection, Box::new(conn));
        self.stats.clients_maximum = self
            .stats
            .clients_maximum
            .max(self.connections.len() as u64);
        if keep_alive > 0 {
            self.timers.push(Reverse((
                keep_alive_deadline(now, keep_alive),
                TimerKind::KeepAlive(connection),
            )));
        }

        let mut ack_properties = auth_properties;
        if protocol.is_v5() {
            if assigned {
                ack_properties.assigned_client_identifier = Some(client_id.clone());
            }
            if expiry != requested_expiry {
                ack_properties.session_expiry_interval = Some(expiry);
            }
            if self.config.receive_maximum != u16::MAX {
                ack_properties.receive_maximum = Some(self.config.receive_maximum);
            }
            ack_properties.maximum_packet_size = Some(self.config.max_packet_size);
            if self.config.topic_alias_maximum > 0 {
                ack_properties.topic_alias_maximum = Some(self.config.topic_alias_maximum);
            }
            if !self.config.retain_available {
                ack_properties.retain_available = Some(0);
            }
            if let Some(server_keep_alive) = self.config.server_keep_alive {
                ack_properties.server_keep_alive = Some(server_keep_alive);
            }
            if properties.request_response_information == Some(1) {
                ack_properties.response_information =
                    Some(ByteStr::from(format!("response/{client_id}")));
            }
        }
        self.emit(
            connection,
            Packet::ConnAck(ConnAckPacket {
                session_present,
                reason_code: ReasonCode::Success,
                properties: ack_properties,
            }),
        );

        // Resume the session: resend unacknowledged messages with DUP, in their original
        // order, then drain the queue into the window [MQTT-4.4.0-1].
        let session = self.session_mut(session_key);
        let resend: Vec<Packet> = session
            .inflight
            .iter()
            .map(|m| {
                if m.released {
                    Packet::PubRel(PubAckPacket::new(m.packet_id))
                } else {
                    let mut publish = m.message.publish.clone();
                    publish.dup = true;
                    publish.packet_id = Some(m.packet_id);
                    // Sent once already, so it no longer expires [MQTT-4.3.3-7]; the client
                    // still learns how much of the interval is left [MQTT-3.3.2-6].
                    if let Some(at) = m.message.expires_at {
                        publish.properties.message_expiry_interval =
                            Some(seconds_until(now, at).max(1));
                    }
                    Packet::Publish(publish)
                }
            })
            .collect();
        for packet in resend {
            match packet {
                Packet::Publish(publish) => self.transmit_publish(connection, publish, None, now),
                other => self.emit(connection, other),
            }
        }
        self.drain_queue(session_key, now);
    }

    fn create_session(&mut self, client_id: ByteStr, protocol: ProtocolVersion) -> SessionKey {
        let session = Box::new(Session::new(client_id.clone(), protocol, 0));
        let key = match self.free_sessions.pop() {
            Some(key) => {
                self.sessions[key] = Some(session);
                key
            }
            None => {
                self.sessions.push(Some(session));
                self.sessions.len() - 1
            }
        };
        self.session_index.insert(&self.sessions, key);
        key
    }

    /// Deletes a session and everything it subscribed to.
    fn remove_session(&mut self, key: SessionKey) {
        let Some(session) = self.sessions[key].take() else {
            return;
        };
        for filter in session.subscriptions.keys() {
            self.remove_subscription_entry(key, filter);
        }
        self.session_index.remove(&session.client_id, key);
        self.free_sessions.push(key);
    }

    // ----- Packets after CONNECT ----------------------------------------------------------------

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
            self.outputs.push_back(Output::Close { connection });
            return;
        };
        conn.last_activity = now;
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
                self.emit(connection, Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(disconnect) => self.handle_disconnect(connection, disconnect, now),
            Packet::Auth(auth) => self.handle_reauthentication(connection, auth, now),
            Packet::Connect(_) => Err(Termination {
                reason: ReasonCode::ProtocolError,
                detail: "second CONNECT on one connection [MQTT-3.1.0-2]".into(),
            }),
            other => Err(Termination {
                reason: ReasonCode::ProtocolError,
                detail: format!("{} may only be sent by a server", other.name()),
            }),
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
            self.terminate(
                connection,
                Termination {
                    reason: error.reason_code(),
                    detail: error.to_string(),
                },
                now,
            );
            return;
        }
        // Before CONNECT was accepted: an unsupported protocol level gets CONNACK 0x01 so the
        // client learns why [MQTT-3.1.2-2]; anything else just closes [MQTT-4.8.0-1].
        warn!(connection = %connection, peer = %info.remote_address, "closing connection: {error}");
        self.stats.connections_refused += 1;
        if let DecodeError::UnsupportedProtocol { .. } = error {
            self.emit(
                connection,
                Packet::ConnAck(ConnAckPacket {
                    session_present: false,
                    reason_code: ReasonCode::UnsupportedProtocolVersion,
                    properties: Properties::default(),
                }),
            );
        }
        self.outputs.push_back(Output::Close { connection });
    }

    /// The network connection ended without the broker closing it (peer vanished, socket
    /// error, or after a close the broker requested: then this is a no-op).
    pub fn handle_connection_lost(&mut self, connection: ConnectionId, now: Instant) {
        self.pending_authentications.remove(&connection);
        if self.connections.contains_key(&connection) {
            self.detach(connection, true, now);
        }
    }

    /// Closes `connection` from the broker's side: DISCONNECT with the reason for 5.0 clients,
    /// one log line, the will published, the connection forgotten.
    fn terminate(&mut self, connection: ConnectionId, termination: Termination, now: Instant) {
        // A connection still in enhanced authentication has had no CONNACK, and no DISCONNECT
        // may come before one [MQTT-3.14.0-1]: it is refused with a CONNACK [MQTT-4.12.0-4].
        if let Some(pending) = self.pending_authentications.remove(&connection) {
            self.refuse_connect(
                connection,
                pending.connect.protocol,
                termination.reason,
                &pending.info,
                &termination.detail,
            );
            return;
        }
        let client_id = self.client_id(connection).unwrap_or("").to_string();
        let protocol = self.connections.get(&connection).map(|c| c.protocol);
        if termination.reason != ReasonCode::SessionTakenOver {
            warn!(
                connection = %connection,
                client_id = %client_id,
                "disconnecting client {client_id:?}: {}: {}",
                termination.reason, termination.detail
            );
        }
        if protocol == Some(ProtocolVersion::V5) {
            let properties = Properties {
                reason_string: Some(ByteStr::from(termination.detail)),
                ..Properties::default()
            };
            self.emit(
                connection,
                Packet::Disconnect(DisconnectPacket {
                    reason_code: termination.reason,
                    properties,
                }),
            );
        }
        self.outputs.push_back(Output::Close { connection });
        if self.connections.contains_key(&connection) {
            self.detach(connection, true, now);
        }
    }

    /// Separates a connection from its session: the will goes out (or waits for its delay) if
    /// `publish_will`, and the session ends or starts its expiry countdown.
    fn detach(&mut self, connection: ConnectionId, publish_will: bool, now: Instant) {
        let Some(conn) = self.connections.remove(&connection) else {
            return;
        };
        let key = conn.session;
        let generation = self.next_generation;
        self.next_generation += 1;
        let session = self.session_mut(key);
        session.connection = None;
        session.generation = generation;
        let expiry = session.expiry_interval;

        if publish_will && let Some(will) = conn.will {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            if delay == 0 || expiry == 0 {
                self.publish_will(will, now);
            } else {
                // Published when the delay passes or the session ends, whichever is first
                // [MQTT-3.1.3-9].
                let wait = delay.min(expiry);
                self.session_mut(key).pending_will = Some(will);
                self.timers.push(Reverse((
                    now + Duration::from_secs(u64::from(wait)),
                    TimerKind::WillDelay {
                        session: key,
                        generation,
                    },
                )));
            }
        }

        match expiry {
            0 => self.remove_session(key),
            u32::MAX => {}
            seconds => self.timers.push(Reverse((
                now + Duration::from_secs(u64::from(seconds)),
                TimerKind::SessionExpiry {
                    session: key,
                    generation,
                },
            ))),
        }
    }

    fn publish_will(&mut self, will: Box<Will>, now: Instant) {
        let will = *will;
        let publish = PublishPacket {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: None,
            properties: forwardable_properties(will.properties),
            payload: will.payload,
        };
        self.publish_message(None, publish, now);
    }

    // ----- PUBLISH from a client ----------------------------------------------------------------

    fn handle_publish(
        &mut self,
        connection: ConnectionId,
        mut publish: PublishPacket,
        now: Instant,
    ) -> Result<(), Termination> {
        let conn = self
            .connections
            .get_mut(&connection)
            .expect("caller checked");
        let protocol = conn.protocol;

        // Resolve the topic alias before anything looks at the topic [MQTT-3.3.2-12].
        if let Some(alias) = publish.properties.topic_alias.take() {
            if alias == 0 || alias > self.config.topic_alias_maximum {
                return Err(Termination {
                    reason: ReasonCode::TopicAliasInvalid,
                    detail: format!(
                        "topic alias {alias} is outside 1..={} [MQTT-3.3.2-9]",
                        self.config.topic_alias_maximum
                    ),
                });
            }
            if publish.topic.is_empty() {
                match conn.inbound_aliases.get(&alias) {
                    Some(topic) => publish.topic = topic.clone(),
                    None => {
                        return Err(Termination {
                            reason: ReasonCode::ProtocolError,
                            detail: format!("topic alias {alias} was never set (spec 3.3.2.3.4)"),
                        });
                    }
                }
            } else {
                conn.inbound_aliases.insert(alias, publish.topic.detached());
            }
        }
        if let Err(error) = topic::validate_topic_name(&publish.topic) {
            return Err(Termination {
                reason: ReasonCode::TopicNameInvalid,
                detail: error.to_string(),
            });
        }
        if publish.retain && !self.config.retain_available {
            return Err(Termination {
                reason: ReasonCode::RetainNotSupported,
                detail: "retained messages are disabled [MQTT-3.2.2-14]".into(),
            });
        }

        let session_key = conn.session;
        let qos = publish.qos;
        let packet_id = publish.packet_id;
        self.stats.publish_received[qos as usize] += 1;
        self.stats.publish_bytes_received[qos as usize] += publish.payload.len() as u64;

        if qos == QoS::ExactlyOnce {
            let id = packet_id.expect("codec guarantees an id for QoS 2");
            let session = self.session_mut(session_key);
            if session.inbound_qos2.contains(&id) {
                // A resent PUBLISH whose first copy was delivered: acknowledge again, deliver
                // nothing [MQTT-4.3.3-10].
                self.emit(connection, Packet::PubRec(PubAckPacket::new(id)));
                return Ok(());
            }
            if session.inbound_qos2.len() >= usize::from(self.config.receive_maximum) {
                return Err(Termination {
                    reason: ReasonCode::ReceiveMaximumExceeded,
                    detail: format!(
                        "more than {} QoS 2 messages awaiting PUBREL [MQTT-3.3.4-7]",
                        self.config.receive_maximum
                    ),
                });
            }
        }

        // Borrowed field by field rather than through `identity_of`: no reference count is
        // touched on this path, which every message takes.
        let conn = &self.connections[&connection];
        let client_id = self.sessions[conn.session]
            .as_ref()
            .map_or("", |session| session.client_id.as_str());
        let identity = ClientIdentity {
            client_id,
            username: conn.username.as_deref(),
        };
        let allowed = self.auth.authorize_publish(&identity, &publish.topic);
        let mut reason = ReasonCode::Success;
        if allowed {
            publish.dup = false;
            publish.packet_id = None;
            let delivered = self.publish_message(Some(session_key), publish, now);
            if delivered == 0 && protocol.is_v5() {
                reason = ReasonCode::NoMatchingSubscribers;
            }
        } else {
            warn!(client_id = %client_id, "publish to {:?} not authorized", publish.topic.as_str());
            reason = ReasonCode::NotAuthorized;
        }

        let ack = |id| PubAckPacket {
            packet_id: id,
            reason_code: if protocol.is_v5() {
                reason
            } else {
                ReasonCode::Success
            },
            properties: Properties::default(),
        };
        match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.emit(connection, Packet::PubAck(ack(id))),
            (QoS::ExactlyOnce, Some(id)) => {
                if !reason.is_error() {
                    self.session_mut(session_key).inbound_qos2.insert(id);
                }
                self.emit(connection, Packet::PubRec(ack(id)));
            }
            _ => {}
        }
        Ok(())
    }

    /// Stores (if retained) and routes a message to every matching subscription. Returns the
    /// number of subscriptions it reached.
    fn publish_message(
        &mut self,
        publisher: Option<SessionKey>,
        publish: PublishPacket,
        now: Instant,
    ) -> usize {
        let expires_at = publish
            .properties
            .message_expiry_interval
            .map(|seconds| now + Duration::from_secs(u64::from(seconds)));

        if publish.retain {
            if publish.payload.is_empty() {
                // An empty retained message clears the topic and is not stored [MQTT-3.3.1-6].
                self.retained.remove(&publish.topic);
            } else {
                // Detached from the read buffer: a retained message may stay for months.
                let mut stored = publish.clone();
                stored.topic = publish.topic.detached();
                stored.payload = Bytes::copy_from_slice(&publish.payload);
                self.retained.insert(
                    stored.topic.clone(),
                    RetainedMessage {
                        publish: stored,
                        expires_at,
                    },
                );
            }
        }

        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        let groups = &mut self.groups;
        let sessions = &self.sessions;
        self.tree
            .for_each_match(&publish.topic, |subscriber, entry| match subscriber {
                Subscriber::Session(session) => {
                    // No Local: not back to the session that published it [MQTT-3.8.3-3].
                    if !(entry.options.no_local && publisher == Some(*session)) {
                        matches.push(Match {
                            session: *session,
                            group: None,
                            options: entry.options,
                            identifier: entry.identifier,
                        });
                    }
                }
                Subscriber::Group(group_key) => {
                    if let Some(group) = groups[*group_key].as_mut()
                        && let Some((session, entry)) = pick_group_member(group, sessions)
                    {
                        matches.push(Match {
                            session,
                            group: Some(*group_key),
                            options: entry.options,
                            identifier: entry.identifier,
                        });
                    }
                }
            });

        // One copy per session, at the highest QoS of its matching subscriptions, carrying every
        // matching subscription identifier [MQTT-3.3.4-2] [MQTT-3.3.4-3].
        matches.sort_unstable_by_key(|m| (m.session, m.group));
        let reached = matches.len();
        let mut shared = SharedFrames::default();
        let mut index = 0;
        while index < matches.len() {
            let first = matches[index];
            let mut end = index + 1;
            let mut max_qos = first.options.qos;
            let mut retain_as_published = first.options.retain_as_published;
            while end < matches.len()
                && (matches[end].session, matches[end].group) == (first.session, first.group)
            {
                max_qos = max_qos.max(matches[end].options.qos);
                retain_as_published |= matches[end].options.retain_as_published;
                end += 1;
            }
            let session = first.session;
            let qos = publish.qos.min(max_qos);
            // Forwarded messages keep the retain flag only with Retain As Published
            // [MQTT-3.3.1-12] [MQTT-3.3.1-13].
            let retain = publish.retain && retain_as_published;
            if qos == QoS::AtMostOnce
                && expires_at.is_none()
                && matches[index..end].iter().all(|m| m.identifier.is_none())
                && let Some(receiver) = self.plain_receiver(session)
            {
                self.send_shared(receiver, &publish, retain, &mut shared);
                index = end;
                continue;
            }
            let mut copy = publish.clone();
            copy.qos = qos;
            copy.retain = retain;
            copy.properties.subscription_identifiers.clear();
            if self.session(session).protocol.is_v5() {
                copy.properties
                    .subscription_identifiers
                    .extend(matches[index..end].iter().filter_map(|m| m.identifier));
            }
            self.deliver(session, copy, expires_at, now);
            index = end;
        }
        self.matches = matches;
        reached
    }

    /// The connection of `session` if a QoS 0 copy for it is the plain encoding of the message,
    /// the same bytes for every such receiver of one protocol version: it is online and uses no
    /// outbound topic aliases.
    fn plain_receiver(&self, session: SessionKey) -> Option<PlainReceiver> {
        let connection = self.session(session).connection?;
        let conn = self.connections.get(&connection)?;
        (conn.client_topic_alias_maximum == 0).then_some(PlainReceiver {
            connection,
            protocol: conn.protocol,
            maximum_packet_size: conn.client_maximum_packet_size,
        })
    }

    /// Sends a plain QoS 0 copy of `publish` (see [`Broker::plain_receiver`]), encoding it only
    /// for the first receiver of each protocol version and retain flag.
    fn send_shared(
        &mut self,
        receiver: PlainReceiver,
        publish: &PublishPacket,
        retain: bool,
        shared: &mut SharedFrames,
    ) {
        let PlainReceiver {
            connection,
            protocol,
            maximum_packet_size: maximum,
        } = receiver;
        let slot = shared.slot(protocol, retain);
        let bytes = match slot {
            Some(bytes) => bytes.clone(),
            None => {
                let mut copy = publish.clone();
                copy.qos = QoS::AtMostOnce;
                copy.retain = retain;
                copy.properties.subscription_identifiers.clear();
                let Some(bytes) = self.encode(&Packet::Publish(copy), protocol) else {
                    return;
                };
                *shared.slot(protocol, retain) = Some(bytes.clone());
                bytes
            }
        };
        // The client's maximum packet size: a QoS 0 message beyond it is dropped for this
        // client only [MQTT-3.1.2-25].
        if maximum.is_some_and(|maximum| bytes.len() > maximum as usize) {
            self.stats.record_drop(DropReason::PacketTooLarge);
            return;
        }
        self.stats.publish_sent[0] += 1;
        self.stats.publish_bytes_sent[0] += publish.payload.len() as u64;
        self.push_frame(
            connection,
            Frame {
                bytes,
                protocol,
                kind: FrameKind::Publish {
                    qos: QoS::AtMostOnce,
                    sets_alias: false,
                },
            },
        );
    }

    /// Hands one message to a session: sent now if its window allows, else queued.
    fn deliver(
        &mut self,
        key: SessionKey,
        publish: PublishPacket,
        expires_at: Option<Instant>,
        now: Instant,
    ) {
        let max_queued_messages = self.config.max_queued_messages;
        let max_queued_bytes = self.config.max_queued_bytes;
        let session = self.session(key);
        let Some(connection) = session.connection else {
            if publish.qos == QoS::AtMostOnce {
                self.stats.record_drop(DropReason::Offline);
                return;
            }
            self.enqueue(
                key,
                QueuedMessage {
                    publish,
                    expires_at,
                },
                max_queued_messages,
                max_queued_bytes,
            );
            return;
        };
        if publish.qos == QoS::AtMostOnce {
            self.transmit_publish(connection, publish, expires_at, now);
            return;
        }
        let window = self.window(connection);
        let session = self.session(key);
        if session.queue.is_empty() && session.inflight.len() < window {
            self.start_inflight(
                key,
                connection,
                QueuedMessage {
                    publish,
                    expires_at,
                },
                now,
            );
        } else {
            self.enqueue(
                key,
                QueuedMessage {
                    publish,
                    expires_at,
                },
                max_queued_messages,
                max_queued_bytes,
            );
        }
    }

    fn enqueue(
        &mut self,
        key: SessionKey,
        message: QueuedMessage,
        max_messages: usize,
        max_bytes: usize,
    ) {
        let session = self.session_mut(key);
        if session.queue.len() >= max_messages
            || session.queued_bytes + message.publish.payload.len() > max_bytes
        {
            if !session.overflow_logged {
                session.overflow_logged = true;
                warn!(
                    client_id = %session.client_id,
                    "queue of client {:?} is full ({} messages, {} bytes); dropping new messages until it drains",
                    session.client_id.as_str(), session.queue.len(), session.queued_bytes
                );
            }
            self.stats.record_drop(DropReason::QueueFull);
            return;
        }
        session.push_queue(message);
        // An online client whose queue is half full is not keeping up: ask the gateway to slow
        // the publisher down before messages have to be dropped. Offline queues do not count,
        // or one absent client would slow every publisher.
        if session.connection.is_some()
            && (session.queue.len() * 2 >= max_messages || session.queued_bytes * 2 >= max_bytes)
        {
            self.congested = true;
        }
    }

    /// Whether a message was queued for a congested online client since the last call. The
    /// gateway then briefly pauses reading from the client whose packets it just handled.
    pub fn take_congestion(&mut self) -> bool {
        std::mem::take(&mut self.congested)
    }

    /// The number of QoS 1/2 messages that may be in flight towards `connection`.
    fn window(&self, connection: ConnectionId) -> usize {
        let receive_maximum = self
            .connections
            .get(&connection)
            .map_or(1, |c| c.client_receive_maximum);
        usize::from(receive_maximum.min(self.config.max_inflight).max(1))
    }

    /// Assigns a packet identifier, records the message in flight and sends it.
    fn start_inflight(
        &mut self,
        key: SessionKey,
        connection: ConnectionId,
        message: QueuedMessage,
        now: Instant,
    ) {
        if message.expires_at.is_some_and(|at| at <= now) {
            self.stats.record_drop(DropReason::Expired);
            return;
        }
        if self.exceeds_client_maximum(connection, &message.publish) {
            self.stats.record_drop(DropReason::PacketTooLarge);
            return;
        }
        let session = self.session_mut(key);
        let packet_id = session.allocate_packet_id();
        session.inflight.push_back(InflightMessage {
            packet_id,
            message: message.clone(),
            released: false,
        });
        let mut publish = message.publish;
        publish.packet_id = Some(packet_id);
        self.transmit_publish(connection, publish, message.expires_at, now);
    }

    /// Whether `publish` is larger than the client's Maximum Packet Size [MQTT-3.1.2-24].
    fn exceeds_client_maximum(&self, connection: ConnectionId, publish: &PublishPacket) -> bool {
        let Some(conn) = self.connections.get(&connection) else {
            return false;
        };
        let Some(maximum) = conn.client_maximum_packet_size else {
            return false;
        };
        let packet = Packet::Publish(PublishPacket {
            packet_id: publish
                .packet_id
                .or(Some(1))
                .filter(|_| publish.qos != QoS::AtMostOnce),
            ..publish.clone()
        });
        encoded_len(&packet, conn.protocol).map_or(true, |len| len > maximum as usize)
    }

    /// Writes a PUBLISH to a connection: remaining expiry, topic alias, size limit applied.
    fn transmit_publish(
        &mut self,
        connection: ConnectionId,
        mut publish: PublishPacket,
        expires_at: Option<Instant>,
        now: Instant,
    ) {
        if let Some(at) = expires_at {
            if at <= now {
                self.stats.record_drop(DropReason::Expired);
                return;
            }
            // The receiver sees how long is left, not the original interval [MQTT-3.3.2-6].
            publish.properties.message_expiry_interval = Some(seconds_until(now, at));
        }
        if publish.qos == QoS::AtMostOnce && self.exceeds_client_maximum(connection, &publish) {
            self.stats.record_drop(DropReason::PacketTooLarge);
            return;
        }
        let Some(conn) = self.connections.get_mut(&connection) else {
            return;
        };
        if conn.client_topic_alias_maximum > 0 {
            let known = conn.outbound_aliases.get(&publish.topic).copied();
            let next = conn.outbound_aliases.len() + 1;
            let alias = known.or_else(|| {
                (next <= usize::from(conn.client_topic_alias_maximum)).then_some(next as u16)
            });
            if let Some(alias) = alias {
                // A known alias stands for the topic; a new one travels with it.
                let topic = match known {
                    Some(_) => std::mem::take(&mut publish.topic),
                    None => publish.topic.clone(),
                };
                publish.properties.topic_alias = Some(alias);
                // The size limit was checked without an alias, which can add three bytes: a
                // message near the limit goes without one [MQTT-3.1.2-24].
                let packet = Packet::Publish(publish);
                let fits = conn.client_maximum_packet_size.is_none_or(|maximum| {
                    encoded_len(&packet, conn.protocol).is_ok_and(|len| len <= maximum as usize)
                });
                let Packet::Publish(measured) = packet else {
                    unreachable!("wrapped just above");
                };
                publish = measured;
                if !fits {
                    publish.topic = topic;
                    publish.properties.topic_alias = None;
                } else if known.is_none() {
                    conn.outbound_aliases.insert(topic.detached(), alias);
                }
            }
        }
        self.stats.publish_sent[publish.qos as usize] += 1;
        self.stats.publish_bytes_sent[publish.qos as usize] += publish.payload.len() as u64;
        self.emit(connection, Packet::Publish(publish));
    }

    /// Moves queued messages into the window while it has room.
    fn drain_queue(&mut self, key: SessionKey, now: Instant) {
        let Some(connection) = self.session(key).connection else {
            return;
        };
        let window = self.window(connection);
        while self.session(key).inflight.len() < window {
            let Some(message) = self.session_mut(key).pop_queue() else {
                break;
            };
            self.start_inflight(key, connection, message, now);
        }
    }

    // ----- Acknowledgements -----------------------------------------------------------------

    fn handle_puback(&mut self, connection: ConnectionId, ack: PubAckPacket, now: Instant) {
        let key = self.connections[&connection].session;
        let session = self.session_mut(key);
        if let Some(position) = session.inflight_position(ack.packet_id)
            && session.inflight[position].message.publish.qos == QoS::AtLeastOnce
        {
            session.inflight.remove(position);
            self.drain_queue(key, now);
        }
    }

    fn handle_pubrec(&mut self, connection: ConnectionId, ack: PubAckPacket, now: Instant) {
        let key = self.connections[&connection].session;
        let session = self.session_mut(key);
        let Some(position) = session.inflight_position(ack.packet_id) else {
            let mut answer = PubAckPacket::new(ack.packet_id);
            answer.reason_code = ReasonCode::PacketIdentifierNotFound;
            self.emit(connection, Packet::PubRel(answer));
            return;
        };
        if ack.reason_code.is_error() {
            // The receiver refused the message: the exchange ends here, and the message is
            // not sent again [MQTT-4.3.3-4] [MQTT-4.4.0-2].
            session.inflight.remove(position);
            self.drain_queue(key, now);
            return;
        }
        session.inflight[position].released = true;
        self.emit(connection, Packet::PubRel(PubAckPacket::new(ack.packet_id)));
    }

    fn handle_pubrel(&mut self, connection: ConnectionId, ack: PubAckPacket) {
        let key = self.connections[&connection].session;
        let known = self.session_mut(key).inbound_qos2.remove(&ack.packet_id);
        let mut answer = PubAckPacket::new(ack.packet_id);
        if !known && self.connections[&connection].protocol.is_v5() {
            answer.reason_code = ReasonCode::PacketIdentifierNotFound;
        }
        self.emit(connection, Packet::PubComp(answer));
    }

    fn handle_pubcomp(&mut self, connection: ConnectionId, ack: PubAckPacket, now: Instant) {
        let key = self.connections[&connection].session;
        let session = self.session_mut(key);
        if let Some(position) = session.inflight_position(ack.packet_id)
            && session.inflight[position].message.publish.qos == QoS::ExactlyOnce
        {
            session.inflight.remove(position);
            self.drain_queue(key, now);
        }
    }

    // ----- SUBSCRIBE / UNSUBSCRIBE ----------------------------------------------------------------

    fn handle_subscribe(
        &mut self,
        connection: ConnectionId,
        subscribe: SubscribePacket,
        now: Instant,
    ) -> Result<(), Termination> {
        let conn = &self.connections[&connection];
        let protocol = conn.protocol;
        let key = conn.session;
        let (client_id, username) = self.identity_of(conn);
        let identifier = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let mut reason_codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained_to_send = Vec::new();

        for subscription in &subscribe.subscriptions {
            let filter = &subscription.filter;
            let options = subscription.options;
            let shared = topic::parse_shared(filter).ok().flatten();
            if shared.is_some() && options.no_local {
                return Err(Termination {
                    reason: ReasonCode::ProtocolError,
                    detail: format!(
                        "No Local set on shared subscription {filter:?} [MQTT-3.8.3-4]"
                    ),
                });
            }
            let identity = ClientIdentity {
                client_id: &client_id,
                username: username.as_deref(),
            };
            if !self.auth.authorize_subscribe(&identity, filter) {
                info!(client_id = %client_id, "subscription to {filter:?} not authorized");
                reason_codes.push(if protocol.is_v5() {
                    ReasonCode::NotAuthorized
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            let entry = SubscriberEntry {
                options,
                identifier,
            };
            let existed = self
                .session_mut(key)
                .subscriptions
                .insert(
                    // Detached: kept as long as the subscription, unlike the SUBSCRIBE's buffer.
                    filter.detached(),
                    SessionSubscription {
                        options,
                        identifier,
                    },
                )
                .is_some();
            match shared {
                Some(shared) => self.add_group_member(filter, shared.filter, key, entry),
                None => {
                    self.tree.insert(filter, Subscriber::Session(key), entry);
                }
            }
            // Retained messages go to new non-shared subscriptions as Retain Handling says
            // [MQTT-3.3.1-9] [MQTT-3.8.4-4].
            let send_retained = shared.is_none()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                retained_to_send.push((filter.clone(), options.qos));
            }
            reason_codes.push(match options.qos {
                QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
        }

        self.emit(
            connection,
            Packet::SubAck(SubAckPacket {
                packet_id: subscribe.packet_id,
                properties: Properties::default(),
                reason_codes,
            }),
        );
        for (filter, granted) in retained_to_send {
            self.send_retained(key, &filter, granted, identifier, now);
        }
        Ok(())
    }

    fn send_retained(
        &mut self,
        key: SessionKey,
        filter: &str,
        granted: QoS,
        identifier: Option<u32>,
        now: Instant,
    ) {
        let expired: Vec<ByteStr> = self
            .retained
            .iter()
            .filter(|(_, m)| m.expires_at.is_some_and(|at| at <= now))
            .map(|(topic, _)| topic.clone())
            .collect();
        for topic in expired {
            self.retained.remove(&topic);
        }
        let mut messages: Vec<RetainedMessage> = self
            .retained
            .iter()
            .filter(|(name, _)| topic::matches(filter, name))
            .map(|(_, m)| m.clone())
            .collect();
        messages.sort_by(|a, b| a.publish.topic.cmp(&b.publish.topic));
        let v5 = self.session(key).protocol.is_v5();
        for message in messages {
            let mut publish = message.publish;
            publish.qos = publish.qos.min(granted);
            // Sent because of a new subscription: the retain flag is set (3.1.1:
            // [MQTT-3.3.1-8]; 5.0 says so in 3.3.1.3).
            publish.retain = true;
            publish.dup = false;
            publish.packet_id = None;
            publish.properties.subscription_identifiers.clear();
            if v5 && let Some(identifier) = identifier {
                publish.properties.subscription_identifiers.push(identifier);
            }
            self.deliver(key, publish, message.expires_at, now);
        }
    }

    fn add_group_member(
        &mut self,
        full_filter: &ByteStr,
        inner_filter: &str,
        key: SessionKey,
        entry: SubscriberEntry,
    ) {
        let group_key = match self.group_index.get(full_filter) {
            Some(&group_key) => group_key,
            None => {
                let group = SharedGroup {
                    members: Vec::new(),
                    next: 0,
                };
                let group_key = match self.free_groups.pop() {
                    Some(slot) => {
                        self.groups[slot] = Some(group);
                        slot
                    }
                    None => {
                        self.groups.push(Some(group));
                        self.groups.len() - 1
                    }
                };
                self.group_index.insert(full_filter.detached(), group_key);
                self.tree.insert(
                    inner_filter,
                    Subscriber::Group(group_key),
                    SubscriberEntry {
                        options: SubscriptionOptions::default(),
                        identifier: None,
                    },
                );
                group_key
            }
        };
        let group = self.groups[group_key]
            .as_mut()
            .expect("indexed group exists");
        match group.members.iter_mut().find(|(member, _)| *member == key) {
            Some(member) => member.1 = entry,
            None => group.members.push((key, entry)),
        }
    }

    /// Removes the tree or group entry of one of a session's subscriptions.
    fn remove_subscription_entry(&mut self, key: SessionKey, filter: &ByteStr) {
        match topic::parse_shared(filter).ok().flatten() {
            None => {
                self.tree.remove(filter, &Subscriber::Session(key));
            }
            Some(shared) => {
                let Some(&group_key) = self.group_index.get(filter) else {
                    return;
                };
                let group = self.groups[group_key]
                    .as_mut()
                    .expect("indexed group exists");
                group.members.retain(|(member, _)| *member != key);
                if group.members.is_empty() {
                    self.tree
                        .remove(shared.filter, &Subscriber::Group(group_key));
                    self.group_index.remove(filter);
                    self.groups[group_key] = None;
                    self.free_groups.push(group_key);
                }
            }
        }
    }

    fn handle_unsubscribe(&mut self, connection: ConnectionId, unsubscribe: UnsubscribePacket) {
        let key = self.connections[&connection].session;
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            if self.session_mut(key).subscriptions.remove(filter).is_some() {
                self.remove_subscription_entry(key, filter);
                reason_codes.push(ReasonCode::Success);
            } else {
                reason_codes.push(ReasonCode::NoSubscriptionExisted);
            }
        }
        self.emit(
            connection,
            Packet::UnsubAck(UnsubAckPacket {
                packet_id: unsubscribe.packet_id,
                properties: Properties::default(),
                reason_codes,
            }),
        );
    }

    // ----- DISCONNECT and AUTH -----------------------------------------------------------------

    fn handle_disconnect(
        &mut self,
        connection: ConnectionId,
        disconnect: DisconnectPacket,
        now: Instant,
    ) -> Result<(), Termination> {
        let key = self.connections[&connection].session;
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            // The rule is about what the CONNECT said, not what the broker granted: a client
            // whose request was capped to 0 may still name an interval here (spec 3.14.2.2.2).
            if self.connections[&connection].requested_session_expiry == 0 && expiry != 0 {
                return Err(Termination {
                    reason: ReasonCode::ProtocolError,
                    detail:
                        "session expiry set at DISCONNECT after CONNECT set 0 (spec 3.14.2.2.2)"
                            .into(),
                });
            }
            let granted = expiry.min(self.config.max_session_expiry);
            self.session_mut(key).expiry_interval = granted;
        }
        // A normal DISCONNECT discards the will; reason 0x04 asks for it [MQTT-3.14.4-3].
        let publish_will = disconnect.reason_code == ReasonCode::DisconnectWithWillMessage;
        self.outputs.push_back(Output::Close { connection });
        self.detach(connection, publish_will, now);
        Ok(())
    }

    fn handle_pending_authentication(
        &mut self,
        connection: ConnectionId,
        pending: PendingAuthentication,
        packet: Packet,
        now: Instant,
    ) {
        let auth = match packet {
            Packet::Auth(auth) => auth,
            // The client gives up: nothing to answer, no will (it was never accepted).
            Packet::Disconnect(_) => {
                self.outputs.push_back(Output::Close { connection });
                return;
            }
            _ => {
                // Only AUTH or DISCONNECT may follow a CONNECT that started an exchange
                // [MQTT-3.1.2-30].
                self.pending_authentications.insert(connection, pending);
                self.terminate(
                    connection,
                    Termination {
                        reason: ReasonCode::ProtocolError,
                        detail: "expected AUTH during enhanced authentication [MQTT-3.1.2-30]"
                            .into(),
                    },
                    now,
                );
                return;
            }
        };
        let method = pending
            .connect
            .properties
            .authentication_method
            .clone()
            .unwrap_or_default();
        if auth.reason_code != ReasonCode::ContinueAuthentication
            || auth.properties.authentication_method.as_ref() != Some(&method)
        {
            self.stats.auth_failures += 1;
            self.refuse_connect(
                connection,
                pending.connect.protocol,
                ReasonCode::ProtocolError,
                &pending.info,
                "AUTH must continue (0x18) with the CONNECT's authentication method [MQTT-4.12.0-3] [MQTT-4.12.0-5]",
            );
            return;
        }
        let identity = ClientIdentity {
            client_id: &pending.client_id,
            username: pending.connect.username.as_deref(),
        };
        match self
            .auth
            .continue_authentication(&identity, &method, &auth.properties)
        {
            AuthDecision::Accept(properties) => {
                let properties = with_method(properties, &pending.connect);
                self.accept_connect(
                    connection,
                    pending.connect,
                    pending.client_id,
                    pending.assigned,
                    pending.info,
                    properties,
                    now,
                );
            }
            AuthDecision::Continue(properties) => {
                let properties = with_method(properties, &pending.connect);
                self.emit_as(
                    connection,
                    pending.connect.protocol,
                    Packet::Auth(AuthPacket {
                        reason_code: ReasonCode::ContinueAuthentication,
                        properties,
                    }),
                );
                self.pending_authentications.insert(connection, pending);
            }
            AuthDecision::Refuse(reason) => {
                self.stats.auth_failures += 1;
                self.refuse_connect(
                    connection,
                    pending.connect.protocol,
                    reason,
                    &pending.info,
                    "authentication refused",
                );
            }
        }
    }

    fn handle_reauthentication(
        &mut self,
        connection: ConnectionId,
        auth: AuthPacket,
        _now: Instant,
    ) -> Result<(), Termination> {
        let conn = &self.connections[&connection];
        let Some(method) = conn.authentication_method.as_deref().cloned() else {
            return Err(Termination {
                reason: ReasonCode::ProtocolError,
                detail: "AUTH without an authentication method in CONNECT [MQTT-4.12.0-7]".into(),
            });
        };
        if auth.properties.authentication_method.as_ref() != Some(&method) {
            return Err(Termination {
                reason: ReasonCode::ProtocolError,
                detail: "AUTH with a different authentication method [MQTT-4.12.1-1]".into(),
            });
        }
        let (client_id, username) = self.identity_of(conn);
        let identity = ClientIdentity {
            client_id: &client_id,
            username: username.as_deref(),
        };
        match self
            .auth
            .continue_authentication(&identity, &method, &auth.properties)
        {
            AuthDecision::Accept(mut properties) => {
                properties.authentication_method = Some(method);
                self.emit(
                    connection,
                    Packet::Auth(AuthPacket {
                        reason_code: ReasonCode::Success,
                        properties,
                    }),
                );
                Ok(())
            }
            AuthDecision::Continue(mut properties) => {
                properties.authentication_method = Some(method);
                self.emit(
                    connection,
                    Packet::Auth(AuthPacket {
                        reason_code: ReasonCode::ContinueAuthentication,
                        properties,
                    }),
                );
                Ok(())
            }
            AuthDecision::Refuse(reason) => {
                self.stats.auth_failures += 1;
                Err(Termination {
                    reason,
                    detail: "re-authentication refused".into(),
                })
            }
        }
    }

    // ----- Time -------------------------------------------------------------------------------

    /// Runs every deadline that is due at `now`: keep alive timeouts, delayed wills, session
    /// expiry and `$SYS` publication.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match kind {
                TimerKind::Sys => {
                    self.publish_sys(now);
                    if let Some(interval) = self.config.sys_interval {
                        // The statistics are a snapshot: after a stall (a suspended machine)
                        // publish once and keep the cadence, rather than replay every interval
                        // missed. A zero interval would spin here.
                        let interval = interval.max(Duration::from_millis(1));
                        let mut next = at + interval;
                        while next <= now {
                            next += interval;
                        }
                        self.timers.push(Reverse((next, TimerKind::Sys)));
                    }
                }
                TimerKind::KeepAlive(connection) => {
                    let Some(conn) = self.connections.get(&connection) else {
                        continue;
                    };
                    let deadline = keep_alive_deadline(conn.last_activity, conn.keep_alive);
                    if deadline <= now {
                        let keep_alive = conn.keep_alive;
                        self.terminate(
                            connection,
                            Termination {
                                reason: ReasonCode::KeepAliveTimeout,
                                detail: format!(
                                    "nothing received for 1.5 x keep alive ({keep_alive} s) [MQTT-3.1.2-22]"
                                ),
                            },
                            now,
                        );
                    } else {
                        self.timers
                            .push(Reverse((deadline, TimerKind::KeepAlive(connection))));
                    }
                }
                TimerKind::WillDelay {
                    session,
                    generation,
                } => {
                    let current = self.sessions.get_mut(session).and_then(Option::as_mut);
                    if let Some(current) = current
                        && current.generation == generation
                        && let Some(will) = current.pending_will.take()
                    {
                        self.publish_will(will, now);
                    }
                }
                TimerKind::SessionExpiry {
                    session,
                    generation,
                } => {
                    let live = self
                        .sessions
                        .get(session)
                        .and_then(Option::as_ref)
                        .is_some_and(|s| s.generation == generation && s.connection.is_none());
                    if live {
                        if let Some(will) = self.session_mut(session).pending_will.take() {
                            self.publish_will(will, now);
                        }
                        self.remove_session(session);
                    }
                }
            }
        }
    }

    fn publish_sys(&mut self, now: Instant) {
        let stats = self.stats();
        let uptime = now.saturating_duration_since(self.started_at).as_secs();
        let entries: [(&str, String); 16] = [
            ("$SYS/broker/version", self.config.version.clone()),
            ("$SYS/broker/uptime", format!("{uptime} seconds")),
            (
                "$SYS/broker/clients/connected",
                stats.clients_connected.to_string(),
            ),
            ("$SYS/broker/clients/total", stats.sessions.to_string()),
            (
                "$SYS/broker/clients/maximum",
                stats.clients_maximum.to_string(),
            ),
            (
                "$SYS/broker/clients/disconnected",
                stats
                    .sessions
                    .saturating_sub(stats.clients_connected)
                    .to_string(),
            ),
            (
                "$SYS/broker/messages/received",
                stats.packets_received.to_string(),
            ),
            ("$SYS/broker/messages/sent", stats.packets_sent.to_string()),
            (
                "$SYS/broker/publish/messages/received",
                stats.publish_received.iter().sum::<u64>().to_string(),
            ),
            (
                "$SYS/broker/publish/messages/sent",
                stats.publish_sent.iter().sum::<u64>().to_string(),
            ),
            (
                "$SYS/broker/publish/messages/dropped",
                stats.dropped.iter().sum::<u64>().to_string(),
            ),
            (
                "$SYS/broker/bytes/received",
                stats.bytes_received.to_string(),
            ),
            ("$SYS/broker/bytes/sent", stats.bytes_sent.to_string()),
            (
                "$SYS/broker/subscriptions/count",
                stats.subscriptions.to_string(),
            ),
            (
                "$SYS/broker/retained messages/count",
                stats.retained_messages.to_string(),
            ),
            (
                "$SYS/broker/store/messages/count",
                stats.queued_messages.to_string(),
            ),
        ];
        for (topic, value) in entries {
            let publish = PublishPacket {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: true,
                topic: ByteStr::from_static(topic),
                packet_id: None,
                properties: Properties::default(),
                payload: Bytes::from(value),
            };
            self.publish_message(None, publish, now);
        }
    }

    // ----- Administration -------------------------------------------------------------------

    /// Ends every connection for a server shutdown: 5.0 clients get DISCONNECT 0x8B. Sessions
    /// stay (they are what a restart would resume); wills are not published, since the server,
    /// not the client, is going away.
    pub fn handle_shutdown(&mut self, now: Instant) {
        let connections: Vec<ConnectionId> = self
            .connections
            .keys()
            .chain(self.pending_authentications.keys())
            .copied()
            .collect();
        for connection in connections {
            if let Some(pending) = self.pending_authentications.remove(&connection) {
                // Not accepted yet, so no DISCONNECT [MQTT-3.14.0-1]; 0x8B is not a CONNACK
                // reason, 0x88 is the nearest.
                self.emit_as(
                    connection,
                    pending.connect.protocol,
                    Packet::ConnAck(ConnAckPacket {
                        session_present: false,
                        reason_code: ReasonCode::ServerUnavailable,
                        properties: Properties::default(),
                    }),
                );
                self.outputs.push_back(Output::Close { connection });
                continue;
            }
            let v5 = self
                .connections
                .get(&connection)
                .is_some_and(|c| c.protocol.is_v5());
            if v5 {
                self.emit(
                    connection,
                    Packet::Disconnect(DisconnectPacket {
                        reason_code: ReasonCode::ServerShuttingDown,
                        // The reason string also makes paho 1.6, which reads a DISCONNECT's
                        // reason code only in the long form, report 0x8B.
                        properties: Properties {
                            reason_string: Some(ByteStr::from_static("server shutting down")),
                            ..Properties::default()
                        },
                    }),
                );
            }
            self.outputs.push_back(Output::Close { connection });
            self.detach(connection, false, now);
        }
    }

    /// Disconnects the client with `client_id` (administrative action, 0x98 for 5.0 clients).
    /// Returns whether such a client was connected.
    pub fn disconnect_client(&mut self, client_id: &str, now: Instant) -> bool {
        let Some(connection) = self
            .session_index
            .get(&self.sessions, client_id)
            .and_then(|key| self.session(key).connection)
        else {
            return false;
        };
        self.terminate(
            connection,
            Termination {
                reason: ReasonCode::AdministrativeAction,
                detail: "disconnected by an administrator".into(),
            },
            now,
        );
        true
    }

    /// The connected clients.
    pub fn clients(&self) -> Vec<ClientSummary> {
        let mut clients: Vec<ClientSummary> = self
            .connections
            .iter()
            .map(|(&connection, conn)| {
                let session = self.session(conn.session);
                ClientSummary {
                    client_id: session.client_id.to_string(),
                    connection,
                    transport: conn.info.transport,
                    protocol: conn.protocol,
                    remote_address: conn.info.remote_address.to_string(),
                    username: conn.username.as_ref().map(|u| u.to_string()),
                    connected_at: conn.connected_at,
                    keep_alive: conn.keep_alive,
                    subscriptions: session.subscriptions.len(),
                    queued: session.queue.len() + session.inflight.len(),
                }
            })
            .collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        clients
    }

    /// Every subscription of every session.
    pub fn subscriptions(&self) -> Vec<SubscriptionSummary> {
        let mut list: Vec<SubscriptionSummary> = self
            .sessions
            .iter()
            .flatten()
            .flat_map(|session| {
                session
                    .subscriptions
                    .iter()
                    .map(|(filter, subscription)| SubscriptionSummary {
                        client_id: session.client_id.to_string(),
                        filter: filter.to_string(),
                        options: subscription.options,
                        online: session.connection.is_some(),
                    })
            })
            .collect();
        list.sort_by(|a, b| (&a.client_id, &a.filter).cmp(&(&b.client_id, &b.filter)));
        list
    }

    /// Retained messages whose topic matches `filter` (all of them for `None`), sorted by topic.
    pub fn retained(&self, filter: Option<&str>, now: Instant) -> Vec<RetainedSummary> {
        let mut list: Vec<RetainedSummary> = self
            .retained
            .iter()
            .filter(|(_, m)| m.expires_at.is_none_or(|at| at > now))
            .filter(|(name, _)| filter.is_none_or(|f| topic::matches(f, name)))
            .map(|(name, m)| RetainedSummary {
                topic: name.to_string(),
                payload: m.publish.payload.clone(),
                qos: m.publish.qos,
            })
            .collect();
        list.sort_by(|a, b| a.topic.cmp(&b.topic));
        list
    }
}

/// Chooses the next member of a shared group, preferring connected sessions, round robin.
fn pick_group_member(
    group: &mut SharedGroup,
    sessions: &[Option<Box<Session>>],
) -> Option<(SessionKey, SubscriberEntry)> {
    let count = group.members.len();
    if count == 0 {
        return None;
    }
    let online = |key: SessionKey| {
        sessions
            .get(key)
            .and_then(Option::as_ref)
            .is_some_and(|s| s.connection.is_some())
    };
    let start = group.next % count;
    let chosen = (0..count)
        .map(|offset| (start + offset) % count)
        .find(|&index| online(group.members[index].0))
        .unwrap_or(start);
    group.next = chosen + 1;
    Some(group.members[chosen])
}

/// A copy of a will that shares nothing with the CONNECT's read buffer; it lives as long as the
/// connection (or its will delay).
fn detached_will(will: &Will) -> Box<Will> {
    Box::new(Will {
        topic: will.topic.detached(),
        payload: Bytes::copy_from_slice(&will.payload),
        ..will.clone()
    })
}

/// The properties of a will or received PUBLISH that travel with the message to subscribers.
fn forwardable_properties(mut properties: Properties) -> Properties {
    properties.will_delay_interval = None;
    properties.topic_alias = None;
    properties.subscription_identifiers.clear();
    properties
}

/// Adds the CONNECT's authentication method to AUTH/CONNACK properties [MQTT-4.12.0-5].
fn with_method(mut properties: Properties, connect: &ConnectPacket) -> Properties {
    if properties.authentication_method.is_none() {
        properties.authentication_method = connect.properties.authentication_method.clone();
    }
    properties
}
