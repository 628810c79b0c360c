//! Test harness: a broker stepped with a fake clock, packet builders and output filters.
//!
//! Shared by every module of this test binary.

use broker_core::{
    AllowAll, AuthHook, Authentication, Broker, BrokerConfig, ConnectionId, ConnectionInfo, Frame,
    FrameKind, Output, Transport,
};
use bytes::{Bytes, BytesMut};
use mqtt_codec::{
    ByteStr, ConnAckPacket, ConnectPacket, DisconnectPacket, Packet, Properties, ProtocolVersion,
    PubAckPacket, PublishPacket, QoS, ReasonCode, RetainHandling, SubAckPacket, SubscribePacket,
    Subscription, SubscriptionOptions, UnsubscribePacket, Will, decode_from_server,
};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

thread_local! {
    /// The protocol version each connection's client spoke in its CONNECT (each test runs on a
    /// thread of its own): frames to it are decoded as that client reads them, not by the
    /// version the broker stamped on them, so a frame encoded for the wrong version fails.
    static CLIENT_VERSIONS: RefCell<HashMap<ConnectionId, ProtocolVersion>> =
        RefCell::new(HashMap::new());
}

/// Connection identifiers used across the tests.
pub const A: ConnectionId = ConnectionId(1);
pub const B: ConnectionId = ConnectionId(2);
pub const C: ConnectionId = ConnectionId(3);
pub const D: ConnectionId = ConnectionId(4);
pub const E: ConnectionId = ConnectionId(5);

/// A broker and the fake clock that drives it.
pub struct Harness {
    pub broker: Broker,
    pub t0: Instant,
    pub now: Instant,
}

impl Harness {
    /// Default configuration, without `$SYS` publication (so the timer queue only holds what a
    /// test sets up), allowing everyone.
    pub fn new() -> Self {
        Self::with_config(quiet_config())
    }

    pub fn with_config(config: BrokerConfig) -> Self {
        Self::with_auth(config, Box::new(AllowAll))
    }

    pub fn with_auth(config: BrokerConfig, auth: Box<dyn AuthHook>) -> Self {
        let t0 = Instant::now();
        Harness {
            broker: Broker::new(config, auth, t0),
            t0,
            now: t0,
        }
    }

    /// Moves the clock forward without running deadlines.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Moves the clock forward and runs every deadline due, returning what the broker did.
    pub fn advance_and_tick(&mut self, by: Duration) -> Vec<Output> {
        self.now += by;
        self.tick()
    }

    /// Runs the deadlines due at the current time.
    pub fn tick(&mut self) -> Vec<Output> {
        self.broker.handle_timeout(self.now);
        self.drain()
    }

