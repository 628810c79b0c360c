//! Why the broker ends a connection, as one type.
//!
//! Every refusal of a CONNECT (a CONNACK with an error code) and every DISCONNECT the broker
//! sends names a [`Termination`]: its [`reason_code`](Termination::reason_code) goes on the wire,
//! its `Display` (which cites the specification's statement where there is one) goes into the
//! log line and the 5.0 reason string, so a log, a packet and a test all name the same variant.

use super::limits::TopicLimit;
use mqtt_codec::{ByteStr, DecodeError, ReasonCode, topic::TopicError};
use thiserror::Error;

/// Why the broker ends a connection: mostly the client's protocol violations, plus the broker's
/// own decisions (a takeover, an administrator, refused credentials).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Termination {
    // ----- CONNECT refused ---------------------------------------------------------------------
    /// A 3.1 client, or a 3.1.1 client without clean session, sent an empty client identifier.
    #[error("empty client identifier without clean session [MQTT-3.1.3-8]")]
    EmptyClientId,
    /// The client identifier is longer than the broker accepts.
    #[error("client identifier longer than the configured maximum")]
    ClientIdTooLong,
    /// The will asks to be retained, and retained messages are disabled.
    #[error("will retain requested but retained messages are disabled [MQTT-3.2.2-13]")]
    WillRetainUnavailable,
    /// The client may not publish to its will's topic.
    #[error("publishing the will topic is not authorized")]
    WillNotAuthorized,
    /// The will topic is beyond the configured length or levels.
    #[error("will topic of {0}: not accepted (--max-topic-length, --max-topic-levels)")]
    WillTopicOverLimit(TopicLimit),
    /// A 3.1/3.1.1 client asked for a keep alive above the configured maximum, or none (0). It
    /// cannot be told another (5.0 has Server Keep Alive), and no 3.1.1 return code says why,
    /// so it is refused without a CONNACK [MQTT-3.2.2-6].
    #[error(
        "keep alive {requested} s (0: none) above the maximum of {maximum} s, which a 3.1.1 client cannot be told [MQTT-3.2.2-6]"
    )]
    KeepAliveAboveMaximum {
        /// The CONNECT's keep alive.
        requested: u16,
        /// The configured maximum.
        maximum: u16,
    },
    /// The authentication hook wants an exchange, but the client named no method to hold it in.
    #[error("authentication exchange requested, but the client named no method")]
    AuthenticationMethodMissing,
    /// An AUTH during enhanced authentication neither continued (0x18) nor kept the method.
    #[error(
        "AUTH must continue (0x18) with the CONNECT's authentication method [MQTT-4.12.0-3] [MQTT-4.12.0-5]"
    )]
    AuthenticationNotContinued,
    /// The authentication hook refused the client, with this reason.
    #[error("authentication refused")]
    AuthenticationRefused(ReasonCode),
    /// The credentials checked before CONNECT were refused, with this reason (whoever checked
    /// them logged why).
    #[error("credentials refused")]
    CredentialsRefused(ReasonCode),
    /// The CONNACK would exceed the client's Maximum Packet Size, even without Reason String
    /// and User Properties.
    #[error(
        "the CONNACK ({size} bytes) exceeds the client's Maximum Packet Size ({maximum}) [MQTT-3.1.2-24]"
    )]
    ConnAckTooLarge {
        /// The CONNACK's size without its optional properties.
        size: usize,
        /// The client's Maximum Packet Size.
        maximum: u32,
    },

    // ----- Protocol violations after CONNECT ---------------------------------------------------
    /// A second CONNECT on one connection.
    #[error("second CONNECT on one connection [MQTT-3.1.0-2]")]
    SecondConnect,
    /// A packet that only a server may send (CONNACK, SUBACK, ...), named.
    #[error("{0} may only be sent by a server")]
    ServerOnlyPacket(&'static str),
    /// Bytes that do not decode as a packet.
    #[error(transparent)]
    Malformed(DecodeError),
    /// Anything but AUTH or DISCONNECT while enhanced authentication is under way.
    #[error("expected AUTH during enhanced authentication [MQTT-3.1.2-30]")]
    AuthExpected,
    /// AUTH from a client whose CONNECT named no authentication method.
    #[error("AUTH without an authentication method in CONNECT [MQTT-4.12.0-7]")]
    AuthWithoutMethod,
    /// AUTH naming another method than the CONNECT did.
    #[error("AUTH with a different authentication method [MQTT-4.12.1-1]")]
    AuthMethodChanged,
    /// A topic alias of 0 or above the broker's Topic Alias Maximum.
    #[error("topic alias {alias} is outside 1..={maximum} [MQTT-3.3.2-9]")]
    TopicAliasOutOfRange {
        /// The alias used.
        alias: u16,
        /// The broker's Topic Alias Maximum.
        maximum: u16,
    },
    /// A PUBLISH from a client carrying a Subscription Identifier, which only the server sends.
    #[error("a PUBLISH from a client must not carry a Subscription Identifier [MQTT-3.3.4-6]")]
    SubscriptionIdentifierFromClient,
    /// A PUBLISH with an empty topic and an alias never set.
    #[error("topic alias {0} was never set (spec 3.3.2.3.4)")]
    TopicAliasUnknown(u16),
    /// A PUBLISH topic that is not a valid topic name.
    #[error(transparent)]
    TopicNameInvalid(TopicError),
    /// A PUBLISH topic beyond the configured length or levels (5.0: a QoS 0 one, which has no
    /// acknowledgement to carry 0x90; 3.1.1 has no negative acknowledgement at all).
    #[error("topic name of {0}: not accepted (--max-topic-length, --max-topic-levels)")]
    TopicNameOverLimit(TopicLimit),
    /// A packet with more User Properties, or more bytes of them, than configured, that has
    /// no acknowledgement to refuse it in.
    #[error(
        "more User Properties than accepted (--max-user-properties, --max-user-properties-bytes)"
    )]
    UserPropertiesOverLimit,
    /// A retained PUBLISH while retained messages are disabled.
    #[error("retained messages are disabled [MQTT-3.2.2-14]")]
    RetainUnavailable,
    /// More QoS 2 messages awaiting PUBREL than the broker's Receive Maximum.
    #[error("more than {0} QoS 2 messages awaiting PUBREL [MQTT-3.3.4-7]")]
    ReceiveMaximumExceeded(u16),
    /// No Local on a shared subscription.
    #[error("No Local set on shared subscription {0:?} [MQTT-3.8.3-4]")]
    NoLocalOnSharedSubscription(ByteStr),
    /// A DISCONNECT that sets a session expiry after the CONNECT set 0.
    #[error("session expiry set at DISCONNECT after CONNECT set 0 (spec 3.14.2.2.2)")]
    SessionExpiryAfterZero,
    /// Nothing received for one and a half keep alive periods (the period, in seconds).
    #[error("nothing received for 1.5 x keep alive ({0} s) [MQTT-3.1.2-22]")]
    KeepAliveTimeout(u16),

    // ----- The broker's own decisions ----------------------------------------------------------
    /// Another connection took the client identifier over [MQTT-3.1.4-3].
    #[error("another connection used the same client identifier")]
    SessionTakenOver,
    /// The authentication hook refused a re-authentication, with this reason.
    #[error("re-authentication refused")]
    ReauthenticationRefused(ReasonCode),
    /// An administrator disconnected the client.
    #[error("disconnected by an administrator")]
    AdministrativeAction,
    /// The credentials the client connected with expired (a token's `exp` passed).
    #[error("credentials expired")]
    CredentialsExpired,
    /// A 3.1.1 client published a QoS 1 or 2 message the store would have to keep while it
    /// cannot write; 3.1.1 has no way to refuse one message but closing the connection.
    #[error("the store cannot write, so the message cannot be accepted")]
    StoreUnavailable,
}

