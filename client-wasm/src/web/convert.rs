//! Conversions between JS values and the core's types: option objects, properties, payloads
//! and errors.
//!
//! The option objects are checked and flattened by `js/support.js` (`connectOptions` and the
//! others) before the API calls Rust, reporting every malformed field by name as an
//! `INVALID_ARGUMENT` error; this side reads the flat arrays by position, trusting their types. Received properties go the
//! other way as a flat `[index, value, ...]` list that `propertiesObject` turns into an object.
//! Named fields and their checks take far less room as a table in JS than as code in the wasm
//! module (serde, tried first, took about a third of the package's size budget).

use super::bindings::{self, Array, Uint8Array};
use crate::backoff::Backoff;
use crate::error::ClientError;
use crate::options::{Options, WillOptions};
use alloc::string::String;
use bytes::Bytes;
use mqtt_codec::topic::TopicError;
use mqtt_codec::{
    ByteStr, EncodeError, Properties, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions,
};
use wasm_bindgen::{JsCast, JsValue};

/// A JS `Error` for `error`, with `code` and `reasonCode`, built by `clientError` in
/// support.js from the error's position in `ClientError` and its details: the message texts
/// live there (a wasm-bindgen test checks that they read as `ClientError::message` does).
pub fn error_value(error: &ClientError) -> JsValue {
    let reason = error
        .reason_code()
        .map_or(-1, |code| i32::from(code.as_u8()));
    let (kind, detail, a, b): (i32, &str, usize, usize) = match *error {
        ClientError::InvalidOptions(detail) => (0, detail, 0, 0),
        ClientError::ConnectionRefused(code) => (1, "", code.as_u8().into(), 0),
        ClientError::ConnectFailed => (2, "", 0, 0),
        ClientError::ConnectTimeout => (3, "", 0, 0),
        ClientError::KeepAliveTimeout => (4, "", 0, 0),
        ClientError::ConnectionLost => (5, "", 0, 0),
        ClientError::ServerDisconnected(code) => (6, "", code.as_u8().into(), 0),
        ClientError::Protocol(detail) => (7, detail, 0, 0),
        ClientError::Malformed(code) => (8, "", code.as_u8().into(), 0),
        ClientError::InvalidArgument(ref error) => {
            let text = match error {
                EncodeError::FieldTooLong(_) => 0,
                EncodeError::VariableByteIntegerTooLarge(_) => 1,
                _ => 2,
            };
            (9, "", text, 0)
        }
        ClientError::SubscribeRefused(code) => (10, "", code.as_u8().into(), 0),
        ClientError::UnsubscribeRefused(code) => (11, "", code.as_u8().into(), 0),
        ClientError::PublishRefused(code) => (12, "", code.as_u8().into(), 0),
        ClientError::InvalidTopic(error) => {
            let text = match error {
                TopicError::Empty => 0,
                TopicError::WildcardInName => 1,
                TopicError::NullCharacter => 2,
                TopicError::MultiLevelWildcardMisplaced => 3,
                TopicError::SingleLevelWildcardMisplaced => 4,
                TopicError::TooLong => 5,
                TopicError::InvalidSharedSubscription => 6,
            };
            (13, "", text, 0)
        }
        ClientError::PacketTooLarge { size, maximum } => (14, "", size, maximum),
        ClientError::QoSNotSupported { requested, maximum } => {
            (15, "", requested.into(), maximum.into())
        }
        ClientError::QueueFull(limit) => (16, "", limit, 0),
        ClientError::Closed => (17, "", 0, 0),
    };
    bindings::client_error(kind, reason, detail, a as f64, b as f64)
}

/// The items of a flat array from `js/support.js`, read by position.
struct Items(Array);

impl Items {
    fn new(value: JsValue) -> Items {
        Items(value.unchecked_into())
    }

    fn get(&self, index: u32) -> JsValue {
        self.0.get(index)
    }

    /// A whole number the JS side checked against the field's range.
    fn number(&self, index: u32) -> Option<u32> {
        self.get(index).as_f64().map(|number| number as u32)
    }