    /// Everything the broker wants done, in order.
    pub fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.broker.poll_output()).collect()
    }

    /// Feeds a CONNECT on a new connection, whose credentials nobody checked beforehand.
    pub fn connect(&mut self, connection: ConnectionId, connect: ConnectPacket) -> Vec<Output> {
        self.connect_with(connection, connect, Authentication::Unchecked)
    }

    /// Feeds a CONNECT with what was established about its credentials.
    pub fn connect_with(
        &mut self,
        connection: ConnectionId,
        connect: ConnectPacket,
        authentication: Authentication,
    ) -> Vec<Output> {
        CLIENT_VERSIONS.with(|versions| {
            versions.borrow_mut().insert(connection, connect.protocol);
        });
        self.broker
            .handle_connect(connection, connect, info(), authentication, self.now);
        self.drain()
    }

    /// Connects and asserts the CONNACK is a success; returns it.
    pub fn connect_ok(
        &mut self,
        connection: ConnectionId,
        connect: ConnectPacket,
    ) -> ConnAckPacket {
        let outputs = self.connect(connection, connect);
        let connack = connack(&outputs, connection);
        assert_eq!(connack.reason_code, ReasonCode::Success, "{outputs:#?}");
        assert!(!closed(&outputs, connection), "{outputs:#?}");
        connack
    }

    /// Feeds a packet on an accepted connection.
    pub fn send(&mut self, connection: ConnectionId, packet: Packet) -> Vec<Output> {
        self.broker.handle_packet(connection, packet, self.now);
        self.drain()
    }

    /// Publishes and returns the outputs.
    pub fn publish(&mut self, connection: ConnectionId, publish: PublishPacket) -> Vec<Output> {
        self.send(connection, Packet::Publish(publish))
    }

    /// Subscribes to one filter and checks the SUBACK grants what was asked.
    pub fn subscribe(&mut self, connection: ConnectionId, filter: &str, qos: QoS) -> Vec<Output> {
        self.subscribe_with(connection, filter, options(qos), None)
    }

    /// Subscribes with full options and an optional subscription identifier; checks the grant.
    pub fn subscribe_with(
        &mut self,
        connection: ConnectionId,
        filter: &str,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> Vec<Output> {
        let outputs = self.send(
            connection,
            Packet::Subscribe(subscribe_packet(100, &[(filter, options)], identifier)),
        );
        let suback = suback(&outputs, connection);
        assert_eq!(
            suback.reason_codes,
            vec![granted(options.qos)],
            "{outputs:#?}"
        );
        outputs
    }

    pub fn unsubscribe(&mut self, connection: ConnectionId, filters: &[&str]) -> Vec<Output> {
        self.send(
            connection,
            Packet::Unsubscribe(UnsubscribePacket {
                packet_id: 200,
                properties: Properties::default(),
                filters: filters.iter().map(|f| ByteStr::from(*f)).collect(),
            }),
        )
    }

    pub fn disconnect(&mut self, connection: ConnectionId) -> Vec<Output> {
        self.send(connection, Packet::Disconnect(DisconnectPacket::default()))
    }

    pub fn lose(&mut self, connection: ConnectionId) -> Vec<Output> {
        self.broker.handle_connection_lost(connection, self.now);
        self.drain()
    }

    pub fn puback(&mut self, connection: ConnectionId, packet_id: u16) -> Vec<Output> {
        self.send(connection, Packet::PubAck(PubAckPacket::new(packet_id)))
    }
}

/// The default configuration with `$SYS` publication off.
pub fn quiet_config() -> BrokerConfig {
    BrokerConfig {
        sys_interval: None,
        ..BrokerConfig::default()
    }
}

pub fn info() -> ConnectionInfo {
    ConnectionInfo {
        transport: Transport::Tcp,
        remote_address: "127.0.0.1:50000".into(),
    }
}

pub fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

pub fn millis(milliseconds: u64) -> Duration {
    Duration::from_millis(milliseconds)
}

// ----- Packet builders ------------------------------------------------------------------------

