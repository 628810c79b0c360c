//! The fuzz harness for broker-core: a scenario (a small broker configuration and a sequence of
//! operations, both derived with `arbitrary`) is played against a [`Broker`] the way the gateway
//! drives it, and the broker's invariants are checked after every step.
//!
//! The harness plays the gateway and up to [`SLOTS`] clients. Client packets are built from the
//! operation, encoded and decoded again with the codec, so the broker only sees what a
//! transport could hand it (bytes the codec refuses go to `handle_decode_error`, as in the
//! gateway). The clients are not well-behaved: they acknowledge unknown packet identifiers,
//! reuse topic aliases they never set, send a second CONNECT or server-only packets.
//!
//! Checked after each step (a failed check panics, which the fuzzer reports as a crash):
//!
//! - every frame decodes, as one whole packet, with the version of the receiving client's
//!   CONNECT, and its kind is the packet's; nothing goes to a connection after its close, and
//!   nothing exceeds the client's Maximum Packet Size;
//! - the first packet to a connection is CONNACK (or AUTH during enhanced authentication);
//! - QoS 1/2 messages in flight towards a client stay within the broker's `max_inflight` and the
//!   client's Receive Maximum, with distinct packet identifiers; outgoing topic aliases stay
//!   within the client's Topic Alias Maximum and are set before use;
//! - every session's queue stays within `max_queued_messages` and `max_queued_bytes`;
//! - `clients_connected` is the number of connections the harness holds open, and the
//!   subscription count is what `Broker::subscriptions` lists;
//! - each connected client's subscriptions, as `Broker::subscriptions` lists them, are the ones
//!   its SUBACKs and UNSUBACKs granted (when none is outstanding);
//! - with persistence on, the change records applied to a model store describe what
//!   `Broker::snapshot` says outlives a restart (until a restart from a snapshot, which leaves
//!   the store behind; a restart from the model store keeps checking).

mod store;

use arbitrary::{Arbitrary, Unstructured};
use broker_core::{
    AuthDecision, AuthHook, Authentication, Broker, BrokerConfig, ClientIdentity, ConnectionId,
    ConnectionInfo, FrameKind, Grant, Output, Permissions, Persistence, Transport,
};
use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    AuthPacket, ByteStr, ConnAckPacket, ConnectPacket, DisconnectPacket, Packet, Properties,
    ProtocolVersion, PubAckPacket, PublishPacket, QoS, ReasonCode, RetainHandling, SubAckPacket,
    SubscribePacket, Subscription, SubscriptionOptions, UnsubAckPacket, UnsubscribePacket, Will,
    decode, decode_from_server, encode,
};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Client slots: each holds at most one connection at a time.
pub const SLOTS: usize = 4;

/// Client identifiers the clients pick from (the empty one asks for an assigned identifier).
const CLIENT_IDS: [&str; 5] = ["a", "b", "c", "", "a-very-long-client-id"];

/// Topic names, some invalid (wildcards, empty without an alias).
const TOPICS: [&str; 10] = [
    "a", "a/b", "a/c", "b", "a/b/c", "$SYS/x", "deny/x", "", "a/+", "#",
];

/// Topic filters, shared, wildcard, `$`-prefixed and invalid ones.
const FILTERS: [&str; 16] = [
    "a",
    "a/b",
    "a/#",
    "+/b",
    "#",
    "+",
    "$share/g/a/#",
    "$share/h/+",
    "$share/g/#",
    "$SYS/#",
    "deny/#",
    "a/#/b",
    "$share/g",
    "$share//a",
    "",
    "a/b/c",
];

/// A broker configuration with small bounds, so that limits are reached.
#[derive(Arbitrary, Clone, Debug)]
pub struct ConfigChoice {
    persistence: u8,
    receive_maximum: u8,
    max_inflight: u8,
    max_queued_messages: u8,
    max_queued_bytes: u8,
    topic_alias_maximum: u8,
    server_keep_alive: Option<u8>,
    max_session_expiry: u8,
    retain_available: bool,
    max_packet_size: u8,
    sys: bool,
}

impl ConfigChoice {
    /// The configuration this choice stands for.
    pub fn config(&self) -> BrokerConfig {
        BrokerConfig {
            max_packet_size: [48, 128, 1024, 1 << 20][usize::from(self.max_packet_size % 4)],
            receive_maximum: u16::from(self.receive_maximum % 4) + 1,
            max_inflight: u16::from(self.max_inflight % 4) + 1,
            max_queued_messages: usize::from(self.max_queued_messages % 6),
            max_queued_bytes: [0, 8, 64, 1 << 20][usize::from(self.max_queued_bytes % 4)],
            topic_alias_maximum: u16::from(self.topic_alias_maximum % 4),
            server_keep_alive: self.server_keep_alive.map(|k| u16::from(k % 8)),
            max_session_expiry: [0, 5, 60, u32::MAX][usize::from(self.max_session_expiry % 4)],
            retain_available: self.retain_available,
            sys_interval: self.sys.then(|| Duration::from_secs(10)),
            node_name: None,
            max_client_id_len: 8,
            // The limits take bits the choices above leave unused, so that older inputs keep
            // their meaning as far as possible; each is either the default or small enough
            // for the fuzzer's few topics and properties to cross.
            max_subscriptions_per_client: if self.max_inflight & 0x80 != 0 {
                3
            } else {
                1_000
            },
            max_topic_length: if self.max_packet_size & 0x80 != 0 {
                10
            } else {
                4_096
            },
            max_topic_levels: if self.receive_maximum & 0x80 != 0 {
                2
            } else {
                128
            },
            max_user_properties: if self.topic_alias_maximum & 0x80 != 0 {
                1
            } else {
                32
            },
            max_user_properties_bytes: if self.max_queued_bytes & 0x80 != 0 {
                16
            } else {
                8_192
            },
            max_keep_alive: (self.max_session_expiry & 0x80 != 0).then_some(6),
            version: "fuzz".to_string(),
            persistence: match self.persistence % 3 {
                0 => Persistence::Off,
                1 => Persistence::Relaxed,
                _ => Persistence::Full,
            },
        }
    }
}