impl Termination {
    /// The reason code that goes in the CONNACK or DISCONNECT.
    pub fn reason_code(&self) -> ReasonCode {
        use Termination::*;
        match self {
            EmptyClientId | ClientIdTooLong => ReasonCode::ClientIdentifierNotValid,
            WillRetainUnavailable | RetainUnavailable => ReasonCode::RetainNotSupported,
            WillNotAuthorized => ReasonCode::NotAuthorized,
            AuthenticationMethodMissing => ReasonCode::BadAuthenticationMethod,
            ConnAckTooLarge { .. } => ReasonCode::PacketTooLarge,
            AuthenticationRefused(reason)
            | CredentialsRefused(reason)
            | ReauthenticationRefused(reason) => *reason,
            Malformed(error) => error.reason_code(),
            TopicAliasOutOfRange { .. } => ReasonCode::TopicAliasInvalid,
            TopicNameInvalid(_) | TopicNameOverLimit(_) | WillTopicOverLimit(_) => {
                ReasonCode::TopicNameInvalid
            }
            UserPropertiesOverLimit => ReasonCode::QuotaExceeded,
            KeepAliveAboveMaximum { .. } => ReasonCode::ImplementationSpecificError,
            ReceiveMaximumExceeded(_) => ReasonCode::ReceiveMaximumExceeded,
            KeepAliveTimeout(_) => ReasonCode::KeepAliveTimeout,
            SessionTakenOver => ReasonCode::SessionTakenOver,
            AdministrativeAction => ReasonCode::AdministrativeAction,
            CredentialsExpired => ReasonCode::MaximumConnectTime,
            StoreUnavailable => ReasonCode::QuotaExceeded,
            AuthenticationNotContinued
            | SecondConnect
            | ServerOnlyPacket(_)
            | AuthExpected
            | AuthWithoutMethod
            | AuthMethodChanged
            | TopicAliasUnknown(_)
            | SubscriptionIdentifierFromClient
            | NoLocalOnSharedSubscription(_)
            | SessionExpiryAfterZero => ReasonCode::ProtocolError,
        }
    }