/// A CONNECT with clean start, no keep alive, no will.
pub fn connect_packet(protocol: ProtocolVersion, client_id: &str) -> ConnectPacket {
    ConnectPacket {
        protocol,
        clean_start: true,
        keep_alive: 0,
        client_id: ByteStr::from(client_id),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

pub fn v5(client_id: &str) -> ConnectPacket {
    connect_packet(ProtocolVersion::V5, client_id)
}

pub fn v311(client_id: &str) -> ConnectPacket {
    connect_packet(ProtocolVersion::V311, client_id)
}

pub fn v31(client_id: &str) -> ConnectPacket {
    connect_packet(ProtocolVersion::V31, client_id)
}

/// A 5.0 CONNECT that keeps its session for `expiry` seconds, resuming any existing one.
pub fn v5_persistent(client_id: &str, expiry: u32) -> ConnectPacket {
    let mut connect = v5(client_id);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(expiry);
    connect
}

/// A 3.1.1 CONNECT with clean session 0.
pub fn v311_persistent(client_id: &str) -> ConnectPacket {
    let mut connect = v311(client_id);
    connect.clean_start = false;
    connect
}

pub fn will(topic: &str, payload: &str) -> Will {
    Will {
        topic: ByteStr::from(topic),
        payload: Bytes::from(payload.to_string()),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    }
}

pub fn with_will(mut connect: ConnectPacket, will: Will) -> ConnectPacket {
    connect.will = Some(will);
    connect
}

/// A PUBLISH as a client sends it; QoS 1 and 2 get `packet_id`.
pub fn publish_packet(topic: &str, qos: QoS, payload: &str, packet_id: u16) -> PublishPacket {
    PublishPacket {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from(topic),
        packet_id: (qos != QoS::AtMostOnce).then_some(packet_id),
        properties: Properties::default(),
        payload: Bytes::from(payload.to_string()),
    }
}

pub fn qos0(topic: &str, payload: &str) -> PublishPacket {
    publish_packet(topic, QoS::AtMostOnce, payload, 0)
}

pub fn qos1(topic: &str, payload: &str, packet_id: u16) -> PublishPacket {
    publish_packet(topic, QoS::AtLeastOnce, payload, packet_id)
}

pub fn qos2(topic: &str, payload: &str, packet_id: u16) -> PublishPacket {
    publish_packet(topic, QoS::ExactlyOnce, payload, packet_id)
}

pub fn retained(mut publish: PublishPacket) -> PublishPacket {
    publish.retain = true;
    publish
}

pub fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

pub fn subscribe_packet(
    packet_id: u16,
    filters: &[(&str, SubscriptionOptions)],
    identifier: Option<u32>,
) -> SubscribePacket {
    let mut properties = Properties::default();
    properties.subscription_identifiers.extend(identifier);
    SubscribePacket {
        packet_id,
        properties,
        subscriptions: filters
            .iter()
            .map(|(filter, options)| Subscription {
                filter: ByteStr::from(*filter),
                options: *options,
            })
            .collect(),
    }
}

pub fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}

pub fn retain_handling(qos: QoS, handling: RetainHandling) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        retain_handling: handling,
        ..SubscriptionOptions::default()
    }
}

// ----- Output filters -------------------------------------------------------------------------

/// The packets sent to `connection`, in order, decoded from their frames as the client would.
pub fn sent_to(outputs: &[Output], connection: ConnectionId) -> Vec<Packet> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send {
                connection: target,
                frame,
            } if *target == connection => Some(decode_for(connection, frame)),
            _ => None,
        })
        .collect()
}

/// A frame sent to `connection`, decoded as its client reads it: by the version of its
/// CONNECT, which the broker must have stamped on the frame too. A connection that never sent
/// a CONNECT (its first bytes failed to decode) is read by the frame's version.
fn decode_for(connection: ConnectionId, frame: &Frame) -> Packet {
    let spoken = CLIENT_VERSIONS.with(|versions| versions.borrow().get(&connection).copied());
    if let Some(version) = spoken {
        assert_eq!(frame.protocol, version, "a frame for a {version:?} client");
    }
    decode_frame(frame)
}

/// The one packet a frame holds; fails the test if the frame holds anything else.
pub fn decode_frame(frame: &Frame) -> Packet {
    let mut bytes = BytesMut::from(&frame.bytes[..]);
    let packet = decode_from_server(&mut bytes, frame.protocol, usize::MAX)
        .expect("the broker encodes valid packets")
        .expect("a frame holds a whole packet");
    assert!(bytes.is_empty(), "a frame holds exactly one packet");
    let kind = match &packet {
        Packet::Publish(publish) => FrameKind::Publish {
            qos: publish.qos,
            sets_alias: publish.properties.topic_alias.is_some() && !publish.topic.is_empty(),
        },
        _ => FrameKind::Control,
    };
    assert_eq!(frame.kind, kind, "the frame's kind matches its packet");
    packet
}

/// The PUBLISH packets sent to `connection`, in order.
pub fn publishes(outputs: &[Output], connection: ConnectionId) -> Vec<PublishPacket> {
    sent_to(outputs, connection)
        .into_iter()
        .filter_map(|packet| match packet {
            Packet::Publish(publish) => Some(publish),
            _ => None,
        })
        .collect()
}

