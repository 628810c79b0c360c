//! The client's typed errors. Each carries a stable [`ClientError::code`] that the JS layer puts
//! on the `Error` object (`error.code`), and the MQTT reason code when the broker gave one.
//!
//! Messages are assembled by [`ClientError::message`] from static text, without `core::fmt`
//! argument formatting: in the wasm package, formatting code (integer padding, `{:?}` escaping)
//! costs kilobytes that the size budget cannot spare. That is also why `Display` and `Error`
//! are implemented here rather than derived with thiserror, whose generated `Display` formats.

use alloc::string::String;
use mqtt_codec::{EncodeError, ProtocolVersion, ReasonCode, topic::TopicError};

/// Why an operation or a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The options passed to `connect` are not usable.
    InvalidOptions(&'static str),
    /// The broker answered CONNECT with a failure (CONNACK) other than those below.
    ConnectionRefused(ConnectRefusal),
    /// The broker refused the user name or password (5.0 reason code 0x86, 3.1.1 return
    /// code 4): the client does not reconnect.
    BadCredentials(ConnectRefusal),
    /// The broker refused the client as not authorized (5.0 reason code 0x87, 3.1.1 return
    /// code 5): the client does not reconnect.
    NotAuthorized(ConnectRefusal),
    /// The application's credentials function, or its answer to the broker's AUTH (`onAuth`),
    /// threw or rejected: the attempt fails (the connection, in a re-authentication), and the
    /// backoff goes on, as after any failure.
    CredentialsFailed,
    /// The transport could not be opened, or closed before the CONNACK.
    ConnectFailed,
    /// No CONNACK within the connect timeout.
    ConnectTimeout,
    /// Nothing was received for 1.5 times the keep alive after a PINGREQ [MQTT-3.1.2-24].
    KeepAliveTimeout,
    /// The transport closed under an established connection.
    ConnectionLost,
    /// The broker sent DISCONNECT (MQTT 5.0) with this reason code.
    ServerDisconnected(ReasonCode),
    /// The broker sent a packet out of place (e.g. PUBLISH before CONNACK).
    Protocol(&'static str),
    /// The broker sent bytes that do not decode as MQTT; the reason code the client sends in
    /// its DISCONNECT (the decode error itself is not kept: its text would need `core::fmt`).
    Malformed(ReasonCode),
    /// A packet could not be encoded (e.g. a property longer than 65535 bytes).
    InvalidArgument(EncodeProblem),
    /// A SUBACK refused the subscription (e.g. 0x87 not authorized).
    SubscribeRefused(ReasonCode),
    /// An UNSUBACK reported a failure (MQTT 5.0).
    UnsubscribeRefused(ReasonCode),
    /// A PUBACK or PUBREC carried a failure reason code (MQTT 5.0).
    PublishRefused(ReasonCode),
    /// A topic name or filter is invalid.
    InvalidTopic(TopicError),
    /// The packet is larger than the broker's Maximum Packet Size (or MQTT's own limit).
    PacketTooLarge {
        /// Size of the encoded packet.
        size: usize,
        /// The limit it exceeds.
        maximum: usize,
    },
    /// The broker's Maximum QoS (MQTT 5.0 CONNACK) is below the requested QoS.
    QoSNotSupported {
        /// QoS of the publish.
        requested: u8,
        /// The broker's maximum.
        maximum: u8,
    },
    /// The offline queue already holds `offlineQueueLimit` operations.
    QueueFull(usize),
    /// The client was closed (by `end()`, or for good after a failure) before the operation completed.
    Closed,
}

/// A CONNACK's failure, as the broker sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectRefusal {
    /// The reason as MQTT 5.0 names it (a 3.1.1 return code reads as its 5.0 equivalent).
    pub reason: ReasonCode,
    /// The byte in the CONNACK: the 5.0 reason code, or the 3.1.1 return code (1 to 5).
    pub code: u8,
}

/// Why a packet could not be encoded: the codec's [`EncodeError`] reduced to what the message
/// tells, so that [`ClientError`] is plain `Copy` data (a lost connection reports its error
/// twice, in `ConnectionLost` and `Closed`; a derived `Clone` of the codec's error costs the
/// wasm package more than the sizes it carries are worth). The discriminants index the texts
/// in `js/support.js` (`ENCODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeProblem {
    /// A string or binary field is longer than 65535 bytes.
    FieldTooLong = 0,
    /// A Subscription Identifier exceeds 268435455, the largest Variable Byte Integer.
    SubscriptionIdentifierTooLarge = 1,
    /// Anything else the codec refuses.
    Other = 2,
}