    fn flag(&self, index: u32) -> Option<bool> {
        self.get(index).as_bool()
    }

    fn text(&self, index: u32) -> Option<String> {
        self.get(index).as_string()
    }

    fn bytes(&self, index: u32) -> Option<Bytes> {
        bytes(self.get(index))
    }

    fn qos(&self, index: u32) -> QoS {
        self.number(index)
            .and_then(|bits| QoS::from_bits(bits as u8))
            .unwrap_or_default()
    }

    fn properties(&self, index: u32) -> Properties {
        properties_from_js(&Items::new(self.get(index)))
    }
}

/// A `Uint8Array` (as the JS side hands over every binary value) copied into `Bytes`.
fn bytes(value: JsValue) -> Option<Bytes> {
    if value.is_undefined() {
        return None;
    }
    let source: &Uint8Array = value.unchecked_ref();
    let mut copy = alloc::vec![0; source.length() as usize];
    bindings::copy_into(&mut copy, source);
    Some(Bytes::from(copy))
}

/// Properties to send, from `[index, value, ...]` (indices of `PROPERTIES` in support.js).
fn properties_from_js(list: &Items) -> Properties {
    let mut properties = Properties::default();
    let length = list.0.length();
    let mut at = 0;
    while at + 1 < length {
        let value = list.get(at + 1);
        let number = value.as_f64().unwrap_or_default() as u32;
        match list.number(at).unwrap_or(u32::MAX) {
            0 => properties.payload_format_indicator = Some(number as u8),
            1 => properties.message_expiry_interval = Some(number),
            2 => properties.content_type = value.as_string().map(ByteStr::from),
            3 => properties.response_topic = value.as_string().map(ByteStr::from),
            4 => properties.correlation_data = bytes(value),
            5 => properties.subscription_identifiers.push(number),
            6 => properties.session_expiry_interval = Some(number),
            7 => properties.request_problem_information = Some(number as u8),
            8 => properties.will_delay_interval = Some(number),
            9 => properties.request_response_information = Some(number as u8),
            10 => properties.receive_maximum = Some(number as u16),
            _ => {
                // 11, User Property: [11, name, value].
                at += 1;
                let name = ByteStr::from(value.as_string().unwrap_or_default());
                let value = ByteStr::from(list.text(at + 1).unwrap_or_default());
                properties.user_properties.push((name, value));
            }
        }
        at += 2;
    }
    properties
}

/// Received properties as a JS object (`undefined` when there are none), through
/// `propertiesObject` in support.js: `[index, value, ...]` with the indices of its
/// `PROPERTIES`, a Subscription Identifier as `[12, id]` each, a User Property as
/// `[11, name, value]`.
pub fn properties_to_js(properties: &Properties) -> JsValue {
    if properties.is_empty() {
        return JsValue::UNDEFINED;
    }
    let list = Array::new();
    let push = |index: u32, value: &JsValue| {
        list.push(&JsValue::from(index));
        list.push(value);
    };
    let number = |index: u32, value: Option<u32>| {
        if let Some(value) = value {
            push(index, &JsValue::from(value));
        }
    };
    let text = |index: u32, value: &Option<ByteStr>| {
        if let Some(value) = value {
            push(index, &JsValue::from_str(value));
        }
    };
    number(0, properties.payload_format_indicator.map(u32::from));
    number(1, properties.message_expiry_interval);
    text(2, &properties.content_type);
    text(3, &properties.response_topic);
    if let Some(data) = &properties.correlation_data {
        push(4, &Uint8Array::new(data));
    }
    for identifier in &properties.subscription_identifiers {
        number(12, Some(*identifier));
    }
    number(6, properties.session_expiry_interval);
    text(13, &properties.assigned_client_identifier);
    number(14, properties.server_keep_alive.map(u32::from));
    text(15, &properties.response_information);
    text(16, &properties.server_reference);
    text(17, &properties.reason_string);
    number(10, properties.receive_maximum.map(u32::from));
    number(18, properties.topic_alias_maximum.map(u32::from));
    number(19, properties.maximum_qos.map(u32::from));
    number(20, properties.retain_available.map(u32::from));
    number(21, properties.maximum_packet_size);
    number(
        22,
        properties.wildcard_subscription_available.map(u32::from),
    );
    number(
        23,
        properties.subscription_identifier_available.map(u32::from),
    );
    number(24, properties.shared_subscription_available.map(u32::from));
    for (name, value) in &properties.user_properties {
        push(11, &JsValue::from_str(name));
        list.push(&JsValue::from_str(value));
    }
    bindings::properties_object(&list)
}