/// The payloads of the PUBLISH packets sent to `connection`, as text.
pub fn payloads(outputs: &[Output], connection: ConnectionId) -> Vec<String> {
    publishes(outputs, connection)
        .iter()
        .map(|p| String::from_utf8(p.payload.to_vec()).expect("test payloads are text"))
        .collect()
}

/// Whether the broker asked to close `connection`.
pub fn closed(outputs: &[Output], connection: ConnectionId) -> bool {
    outputs
        .iter()
        .any(|output| matches!(output, Output::Close { connection: c } if *c == connection))
}

/// The only CONNACK sent to `connection`.
pub fn connack(outputs: &[Output], connection: ConnectionId) -> ConnAckPacket {
    let mut found = sent_to(outputs, connection)
        .into_iter()
        .filter_map(|packet| match packet {
            Packet::ConnAck(connack) => Some(connack),
            _ => None,
        });
    let connack = found
        .next()
        .unwrap_or_else(|| panic!("no CONNACK in {outputs:#?}"));
    assert!(
        found.next().is_none(),
        "more than one CONNACK in {outputs:#?}"
    );
    connack
}

/// The only SUBACK sent to `connection`.
pub fn suback(outputs: &[Output], connection: ConnectionId) -> SubAckPacket {
    sent_to(outputs, connection)
        .into_iter()
        .find_map(|packet| match packet {
            Packet::SubAck(suback) => Some(suback),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no SUBACK in {outputs:#?}"))
}

/// The reason code of the DISCONNECT sent to `connection`, if any.
pub fn disconnect_reason(outputs: &[Output], connection: ConnectionId) -> Option<ReasonCode> {
    sent_to(outputs, connection)
        .into_iter()
        .find_map(|packet| match packet {
            Packet::Disconnect(disconnect) => Some(disconnect.reason_code),
            _ => None,
        })
}

/// Asserts the broker sent DISCONNECT with `reason` and then closed `connection`.
pub fn assert_disconnected(outputs: &[Output], connection: ConnectionId, reason: ReasonCode) {
    assert_eq!(
        disconnect_reason(outputs, connection),
        Some(reason),
        "{outputs:#?}"
    );
    assert!(closed(outputs, connection), "{outputs:#?}");
    let last_for_connection = outputs
        .iter()
        .rev()
        .find(|output| match output {
            Output::Send { connection: c, .. } | Output::Close { connection: c } => {
                *c == connection
            }
        })
        .expect("something was output");
    assert!(
        matches!(last_for_connection, Output::Close { .. }),
        "nothing is sent after the close: {outputs:#?}"
    );
}

/// Acknowledgements of one kind sent to `connection`: (packet id, reason).
pub fn acks(
    outputs: &[Output],
    connection: ConnectionId,
    kind: fn(&Packet) -> Option<&PubAckPacket>,
) -> Vec<(u16, ReasonCode)> {
    sent_to(outputs, connection)
        .iter()
        .filter_map(|packet| kind(packet).map(|ack| (ack.packet_id, ack.reason_code)))
        .collect()
}

pub fn is_puback(packet: &Packet) -> Option<&PubAckPacket> {
    match packet {
        Packet::PubAck(ack) => Some(ack),
        _ => None,
    }
}

pub fn is_pubrec(packet: &Packet) -> Option<&PubAckPacket> {
    match packet {
        Packet::PubRec(ack) => Some(ack),
        _ => None,
    }
}

pub fn is_pubrel(packet: &Packet) -> Option<&PubAckPacket> {
    match packet {
        Packet::PubRel(ack) => Some(ack),
        _ => None,
    }
}

pub fn is_pubcomp(packet: &Packet) -> Option<&PubAckPacket> {
    match packet {
        Packet::PubComp(ack) => Some(ack),
        _ => None,
    }
}