    /// Whether a 3.1/3.1.1 CONNACK return code fits this refusal. When none does, the
    /// connection is closed without a CONNACK [MQTT-3.2.2-6].
    pub fn has_v3_return_code(&self) -> bool {
        !matches!(
            self,
            Termination::WillTopicOverLimit(_) | Termination::KeepAliveAboveMaximum { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each variant's reason code is one the packet it travels in may carry: an error (0x80 and
    /// above), so a client never reads a refusal as success.
    #[test]
    fn every_termination_is_an_error() {
        let all = [
            Termination::EmptyClientId,
            Termination::ClientIdTooLong,
            Termination::WillRetainUnavailable,
            Termination::WillNotAuthorized,
            Termination::AuthenticationMethodMissing,
            Termination::AuthenticationNotContinued,
            Termination::AuthenticationRefused(ReasonCode::NotAuthorized),
            Termination::CredentialsRefused(ReasonCode::BadUserNameOrPassword),
            Termination::ConnAckTooLarge {
                size: 40,
                maximum: 16,
            },
            Termination::SecondConnect,
            Termination::ServerOnlyPacket("SUBACK"),
            Termination::AuthExpected,
            Termination::AuthWithoutMethod,
            Termination::AuthMethodChanged,
            Termination::TopicAliasOutOfRange {
                alias: 0,
                maximum: 10,
            },
            Termination::TopicAliasUnknown(3),
            Termination::SubscriptionIdentifierFromClient,
            Termination::TopicNameInvalid(TopicError::Empty),
            Termination::RetainUnavailable,
            Termination::ReceiveMaximumExceeded(10),
            Termination::NoLocalOnSharedSubscription(ByteStr::from_static("$share/g/t")),
            Termination::SessionExpiryAfterZero,
            Termination::KeepAliveTimeout(60),
            Termination::SessionTakenOver,
            Termination::ReauthenticationRefused(ReasonCode::NotAuthorized),
            Termination::AdministrativeAction,
            Termination::CredentialsExpired,
            Termination::StoreUnavailable,
            Termination::TopicNameOverLimit(TopicLimit::Levels {
                levels: 3,
                maximum: 2,
            }),
            Termination::WillTopicOverLimit(TopicLimit::Length {
                length: 3,
                maximum: 2,
            }),
            Termination::UserPropertiesOverLimit,
            Termination::KeepAliveAboveMaximum {
                requested: 0,
                maximum: 60,
            },
        ];
        for termination in all {
            assert!(
                termination.reason_code().is_error(),
                "{termination:?} has {:?}",
                termination.reason_code()
            );
            assert!(!termination.to_string().is_empty());
        }
    }
}
