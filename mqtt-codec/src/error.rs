//! Typed decode and encode errors. Every decode error names the rule it breaks, with the spec's
//! normative statement id where one exists, and maps to the MQTT 5.0 reason code that a server
//! sends (in DISCONNECT or CONNACK) before closing the connection.

use crate::{ReasonCode, topic::TopicError};
use alloc::string::String;
use thiserror::Error;

/// Why bytes could not be decoded into a packet.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Packet type 0 (or 15 before 5.0) is reserved.
    #[error("packet type {0} is reserved [MQTT-2.1.2]")]
    ReservedPacketType(u8),
    /// Fixed header flags differ from the values the packet type requires.
    #[error("invalid fixed header flags {flags:#06b} for {packet} [MQTT-2.2.2-1] [MQTT-2.2.2-2]")]
    InvalidHeaderFlags {
        /// The packet type's name.
        packet: &'static str,
        /// The received low nibble.
        flags: u8,
    },
    /// The remaining length used more than four bytes.
    #[error("remaining length is encoded in more than 4 bytes [MQTT-1.5.5-1] [MQTT-2.2.3]")]
    RemainingLengthTooLong,
    /// A variable byte integer inside the packet used more than four bytes.
    #[error("variable byte integer is encoded in more than 4 bytes [MQTT-1.5.5-1]")]
    VariableByteIntegerTooLong,
    /// The whole packet is larger than the receiver's maximum packet size.
    #[error(
        "packet of {size} bytes exceeds the maximum packet size of {maximum} bytes [MQTT-3.1.2-24]"
    )]
    PacketTooLarge {
        /// Size of the whole packet as announced by its fixed header.
        size: usize,
        /// The configured maximum.
        maximum: usize,
    },
    /// The packet ended before a field it declares, or had bytes left after its last field.
    #[error("malformed {packet}: {detail}")]
    Malformed {
        /// The packet type's name.
        packet: &'static str,
        /// What was wrong.
        detail: &'static str,
    },
    /// A string was not well-formed UTF-8.
    #[error("a UTF-8 encoded string is ill-formed [MQTT-1.5.4-1]")]
    InvalidUtf8,
    /// A string contained U+0000.
    #[error("a UTF-8 encoded string contains the null character U+0000 [MQTT-1.5.4-2]")]
    NullCharacter,
    /// Protocol name or level not supported.
    #[error("unsupported protocol name {name:?} level {level} [MQTT-3.1.2-1] [MQTT-3.1.2-2]")]
    UnsupportedProtocol {
        /// The protocol name as received (lossy UTF-8).
        name: String,
        /// The protocol level byte.
        level: u8,
    },
    /// CONNECT reserved flag set.
    #[error("the CONNECT reserved flag must be 0 [MQTT-3.1.2-3]")]
    ConnectReservedFlag,
    /// Will flags inconsistent (QoS or retain set without a will, or QoS 3).
    #[error(
        "will QoS and will retain must be 0 when there is no will, and will QoS must not be 3 [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-14] [MQTT-3.1.2-15]"
    )]
    InvalidWillFlags,
    /// Password flag without user name flag (3.1.1).
    #[error("the password flag must be 0 when the user name flag is 0 [MQTT-3.1.2-22]")]
    PasswordWithoutUsername,
    /// PUBLISH with QoS bits 11.
    #[error("a PUBLISH must not have both QoS bits set [MQTT-3.3.1-4]")]
    InvalidQoS,
    /// DUP set on a QoS 0 PUBLISH.
    #[error("the DUP flag must be 0 for QoS 0 messages [MQTT-3.3.1-2]")]
    DupWithQoS0,
    /// A packet identifier of zero.
    #[error("packet identifiers must be non-zero [MQTT-2.2.1-3]")]
    ZeroPacketIdentifier,
    /// Topic name or filter failed validation.
    #[error("{0}")]
    Topic(#[from] TopicError),
    /// No Local set on a `$share/...` subscription.
    #[error("No Local must not be set on a shared subscription [MQTT-3.8.3-4]")]
    NoLocalOnSharedSubscription,
    /// A 5.0 PUBLISH with an empty topic name and no Topic Alias to stand for it.
    #[error(
        "a zero-length topic name without a topic alias is a protocol error (5.0 spec 3.3.2.1)"
    )]
    EmptyTopicWithoutAlias,
    /// SUBSCRIBE or UNSUBSCRIBE with no topic filter.
    #[error("{packet} must contain at least one topic filter [MQTT-3.8.3-2] [MQTT-3.10.3-2]")]
    NoTopicFilters {
        /// The packet type's name.
        packet: &'static str,
    },
    /// Reserved bits of subscription options set, or retain handling 3, or QoS 3.
    #[error("invalid subscription options {0:#04x} [MQTT-3.8.3-4] [MQTT-3.8.3-5]")]
    InvalidSubscriptionOptions(u8),
    /// A reason code the specification does not define for this packet.
    #[error("reason code {code:#04x} is not defined for {packet} (spec 2.4)")]
    InvalidReasonCode {
        /// The packet type's name.
        packet: &'static str,
        /// The received byte.
        code: u8,
    },
    /// An unknown property identifier.
    #[error("unknown property identifier {0:#04x} [MQTT-2.2.2]")]
    UnknownProperty(u8),
    /// A property that the packet type does not allow.
    #[error("property {property:#04x} is not allowed in {packet} [MQTT-2.2.2]")]
    PropertyNotAllowed {
        /// The packet type's name (or "will").
        packet: &'static str,
        /// The property identifier.
        property: u8,
    },
    /// A property other than User Property or Subscription Identifier appeared twice.
    #[error("property {0:#04x} appears more than once [MQTT-2.2.2]")]
    DuplicateProperty(u8),
    /// A property value out of its allowed range (e.g. Receive Maximum 0).
    #[error("property {property:#04x} has an invalid value: {detail}")]
    InvalidPropertyValue {
        /// The property identifier.
        property: u8,
        /// What was wrong.
        detail: &'static str,
    },
    /// A packet that only clients send, received by a client ([`crate::decode_from_server`]).
    #[error("{packet} is sent only by clients [MQTT-2.1.2]")]
    UnexpectedPacket {
        /// The packet type's name.
        packet: &'static str,
    },
    /// AUTH received on a connection that does not speak 5.0.
    #[error("AUTH exists only in MQTT 5.0 [MQTT-2.1.2]")]
    AuthBeforeV5,
}