/// A protocol version.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Version {
    /// MQTT 3.1.
    V31,
    /// MQTT 3.1.1.
    V311,
    /// MQTT 5.0.
    V5,
}

impl Version {
    fn protocol(self) -> ProtocolVersion {
        match self {
            Version::V31 => ProtocolVersion::V31,
            Version::V311 => ProtocolVersion::V311,
            Version::V5 => ProtocolVersion::V5,
        }
    }
}

/// A will.
#[derive(Arbitrary, Clone, Debug)]
pub struct WillChoice {
    topic: u8,
    qos: u8,
    retain: bool,
    delay: Option<u8>,
    expiry: Option<u8>,
    payload: u8,
}

/// What the gateway established about the credentials, and the enhanced authentication asked.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum AuthChoice {
    /// Nothing checked.
    Unchecked,
    /// Verified, perhaps expiring after some seconds, perhaps with permissions that refuse
    /// `deny/...` topics.
    Verified {
        /// Seconds before the credentials expire.
        expires: Option<u8>,
        /// Whether permissions apply.
        restricted: bool,
    },
    /// Refused by the gateway.
    Refused,
    /// A 5.0 authentication method: the hook's first answer from the data's first byte.
    Method(u8),
}

/// A packet identifier: one the client holds (by index), or any.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum IdChoice {
    /// The n-th identifier the client has outstanding (in flight towards it, or QoS 2 it sent).
    Held(u8),
    /// Any identifier.
    Raw(u16),
}

/// One step.
#[derive(Arbitrary, Clone, Debug)]
pub enum Op {
    /// A CONNECT on a new connection in `slot` (its older connection, if any, is dropped first).
    Connect {
        /// The client slot.
        slot: u8,
        /// Its protocol.
        version: Version,
        /// Index into the client identifiers.
        client: u8,
        /// Clean start / clean session.
        clean_start: bool,
        /// Keep alive, seconds.
        keep_alive: u8,
        /// The will.
        will: Option<WillChoice>,
        /// 5.0 Session Expiry Interval.
        session_expiry: Option<u8>,
        /// 5.0 Receive Maximum (0 is a protocol error the codec refuses).
        receive_maximum: Option<u8>,
        /// 5.0 Maximum Packet Size.
        maximum_packet_size: Option<u8>,
        /// 5.0 Topic Alias Maximum.
        topic_alias_maximum: Option<u8>,
        /// 5.0 Request Response Information.
        request_response: bool,
        /// Credentials.
        auth: AuthChoice,
    },
    /// The slot's connection drops.
    Lose {
        /// The client slot.
        slot: u8,
    },
    /// A PUBLISH.
    Publish {
        /// The client slot.
        slot: u8,
        /// Index into the topics.
        topic: u8,
        /// QoS bits (3 is malformed).
        qos: u8,
        /// Retain.
        retain: bool,
        /// DUP.
        dup: bool,
        /// Packet identifier.
        packet_id: IdChoice,
        /// Topic alias; with `alias_only` the topic is left out.
        alias: Option<u8>,
        /// Leave the topic out, relying on the alias.
        alias_only: bool,
        /// Message Expiry Interval.
        expiry: Option<u8>,
        /// A subscription identifier (a protocol error from a client).
        subscription_identifier: bool,
        /// Payload length.
        payload: u8,
    },
    /// PUBACK, PUBREC, PUBREL or PUBCOMP (`kind` % 4) with any identifier and reason.
    Ack {
        /// The client slot.
        slot: u8,
        /// Which acknowledgement.
        kind: u8,
        /// Its packet identifier.
        packet_id: IdChoice,
        /// Index into the reason codes (0 and beyond: success).
        reason: u8,
    },
    /// A SUBSCRIBE.
    Subscribe {
        /// The client slot.
        slot: u8,
        /// Packet identifier.
        packet_id: u16,
        /// (filter index, QoS bits, No Local, Retain As Published, Retain Handling bits).
        filters: Vec<(u8, u8, bool, bool, u8)>,
        /// Subscription identifier.
        identifier: Option<u8>,
    },
    /// An UNSUBSCRIBE.
    Unsubscribe {
        /// The client slot.
        slot: u8,
        /// Packet identifier.
        packet_id: u16,
        /// Filter indices.
        filters: Vec<u8>,
    },
    /// A PINGREQ.
    Ping {
        /// The client slot.
        slot: u8,
    },
    /// A DISCONNECT.
    Disconnect {
        /// The client slot.
        slot: u8,
        /// Index into the reason codes; 0: normal, with 0x04 among the others.
        reason: u8,
        /// Session Expiry Interval to set.
        session_expiry: Option<u8>,
    },
    /// An AUTH.
    Auth {
        /// The client slot.
        slot: u8,
        /// Index into the reason codes.
        reason: u8,
        /// Whether it names the method "m" (else "other" or none).
        method: Option<bool>,
        /// The hook's answer from this byte.
        data: u8,
    },
    /// A second CONNECT on an open connection.
    SecondConnect {
        /// The client slot.
        slot: u8,
    },
    /// A packet only servers send (`kind` picks which).
    ServerOnly {
        /// The client slot.
        slot: u8,
        /// Which packet.
        kind: u8,
    },
    /// Raw bytes on the connection (a decode error, or packets).
    Bytes {
        /// The client slot.
        slot: u8,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Time passes and deadlines run.
    Advance {
        /// How far: milliseconds, or with `long`, seconds.
        amount: u8,
        /// Seconds rather than milliseconds.
        long: bool,
    },
    /// The store reports every change so far durable (or only some).
    Durable {
        /// All of them, or all but a few.
        all: bool,
    },
    /// The store becomes (un)writable.
    StoreWritable(bool),
    /// The broker stops and starts again after some seconds: from `Broker::snapshot` (even
    /// `down`), or from the store the change records built (odd, with persistence on: a crash).
    Restart {
        /// Seconds the broker was down; its parity picks the source.
        down: u8,
    },
    /// An operator disconnects a client.
    AdminDisconnect {
        /// Index into the client identifiers.
        client: u8,
    },
}

/// A whole fuzz input.
#[derive(Arbitrary, Clone, Debug)]
pub struct Scenario {
    /// The broker's configuration.
    pub config: ConfigChoice,
    /// The steps.
    pub ops: Vec<Op>,
}

/// Plays raw fuzz bytes as a scenario. Inputs that are not a whole scenario are ignored.
pub fn run_bytes(data: &[u8]) {
    if let Ok(scenario) = Scenario::arbitrary_take_rest(Unstructured::new(data)) {
        run(&scenario);
    }
}

/// Plays a scenario, checking the invariants after every step.
pub fn run(scenario: &Scenario) {
    let mut harness = Harness::new(scenario.config.config());
    let trace = std::env::var_os("FUZZ_TRACE").is_some();
    for op in scenario.ops.iter().take(256) {
        if trace {
            eprintln!("--- {op:?}");
        }
        harness.trace = trace;
        harness.step(op);
        harness.check();
    }
}

// ----- The authentication hook ----------------------------------------------------------------

/// A hook that knows the method "m": the first byte of the authentication data picks the answer
/// (0 accept, 1 continue, else refuse); `deny/...` topics are refused.
struct FuzzAuth;

fn decision_for(data: Option<&Bytes>) -> AuthDecision {
    match data.and_then(|d| d.first()).copied().unwrap_or(0) % 3 {
        0 => AuthDecision::Accept(Properties::default()),
        1 => AuthDecision::Continue(Properties {
            authentication_data: Some(Bytes::from_static(b"challenge")),
            ..Properties::default()
        }),
        _ => AuthDecision::Refuse(ReasonCode::NotAuthorized),
    }
}

impl AuthHook for FuzzAuth {
    fn authenticate(&mut self, connect: &ConnectPacket, _client_id: &str) -> AuthDecision {
        match connect.properties.authentication_method.as_deref() {
            None => AuthDecision::Accept(Properties::default()),
            Some("m") => decision_for(connect.properties.authentication_data.as_ref()),
            Some(_) => AuthDecision::Refuse(ReasonCode::BadAuthenticationMethod),
        }
    }

