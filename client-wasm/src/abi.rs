//! The ABI between the two halves of the browser layer, the Rust driver (`web/`) and
//! `js/support.js`: every number they agree on, defined here once.
//!
//! That is: the calls of a client's handler, the effects of a turn, the kinds of requests and
//! the id of `connect()`'s, the order of the states, the tags of packed values and the slots of
//! each packed argument list (the 21 of `connect()`'s options among them), the fields and flags
//! of a received message, the properties by index, the kinds of errors with the tables their
//! messages are made from (topic rules, encoding problems, reason codes).
//!
//! support.js holds a copy of these, rendered by the tests of this module as JS constants and
//! tables between the lines `JS_BEGIN` and `JS_END`, and uses only those names for them. The
//! test `support_js_holds_the_abi` fails when the copy differs from what this module renders,
//! so neither half can change a number alone; `CLIENT_WASM_WRITE_ABI=1 cargo test -p
//! client-wasm abi` rewrites the copy after a change here. The Rust half uses the constants
//! below, and the tests of [`crate::packed`] read each slot back by its name. The tables only
//! support.js reads (names and texts) are test items: the wasm module has no use for them.
//!
//! The module is plain data and compiles on every target, so the check runs with `cargo test`.

use crate::error::ClientError;
#[cfg(test)]
use crate::error::EncodeProblem;
use mqtt_codec::topic::TopicError;