impl DecodeError {
    /// The MQTT 5.0 reason code a server answers this error with.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::UnsupportedProtocol { .. } => ReasonCode::UnsupportedProtocolVersion,
            DecodeError::Topic(TopicError::WildcardInName) => ReasonCode::TopicNameInvalid,
            DecodeError::ZeroPacketIdentifier
            | DecodeError::EmptyTopicWithoutAlias
            | DecodeError::NoLocalOnSharedSubscription
            | DecodeError::AuthBeforeV5
            | DecodeError::UnexpectedPacket { .. }
            | DecodeError::DuplicateProperty(_)
            | DecodeError::PropertyNotAllowed { .. }
            | DecodeError::InvalidPropertyValue { .. } => ReasonCode::ProtocolError,
            _ => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The packet is larger than MQTT's 268,435,455-byte limit on the remaining length.
    #[error("packet remaining length {0} exceeds 268435455 bytes [MQTT-2.2.3]")]
    PacketTooLarge(usize),
    /// A string or binary field is longer than 65,535 bytes.
    #[error("a string or binary field of {0} bytes exceeds 65535 bytes [MQTT-1.5.4-1]")]
    FieldTooLong(usize),
    /// The packet type does not exist in the connection's protocol version (AUTH before 5.0).
    #[error("{packet} cannot be sent with protocol {version:?}")]
    NotInVersion {
        /// The packet type's name.
        packet: &'static str,
        /// The connection's version.
        version: crate::ProtocolVersion,
    },
    /// A packet that only servers send, given to [`crate::encode_from_client`].
    #[error("{packet} is sent only by servers [MQTT-2.1.2]")]
    ServerOnly {
        /// The packet type's name.
        packet: &'static str,
    },
    /// A QoS > 0 PUBLISH without packet identifier, or QoS 0 with one.
    #[error(
        "a PUBLISH must carry a packet identifier exactly when its QoS is 1 or 2 [MQTT-2.2.1-2]"
    )]
    PacketIdentifierMismatch,
    /// A value written as a Variable Byte Integer (a Subscription Identifier) exceeds 268,435,455.
    #[error("{0} does not fit a Variable Byte Integer, whose maximum is 268435455 [MQTT-1.5.5]")]
    VariableByteIntegerTooLarge(usize),
}