/// The core's options from `connectOptions`' array: protocol, will, reconnect, clientId (a
/// random `wasm-…` one when none was given), keepalive, clean, sessionExpiry, username,
/// password, offlineQueueLimit, connectTimeoutMs, maximumPacketSize, properties; and a random
/// seed for the reconnect jitter.
pub fn connect_options(options: &JsValue) -> (Options, u64) {
    let items = Items::new(options.clone());
    let defaults = Options::default();
    let will = items.get(1);
    let will = if will.is_undefined() {
        None
    } else {
        let will = Items::new(will);
        Some(WillOptions {
            topic: will.text(0).unwrap_or_default(),
            payload: will.bytes(1).unwrap_or_default(),
            qos: will.qos(2),
            retain: will.flag(3).unwrap_or(false),
            properties: will.properties(4),
        })
    };
    let reconnect = items.get(2);
    let reconnect = if reconnect.as_bool() == Some(false) {
        None
    } else if reconnect.is_object() {
        let bounds = Items::new(reconnect);
        let default = Backoff::default();
        Some(Backoff {
            min_delay_ms: bounds.number(0).unwrap_or(default.min_delay_ms),
            max_delay_ms: bounds.number(1).unwrap_or(default.max_delay_ms),
        })
    } else {
        defaults.reconnect
    };
    let seed = items.get(13).as_f64().unwrap_or_default() as u64;
    let options = Options {
        protocol: if items.number(0) == Some(4) {
            ProtocolVersion::V311
        } else {
            ProtocolVersion::V5
        },
        client_id: items.text(3).unwrap_or_default(),
        keep_alive: items
            .number(4)
            .map_or(defaults.keep_alive, |seconds| seconds as u16),
        clean: items.flag(5).unwrap_or(defaults.clean),
        session_expiry: items.number(6),
        username: items.text(7),
        password: items.bytes(8),
        will,
        reconnect,
        offline_queue_limit: items
            .number(9)
            .map_or(defaults.offline_queue_limit, |limit| limit as usize),
        connect_timeout_ms: items.number(10).unwrap_or(defaults.connect_timeout_ms),
        maximum_packet_size: items.number(11),
        properties: items.properties(12),
    };
    (options, seed)
}

/// Payload, QoS, retain and properties of a `publish()` call, from `publishOptions`' array.
pub fn publish_options(options: &JsValue) -> (Bytes, QoS, bool, Properties) {
    let items = Items::new(options.clone());
    (
        items.bytes(0).unwrap_or_default(),
        items.qos(1),
        items.flag(2).unwrap_or(false),
        items.properties(3),
    )
}

/// Options and properties of a `subscribe()` call, from `subscribeOptions`' array.
pub fn subscribe_options(options: &JsValue) -> (SubscriptionOptions, Properties) {
    let items = Items::new(options.clone());
    let retain_handling = match items.number(3) {
        Some(1) => RetainHandling::SendIfNew,
        Some(2) => RetainHandling::DoNotSend,
        _ => RetainHandling::SendAtSubscribe,
    };
    let options = SubscriptionOptions {
        qos: items.qos(0),
        no_local: items.flag(1).unwrap_or(false),
        retain_as_published: items.flag(2).unwrap_or(false),
        retain_handling,
    };
    (options, items.properties(4))
}

/// Properties of an `unsubscribe()` call, from `unsubscribeOptions`' list.
pub fn unsubscribe_options(options: &JsValue) -> Properties {
    properties_from_js(&Items::new(options.clone()))
}