    fn continue_authentication(
        &mut self,
        _client: &ClientIdentity<'_>,
        _method: &ByteStr,
        properties: &Properties,
    ) -> AuthDecision {
        decision_for(properties.authentication_data.as_ref())
    }

    fn authorize_subscribe(&mut self, _client: &ClientIdentity<'_>, filter: &str) -> bool {
        !filter.starts_with("deny")
    }

    fn authorize_publish(&mut self, _client: &ClientIdentity<'_>, topic: &str) -> bool {
        topic != "deny/x/y"
    }
}

/// Permissions of a restricted client: nothing under `deny/`, and no receiving under `a/c`.
#[derive(Debug)]
struct Restricted;

impl Permissions for Restricted {
    fn may_publish(&mut self, topic: &str) -> bool {
        !topic.starts_with("deny")
    }
    fn may_subscribe(&mut self, filter: &str) -> bool {
        !filter.starts_with("deny")
    }
    fn may_receive(&mut self, topic: &str) -> bool {
        topic != "a/c"
    }
}

// ----- The harness ------------------------------------------------------------------------------

/// What a client knows about its connection.
#[derive(Debug)]
struct Client {
    connection: ConnectionId,
    version: ProtocolVersion,
    /// The client identifier it asked for (empty: assigned, learnt from the CONNACK).
    client_id: String,
    /// CONNACK 0x00 received.
    accepted: bool,
    /// Anything at all received.
    received_any: bool,
    /// Its own limits.
    receive_maximum: u16,
    maximum_packet_size: Option<u32>,
    topic_alias_maximum: u16,
    /// QoS 1/2 messages in flight towards it: packet identifier and QoS.
    inflight: BTreeMap<u16, QoS>,
    /// PUBRECs it sent for identifiers not in flight, whose PUBREL answers (0x92, which a 3.x
    /// client cannot read) are not messages in flight.
    stray_pubrecs: Vec<u16>,
    /// QoS 2 identifiers it sent (the broker may hold them awaiting PUBREL).
    sent_qos2: Vec<u16>,
    /// Topic aliases the server set up towards it.
    aliases: HashMap<u16, String>,
    /// SUBSCRIBE and UNSUBSCRIBE awaiting their acknowledgement, in order.
    requests: VecDeque<Request>,
    /// A 3.1 CONNACK has no session present flag: whether a session to resume existed.
    v31_session_present: bool,
    /// Acknowledgements the broker never sent (too large for the client): its subscriptions
    /// are not known any more.
    lost_track: bool,
}

#[derive(Debug)]
enum Request {
    Subscribe(u16, Vec<String>),
    Unsubscribe(u16, Vec<String>),
}

struct Harness {
    config: BrokerConfig,
    broker: Broker,
    now: Instant,
    next_connection: u64,
    slots: [Option<Client>; SLOTS],
    /// Connections the broker closed (never to be sent to again), for this broker's lifetime.
    closed: HashSet<ConnectionId>,
    /// Each client identifier's subscriptions (filter, granted QoS) as its acknowledgements say.
    subscriptions: HashMap<String, BTreeMap<String, QoS>>,
    changes: Vec<broker_core::Change>,
    /// Changes recorded so far, the count a store reports durable.
    recorded: u64,
    /// The store the records built; `None` without persistence or after a restart from a
    /// snapshot.
    store: Option<store::Model>,
    /// Client identifiers whose subscriptions are not known until a new session starts.
    unknown: HashSet<String>,
    /// Print every packet received (`FUZZ_TRACE` set).
    trace: bool,
}

fn info() -> ConnectionInfo {
    ConnectionInfo {
        transport: Transport::Tcp,
        remote_address: "192.0.2.1:1883".into(),
    }
}

fn reason(index: u8) -> ReasonCode {
    if usize::from(index) >= ReasonCode::ALL.len() {
        ReasonCode::Success
    } else {
        ReasonCode::ALL[usize::from(index)]
    }
}

fn qos_of(bits: u8) -> QoS {
    QoS::from_bits(bits % 3).expect("0 to 2")
}

fn expiry_seconds(choice: u8) -> u32 {
    match choice % 5 {
        0 => 0,
        1 => 1,
        2 => 10,
        3 => 100,
        _ => u32::MAX,
    }
}

impl Harness {
    fn new(config: BrokerConfig) -> Self {
        let now = Instant::now();
        Harness {
            broker: Broker::new(config.clone(), Box::new(FuzzAuth), now),
            config: config.clone(),
            now,
            next_connection: 1,
            slots: Default::default(),
            closed: HashSet::new(),
            subscriptions: HashMap::new(),
            changes: Vec::new(),
            recorded: 0,
            store: (config.persistence != Persistence::Off).then(store::Model::default),
            unknown: HashSet::new(),
            trace: false,
        }
    }

