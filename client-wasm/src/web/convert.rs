//! Conversions between JS values and the core's types: option objects, properties, payloads
//! and errors.
//!
//! The option objects are checked and flattened by `js/support.js` (`connectOptions` and the
//! others) before the API calls Rust, reporting every malformed field by name as an
//! `INVALID_ARGUMENT` error, and packed into bytes (`pack`); this side reads the values back in
//! order with a [`Reader`], trusting their types. Received properties go the other way packed
//! the same way ([`write_properties`]), which support.js turns into objects.
//! Named fields and their checks take far less room as a table in JS than as code in the wasm
//! module (serde, tried first, took about a third of the package's size budget).

use super::bindings::{self, Uint8Array};
use crate::backoff::Backoff;
use crate::error::ClientError;
use crate::options::{Options, WillOptions};
use alloc::{string::String, vec::Vec};
use bytes::Bytes;
use mqtt_codec::topic::TopicError;
use mqtt_codec::{ByteStr, Properties, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
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
        ClientError::InvalidArgument(problem) => (9, "", problem as usize, 0),
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

/// The values `pack` in support.js wrote, read back in the same order: each is a tag byte and
/// its data (a little-endian `u32`, or a `u32` length and that many bytes). A value of another
/// kind than the one asked for (an absent option) reads as `None`.
pub struct Reader {
    data: Vec<u8>,
    at: usize,
}

const ABSENT: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const NUMBER: u8 = 3;
const BYTES: u8 = 4;
const TEXT: u8 = 5;
const LIST: u8 = 6;

impl Reader {
    /// The values packed into `packed`, a `Uint8Array`.
    pub fn new(packed: &JsValue) -> Reader {
        Reader {
            data: copy(packed),
            at: 0,
        }
    }

    /// The next `length` bytes (fewer at the end, which the JS side never lets happen).
    fn take(&mut self, length: usize) -> &[u8] {
        let start = self.at.min(self.data.len());
        self.at = start.saturating_add(length).min(self.data.len());
        &self.data[start..self.at]
    }

    fn word(&mut self) -> u32 {
        let bytes = self.take(4).iter().rev();
        bytes.fold(0, |word, &byte| word << 8 | u32::from(byte))
    }

    /// The tag of the next value, if it is `kind`; the value is then read next.
    fn is(&mut self, kind: u8) -> bool {
        self.take(1) == [kind]
    }

    /// The data of a value of `kind` with a length (bytes, text).
    fn data(&mut self, kind: u8) -> Option<&[u8]> {
        if !self.is(kind) {
            return None;
        }
        let length = self.word() as usize;
        Some(self.take(length))
    }

    /// A whole number the JS side checked against the field's range.
    fn number(&mut self) -> Option<u32> {
        self.is(NUMBER).then(|| self.word())
    }

    fn flag(&mut self) -> Option<bool> {
        match self.take(1) {
            [TRUE] => Some(true),
            [FALSE] => Some(false),
            _ => None,
        }
    }

    fn bytes(&mut self) -> Option<Bytes> {
        self.data(BYTES).map(Bytes::copy_from_slice)
    }

    /// UTF-8 text, which `TextEncoder` made (so never invalid).
    pub fn text(&mut self) -> Option<String> {
        let text = self.data(TEXT)?;
        Some(core::str::from_utf8(text).unwrap_or_default().into())
    }

    fn qos(&mut self) -> QoS {
        self.number()
            .and_then(|bits| QoS::from_bits(bits as u8))
            .unwrap_or_default()
    }

    /// Properties to send, packed as a list `[index, value, ...]` (indices of `PROPERTIES` in
    /// support.js; a User Property is `[11, name, value]`).
    pub fn properties(&mut self) -> Properties {
        let mut properties = Properties::default();
        let length = if self.is(LIST) { self.word() } else { 0 };
        let mut read = 0;
        while read < length {
            let index = self.number();
            read += 2;
            match index {
                Some(0) => properties.payload_format_indicator = self.number().map(|n| n as u8),
                Some(1) => properties.message_expiry_interval = self.number(),
                Some(2) => properties.content_type = self.text().map(ByteStr::from),
                Some(3) => properties.response_topic = self.text().map(ByteStr::from),
                Some(4) => properties.correlation_data = self.bytes(),
                Some(5) => properties.subscription_identifiers.extend(self.number()),
                Some(6) => properties.session_expiry_interval = self.number(),
                Some(7) => properties.request_problem_information = self.number().map(|n| n as u8),
                Some(8) => properties.will_delay_interval = self.number(),
                Some(9) => properties.request_response_information = self.number().map(|n| n as u8),
                Some(10) => properties.receive_maximum = self.number().map(|n| n as u16),
                _ => {
                    // 11, User Property: [11, name, value].
                    read += 1;
                    let name = ByteStr::from(self.text().unwrap_or_default());
                    let value = ByteStr::from(self.text().unwrap_or_default());
                    properties.user_properties.push((name, value));
                }
            }
        }
        properties
    }
}

/// The bytes of a `Uint8Array` (as the JS side hands over every binary value), copied.
pub fn copy(value: &JsValue) -> Vec<u8> {
    let source: &Uint8Array = value.unchecked_ref();
    let mut copy = alloc::vec![0; source.length() as usize];
    bindings::copy_into(&mut copy, source);
    copy
}

/// Received properties as a JS object (`undefined` when there are none), through
/// `propertiesObject` in support.js.
pub fn properties_to_js(properties: &Properties) -> JsValue {
    if properties.is_empty() {
        return JsValue::UNDEFINED;
    }
    let mut packed = Vec::new();
    write_properties(properties, &mut packed);
    bindings::properties_object(&packed)
}

/// Received properties packed for `unpack` in support.js, as [`Reader`] reads them: `index,
/// value, ...` with the indices of its `PROPERTIES`, a Subscription Identifier as `12, id` each,
/// a User Property as `11, name, value`; the list ends with an absent value.
pub fn write_properties(properties: &Properties, packed: &mut Vec<u8>) {
    let mut out = Writer(packed);
    out.number(0, properties.payload_format_indicator.map(u32::from));
    out.number(1, properties.message_expiry_interval);
    out.text(2, &properties.content_type);
    out.text(3, &properties.response_topic);
    if let Some(data) = &properties.correlation_data {
        out.word(NUMBER, 4);
        out.data(BYTES, data);
    }
    for identifier in &properties.subscription_identifiers {
        out.number(12, Some(*identifier));
    }
    out.number(6, properties.session_expiry_interval);
    out.text(13, &properties.assigned_client_identifier);
    out.number(14, properties.server_keep_alive.map(u32::from));
    out.text(15, &properties.response_information);
    out.text(16, &properties.server_reference);
    out.text(17, &properties.reason_string);
    out.number(10, properties.receive_maximum.map(u32::from));
    out.number(18, properties.topic_alias_maximum.map(u32::from));
    out.number(19, properties.maximum_qos.map(u32::from));
    out.number(20, properties.retain_available.map(u32::from));
    out.number(21, properties.maximum_packet_size);
    out.number(
        22,
        properties.wildcard_subscription_available.map(u32::from),
    );
    out.number(
        23,
        properties.subscription_identifier_available.map(u32::from),
    );
    out.number(24, properties.shared_subscription_available.map(u32::from));
    for (name, value) in &properties.user_properties {
        out.word(NUMBER, 11);
        out.data(TEXT, name.as_bytes());
        out.data(TEXT, value.as_bytes());
    }
    out.0.push(ABSENT);
}

/// Packs values the way `pack` in support.js does.
struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    /// A tag and a little-endian `u32`.
    fn word(&mut self, tag: u8, word: u32) {
        self.0.push(tag);
        self.0.extend_from_slice(&word.to_le_bytes());
    }

    /// Bytes or text: the tag, the length and the bytes.
    fn data(&mut self, tag: u8, data: &[u8]) {
        self.word(tag, data.len() as u32);
        self.0.extend_from_slice(data);
    }

    /// Property `index` with a number, if there is one.
    fn number(&mut self, index: u32, value: Option<u32>) {
        if let Some(value) = value {
            self.word(NUMBER, index);
            self.word(NUMBER, value);
        }
    }

    /// Property `index` with text, if there is some.
    fn text(&mut self, index: u32, value: &Option<ByteStr>) {
        if let Some(value) = value {
            self.word(NUMBER, index);
            self.data(TEXT, value.as_bytes());
        }
    }
}