impl From<EncodeError> for EncodeProblem {
    fn from(error: EncodeError) -> Self {
        match error {
            EncodeError::FieldTooLong(_) => EncodeProblem::FieldTooLong,
            EncodeError::VariableByteIntegerTooLarge(_) => {
                EncodeProblem::SubscriptionIdentifierTooLarge
            }
            _ => EncodeProblem::Other,
        }
    }
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message())
    }
}

impl core::error::Error for ClientError {}

/// Appends `value` in decimal.
fn push_number(text: &mut String, value: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &digit in &digits[start..] {
        text.push(char::from(digit));
    }
}

/// Appends `not authorized (0x87)`: the description of `reason`, and `value`, the byte the
/// broker sent (which differs for a 3.1.1 CONNACK's return code: `not authorized (0x05)`).
fn push_reason(text: &mut String, reason: ReasonCode, value: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    text.push_str(reason.description());
    text.push_str(" (0x");
    text.push(char::from(HEX[usize::from(value >> 4)]));
    text.push(char::from(HEX[usize::from(value & 15)]));
    text.push(')');
}

impl ClientError {
    /// What went wrong, in a sentence without the details.
    pub(crate) fn summary(&self) -> &'static str {
        match self {
            ClientError::InvalidOptions(_) => "invalid option",
            ClientError::ConnectionRefused(_)
            | ClientError::BadCredentials(_)
            | ClientError::NotAuthorized(_) => "connection refused by the broker",
            ClientError::CredentialsFailed => {
                "the credentials function or onAuth failed (see the error's cause)"
            }
            ClientError::ConnectFailed => {
                "could not connect: the connection closed before the broker accepted it"
            }
            ClientError::ConnectTimeout => "no CONNACK from the broker within the connect timeout",
            ClientError::KeepAliveTimeout => {
                "keep alive timeout: nothing received from the broker for 1.5 times the keep alive"
            }
            ClientError::ConnectionLost => "connection lost",
            ClientError::ServerDisconnected(_) => "disconnected by the broker",
            ClientError::Protocol(_) => "protocol error from the broker",
            ClientError::Malformed(_) => "malformed packet from the broker",
            ClientError::InvalidArgument(_) => "invalid argument",
            ClientError::SubscribeRefused(_) => "subscription refused by the broker",
            ClientError::UnsubscribeRefused(_) => "unsubscribe refused by the broker",
            ClientError::PublishRefused(_) => "publish refused by the broker",
            ClientError::InvalidTopic(_) => "invalid topic",
            ClientError::PacketTooLarge { .. } => "packet too large",
            ClientError::QoSNotSupported { .. } => "QoS not supported by the broker",
            ClientError::QueueFull(_) => "offline queue full",
            ClientError::Closed => "the client is closed",
        }
    }

    /// The full message, e.g. `subscription refused by the broker: not authorized (0x87)`.
    pub fn message(&self) -> String {
        let mut text = String::from(self.summary());
        match self {
            ClientError::InvalidOptions(detail) | ClientError::Protocol(detail) => {
                text.push_str(": ");
                text.push_str(detail);
            }
            ClientError::ConnectionRefused(refusal)
            | ClientError::BadCredentials(refusal)
            | ClientError::NotAuthorized(refusal) => {
                text.push_str(": ");
                push_reason(&mut text, refusal.reason, refusal.code);
            }
            ClientError::ServerDisconnected(code)
            | ClientError::SubscribeRefused(code)
            | ClientError::UnsubscribeRefused(code)
            | ClientError::PublishRefused(code)
            | ClientError::Malformed(code) => {
                text.push_str(": ");
                push_reason(&mut text, *code, code.as_u8());
            }
            ClientError::InvalidArgument(problem) => text.push_str(match problem {
                EncodeProblem::FieldTooLong => {
                    ": a string or binary field is longer than 65535 bytes [MQTT-1.5.4-1]"
                }
                EncodeProblem::SubscriptionIdentifierTooLarge => {
                    ": a subscription identifier exceeds 268435455 [MQTT-1.5.5]"
                }
                EncodeProblem::Other => ": the packet cannot be encoded",
            }),
            ClientError::InvalidTopic(error) => {
                text.push_str(": ");
                text.push_str(topic_error_text(*error));
            }
            ClientError::PacketTooLarge { size, maximum } => {
                text.push_str(": ");
                push_number(&mut text, *size);
                text.push_str(" bytes exceed the maximum packet size of ");
                push_number(&mut text, *maximum);
                text.push_str(" bytes");
            }
            ClientError::QoSNotSupported { requested, maximum } => {
                text.push_str(": QoS ");
                push_number(&mut text, usize::from(*requested));
                text.push_str(" requested, the broker's maximum is ");
                push_number(&mut text, usize::from(*maximum));
            }
            ClientError::QueueFull(limit) => {
                text.push_str(": ");
                push_number(&mut text, *limit);
                text.push_str(" operations already wait for the connection (offlineQueueLimit)");
            }
            ClientError::CredentialsFailed
            | ClientError::ConnectFailed
            | ClientError::ConnectTimeout
            | ClientError::KeepAliveTimeout
            | ClientError::ConnectionLost
            | ClientError::Closed => {}
        }
        text
    }

    /// A stable, upper-case identifier for programs to branch on (`error.code` in JS).
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::InvalidOptions(_) => "INVALID_OPTIONS",
            ClientError::ConnectionRefused(_) => "CONNECTION_REFUSED",
            ClientError::BadCredentials(_) => "BAD_CREDENTIALS",
            ClientError::NotAuthorized(_) => "NOT_AUTHORIZED",
            ClientError::CredentialsFailed => "CREDENTIALS_FAILED",
            ClientError::ConnectFailed => "CONNECT_FAILED",
            ClientError::ConnectTimeout => "CONNECT_TIMEOUT",
            ClientError::KeepAliveTimeout => "KEEPALIVE_TIMEOUT",
            ClientError::ConnectionLost => "CONNECTION_LOST",
            ClientError::ServerDisconnected(_) => "SERVER_DISCONNECTED",
            ClientError::Protocol(_) | ClientError::Malformed(_) => "PROTOCOL_ERROR",
            ClientError::InvalidArgument(_) => "INVALID_ARGUMENT",
            ClientError::SubscribeRefused(_) => "SUBSCRIBE_REFUSED",
            ClientError::UnsubscribeRefused(_) => "UNSUBSCRIBE_REFUSED",
            ClientError::PublishRefused(_) => "PUBLISH_REFUSED",
            ClientError::InvalidTopic(_) => "INVALID_TOPIC",
            ClientError::PacketTooLarge { .. } => "PACKET_TOO_LARGE",
            ClientError::QoSNotSupported { .. } => "QOS_NOT_SUPPORTED",
            ClientError::QueueFull(_) => "QUEUE_FULL",
            ClientError::Closed => "CLOSED",
        }
    }

    /// The error for a CONNACK with failure `reason` in `protocol`: [`ClientError::BadCredentials`]
    /// and [`ClientError::NotAuthorized`] for those reasons, else
    /// [`ClientError::ConnectionRefused`], each with the byte as the broker sent it.
    pub fn refused(reason: ReasonCode, protocol: ProtocolVersion) -> ClientError {
        let code = if protocol.is_v5() {
            reason.as_u8()
        } else {
            reason.to_connect_return_code()
        };
        let refusal = ConnectRefusal { reason, code };
        match reason {
            ReasonCode::BadUserNameOrPassword => ClientError::BadCredentials(refusal),
            ReasonCode::NotAuthorized => ClientError::NotAuthorized(refusal),
            _ => ClientError::ConnectionRefused(refusal),
        }
    }

    /// The reason code the broker sent, when the error comes from one: an MQTT 5.0 reason
    /// code, or the return code of a 3.1.1 CONNACK (1 to 5) as it is.
    pub fn reason_code(&self) -> Option<u8> {
        match self {
            ClientError::ConnectionRefused(refusal)
            | ClientError::BadCredentials(refusal)
            | ClientError::NotAuthorized(refusal) => Some(refusal.code),
            ClientError::ServerDisconnected(code)
            | ClientError::SubscribeRefused(code)
            | ClientError::UnsubscribeRefused(code)
            | ClientError::PublishRefused(code) => Some(code.as_u8()),
            _ => None,
        }
    }
}