    fn slot(&self, slot: u8) -> usize {
        usize::from(slot) % SLOTS
    }

    /// The identifier picked for an acknowledgement or a PUBLISH of `slot`.
    fn pick_id(&self, slot: usize, choice: IdChoice) -> u16 {
        let client = self.slots[slot].as_ref();
        match choice {
            IdChoice::Held(n) => {
                let held: Vec<u16> = client
                    .map(|c| {
                        c.inflight
                            .keys()
                            .copied()
                            .chain(c.sent_qos2.iter().copied())
                            .collect()
                    })
                    .unwrap_or_default();
                if held.is_empty() {
                    u16::from(n) + 1
                } else {
                    held[usize::from(n) % held.len()]
                }
            }
            IdChoice::Raw(id) => id,
        }
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Connect {
                slot,
                version,
                client,
                clean_start,
                keep_alive,
                will,
                session_expiry,
                receive_maximum,
                maximum_packet_size,
                topic_alias_maximum,
                request_response,
                auth,
            } => {
                let slot = self.slot(*slot);
                self.drop_slot(slot);
                let protocol = version.protocol();
                let v5 = protocol.is_v5();
                let client_id = CLIENT_IDS[usize::from(*client) % CLIENT_IDS.len()];
                let mut properties = Properties::default();
                if v5 {
                    properties.session_expiry_interval = session_expiry.map(expiry_seconds);
                    properties.receive_maximum = receive_maximum.map(|r| u16::from(r % 4));
                    properties.maximum_packet_size =
                        maximum_packet_size.map(|m| [0, 16, 40, 100, 1000][usize::from(m % 5)]);
                    properties.topic_alias_maximum = topic_alias_maximum.map(|t| u16::from(t % 3));
                    properties.request_response_information = request_response.then_some(1);
                    if let AuthChoice::Method(data) = auth {
                        properties.authentication_method =
                            Some(ByteStr::from(if data % 4 == 3 { "other" } else { "m" }));
                        properties.authentication_data = Some(Bytes::from(vec![*data % 4]));
                    }
                }
                let will = will.as_ref().map(|w| Will {
                    topic: ByteStr::from(TOPICS[usize::from(w.topic) % TOPICS.len()]),
                    payload: Bytes::from(vec![b'w'; usize::from(w.payload % 8)]),
                    qos: qos_of(w.qos),
                    retain: w.retain,
                    properties: if v5 {
                        Properties {
                            will_delay_interval: w.delay.map(expiry_seconds),
                            message_expiry_interval: w.expiry.map(expiry_seconds),
                            ..Properties::default()
                        }
                    } else {
                        Properties::default()
                    },
                });
                let connect = ConnectPacket {
                    protocol,
                    clean_start: *clean_start,
                    keep_alive: u16::from(*keep_alive % 8),
                    client_id: ByteStr::from(client_id),
                    will,
                    username: Some(ByteStr::from("user")),
                    password: None,
                    properties,
                };
                let connection = ConnectionId(self.next_connection);
                self.next_connection += 1;
                let receive_maximum = connect.properties.receive_maximum.unwrap_or(u16::MAX);
                let maximum_packet_size = connect.properties.maximum_packet_size;
                let topic_alias_maximum = connect.properties.topic_alias_maximum.unwrap_or(0);
                // Through the codec, as the gateway decodes a first packet (by its own level).
                let mut bytes = BytesMut::new();
                if encode(&Packet::Connect(connect), protocol, &mut bytes).is_err() {
                    return;
                }
                let decoded = decode(&mut bytes, ProtocolVersion::V5, self.max_packet_size());
                let v31_session_present = !clean_start
                    && self
                        .broker
                        .snapshot(self.now)
                        .sessions
                        .iter()
                        .any(|s| s.client_id == client_id);
                self.slots[slot] = Some(Client {
                    connection,
                    version: protocol,
                    client_id: client_id.to_string(),
                    accepted: false,
                    received_any: false,
                    receive_maximum,
                    maximum_packet_size,
                    topic_alias_maximum,
                    inflight: BTreeMap::new(),
                    sent_qos2: Vec::new(),
                    stray_pubrecs: Vec::new(),
                    aliases: HashMap::new(),
                    requests: VecDeque::new(),
                    v31_session_present,
                    lost_track: false,
                });
                match decoded {
                    Ok(Some(Packet::Connect(connect))) => {
                        let authentication = match auth {
                            AuthChoice::Unchecked | AuthChoice::Method(_) => {
                                Authentication::Unchecked
                            }
                            AuthChoice::Refused => {
                                Authentication::Refused(ReasonCode::BadUserNameOrPassword)
                            }
                            AuthChoice::Verified {
                                expires,
                                restricted,
                            } => Authentication::Verified(Box::new(Grant {
                                username: Some(ByteStr::from("verified")),
                                permissions: restricted
                                    .then(|| Box::new(Restricted) as Box<dyn Permissions>),
                                valid_until: expires
                                    .map(|s| self.now + Duration::from_secs(u64::from(s % 30))),
                            })),
                        };
                        self.broker.handle_connect(
                            connection,
                            connect,
                            info(),
                            authentication,
                            self.now,
                        );
                    }
                    Ok(other) => panic!("a CONNECT decoded as {other:?}"),
                    Err(error) => {
                        self.broker
                            .handle_decode_error(connection, &error, &info(), self.now);
                    }
                }
            }
            Op::Lose { slot } => {
                let slot = self.slot(*slot);
                self.drop_slot(slot);
            }
            Op::Publish {
                slot,
                topic,
                qos,
                retain,
                dup,
                packet_id,
                alias,
                alias_only,
                expiry,
                subscription_identifier,
                payload,
            } => {
                let slot = self.slot(*slot);
                let qos = qos_of(*qos);
                let id = self.pick_id(slot, *packet_id);
                let mut properties = Properties {
                    topic_alias: alias.map(|a| u16::from(a % 5)),
                    message_expiry_interval: expiry.map(expiry_seconds),
                    ..Properties::default()
                };
                if *subscription_identifier {
                    properties.subscription_identifiers.push(1);
                }
                let topic = if *alias_only && alias.is_some() {
                    ""
                } else {
                    TOPICS[usize::from(*topic) % TOPICS.len()]
                };
                let publish = PublishPacket {
                    dup: *dup && qos != QoS::AtMostOnce,
                    qos,
                    retain: *retain,
                    topic: ByteStr::from(topic),
                    packet_id: (qos != QoS::AtMostOnce).then_some(id.max(1)),
                    properties,
                    payload: Bytes::from(vec![b'p'; usize::from(*payload % 40)]),
                };
                if qos == QoS::ExactlyOnce
                    && let Some(client) = self.slots[slot].as_mut()
                    && !client.sent_qos2.contains(&id.max(1))
                {
                    client.sent_qos2.push(id.max(1));
                }
                self.send(slot, Packet::Publish(publish));
            }
            Op::Ack {
                slot,
                kind,
                packet_id,
                reason: code,
            } => {
                let slot = self.slot(*slot);
                let id = self.pick_id(slot, *packet_id);
                let ack = PubAckPacket {
                    packet_id: id,
                    reason_code: reason(*code),
                    properties: Properties::default(),
                };
                let packet = match kind % 4 {
                    0 => Packet::PubAck(ack),
                    1 => Packet::PubRec(ack),
                    2 => Packet::PubRel(ack),
                    _ => Packet::PubComp(ack),
                };
                self.send(slot, packet);
            }
            Op::Subscribe {
                slot,
                packet_id,
                filters,
                identifier,
            } => {
                let slot = self.slot(*slot);
                let mut properties = Properties::default();
                properties
                    .subscription_identifiers
                    .extend(identifier.map(|i| u32::from(i % 4)));
                let subscriptions: Vec<Subscription> = filters
                    .iter()
                    .take(4)
                    .map(
                        |&(filter, qos, no_local, retain_as_published, handling)| Subscription {
                            filter: ByteStr::from(FILTERS[usize::from(filter) % FILTERS.len()]),
                            options: SubscriptionOptions {
                                qos: qos_of(qos),
                                no_local,
                                retain_as_published,
                                retain_handling: match handling % 3 {
                                    0 => RetainHandling::SendAtSubscribe,
                                    1 => RetainHandling::SendIfNew,
                                    _ => RetainHandling::DoNotSend,
                                },
                            },
                        },
                    )
                    .collect();
                let names = subscriptions.iter().map(|s| s.filter.to_string()).collect();
                let packet = Packet::Subscribe(SubscribePacket {
                    packet_id: *packet_id,
                    properties,
                    subscriptions,
                });
                if self.send(slot, packet)
                    && let Some(client) = self.slots[slot].as_mut()
                {
                    client
                        .requests
                        .push_back(Request::Subscribe(*packet_id, names));
                }
            }
            Op::Unsubscribe {
                slot,
                packet_id,
                filters,
            } => {
                let slot = self.slot(*slot);
                let names: Vec<String> = filters
                    .iter()
                    .take(4)
                    .map(|&f| FILTERS[usize::from(f) % FILTERS.len()].to_string())
                    .collect();
                let packet = Packet::Unsubscribe(UnsubscribePacket {
                    packet_id: *packet_id,
                    properties: Properties::default(),
                    filters: names.iter().map(|n| ByteStr::from(n.clone())).collect(),
                });
                if self.send(slot, packet)
                    && let Some(client) = self.slots[slot].as_mut()
                {
                    client
                        .requests
                        .push_back(Request::Unsubscribe(*packet_id, names));
                }
            }
            Op::Ping { slot } => {
                let slot = self.slot(*slot);
                self.send(slot, Packet::PingReq);
            }
            Op::Disconnect {
                slot,
                reason: code,
                session_expiry,
            } => {
                let slot = self.slot(*slot);
                let reason_code = match code % 4 {
                    0 => ReasonCode::Success,
                    1 => ReasonCode::DisconnectWithWillMessage,
                    _ => reason(code / 4),
                };
                let disconnect = DisconnectPacket {
                    reason_code,
                    properties: Properties {
                        session_expiry_interval: session_expiry.map(expiry_seconds),
                        ..Properties::default()
                    },
                };
                self.send(slot, Packet::Disconnect(disconnect));
            }
            Op::Auth {
                slot,
                reason: code,
                method,
                data,
            } => {
                let slot = self.slot(*slot);
                let auth = AuthPacket {
                    reason_code: if code % 2 == 0 {
                        ReasonCode::ContinueAuthentication
                    } else {
                        reason(code / 2)
                    },
                    properties: Properties {
                        authentication_method: method
                            .map(|m| ByteStr::from(if m { "m" } else { "other" })),
                        authentication_data: Some(Bytes::from(vec![*data])),
                        ..Properties::default()
                    },
                };
                self.send(slot, Packet::Auth(auth));
            }
            Op::SecondConnect { slot } => {
                let slot = self.slot(*slot);
                let Some(client) = self.slots[slot].as_ref() else {
                    return;
                };
                let connect = ConnectPacket {
                    protocol: client.version,
                    clean_start: true,
                    keep_alive: 0,
                    client_id: ByteStr::from("z"),
                    will: None,
                    username: None,
                    password: None,
                    properties: Properties::default(),
                };
                self.send(slot, Packet::Connect(connect));
            }
            Op::ServerOnly { slot, kind } => {
                let slot = self.slot(*slot);
                let packet = match kind % 4 {
                    0 => Packet::ConnAck(ConnAckPacket {
                        session_present: false,
                        reason_code: ReasonCode::Success,
                        properties: Properties::default(),
                    }),
                    1 => Packet::SubAck(SubAckPacket {
                        packet_id: 1,
                        properties: Properties::default(),
                        reason_codes: vec![ReasonCode::Success],
                    }),
                    2 => Packet::UnsubAck(UnsubAckPacket {
                        packet_id: 1,
                        properties: Properties::default(),
                        reason_codes: vec![ReasonCode::Success],
                    }),
                    _ => Packet::PingResp,
                };
                self.send(slot, packet);
            }
            Op::Bytes { slot, bytes } => {
                let slot = self.slot(*slot);
                let Some(client) = self.slots[slot].as_ref() else {
                    return;
                };
                let (connection, version) = (client.connection, client.version);
                let mut buffer = BytesMut::from(&bytes[..]);
                loop {
                    match decode(&mut buffer, version, self.max_packet_size()) {
                        Ok(Some(packet)) => {
                            self.broker.handle_packet(connection, packet, self.now);
                        }
                        Ok(None) => break,
                        Err(error) => {
                            self.broker
                                .handle_decode_error(connection, &error, &info(), self.now);
                            break;
                        }
                    }
                }
            }
            Op::Advance { amount, long } => {
                let by = if *long {
                    Duration::from_secs(u64::from(*amount))
                } else {
                    Duration::from_millis(u64::from(*amount) * 10)
                };
                self.now += by;
                self.broker.handle_timeout(self.now);
                if let Some(deadline) = self.broker.next_deadline() {
                    assert!(deadline > self.now, "a deadline due now was left to run");
                }
            }
            Op::Durable { all } => {
                let total = self.recorded;
                let count = if *all { total } else { total.saturating_sub(2) };
                self.broker.changes_durable(count);
            }
            Op::StoreWritable(writable) => self.broker.set_store_writable(*writable),
            Op::Restart { down } => {
                let from_store = down % 2 == 1 && self.store.is_some();
                let mut snapshot = self.broker.snapshot(self.now);
                let down = Duration::from_secs(u64::from(*down % 120));
                self.now += down;
                if let Some(store) = self.store.as_mut().filter(|_| from_store) {
                    snapshot = store.load(self.now);
                    store.drop_expired_retained(self.now);
                } else {
                    snapshot = snapshot.aged(down);
                    self.store = None;
                }
                // Every connection went with the process.
                for slot in 0..SLOTS {
                    self.forget(slot);
                }
                self.closed.clear();
                self.changes.clear();
                self.broker = Broker::new(self.config.clone(), Box::new(FuzzAuth), self.now);
                self.broker.restore(snapshot, self.now);
                // Whatever a restart itself records (sessions whose connection it lost).
                self.broker.handle_timeout(self.now);
            }
            Op::AdminDisconnect { client } => {
                let client_id = CLIENT_IDS[usize::from(*client) % CLIENT_IDS.len()];
                self.broker.disconnect_client(client_id, self.now);
            }
        }
        self.drain();
        self.recorded = self.broker.take_changes(&mut self.changes);
        match self.store.as_mut() {
            Some(store) => self
                .changes
                .drain(..)
                .for_each(|change| store.apply(change)),
            None => self.changes.clear(),
        }
    }

