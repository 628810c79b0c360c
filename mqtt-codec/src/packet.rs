//! The MQTT control packets as typed values, shared by all three protocol versions.
//!
//! One struct per packet type. Fields that exist only in MQTT 5.0 (reason codes, properties) are
//! present for every version: the encoder leaves them out for 3.1/3.1.1 and the decoder fills
//! them with their defaults (`ReasonCode::Success`, empty `Properties`).

use crate::{ByteStr, Properties, ReasonCode};
use alloc::vec::Vec;
use bytes::Bytes;

/// The protocol level a connection speaks, fixed by its CONNECT packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V311,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of the CONNECT variable header.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V31 => 3,
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name of the CONNECT variable header.
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V31 => "MQIsdp",
            ProtocolVersion::V311 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// Whether packets carry reason codes and properties.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// Quality of service of a message or a subscription.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0: fire and forget.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: acknowledged by PUBACK, may be duplicated.
    AtLeastOnce = 1,
    /// QoS 2: four-step handshake, delivered exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for the two-bit value `bits`, or `None` for the invalid value 3.
    pub fn from_bits(bits: u8) -> Option<QoS> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A control packet of any type.
// CONNECT carries two `Properties` and so dwarfs PINGREQ; boxing it would cost an allocation
// per packet and change the public shape, while a packet value is short-lived anyway.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT, client to server.
    Connect(ConnectPacket),
    /// CONNACK, server to client.
    ConnAck(ConnAckPacket),
    /// PUBLISH, both directions.
    Publish(PublishPacket),
    /// PUBACK, both directions (QoS 1 acknowledgement).
    PubAck(PubAckPacket),
    /// PUBREC, both directions (QoS 2 step 1).
    PubRec(PubAckPacket),
    /// PUBREL, both directions (QoS 2 step 2).
    PubRel(PubAckPacket),
    /// PUBCOMP, both directions (QoS 2 step 3).
    PubComp(PubAckPacket),
    /// SUBSCRIBE, client to server.
    Subscribe(SubscribePacket),
    /// SUBACK, server to client.
    SubAck(SubAckPacket),
    /// UNSUBSCRIBE, client to server.
    Unsubscribe(UnsubscribePacket),
    /// UNSUBACK, server to client.
    UnsubAck(UnsubAckPacket),
    /// PINGREQ, client to server.
    PingReq,
    /// PINGRESP, server to client.
    PingResp,
    /// DISCONNECT, client to server (and server to client in 5.0).
    Disconnect(DisconnectPacket),
    /// AUTH, both directions, MQTT 5.0 only.
    Auth(AuthPacket),
}

impl Packet {
    /// The packet type's name as the specification writes it, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// The will message carried in a CONNECT packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    /// Topic the will is published to.
    pub topic: ByteStr,
    /// The will's payload.
    pub payload: Bytes,
    /// QoS of the will message.
    pub qos: QoS,
    /// Whether the will is published as a retained message.
    pub retain: bool,
    /// Will properties (5.0): will delay interval, message expiry, content type and so on.
    pub properties: Properties,
}

/// CONNECT: the first packet of every connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectPacket {
    /// Protocol version requested by the client.
    pub protocol: ProtocolVersion,
    /// Clean session (3.1.1) or clean start (5.0).
    pub clean_start: bool,
    /// Keep alive interval in seconds; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty.
    pub client_id: ByteStr,
    /// Optional will message.
    pub will: Option<Will>,
    /// Optional user name.
    pub username: Option<ByteStr>,
    /// Optional password (binary data).
    pub password: Option<Bytes>,
    /// CONNECT properties (5.0).
    pub properties: Properties,
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnAckPacket {
    /// Whether the server resumed a stored session.
    pub session_present: bool,
    /// Result of the connection attempt. For 3.1/3.1.1 the encoder maps it to the return codes
    /// 0-5 (see [`ReasonCode::to_connect_return_code`]).
    pub reason_code: ReasonCode,
    /// CONNACK properties (5.0).
    pub properties: Properties,
}

/// PUBLISH: an application message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishPacket {
    /// Redelivery of an earlier attempt (QoS 1 and 2 only).
    pub dup: bool,
    /// Delivery QoS.
    pub qos: QoS,
    /// Retained message flag.
    pub retain: bool,
    /// Topic name. May be empty in 5.0 when a topic alias stands for it.
    pub topic: ByteStr,
    /// Packet identifier; `Some` exactly when `qos` is 1 or 2.
    pub packet_id: Option<u16>,
    /// PUBLISH properties (5.0).
    pub properties: Properties,
    /// Application payload, a slice of the received frame.
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubAckPacket {
    /// Packet identifier being acknowledged.
    pub packet_id: u16,
    /// Reason code (5.0); `Success` for older versions.
    pub reason_code: ReasonCode,
    /// Properties (5.0): reason string, user properties.
    pub properties: Properties,
}

impl PubAckPacket {
    /// A successful acknowledgement with no properties.
    pub fn new(packet_id: u16) -> Self {
        PubAckPacket {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: Properties::default(),
        }
    }
}

/// How retained messages are sent when a subscription is made (5.0 option, 3.1.1 behaves as 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe,
    /// 1: send them only if the subscription did not exist before.
    SendIfNew,
    /// 2: do not send retained messages.
    DoNotSend,
}

/// Options of one subscription in a SUBSCRIBE packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// Maximum QoS the client accepts for this subscription.
    pub qos: QoS,
    /// No Local (5.0): do not send the client's own publications back to it.
    pub no_local: bool,
    /// Retain As Published (5.0): keep the retain flag on forwarded messages.
    pub retain_as_published: bool,
    /// Retain Handling (5.0).
    pub retain_handling: RetainHandling,
}

/// One topic filter with its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The topic filter, possibly `$share/group/filter`.
    pub filter: ByteStr,
    /// Subscription options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE: one or more subscriptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribePacket {
    /// Packet identifier.
    pub packet_id: u16,
    /// Properties (5.0): subscription identifier, user properties.
    pub properties: Properties,
    /// The subscriptions, at least one.
    pub subscriptions: Vec<Subscription>,
}

/// SUBACK: one reason code per requested subscription, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAckPacket {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// Properties (5.0).
    pub properties: Properties,
    /// Granted QoS (0x00-0x02) or a failure code per subscription. 3.1.1 allows only
    /// 0x00, 0x01, 0x02 and 0x80; the encoder maps other failures to 0x80.
    pub reason_codes: Vec<ReasonCode>,
}

/// UNSUBSCRIBE: one or more topic filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubscribePacket {
    /// Packet identifier.
    pub packet_id: u16,
    /// Properties (5.0): user properties.
    pub properties: Properties,
    /// The filters, at least one.
    pub filters: Vec<ByteStr>,
}

/// UNSUBACK: in 5.0 one reason code per filter; in 3.1.1 just the packet identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubAckPacket {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// Properties (5.0).
    pub properties: Properties,
    /// Reason codes (5.0); empty for older versions.
    pub reason_codes: Vec<ReasonCode>,
}

/// DISCONNECT: orderly end of a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisconnectPacket {
    /// Reason code (5.0); `NormalDisconnection` (0x00) otherwise.
    pub reason_code: ReasonCode,
    /// Properties (5.0): session expiry, reason string, server reference, user properties.
    pub properties: Properties,
}

/// AUTH: extended authentication exchange (5.0 only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthPacket {
    /// Success, Continue authentication or Re-authenticate.
    pub reason_code: ReasonCode,
    /// Properties: authentication method and data, reason string, user properties.
    pub properties: Properties,
}