/// The rule a topic breaks, as the codec's messages state it (without their formatting).
pub(crate) fn topic_error_text(error: TopicError) -> &'static str {
    match error {
        TopicError::Empty => {
            "topic names and filters must be at least one character long [MQTT-4.7.3-1]"
        }
        TopicError::WildcardInName => {
            "a topic name must not contain wildcard characters [MQTT-3.3.2-2]"
        }
        TopicError::NullCharacter => {
            "a topic must not contain the null character U+0000 [MQTT-4.7.3-2]"
        }
        TopicError::MultiLevelWildcardMisplaced => {
            "'#' must be the last character of a filter and occupy a whole level [MQTT-4.7.1-2]"
        }
        TopicError::SingleLevelWildcardMisplaced => {
            "'+' must occupy an entire level of a filter [MQTT-4.7.1-3]"
        }
        TopicError::TooLong => "a topic must not be longer than 65535 bytes [MQTT-4.7.3-3]",
        TopicError::InvalidSharedSubscription => {
            "a shared subscription is $share/{ShareName}/{filter} with a non-empty share name without '/', '+' or '#' and a non-empty filter [MQTT-4.8.2-1] [MQTT-4.8.2-2]"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages_name_the_cause() {
        let refused = ClientError::SubscribeRefused(ReasonCode::NotAuthorized);
        assert_eq!(refused.code(), "SUBSCRIBE_REFUSED");
        assert_eq!(refused.reason_code(), Some(0x87));
        assert_eq!(
            refused.to_string(),
            "subscription refused by the broker: not authorized (0x87)"
        );
        let full = ClientError::QueueFull(3);
        assert_eq!(full.code(), "QUEUE_FULL");
        assert_eq!(
            full.to_string(),
            "offline queue full: 3 operations already wait for the connection (offlineQueueLimit)"
        );
        assert_eq!(full.reason_code(), None);
        let large = ClientError::PacketTooLarge {
            size: 1_048_586,
            maximum: 100,
        };
        assert_eq!(
            large.to_string(),
            "packet too large: 1048586 bytes exceed the maximum packet size of 100 bytes"
        );
    }

    #[test]
    fn refusals_of_the_credentials_have_their_own_codes() {
        use ProtocolVersion::{V5, V311};
        for (reason, protocol, code, reason_code, text) in [
            (
                ReasonCode::BadUserNameOrPassword,
                V5,
                "BAD_CREDENTIALS",
                0x86,
                "bad user name or password (0x86)",
            ),
            (
                ReasonCode::BadUserNameOrPassword,
                V311,
                "BAD_CREDENTIALS",
                0x04,
                "bad user name or password (0x04)",
            ),
            (
                ReasonCode::NotAuthorized,
                V5,
                "NOT_AUTHORIZED",
                0x87,
                "not authorized (0x87)",
            ),
            (
                ReasonCode::NotAuthorized,
                V311,
                "NOT_AUTHORIZED",
                0x05,
                "not authorized (0x05)",
            ),
            (
                ReasonCode::ServerUnavailable,
                V311,
                "CONNECTION_REFUSED",
                0x03,
                "server unavailable (0x03)",
            ),
            (
                ReasonCode::BadAuthenticationMethod,
                V5,
                "CONNECTION_REFUSED",
                0x8C,
                "bad authentication method (0x8C)",
            ),
        ] {
            let error = ClientError::refused(reason, protocol);
            assert_eq!(error.code(), code, "{error:?}");
            assert_eq!(error.reason_code(), Some(reason_code), "{error:?}");
            assert_eq!(
                error.to_string(),
                alloc::format!("connection refused by the broker: {text}")
            );
        }
    }

    #[test]
    fn encode_errors_keep_what_the_message_tells() {
        for (error, problem, text) in [
            (
                EncodeError::FieldTooLong(70_000),
                EncodeProblem::FieldTooLong,
                "invalid argument: a string or binary field is longer than 65535 bytes [MQTT-1.5.4-1]",
            ),
            (
                EncodeError::VariableByteIntegerTooLarge(300_000_000),
                EncodeProblem::SubscriptionIdentifierTooLarge,
                "invalid argument: a subscription identifier exceeds 268435455 [MQTT-1.5.5]",
            ),
            (
                EncodeError::PacketIdentifierMismatch,
                EncodeProblem::Other,
                "invalid argument: the packet cannot be encoded",
            ),
        ] {
            let error = ClientError::InvalidArgument(EncodeProblem::from(error));
            assert_eq!(error, ClientError::InvalidArgument(problem));
            assert_eq!(error.to_string(), text);
            assert_eq!(error.code(), "INVALID_ARGUMENT");
        }
    }

    #[test]
    fn topic_texts_match_the_codec() {
        use TopicError::*;
        for error in [
            Empty,
            WildcardInName,
            NullCharacter,
            MultiLevelWildcardMisplaced,
            SingleLevelWildcardMisplaced,
            TooLong,
            InvalidSharedSubscription,
        ] {
            assert_eq!(topic_error_text(error), error.to_string());
        }
    }
}