    fn max_packet_size(&self) -> usize {
        self.config.max_packet_size as usize
    }

    /// Encodes and decodes `packet` as the gateway would receive it on `slot`'s connection, and
    /// hands the result to the broker. Returns whether the broker got the packet.
    fn send(&mut self, slot: usize, packet: Packet) -> bool {
        let Some(client) = self.slots[slot].as_ref() else {
            return false;
        };
        let (connection, version) = (client.connection, client.version);
        let mut bytes = BytesMut::new();
        if encode(&packet, version, &mut bytes).is_err() {
            // Not something a client could send at all.
            return false;
        }
        match decode(&mut bytes, version, self.max_packet_size()) {
            Ok(Some(packet)) => {
                let client = self.slots[slot].as_mut().expect("checked");
                // The client forgets what its acknowledgement completes, as the broker does.
                match &packet {
                    Packet::PubAck(ack)
                        if client.inflight.get(&ack.packet_id) == Some(&QoS::AtLeastOnce) =>
                    {
                        client.inflight.remove(&ack.packet_id);
                    }
                    Packet::PubComp(ack)
                        if client.inflight.get(&ack.packet_id) == Some(&QoS::ExactlyOnce) =>
                    {
                        client.inflight.remove(&ack.packet_id);
                    }
                    Packet::PubRec(ack) if !client.inflight.contains_key(&ack.packet_id) => {
                        client.stray_pubrecs.push(ack.packet_id);
                    }
                    Packet::PubRec(ack) if ack.reason_code.is_error() => {
                        client.inflight.remove(&ack.packet_id);
                    }
                    _ => {}
                }
                self.broker.handle_packet(connection, packet, self.now);
                true
            }
            Ok(None) => panic!("an encoded packet is whole"),
            Err(error) => {
                self.broker
                    .handle_decode_error(connection, &error, &info(), self.now);
                false
            }
        }
    }