/// Declares each family of codes as a module of constants, and, for the tests, the list of all
/// of them that support.js receives as `FAMILY_NAME` constants.
macro_rules! codes {
    ($(
        $(#[doc = $doc:literal])*
        $family:ident: $type:ty {
            $( $(#[$item_attribute:meta])* $name:ident = $value:literal, )*
        }
    )*) => {
        $(
            $(#[doc = $doc])*
            // Some codes are only support.js's to use, some are taken as the default arm.
            #[allow(dead_code)]
            pub mod $family {
                $( $(#[$item_attribute])* pub const $name: $type = $value; )*

                /// Every code of the family with its name, in order.
                #[cfg(test)]
                pub const ALL: &[(&str, i64)] = &[$((stringify!($name), $value)),*];
            }
        )*

        /// Every family by name.
        #[cfg(test)]
        const FAMILIES: &[(&str, &[(&str, i64)])] = &[$((stringify!($family), $family::ALL)),*];
    };
}

codes! {
    /// What the client's handler is called with (`Client::handle`): the events of the socket
    /// `openSocket` opened, the timer, and the microtask that sends what API calls wrote.
    handler: i32 {
        /// The socket opened; with a credentials function, once it has given this attempt's
        /// credentials too, packed in the slots of [`super::credentials`] as a `Uint8Array`.
        SOCKET_OPEN = 0,
        /// A binary message, with its bytes as a `Uint8Array`.
        SOCKET_MESSAGE = 1,
        /// The socket closed (an error is always followed by a close).
        SOCKET_CLOSE = 2,
        /// The timer fired.
        TIMER = 3,
        /// The flush microtask (`Driver::handle` takes it as its default arm).
        FLUSH = 4,
        /// The credentials function or `onAuth` threw or rejected (support.js keeps what it
        /// threw as the `cause` of the error this reports).
        CREDENTIALS_FAILED = 5,
        /// `onAuth`'s answer to the broker's AUTH, a `Uint8Array`.
        AUTH = 6,
    }

    /// The effects a turn queues (`effect`), which support.js runs once the turn is over.
    effect: i32 {
        /// Event `connect`: session present (1 or 0) and the CONNACK's properties.
        CONNECT = 0,
        /// Event `close`: whether it reconnects (1 or 0) and the error, if any.
        CLOSE = 1,
        /// Event `reconnect`: the attempt and the delay in milliseconds.
        RECONNECT = 2,
        /// Event `error`: the error.
        ERROR = 3,
        /// Resolves the Promise of request `number` with the value.
        RESOLVE = 4,
        /// Rejects the Promise of request `number` with the value.
        REJECT = 5,
        /// Delivers the messages of one frame.
        MESSAGES = 6,
        /// The client is closed for good: support.js drops its handler.
        RELEASE = 7,
        /// The broker's AUTH (continue authentication) for `onAuth`: the reason code and the
        /// AUTH's properties.
        AUTH = 8,
    }

    /// What `Client.request` starts.
    request: u32 {
        /// `publish()`.
        PUBLISH = 0,
        /// `subscribe()`.
        SUBSCRIBE = 1,
        /// `unsubscribe()`.
        UNSUBSCRIBE = 2,
        /// `reauthenticate()`: no packed values, the authentication data as the payload.
        REAUTHENTICATE = 3,
    }

    /// Request ids that mean something; support.js numbers the others from 1.
    request_id: u32 {
        /// The request whose Promise `connect()` returns.
        CONNECT = 0,
    }

    /// The tag byte of each packed value (`pack` in support.js, [`crate::packed`] here).
    tag: u8 {
        /// No value (an option not given).
        ABSENT = 0,
        /// `false`.
        FALSE = 1,
        /// `true`.
        TRUE = 2,
        /// A little-endian `u32`.
        NUMBER = 3,
        /// A `u32` length and that many bytes.
        BYTES = 4,
        /// A `u32` length and that many bytes of UTF-8.
        TEXT = 5,
        /// A `u32` count and that many values.
        LIST = 6,
    }

    /// The slots of `connect()`'s packed options.
    connect: usize {
        /// 4 (3.1.1) or 5.
        PROTOCOL_VERSION = 0,
        /// The will's topic; it and the other will slots are absent without a will.
        WILL_TOPIC = 1,
        /// The will's payload.
        WILL_PAYLOAD = 2,
        /// The will's QoS.
        WILL_QOS = 3,
        /// Whether the will is retained.
        WILL_RETAIN = 4,
        /// The will's properties (a list).
        WILL_PROPERTIES = 5,
        /// Whether the client reconnects.
        RECONNECT = 6,
        /// The shortest reconnect delay.
        MIN_DELAY_MS = 7,
        /// The longest reconnect delay.
        MAX_DELAY_MS = 8,
        /// The client id (support.js makes a random one when none was given).
        CLIENT_ID = 9,
        /// Keep alive in seconds.
        KEEPALIVE = 10,
        /// Clean session / clean start.
        CLEAN = 11,
        /// Session Expiry Interval.
        SESSION_EXPIRY = 12,
        /// User name.
        USERNAME = 13,
        /// Password.
        PASSWORD = 14,
        /// The bound of the offline queue.
        OFFLINE_QUEUE_LIMIT = 15,
        /// Time to the CONNACK.
        CONNECT_TIMEOUT_MS = 16,
        /// The largest packet the client accepts.
        MAXIMUM_PACKET_SIZE = 17,
        /// CONNECT properties (a list).
        PROPERTIES = 18,
        /// The high half of the reconnect jitter's seed.
        SEED_HIGH = 19,
        /// Its low half.
        SEED_LOW = 20,
    }

    /// The slots of the credentials function's result, packed for each attempt.
    credentials: usize {
        /// User name.
        USERNAME = 0,
        /// Password.
        PASSWORD = 1,
        /// Authentication data for the CONNECT (5.0).
        AUTHENTICATION_DATA = 2,
    }

    /// The slots of `publish()`'s packed arguments (the payload goes apart, as a `Uint8Array`).
    publish: usize {
        /// The topic (first for every request).
        TOPIC = 0,
        /// QoS.
        QOS = 1,
        /// Retain.
        RETAIN = 2,
        /// Properties (a list).
        PROPERTIES = 3,
    }

    /// The slots of `subscribe()`'s packed arguments.
    subscribe: usize {
        /// The filter (first for every request).
        FILTER = 0,
        /// Maximum QoS.
        QOS = 1,
        /// No Local.
        NO_LOCAL = 2,
        /// Retain As Published.
        RETAIN_AS_PUBLISHED = 3,
        /// Retain Handling.
        RETAIN_HANDLING = 4,
        /// Properties (a list).
        PROPERTIES = 5,
    }

    /// The slots of `unsubscribe()`'s packed arguments.
    unsubscribe: usize {
        /// The filter (first for every request).
        FILTER = 0,
        /// Properties (a list).
        PROPERTIES = 1,
    }

    /// The numbers `buildMessages` reads per message, in order.
    meta: usize {
        /// Where the topic starts in the frame's data.
        TOPIC_START = 0,
        /// Its length.
        TOPIC_LENGTH = 1,
        /// Where the payload starts.
        PAYLOAD_START = 2,
        /// Its length.
        PAYLOAD_LENGTH = 3,
        /// The [`super::flag`]s.
        FLAGS = 4,
        /// How many numbers each message has.
        FIELDS = 5,
    }

    /// The bits of a received message's flags.
    flag: u32 {
        /// The QoS (a mask: the two low bits).
        QOS = 3,
        /// Retained.
        RETAIN = 4,
        /// A possible redelivery.
        DUP = 8,
        /// It has properties, next in the frame's packed properties.
        PROPERTIES = 16,
        /// The topic is ASCII.
        ASCII_TOPIC = 32,
    }

    /// Properties by index, both ways: see [`super::PROPERTIES`] for their names in JS.
    property: u32 {
        /// Payload Format Indicator.
        PAYLOAD_FORMAT_INDICATOR = 0,
        /// Message Expiry Interval.
        MESSAGE_EXPIRY_INTERVAL = 1,
        /// Content Type.
        CONTENT_TYPE = 2,
        /// Response Topic.
        RESPONSE_TOPIC = 3,
        /// Correlation Data.
        CORRELATION_DATA = 4,
        /// Subscription Identifier, sent (one).
        SUBSCRIPTION_IDENTIFIER = 5,
        /// Session Expiry Interval.
        SESSION_EXPIRY_INTERVAL = 6,
        /// Request Problem Information.
        REQUEST_PROBLEM_INFORMATION = 7,
        /// Will Delay Interval.
        WILL_DELAY_INTERVAL = 8,
        /// Request Response Information.
        REQUEST_RESPONSE_INFORMATION = 9,
        /// Receive Maximum.
        RECEIVE_MAXIMUM = 10,
        /// User Property: `index, name, value`, one item more than the others.
        USER_PROPERTY = 11,
        /// Subscription Identifiers, received (one each, gathered into an array).
        SUBSCRIPTION_IDENTIFIERS = 12,
        /// Assigned Client Identifier.
        ASSIGNED_CLIENT_IDENTIFIER = 13,
        /// Server Keep Alive.
        SERVER_KEEP_ALIVE = 14,
        /// Response Information.
        RESPONSE_INFORMATION = 15,
        /// Server Reference.
        SERVER_REFERENCE = 16,
        /// Reason String.
        REASON_STRING = 17,
        /// Topic Alias Maximum.
        TOPIC_ALIAS_MAXIMUM = 18,
        /// Maximum QoS.
        MAXIMUM_QOS = 19,
        /// Retain Available.
        RETAIN_AVAILABLE = 20,
        /// Maximum Packet Size.
        MAXIMUM_PACKET_SIZE = 21,
        /// Wildcard Subscription Available.
        WILDCARD_SUBSCRIPTION_AVAILABLE = 22,
        /// Subscription Identifier Available.
        SUBSCRIPTION_IDENTIFIER_AVAILABLE = 23,
        /// Shared Subscription Available.
        SHARED_SUBSCRIPTION_AVAILABLE = 24,
        /// Authentication Method.
        AUTHENTICATION_METHOD = 25,
        /// Authentication Data.
        AUTHENTICATION_DATA = 26,
    }

    /// The kinds of [`ClientError`], in its order, as `clientError` takes them.
    error: i32 {
        /// [`ClientError::InvalidOptions`].
        INVALID_OPTIONS = 0,
        /// [`ClientError::ConnectionRefused`].
        CONNECTION_REFUSED = 1,
        /// [`ClientError::BadCredentials`].
        BAD_CREDENTIALS = 2,
        /// [`ClientError::NotAuthorized`].
        NOT_AUTHORIZED = 3,
        /// [`ClientError::CredentialsFailed`].
        CREDENTIALS_FAILED = 4,
        /// [`ClientError::ConnectFailed`].
        CONNECT_FAILED = 5,
        /// [`ClientError::ConnectTimeout`].
        CONNECT_TIMEOUT = 6,
        /// [`ClientError::KeepAliveTimeout`].
        KEEPALIVE_TIMEOUT = 7,
        /// [`ClientError::ConnectionLost`].
        CONNECTION_LOST = 8,
        /// [`ClientError::ServerDisconnected`].
        SERVER_DISCONNECTED = 9,
        /// [`ClientError::Protocol`].
        PROTOCOL = 10,
        /// [`ClientError::Malformed`].
        MALFORMED = 11,
        /// [`ClientError::InvalidArgument`].
        INVALID_ARGUMENT = 12,
        /// [`ClientError::SubscribeRefused`].
        SUBSCRIBE_REFUSED = 13,
        /// [`ClientError::UnsubscribeRefused`].
        UNSUBSCRIBE_REFUSED = 14,
        /// [`ClientError::PublishRefused`].
        PUBLISH_REFUSED = 15,
        /// [`ClientError::InvalidTopic`].
        INVALID_TOPIC = 16,
        /// [`ClientError::PacketTooLarge`].
        PACKET_TOO_LARGE = 17,
        /// [`ClientError::QoSNotSupported`].
        QOS_NOT_SUPPORTED = 18,
        /// [`ClientError::QueueFull`].
        QUEUE_FULL = 19,
        /// [`ClientError::Closed`].
        CLOSED = 20,
    }
}

/// The names of the states, in the order of [`crate::State`], which `Client.state()` returns
/// as an index.
#[cfg(test)]
pub const STATES: [(crate::State, &str); 4] = [
    (crate::State::Connecting, "connecting"),
    (crate::State::Connected, "connected"),
    (crate::State::Reconnecting, "reconnecting"),
    (crate::State::Closed, "closed"),
];

/// The event each effect below [`effect::RESOLVE`] dispatches, in the effects' order.
#[cfg(test)]
pub const EVENTS: [(i32, &str); 4] = [
    (effect::CONNECT, "connect"),
    (effect::CLOSE, "close"),
    (effect::RECONNECT, "reconnect"),
    (effect::ERROR, "error"),
];

/// How support.js checks a property the client sends, or that it only receives it.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyValue {
    /// A whole number up to `U8`, `U16` or `U32`, the bounds support.js names.
    Number(&'static str),
    /// A string.
    Text,
    /// Bytes.
    Bytes,
    /// An object of strings or arrays of strings, checked by its own code.
    UserProperties,
    /// Only received.
    Received,
    /// Sent through `connect()`'s own options (`authenticationMethod`, `authenticationData`,
    /// `credentials`) and `reauthenticate()`, not in `properties`; received in CONNACK and AUTH.
    Authentication,
}

/// Each property's index, its name in JS objects, and how a sent one is checked. The sent ones
/// with a plain value come first (support.js checks them in a loop over their indices).
#[cfg(test)]
pub const PROPERTIES: [(u32, &str, PropertyValue); 27] = {
    use PropertyValue::*;
    [
        (
            property::PAYLOAD_FORMAT_INDICATOR,
            "payloadFormatIndicator",
            Number("U8"),
        ),
        (
            property::MESSAGE_EXPIRY_INTERVAL,
            "messageExpiryInterval",
            Number("U32"),
        ),
        (property::CONTENT_TYPE, "contentType", Text),
        (property::RESPONSE_TOPIC, "responseTopic", Text),
        (property::CORRELATION_DATA, "correlationData", Bytes),
        (
            property::SUBSCRIPTION_IDENTIFIER,
            "subscriptionIdentifier",
            Number("U32"),
        ),
        (
            property::SESSION_EXPIRY_INTERVAL,
            "sessionExpiryInterval",
            Number("U32"),
        ),
        (
            property::REQUEST_PROBLEM_INFORMATION,
            "requestProblemInformation",
            Number("U8"),
        ),
        (
            property::WILL_DELAY_INTERVAL,
            "willDelayInterval",
            Number("U32"),
        ),
        (
            property::REQUEST_RESPONSE_INFORMATION,
            "requestResponseInformation",
            Number("U8"),
        ),
        (property::RECEIVE_MAXIMUM, "receiveMaximum", Number("U16")),
        (property::USER_PROPERTY, "userProperties", UserProperties),
        (
            property::SUBSCRIPTION_IDENTIFIERS,
            "subscriptionIdentifiers",
            Received,
        ),
        (
            property::ASSIGNED_CLIENT_IDENTIFIER,
            "assignedClientIdentifier",
            Received,
        ),
        (property::SERVER_KEEP_ALIVE, "serverKeepAlive", Received),
        (
            property::RESPONSE_INFORMATION,
            "responseInformation",
            Received,
        ),
        (property::SERVER_REFERENCE, "serverReference", Received),
        (property::REASON_STRING, "reasonString", Received),
        (property::TOPIC_ALIAS_MAXIMUM, "topicAliasMaximum", Received),
        (property::MAXIMUM_QOS, "maximumQos", Received),
        (property::RETAIN_AVAILABLE, "retainAvailable", Received),
        (property::MAXIMUM_PACKET_SIZE, "maximumPacketSize", Received),
        (
            property::WILDCARD_SUBSCRIPTION_AVAILABLE,
            "wildcardSubscriptionAvailable",
            Received,
        ),
        (
            property::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            "subscriptionIdentifierAvailable",
            Received,
        ),
        (
            property::SHARED_SUBSCRIPTION_AVAILABLE,
            "sharedSubscriptionAvailable",
            Received,
        ),
        (
            property::AUTHENTICATION_METHOD,
            "authenticationMethod",
            Authentication,
        ),
        (
            property::AUTHENTICATION_DATA,
            "authenticationData",
            Authentication,
        ),
    ]
};

/// An error as `clientError` in support.js takes it: its kind (an [`error`] code), a text
/// detail, and two numbers (a reason code, a [`topic_error_index`], an [`EncodeProblem`],
/// sizes). support.js makes the message from these and the tables of [`ERRORS`].
pub fn error_parts(error: &ClientError) -> (i32, &'static str, usize, usize) {
    match *error {
        ClientError::InvalidOptions(detail) => (error::INVALID_OPTIONS, detail, 0, 0),
        // The reason, whose description the message gives, and the byte the broker sent.
        ClientError::ConnectionRefused(refusal) => (
            error::CONNECTION_REFUSED,
            "",
            refusal.reason.as_u8().into(),
            refusal.code.into(),
        ),
        ClientError::BadCredentials(refusal) => (
            error::BAD_CREDENTIALS,
            "",
            refusal.reason.as_u8().into(),
            refusal.code.into(),
        ),
        ClientError::NotAuthorized(refusal) => (
            error::NOT_AUTHORIZED,
            "",
            refusal.reason.as_u8().into(),
            refusal.code.into(),
        ),
        ClientError::CredentialsFailed => (error::CREDENTIALS_FAILED, "", 0, 0),
        ClientError::ConnectFailed => (error::CONNECT_FAILED, "", 0, 0),
        ClientError::ConnectTimeout => (error::CONNECT_TIMEOUT, "", 0, 0),
        ClientError::KeepAliveTimeout => (error::KEEPALIVE_TIMEOUT, "", 0, 0),
        ClientError::ConnectionLost => (error::CONNECTION_LOST, "", 0, 0),
        ClientError::ServerDisconnected(code) => {
            (error::SERVER_DISCONNECTED, "", code.as_u8().into(), 0)
        }
        ClientError::Protocol(detail) => (error::PROTOCOL, detail, 0, 0),
        ClientError::Malformed(code) => (error::MALFORMED, "", code.as_u8().into(), 0),
        ClientError::InvalidArgument(problem) => (error::INVALID_ARGUMENT, "", problem as usize, 0),
        ClientError::SubscribeRefused(code) => {
            (error::SUBSCRIBE_REFUSED, "", code.as_u8().into(), 0)
        }
        ClientError::UnsubscribeRefused(code) => {
            (error::UNSUBSCRIBE_REFUSED, "", code.as_u8().into(), 0)
        }
        ClientError::PublishRefused(code) => (error::PUBLISH_REFUSED, "", code.as_u8().into(), 0),
        ClientError::InvalidTopic(error) => (error::INVALID_TOPIC, "", topic_error_index(error), 0),
        ClientError::PacketTooLarge { size, maximum } => {
            (error::PACKET_TOO_LARGE, "", size, maximum)
        }
        ClientError::QoSNotSupported { requested, maximum } => (
            error::QOS_NOT_SUPPORTED,
            "",
            requested.into(),
            maximum.into(),
        ),
        ClientError::QueueFull(limit) => (error::QUEUE_FULL, "", limit, 0),
        ClientError::Closed => (error::CLOSED, "", 0, 0),
    }
}

/// The index of a [`TopicError`]'s text in support.js (`TOPIC`, in the order of
/// [`TOPIC_ERRORS`]).
pub fn topic_error_index(error: TopicError) -> usize {
    match error {
        TopicError::Empty => 0,
        TopicError::WildcardInName => 1,
        TopicError::NullCharacter => 2,
        TopicError::MultiLevelWildcardMisplaced => 3,
        TopicError::SingleLevelWildcardMisplaced => 4,
        TopicError::TooLong => 5,
        TopicError::InvalidSharedSubscription => 6,
    }
}

/// Every [`TopicError`], in the order of [`topic_error_index`].
#[cfg(test)]
pub const TOPIC_ERRORS: [TopicError; 7] = [
    TopicError::Empty,
    TopicError::WildcardInName,
    TopicError::NullCharacter,
    TopicError::MultiLevelWildcardMisplaced,
    TopicError::SingleLevelWildcardMisplaced,
    TopicError::TooLong,
    TopicError::InvalidSharedSubscription,
];

/// Every [`EncodeProblem`], in the order of its discriminants.
#[cfg(test)]
pub const ENCODE_PROBLEMS: [EncodeProblem; 3] = [
    EncodeProblem::FieldTooLong,
    EncodeProblem::SubscriptionIdentifierTooLarge,
    EncodeProblem::Other,
];

/// Per error kind, in order: an error of that kind, whose code and summary support.js gets,
/// and how support.js writes its details after the summary: `$a` and `$b` stand for the two
/// numbers, `$d` for the text detail, `$r` for the reason code `$a` described (shown as `$b`
/// when that is not 0: the return code of a 3.1.1 CONNACK), `$t` and `$e`
/// for the texts of the [`TOPIC_ERRORS`] and [`ENCODE_PROBLEMS`] at `$a`. (A wasm-bindgen test
/// checks that every error reads in JS as its `Display` in Rust.)
#[cfg(test)]
pub const ERRORS: [(i32, ClientError, &str); 21] = {
    use mqtt_codec::ReasonCode::Success as Code;
    const REFUSAL: crate::error::ConnectRefusal = crate::error::ConnectRefusal {
        reason: Code,
        code: 0,
    };
    [
        (
            error::INVALID_OPTIONS,
            ClientError::InvalidOptions(""),
            ": $d",
        ),
        (
            error::CONNECTION_REFUSED,
            ClientError::ConnectionRefused(REFUSAL),
            ": $r",
        ),
        (
            error::BAD_CREDENTIALS,
            ClientError::BadCredentials(REFUSAL),
            ": $r",
        ),
        (
            error::NOT_AUTHORIZED,
            ClientError::NotAuthorized(REFUSAL),
            ": $r",
        ),
        (
            error::CREDENTIALS_FAILED,
            ClientError::CredentialsFailed,
            "",
        ),
        (error::CONNECT_FAILED, ClientError::ConnectFailed, ""),
        (error::CONNECT_TIMEOUT, ClientError::ConnectTimeout, ""),
        (error::KEEPALIVE_TIMEOUT, ClientError::KeepAliveTimeout, ""),
        (error::CONNECTION_LOST, ClientError::ConnectionLost, ""),
        (
            error::SERVER_DISCONNECTED,
            ClientError::ServerDisconnected(Code),
            ": $r",
        ),
        (error::PROTOCOL, ClientError::Protocol(""), ": $d"),
        (error::MALFORMED, ClientError::Malformed(Code), ": $r"),
        (
            error::INVALID_ARGUMENT,
            ClientError::InvalidArgument(EncodeProblem::Other),
            "$e",
        ),
        (
            error::SUBSCRIBE_REFUSED,
            ClientError::SubscribeRefused(Code),
            ": $r",
        ),
        (
            error::UNSUBSCRIBE_REFUSED,
            ClientError::UnsubscribeRefused(Code),
            ": $r",
        ),
        (
            error::PUBLISH_REFUSED,
            ClientError::PublishRefused(Code),
            ": $r",
        ),
        (
            error::INVALID_TOPIC,
            ClientError::InvalidTopic(TopicError::Empty),
            ": $t",
        ),
        (
            error::PACKET_TOO_LARGE,
            ClientError::PacketTooLarge {
                size: 0,
                maximum: 0,
            },
            ": $a bytes exceed the maximum packet size of $b bytes",
        ),
        (
            error::QOS_NOT_SUPPORTED,
            ClientError::QoSNotSupported {
                requested: 0,
                maximum: 0,
            },
            ": QoS $a requested, the broker's maximum is $b",
        ),
        (
            error::QUEUE_FULL,
            ClientError::QueueFull(0),
            ": $a operations already wait for the connection (offlineQueueLimit)",
        ),
        (error::CLOSED, ClientError::Closed, ""),
    ]
};

/// The first line of the ABI's copy in support.js.
#[cfg(test)]
pub const JS_BEGIN: &str = "// ---- The ABI shared with Rust, rendered from src/abi.rs: edit it there, then run\n\
// CLIENT_WASM_WRITE_ABI=1 cargo test -p client-wasm abi (a test fails while the two differ) ----\n";

/// The line after the ABI's copy in support.js.
#[cfg(test)]
pub const JS_END: &str = "// ---- End of the ABI ----\n";

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;
    use mqtt_codec::ReasonCode;

    /// The ABI as support.js declares it: one `const` per code (`FAMILY_NAME`), then the tables.
    fn javascript() -> String {
        let mut js = String::new();
        for (family, codes) in FAMILIES {
            for (name, value) in *codes {
                js += &format!("const {}_{name} = {value};\n", family.to_uppercase());
            }
        }
        js += "const U8 = 255;\nconst U16 = 65535;\nconst U32 = 4294967295;\n";
        // On one line when short, else filled into lines of at most 96 characters.
        let list = |items: Vec<String>| {
            let line = format!("[{}]", items.join(", "));
            if line.len() <= 72 {
                return line;
            }
            let mut lines = alloc::vec![String::from("  ")];
            for item in items {
                let last = lines.last_mut().unwrap();
                if last.len() > 2 && last.len() + item.len() + 2 > 96 {
                    lines.push(String::from("  "));
                }
                let last = lines.last_mut().unwrap();
                if last.len() > 2 {
                    last.push(' ');
                }
                *last += &item;
                last.push(',');
            }
            format!("[\n{}\n]", lines.join("\n"))
        };
        js += &format!(
            "// The names of the states, by Client.state().\nconst STATES = {};\n",
            list(STATES.iter().map(|(_, name)| string(name)).collect())
        );
        js += &format!(
            "// The events of the effects below EFFECT_RESOLVE.\nconst EVENTS = {};\n",
            list(EVENTS.iter().map(|(_, name)| string(name)).collect())
        );
        js += &format!(
            "// Property names by index.\nconst PROPERTIES = {};\n",
            list(PROPERTIES.iter().map(|(_, name, _)| string(name)).collect())
        );
        let sent = PROPERTIES.iter().map_while(|(_, _, value)| match value {
            PropertyValue::Number(bound) => Some(bound.to_string()),
            PropertyValue::Text => Some(string("s")),
            PropertyValue::Bytes => Some(string("b")),
            _ => None,
        });
        js += &format!(
            "// The checks of the properties sent with a plain value, from index 0: the largest \
             number,\n// \"s\" a string, \"b\" bytes.\nconst SENT = {};\n",
            list(sent.collect())
        );
        let errors = ERRORS.iter().map(|(_, error, detail)| {
            let row = [error.code(), error.summary(), detail].map(string);
            format!("[{}]", row.join(", "))
        });
        js += &format!(
            "// Per error kind: code, summary, and the details as ERRORS in abi.rs says.\n\
             const ERRORS = [\n  {},\n];\n",
            errors.collect::<Vec<_>>().join(",\n  ")
        );
        let encode = ENCODE_PROBLEMS.iter().map(|problem| {
            let error = ClientError::InvalidArgument(*problem);
            let message = error.message();
            string(&message[error.summary().len()..])
        });
        js += &format!(
            "// The details of INVALID_ARGUMENT by EncodeProblem.\nconst ENCODE = [\n  {},\n];\n",
            encode.collect::<Vec<_>>().join(",\n  ")
        );
        let topic = TOPIC_ERRORS
            .iter()
            .map(|error| string(crate::error::topic_error_text(*error)));
        js += &format!(
            "// The rules a topic breaks, by topic_error_index.\nconst TOPIC = [\n  {},\n];\n",
            topic.collect::<Vec<_>>().join(",\n  ")
        );
        let (low, high): (Vec<ReasonCode>, Vec<ReasonCode>) =
            ReasonCode::ALL.iter().partition(|code| !code.is_error());
        js += &format!(
            "// Reason codes below 0x80, whose descriptions come first in REASONS; from 0x80 on \
             they follow\n// one per code.\nconst LOW_REASONS = {};\n",
            list(low.iter().map(|code| code.as_u8().to_string()).collect())
        );
        let descriptions: Vec<&str> = low.iter().chain(&high).map(|c| c.description()).collect();
        // "a|b|c" in lines of at most 90 characters, each but the last ending with "|".
        let mut lines = Vec::new();
        let mut line = String::new();
        for (index, description) in descriptions.iter().enumerate() {
            line += description;
            if index + 1 < descriptions.len() {
                line += "|";
            }
            let next = descriptions.get(index + 1).map_or(0, |next| next.len() + 1);
            if line.len() + next > 90 || index + 1 == descriptions.len() {
                lines.push(string(&core::mem::take(&mut line)));
            }
        }
        js += &format!(
            "const REASONS = (\n  {}\n).split(\"|\");\n",
            lines.join(" +\n  ")
        );
        js
    }

    /// `text` as a JS string literal.
    fn string(text: &str) -> String {
        assert!(
            text.chars().all(|c| (' '..='~').contains(&c)),
            "{text:?} is not printable ASCII"
        );
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    }

    const SUPPORT_JS: &str = "js/support.js";

    #[test]
    fn support_js_holds_the_abi() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SUPPORT_JS);
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text
            .find(JS_BEGIN)
            .expect("support.js has the ABI's first line")
            + JS_BEGIN.len();
        let end = start
            + text[start..]
                .find(JS_END)
                .expect("support.js has the ABI's last line");
        let expected = javascript();
        if text[start..end] == expected {
            return;
        }
        if std::env::var_os("CLIENT_WASM_WRITE_ABI").is_some() {
            let rewritten = [&text[..start], &expected, &text[end..]].concat();
            std::fs::write(&path, rewritten).unwrap();
            return;
        }
        panic!(
            "{SUPPORT_JS} does not hold the ABI of src/abi.rs. After a change to abi.rs, run\n  \
             CLIENT_WASM_WRITE_ABI=1 cargo test -p client-wasm abi\nto render it again; support.js \
             should use the names, never change them. What abi.rs renders:\n{expected}"
        );
    }

    #[test]
    fn each_family_numbers_its_codes_apart() {
        for (family, codes) in FAMILIES {
            let mut values: Vec<i64> = codes.iter().map(|(_, value)| *value).collect();
            values.sort_unstable();
            values.dedup();
            assert_eq!(
                values.len(),
                codes.len(),
                "two codes of {family} share a value"
            );
        }
    }

    #[test]
    fn slots_and_kinds_count_from_zero() {
        let families = [
            "handler",
            "effect",
            "request",
            "tag",
            "connect",
            "credentials",
            "publish",
            "subscribe",
            "unsubscribe",
            "meta",
            "property",
            "error",
        ];
        for (family, codes) in FAMILIES.iter().filter(|(name, _)| families.contains(name)) {
            for (index, (name, value)) in codes.iter().enumerate() {
                assert_eq!(*value, index as i64, "{family}::{name}");
            }
        }
        // Every request's topic or filter is read before its kind is looked at.
        assert_eq!(publish::TOPIC, subscribe::FILTER);
        assert_eq!(publish::TOPIC, unsubscribe::FILTER);
    }

    #[test]
    fn tables_follow_their_codes() {
        for (index, (state, _)) in STATES.iter().enumerate() {
            assert_eq!(*state as usize, index, "{state:?}");
        }
        for (index, (code, name)) in EVENTS.iter().enumerate() {
            assert_eq!(*code as usize, index, "{name}");
        }
        assert_eq!(EVENTS.len(), effect::RESOLVE as usize);
        for (index, (code, name, _)) in PROPERTIES.iter().enumerate() {
            assert_eq!(*code as usize, index, "{name}");
        }
        assert_eq!(PROPERTIES.len(), property::ALL.len());
        // The sent properties with a plain value are a prefix: SENT is indexed by property.
        let sent = |(_, _, value): &(u32, &str, PropertyValue)| {
            matches!(
                value,
                PropertyValue::Number(_) | PropertyValue::Text | PropertyValue::Bytes
            )
        };
        let prefix = PROPERTIES.iter().take_while(|entry| sent(entry)).count();
        assert_eq!(
            PROPERTIES.iter().filter(|entry| sent(entry)).count(),
            prefix
        );
        for (index, (kind, error, _)) in ERRORS.iter().enumerate() {
            assert_eq!(*kind as usize, index, "{error:?}");
            assert_eq!(error_parts(error).0, *kind, "{error:?}");
        }
        assert_eq!(ERRORS.len(), error::ALL.len());
        for (index, error) in TOPIC_ERRORS.iter().enumerate() {
            assert_eq!(topic_error_index(*error), index, "{error:?}");
        }
        for (index, problem) in ENCODE_PROBLEMS.iter().enumerate() {
            assert_eq!(*problem as usize, index, "{problem:?}");
        }
        // From 0x80 the reason codes follow one another: support.js indexes them by value.
        let first_error = ReasonCode::ALL
            .iter()
            .position(|code| code.is_error())
            .unwrap();
        for (offset, code) in ReasonCode::ALL[first_error..].iter().enumerate() {
            assert_eq!(usize::from(code.as_u8()), 0x80 + offset, "{code:?}");
        }
    }
}