/// The core's options and a random seed for the reconnect jitter, from `connectOptions`'
/// packed values: protocol, will (topic, payload, QoS, retain,
/// properties; all absent without a will), reconnect (enabled, minimum and maximum delay),
/// clientId (a random `wasm-…` one when none was given), keepalive, clean, sessionExpiry,
/// username, password, offlineQueueLimit, connectTimeoutMs, maximumPacketSize, properties, and
/// the seed's two halves.
pub fn connect_options(packed: &JsValue) -> (Options, u64) {
    let mut items = Reader::new(packed);
    let defaults = Options::default();
    let protocol = if items.number() == Some(4) {
        ProtocolVersion::V311
    } else {
        ProtocolVersion::V5
    };
    let will_topic = items.text();
    let will_payload = items.bytes();
    let will_qos = items.qos();
    let will_retain = items.flag();
    let will_properties = items.properties();
    let will = will_topic.map(|topic| WillOptions {
        topic,
        payload: will_payload.unwrap_or_default(),
        qos: will_qos,
        retain: will_retain.unwrap_or(false),
        properties: will_properties,
    });
    let reconnect = items.flag();
    let default = Backoff::default();
    let min_delay_ms = items.number().unwrap_or(default.min_delay_ms);
    let max_delay_ms = items.number().unwrap_or(default.max_delay_ms);
    let options = Options {
        protocol,
        will,
        reconnect: (reconnect != Some(false)).then_some(Backoff {
            min_delay_ms,
            max_delay_ms,
        }),
        client_id: items.text().unwrap_or_default(),
        keep_alive: items
            .number()
            .map_or(defaults.keep_alive, |seconds| seconds as u16),
        clean: items.flag().unwrap_or(defaults.clean),
        session_expiry: items.number(),
        username: items.text(),
        password: items.bytes(),
        offline_queue_limit: items
            .number()
            .map_or(defaults.offline_queue_limit, |limit| limit as usize),
        connect_timeout_ms: items.number().unwrap_or(defaults.connect_timeout_ms),
        maximum_packet_size: items.number(),
        properties: items.properties(),
    };
    let high = items.number().unwrap_or_default();
    let low = items.number().unwrap_or_default();
    (options, u64::from(high) << 32 | u64::from(low))
}

/// QoS, retain and properties of a `publish()` call, as `publishArguments` packs them after
/// the topic.
pub fn publish_options(items: &mut Reader) -> (QoS, bool, Properties) {
    (
        items.qos(),
        items.flag().unwrap_or(false),
        items.properties(),
    )
}

/// Options and properties of a `subscribe()` call, as `subscribeOptions` packs them after the
/// filter.
pub fn subscribe_options(items: &mut Reader) -> (SubscriptionOptions, Properties) {
    let qos = items.qos();
    let no_local = items.flag().unwrap_or(false);
    let retain_as_published = items.flag().unwrap_or(false);
    let retain_handling = match items.number() {
        Some(1) => RetainHandling::SendIfNew,
        Some(2) => RetainHandling::DoNotSend,
        _ => RetainHandling::SendAtSubscribe,
    };
    let options = SubscriptionOptions {
        qos,
        no_local,
        retain_as_published,
        retain_handling,
    };
    (options, items.properties())
}