    /// The slot's connection drops.
    fn drop_slot(&mut self, slot: usize) {
        if let Some(connection) = self.forget(slot) {
            self.lose(connection);
        }
    }

    /// The client of `slot` goes away. With a SUBSCRIBE or UNSUBSCRIBE unanswered (its
    /// acknowledgement held for the store), it no longer knows its session's subscriptions.
    fn forget(&mut self, slot: usize) -> Option<ConnectionId> {
        let client = self.slots[slot].take()?;
        if !client.requests.is_empty() || client.lost_track {
            self.unknown.insert(client.client_id);
        }
        Some(client.connection)
    }

    /// The gateway learnt that a connection ended.
    fn lose(&mut self, connection: ConnectionId) {
        self.broker.handle_connection_lost(connection, self.now);
    }

    fn slot_of(&self, connection: ConnectionId) -> Option<usize> {
        self.slots
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.connection == connection))
    }

    /// Takes every output, checking each frame as its client reads it.
    fn drain(&mut self) {
        while let Some(output) = self.broker.poll_output() {
            match output {
                Output::Send { connection, frame } => {
                    assert!(
                        !self.closed.contains(&connection),
                        "a frame for {connection} after its close"
                    );
                    let Some(slot) = self.slot_of(connection) else {
                        // A connection the harness dropped already (the gateway would discard).
                        continue;
                    };
                    let client = self.slots[slot].as_mut().expect("found");
                    assert_eq!(
                        frame.protocol, client.version,
                        "frame version for {connection}"
                    );
                    if let Some(maximum) = client.maximum_packet_size {
                        assert!(
                            frame.bytes.len() <= maximum as usize,
                            "a {} byte frame for a client whose maximum is {maximum}",
                            frame.bytes.len()
                        );
                    }
                    let mut bytes = BytesMut::from(&frame.bytes[..]);
                    let packet = decode_from_server(&mut bytes, client.version, usize::MAX)
                        .unwrap_or_else(|e| panic!("an undecodable frame for {connection}: {e}"))
                        .expect("a frame holds a whole packet");
                    assert!(bytes.is_empty(), "a frame holds exactly one packet");
                    let kind = match &packet {
                        Packet::Publish(p) => FrameKind::Publish {
                            qos: p.qos,
                            sets_alias: p.properties.topic_alias.is_some() && !p.topic.is_empty(),
                        },
                        _ => FrameKind::Control,
                    };
                    assert_eq!(frame.kind, kind, "the frame's kind matches its packet");
                    let first = !client.received_any;
                    client.received_any = true;
                    if first {
                        assert!(
                            matches!(packet, Packet::ConnAck(_) | Packet::Auth(_)),
                            "first packet to {connection} is {packet:?}"
                        );
                    }
                    if self.trace {
                        eprintln!("    slot {slot} ({connection}) <- {packet:?}");
                    }
                    self.receive(slot, packet);
                }
                Output::Close { connection } => {
                    self.closed.insert(connection);
                    if let Some(slot) = self.slot_of(connection) {
                        self.forget(slot);
                    }
                    // The connection's task ends and reports it, as the gateway's does.
                    self.broker.handle_connection_lost(connection, self.now);
                }
            }
        }
    }

    /// A client takes in one packet from the broker.
    fn receive(&mut self, slot: usize, packet: Packet) {
        let max_inflight = self.config.max_inflight;
        let client = self.slots[slot].as_mut().expect("caller checked");
        match packet {
            Packet::ConnAck(connack) => {
                assert!(!client.accepted, "a second CONNACK");
                if connack.reason_code == ReasonCode::Success {
                    client.accepted = true;
                    if let Some(assigned) = connack.properties.assigned_client_identifier {
                        client.client_id = assigned.to_string();
                    }
                    let present = match client.version {
                        ProtocolVersion::V31 => client.v31_session_present,
                        _ => connack.session_present,
                    };
                    if !present {
                        self.unknown.remove(&client.client_id);
                        self.subscriptions.remove(&client.client_id);
                    }
                }
            }
            Packet::Publish(publish) => {
                assert!(client.accepted, "PUBLISH before CONNACK");
                if let Some(alias) = publish.properties.topic_alias {
                    assert!(
                        alias >= 1 && alias <= client.topic_alias_maximum,
                        "alias {alias} beyond the client's maximum {}",
                        client.topic_alias_maximum
                    );
                    if publish.topic.is_empty() {
                        assert!(client.aliases.contains_key(&alias), "unknown alias {alias}");
                    } else {
                        client.aliases.insert(alias, publish.topic.to_string());
                    }
                } else {
                    assert!(!publish.topic.is_empty(), "a PUBLISH with no topic");
                }
                if publish.qos != QoS::AtMostOnce {
                    let id = publish.packet_id.expect("QoS 1/2 has an id");
                    if let Some(&held) = client.inflight.get(&id) {
                        // Only a redelivery may reuse an identifier in flight.
                        assert!(publish.dup, "packet id {id} reused while in flight");
                        assert_eq!(held, publish.qos, "a redelivery changed QoS");
                    }
                    client.inflight.insert(id, publish.qos);
                    let window = usize::from(client.receive_maximum.min(max_inflight));
                    assert!(
                        client.inflight.len() <= window,
                        "{} messages in flight, window {window} (receive maximum {}, max_inflight {max_inflight})",
                        client.inflight.len(),
                        client.receive_maximum
                    );
                }
            }
            Packet::PubRel(ack) => {
                // A PUBREL for a message the broker still holds (resent after a reconnect).
                if let Some(stray) = client
                    .stray_pubrecs
                    .iter()
                    .position(|&id| id == ack.packet_id)
                {
                    client.stray_pubrecs.remove(stray);
                } else if ack.reason_code == ReasonCode::Success {
                    client
                        .inflight
                        .entry(ack.packet_id)
                        .or_insert(QoS::ExactlyOnce);
                }
            }
            Packet::PubComp(ack) => {
                client.sent_qos2.retain(|&id| id != ack.packet_id);
            }
            Packet::SubAck(suback) => {
                let Some(Request::Subscribe(id, filters)) = client.requests.pop_front() else {
                    panic!("a SUBACK with no SUBSCRIBE outstanding: {suback:?}");
                };
                assert_eq!(id, suback.packet_id, "SUBACK answers the oldest SUBSCRIBE");
                assert_eq!(
                    suback.reason_codes.len(),
                    filters.len(),
                    "one code per filter"
                );
                let subscriptions = self
                    .subscriptions
                    .entry(client.client_id.clone())
                    .or_default();
                for (filter, code) in filters.into_iter().zip(suback.reason_codes) {
                    let granted = match code {
                        ReasonCode::Success => Some(QoS::AtMostOnce),
                        ReasonCode::GrantedQoS1 => Some(QoS::AtLeastOnce),
                        ReasonCode::GrantedQoS2 => Some(QoS::ExactlyOnce),
                        _ => None,
                    };
                    if let Some(qos) = granted {
                        subscriptions.insert(filter, qos);
                    }
                }
            }
            Packet::UnsubAck(unsuback) => {
                let Some(Request::Unsubscribe(id, filters)) = client.requests.pop_front() else {
                    panic!("an UNSUBACK with no UNSUBSCRIBE outstanding: {unsuback:?}");
                };
                assert_eq!(
                    id, unsuback.packet_id,
                    "UNSUBACK answers the oldest UNSUBSCRIBE"
                );
                if let Some(subscriptions) = self.subscriptions.get_mut(&client.client_id) {
                    for filter in filters {
                        subscriptions.remove(&filter);
                    }
                }
            }
            Packet::Disconnect(_) => {
                assert!(
                    client.version.is_v5(),
                    "DISCONNECT to a {:?} client",
                    client.version
                );
                assert!(client.accepted, "DISCONNECT before CONNACK [MQTT-3.14.0-1]");
            }
            Packet::Auth(_) => {
                assert!(
                    client.version.is_v5(),
                    "AUTH to a {:?} client",
                    client.version
                );
            }
            _ => {}
        }
    }

    /// Checks the invariants that hold between steps.
    fn check(&mut self) {
        let stats = self.broker.stats();
        let open = self.slots.iter().flatten().filter(|c| c.accepted).count() as u64;
        assert_eq!(
            stats.clients_connected, open,
            "clients connected, against the harness's open connections"
        );
        let listed = self.broker.subscriptions();
        assert_eq!(
            stats.subscriptions,
            listed.len() as u64,
            "subscription count against the list"
        );
        // Each connected client's subscriptions are what its acknowledgements granted.
        for client in self.slots.iter().flatten() {
            if !client.accepted
                || !client.requests.is_empty()
                || client.lost_track
                || self.unknown.contains(&client.client_id)
            {
                continue;
            }
            let actual: BTreeMap<String, QoS> = listed
                .iter()
                .filter(|s| s.client_id == client.client_id)
                .map(|s| (s.filter.clone(), s.options.qos))
                .collect();
            let expected = self
                .subscriptions
                .get(&client.client_id)
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                actual, expected,
                "subscriptions of {:?} against its acknowledgements",
                client.client_id
            );
        }
        // Every session's queue and window within bounds.
        let snapshot = self.broker.snapshot(self.now);
        if let Some(store) = &self.store {
            assert_eq!(
                store::canonical(&store.load(self.now), self.now),
                store::canonical(&snapshot, self.now),
                "the store the records built, against the broker's snapshot"
            );
        }
        for session in &snapshot.sessions {
            assert!(
                session.inflight.len() <= usize::from(self.config.max_inflight),
                "{} in flight for {:?}",
                session.inflight.len(),
                session.client_id
            );
            assert!(
                session.queue.len() <= self.config.max_queued_messages,
                "{} queued for {:?}",
                session.queue.len(),
                session.client_id
            );
            let bytes: usize = session
                .queue
                .iter()
                .map(|q| q.message.publish.payload.len())
                .sum();
            assert!(
                bytes <= self.config.max_queued_bytes,
                "{bytes} bytes queued"
            );
        }
        for summary in self.broker.clients() {
            assert!(
                summary.queued
                    <= self.config.max_queued_messages + usize::from(self.config.max_inflight),
                "{} pending for {:?}",
                summary.queued,
                summary.client_id
            );
        }
    }
}
