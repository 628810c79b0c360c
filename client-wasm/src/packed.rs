//! Values packed into bytes, the way they cross between `js/support.js` and the driver: the
//! checked arguments of the API calls one way, received properties the other.
//!
//! support.js checks and flattens the option objects (`connectOptions` and the others),
//! reporting every malformed field by name as an `INVALID_ARGUMENT` error, and packs the values
//! (`pack`) into the slots that [`crate::abi`] numbers; a [`Reader`] reads them back here in
//! that order, trusting their types. Received properties go the other way packed the same way
//! ([`write_properties`]), which support.js turns into objects. Named fields and their checks
//! take far less room as a table in JS than as code in the wasm module (serde, tried first,
//! took about a third of the package's size budget).
//!
//! Each value is a tag byte ([`abi::tag`]) and its data: a little-endian `u32` for a number; a
//! `u32` length and the bytes for bytes and UTF-8 text; a `u32` count and the items for a list.
//!
//! Plain Rust with no JS types, so that the tests below run on the host.

use crate::abi::{self, connect, property, publish, subscribe, tag};
use crate::backoff::Backoff;
use crate::options::{Credentials, Options, WillOptions};
use alloc::{string::String, vec::Vec};
use bytes::Bytes;
use mqtt_codec::{ByteStr, Properties, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};

/// The values `pack` in support.js wrote, read back in the same order. A value of another kind
/// than the one asked for (an absent option) reads as `None`.
pub struct Reader {
    data: Vec<u8>,
    at: usize,
    /// The slot [`Reader::slot`] expects next (debug builds check the order of the reads).
    #[cfg(debug_assertions)]
    next_slot: usize,
}

impl Reader {
    /// The values packed into `data`.
    pub fn new(data: Vec<u8>) -> Reader {
        Reader {
            data,
            at: 0,
            #[cfg(debug_assertions)]
            next_slot: 0,
        }
    }

    /// Names the slot (of [`abi`]) that the next read takes: the slots are read in order, which
    /// debug builds check.
    pub fn slot(&mut self, slot: usize) -> &mut Reader {
        #[cfg(debug_assertions)]
        {
            assert_eq!(slot, self.next_slot, "slots are read in order");
            self.next_slot += 1;
        }
        let _ = slot;
        self
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
    pub fn number(&mut self) -> Option<u32> {
        self.is(tag::NUMBER).then(|| self.word())
    }

    /// A boolean.
    pub fn flag(&mut self) -> Option<bool> {
        match self.take(1) {
            [tag::TRUE] => Some(true),
            [tag::FALSE] => Some(false),
            _ => None,
        }
    }

    /// Bytes, copied.
    pub fn bytes(&mut self) -> Option<Bytes> {
        self.data(tag::BYTES).map(Bytes::copy_from_slice)
    }

    /// UTF-8 text, which `TextEncoder` made (so never invalid).
    pub fn text(&mut self) -> Option<String> {
        let text = self.data(tag::TEXT)?;
        Some(core::str::from_utf8(text).unwrap_or_default().into())
    }

    /// A QoS (0 when absent).
    pub fn qos(&mut self) -> QoS {
        self.number()
            .and_then(|bits| QoS::from_bits(bits as u8))
            .unwrap_or_default()
    }

    /// Properties to send, packed as a list `[index, value, ...]` (indices of
    /// [`abi::property`]; a User Property is `[USER_PROPERTY, name, value]`).
    pub fn properties(&mut self) -> Properties {
        let mut properties = Properties::default();
        let length = if self.is(tag::LIST) { self.word() } else { 0 };
        let mut read = 0;
        while read < length {
            let index = self.number();
            read += 2;
            match index {
                Some(property::PAYLOAD_FORMAT_INDICATOR) => {
                    properties.payload_format_indicator = self.number().map(|n| n as u8);
                }
                Some(property::MESSAGE_EXPIRY_INTERVAL) => {
                    properties.message_expiry_interval = self.number();
                }
                Some(property::CONTENT_TYPE) => {
                    properties.content_type = self.text().map(ByteStr::from);
                }
                Some(property::RESPONSE_TOPIC) => {
                    properties.response_topic = self.text().map(ByteStr::from);
                }
                Some(property::CORRELATION_DATA) => properties.correlation_data = self.bytes(),
                Some(property::SUBSCRIPTION_IDENTIFIER) => {
                    properties.subscription_identifiers.extend(self.number());
                }
                Some(property::SESSION_EXPIRY_INTERVAL) => {
                    properties.session_expiry_interval = self.number();
                }
                Some(property::REQUEST_PROBLEM_INFORMATION) => {
                    properties.request_problem_information = self.number().map(|n| n as u8);
                }
                Some(property::WILL_DELAY_INTERVAL) => {
                    properties.will_delay_interval = self.number();
                }
                Some(property::REQUEST_RESPONSE_INFORMATION) => {
                    properties.request_response_information = self.number().map(|n| n as u8);
                }
                Some(property::RECEIVE_MAXIMUM) => {
                    properties.receive_maximum = self.number().map(|n| n as u16);
                }
                Some(property::AUTHENTICATION_METHOD) => {
                    properties.authentication_method = self.text().map(ByteStr::from);
                }
                Some(property::AUTHENTICATION_DATA) => {
                    properties.authentication_data = self.bytes();
                }
                _ => {
                    // USER_PROPERTY: [index, name, value].
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

/// Received properties packed for `unpack` in support.js, as [`Reader`] reads them: `index,
/// value, ...` with the indices of [`abi::property`], a Subscription Identifier as
/// `SUBSCRIPTION_IDENTIFIERS, id` each, a User Property as `USER_PROPERTY, name, value`; the
/// list ends with an absent value.
pub fn write_properties(properties: &Properties, packed: &mut Vec<u8>) {
    let mut out = Writer(packed);
    out.number(
        property::PAYLOAD_FORMAT_INDICATOR,
        properties.payload_format_indicator.map(u32::from),
    );
    out.number(
        property::MESSAGE_EXPIRY_INTERVAL,
        properties.message_expiry_interval,
    );
    out.text(property::CONTENT_TYPE, &properties.content_type);
    out.text(property::RESPONSE_TOPIC, &properties.response_topic);
    if let Some(data) = &properties.correlation_data {
        out.word(tag::NUMBER, property::CORRELATION_DATA);
        out.data(tag::BYTES, data);
    }
    for identifier in &properties.subscription_identifiers {
        out.number(property::SUBSCRIPTION_IDENTIFIERS, Some(*identifier));
    }
    out.number(
        property::SESSION_EXPIRY_INTERVAL,
        properties.session_expiry_interval,
    );
    out.text(
        property::ASSIGNED_CLIENT_IDENTIFIER,
        &properties.assigned_client_identifier,
    );
    out.number(
        property::SERVER_KEEP_ALIVE,
        properties.server_keep_alive.map(u32::from),
    );
    out.text(
        property::RESPONSE_INFORMATION,
        &properties.response_information,
    );
    out.text(property::SERVER_REFERENCE, &properties.server_reference);
    out.text(property::REASON_STRING, &properties.reason_string);
    out.number(
        property::RECEIVE_MAXIMUM,
        properties.receive_maximum.map(u32::from),
    );
    out.number(
        property::TOPIC_ALIAS_MAXIMUM,
        properties.topic_alias_maximum.map(u32::from),
    );
    out.number(property::MAXIMUM_QOS, properties.maximum_qos.map(u32::from));
    out.number(
        property::RETAIN_AVAILABLE,
        properties.retain_available.map(u32::from),
    );
    out.number(
        property::MAXIMUM_PACKET_SIZE,
        properties.maximum_packet_size,
    );
    out.number(
        property::WILDCARD_SUBSCRIPTION_AVAILABLE,
        properties.wildcard_subscription_available.map(u32::from),
    );
    out.number(
        property::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        properties.subscription_identifier_available.map(u32::from),
    );
    out.number(
        property::SHARED_SUBSCRIPTION_AVAILABLE,
        properties.shared_subscription_available.map(u32::from),
    );
    out.text(
        property::AUTHENTICATION_METHOD,
        &properties.authentication_method,
    );
    if let Some(data) = &properties.authentication_data {
        out.word(tag::NUMBER, property::AUTHENTICATION_DATA);
        out.data(tag::BYTES, data);
    }
    for (name, value) in &properties.user_properties {
        out.word(tag::NUMBER, property::USER_PROPERTY);
        out.data(tag::TEXT, name.as_bytes());
        out.data(tag::TEXT, value.as_bytes());
    }
    out.0.push(tag::ABSENT);
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
            self.word(tag::NUMBER, index);
            self.word(tag::NUMBER, value);
        }
    }

    /// Property `index` with text, if there is some.
    fn text(&mut self, index: u32, value: &Option<ByteStr>) {
        if let Some(value) = value {
            self.word(tag::NUMBER, index);
            self.data(tag::TEXT, value.as_bytes());
        }
    }
}

/// The core's options and a random seed for the reconnect jitter, from `connectOptions`' packed
/// values, slot by slot ([`abi::connect`]): without a will its slots are all absent, and
/// support.js gives a random `wasm-…` client id when none was given.
pub fn connect_options(packed: Vec<u8>) -> (Options, u64) {
    let mut items = Reader::new(packed);
    let defaults = Options::default();
    let protocol = if items.slot(connect::PROTOCOL_VERSION).number() == Some(4) {
        ProtocolVersion::V311
    } else {
        ProtocolVersion::V5
    };
    let will_topic = items.slot(connect::WILL_TOPIC).text();
    let will_payload = items.slot(connect::WILL_PAYLOAD).bytes();
    let will_qos = items.slot(connect::WILL_QOS).qos();
    let will_retain = items.slot(connect::WILL_RETAIN).flag();
    let will_properties = items.slot(connect::WILL_PROPERTIES).properties();
    let will = will_topic.map(|topic| WillOptions {
        topic,
        payload: will_payload.unwrap_or_default(),
        qos: will_qos,
        retain: will_retain.unwrap_or(false),
        properties: will_properties,
    });
    let reconnect = items.slot(connect::RECONNECT).flag();
    let default = Backoff::default();
    let min_delay_ms = items
        .slot(connect::MIN_DELAY_MS)
        .number()
        .unwrap_or(default.min_delay_ms);
    let max_delay_ms = items
        .slot(connect::MAX_DELAY_MS)
        .number()
        .unwrap_or(default.max_delay_ms);
    let options = Options {
        protocol,
        will,
        reconnect: (reconnect != Some(false)).then_some(Backoff {
            min_delay_ms,
            max_delay_ms,
        }),
        client_id: items.slot(connect::CLIENT_ID).text().unwrap_or_default(),
        keep_alive: items
            .slot(connect::KEEPALIVE)
            .number()
            .map_or(defaults.keep_alive, |seconds| seconds as u16),
        clean: items.slot(connect::CLEAN).flag().unwrap_or(defaults.clean),
        session_expiry: items.slot(connect::SESSION_EXPIRY).number(),
        username: items.slot(connect::USERNAME).text(),
        password: items.slot(connect::PASSWORD).bytes(),
        offline_queue_limit: items
            .slot(connect::OFFLINE_QUEUE_LIMIT)
            .number()
            .map_or(defaults.offline_queue_limit, |limit| limit as usize),
        connect_timeout_ms: items
            .slot(connect::CONNECT_TIMEOUT_MS)
            .number()
            .unwrap_or(defaults.connect_timeout_ms),
        maximum_packet_size: items.slot(connect::MAXIMUM_PACKET_SIZE).number(),
        properties: items.slot(connect::PROPERTIES).properties(),
    };
    let high = items.slot(connect::SEED_HIGH).number().unwrap_or_default();
    let low = items.slot(connect::SEED_LOW).number().unwrap_or_default();
    (options, u64::from(high) << 32 | u64::from(low))
}

/// The credentials of one attempt, as the credentials function's check in support.js packs
/// them ([`abi::credentials`]).
pub fn credentials(packed: Vec<u8>) -> Credentials {
    let mut items = Reader::new(packed);
    Credentials {
        username: items.slot(abi::credentials::USERNAME).text(),
        password: items.slot(abi::credentials::PASSWORD).bytes(),
        authentication_data: items.slot(abi::credentials::AUTHENTICATION_DATA).bytes(),
    }
}

/// The topic or filter every request's arguments start with ([`abi::publish::TOPIC`], which
/// the filters of the others share).
pub fn topic(items: &mut Reader) -> String {
    items.slot(publish::TOPIC).text().unwrap_or_default()
}

/// QoS, retain and properties of a `publish()` call, as `publishArguments` packs them after
/// the topic.
pub fn publish_options(items: &mut Reader) -> (QoS, bool, Properties) {
    (
        items.slot(publish::QOS).qos(),
        items.slot(publish::RETAIN).flag().unwrap_or(false),
        items.slot(publish::PROPERTIES).properties(),
    )
}

/// Options and properties of a `subscribe()` call, as `subscribeOptions` packs them after the
/// filter.
pub fn subscribe_options(items: &mut Reader) -> (SubscriptionOptions, Properties) {
    let qos = items.slot(subscribe::QOS).qos();
    let no_local = items.slot(subscribe::NO_LOCAL).flag().unwrap_or(false);
    let retain_as_published = items
        .slot(subscribe::RETAIN_AS_PUBLISHED)
        .flag()
        .unwrap_or(false);
    let retain_handling = match items.slot(subscribe::RETAIN_HANDLING).number() {
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
    (options, items.slot(subscribe::PROPERTIES).properties())
}

/// The properties of an `unsubscribe()` call, as `unsubscribeOptions` packs them after the
/// filter.
pub fn unsubscribe_properties(items: &mut Reader) -> Properties {
    items.slot(abi::unsubscribe::PROPERTIES).properties()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{PROPERTIES, unsubscribe};
    use alloc::string::ToString;
    use alloc::vec;

    /// A value as `pack` in support.js takes it.
    #[derive(Clone, Debug)]
    enum Value {
        Absent,
        Flag(bool),
        Number(u32),
        Binary(&'static [u8]),
        Text(&'static str),
        List(Vec<Value>),
    }
    use Value::*;

    /// What `pack` in support.js makes of `values`.
    fn pack(values: &[Value]) -> Vec<u8> {
        fn put(value: &Value, out: &mut Vec<u8>) {
            let mut data = |tag: u8, data: &[u8]| {
                out.push(tag);
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
                out.extend_from_slice(data);
            };
            match value {
                Absent => out.push(tag::ABSENT),
                Flag(true) => out.push(tag::TRUE),
                Flag(false) => out.push(tag::FALSE),
                Number(number) => {
                    out.push(tag::NUMBER);
                    out.extend_from_slice(&number.to_le_bytes());
                }
                Binary(bytes) => data(tag::BYTES, bytes),
                Text(text) => data(tag::TEXT, text.as_bytes()),
                List(items) => {
                    out.push(tag::LIST);
                    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
                    for item in items {
                        put(item, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for value in values {
            put(value, &mut out);
        }
        out
    }

    /// `count` slots, absent but for `values` at their slots.
    fn slots(count: usize, values: &[(usize, Value)]) -> Vec<Value> {
        let mut slots = vec![Absent; count];
        for (slot, value) in values {
            slots[*slot] = value.clone();
        }
        slots
    }

    fn property_index(name: &str) -> u32 {
        PROPERTIES
            .iter()
            .find(|(_, js_name, _)| *js_name == name)
            .unwrap_or_else(|| panic!("no property {name}"))
            .0
    }

    #[test]
    fn connect_options_read_each_slot() {
        let user = List(vec![Number(property::USER_PROPERTY), Text("k"), Text("v")]);
        let will_properties = List(vec![Number(property::WILL_DELAY_INTERVAL), Number(9)]);
        let values = slots(
            connect::SEED_LOW + 1,
            &[
                (connect::PROTOCOL_VERSION, Number(4)),
                (connect::WILL_TOPIC, Text("will/topic")),
                (connect::WILL_PAYLOAD, Binary(b"gone")),
                (connect::WILL_QOS, Number(2)),
                (connect::WILL_RETAIN, Flag(true)),
                (connect::WILL_PROPERTIES, will_properties),
                (connect::RECONNECT, Flag(true)),
                (connect::MIN_DELAY_MS, Number(11)),
                (connect::MAX_DELAY_MS, Number(22)),
                (connect::CLIENT_ID, Text("id-1")),
                (connect::KEEPALIVE, Number(33)),
                (connect::CLEAN, Flag(false)),
                (connect::SESSION_EXPIRY, Number(44)),
                (connect::USERNAME, Text("user")),
                (connect::PASSWORD, Binary(b"secret")),
                (connect::OFFLINE_QUEUE_LIMIT, Number(55)),
                (connect::CONNECT_TIMEOUT_MS, Number(66)),
                (connect::MAXIMUM_PACKET_SIZE, Number(77)),
                (connect::PROPERTIES, user),
                (connect::SEED_HIGH, Number(1)),
                (connect::SEED_LOW, Number(2)),
            ],
        );
        let (options, seed) = connect_options(pack(&values));
        let will_properties = Properties {
            will_delay_interval: Some(9),
            ..Properties::default()
        };
        let mut properties = Properties::default();
        properties
            .user_properties
            .push((ByteStr::from("k"), ByteStr::from("v")));
        let expected = Options {
            protocol: ProtocolVersion::V311,
            client_id: "id-1".to_string(),
            keep_alive: 33,
            clean: false,
            session_expiry: Some(44),
            username: Some("user".to_string()),
            password: Some(Bytes::from_static(b"secret")),
            will: Some(WillOptions {
                topic: "will/topic".to_string(),
                payload: Bytes::from_static(b"gone"),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: will_properties,
            }),
            reconnect: Some(Backoff {
                min_delay_ms: 11,
                max_delay_ms: 22,
            }),
            offline_queue_limit: 55,
            connect_timeout_ms: 66,
            maximum_packet_size: Some(77),
            properties,
        };
        assert_eq!(options, expected);
        assert_eq!(seed, 1 << 32 | 2);
    }

    #[test]
    fn absent_connect_options_are_the_defaults() {
        let values = slots(connect::SEED_LOW + 1, &[]);
        let (options, seed) = connect_options(pack(&values));
        assert_eq!(options, Options::default());
        assert_eq!(seed, 0);
        let values = slots(connect::SEED_LOW + 1, &[(connect::RECONNECT, Flag(false))]);
        assert_eq!(connect_options(pack(&values)).0.reconnect, None);
    }

    #[test]
    fn request_arguments_read_each_slot() {
        let properties = List(vec![Number(property::CONTENT_TYPE), Text("text/plain")]);
        let content_type = Properties {
            content_type: Some(ByteStr::from("text/plain")),
            ..Properties::default()
        };

        let publish = slots(
            publish::PROPERTIES + 1,
            &[
                (publish::TOPIC, Text("a/b")),
                (publish::QOS, Number(1)),
                (publish::RETAIN, Flag(true)),
                (publish::PROPERTIES, properties.clone()),
            ],
        );
        let mut items = Reader::new(pack(&publish));
        assert_eq!(topic(&mut items), "a/b");
        assert_eq!(
            publish_options(&mut items),
            (QoS::AtLeastOnce, true, content_type.clone())
        );

        let subscribe = slots(
            subscribe::PROPERTIES + 1,
            &[
                (subscribe::FILTER, Text("a/+")),
                (subscribe::QOS, Number(2)),
                (subscribe::NO_LOCAL, Flag(true)),
                (subscribe::RETAIN_AS_PUBLISHED, Flag(true)),
                (subscribe::RETAIN_HANDLING, Number(2)),
                (subscribe::PROPERTIES, properties.clone()),
            ],
        );
        let mut items = Reader::new(pack(&subscribe));
        assert_eq!(topic(&mut items), "a/+");
        let options = SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        assert_eq!(
            subscribe_options(&mut items),
            (options, content_type.clone())
        );

        let unsubscribe = slots(
            unsubscribe::PROPERTIES + 1,
            &[
                (unsubscribe::FILTER, Text("a/#")),
                (unsubscribe::PROPERTIES, properties),
            ],
        );
        let mut items = Reader::new(pack(&unsubscribe));
        assert_eq!(topic(&mut items), "a/#");
        assert_eq!(unsubscribe_properties(&mut items), content_type);
    }

    #[test]
    fn credentials_read_each_slot() {
        let values = slots(
            abi::credentials::AUTHENTICATION_DATA + 1,
            &[
                (abi::credentials::USERNAME, Text("user")),
                (abi::credentials::PASSWORD, Binary(b"token")),
                (abi::credentials::AUTHENTICATION_DATA, Binary(b"n,,n=user")),
            ],
        );
        let expected = Credentials {
            username: Some("user".to_string()),
            password: Some(Bytes::from_static(b"token")),
            authentication_data: Some(Bytes::from_static(b"n,,n=user")),
        };
        assert_eq!(credentials(pack(&values)), expected);
        let none = slots(abi::credentials::AUTHENTICATION_DATA + 1, &[]);
        assert_eq!(credentials(pack(&none)), Credentials::default());
    }

    #[test]
    #[should_panic(expected = "slots are read in order")]
    fn a_slot_read_out_of_order_is_a_bug() {
        let mut items = Reader::new(pack(&[Number(1), Number(2)]));
        items.slot(publish::QOS).number();
    }

    /// Sent properties by their names in JS, each with a value and the property it makes.
    #[test]
    fn sent_properties_are_read_by_their_index() {
        let empty = Properties::default;
        let cases = [
            (
                "payloadFormatIndicator",
                Number(1),
                Properties {
                    payload_format_indicator: Some(1),
                    ..empty()
                },
            ),
            (
                "messageExpiryInterval",
                Number(2),
                Properties {
                    message_expiry_interval: Some(2),
                    ..empty()
                },
            ),
            (
                "contentType",
                Text("c"),
                Properties {
                    content_type: Some(ByteStr::from("c")),
                    ..empty()
                },
            ),
            (
                "responseTopic",
                Text("r"),
                Properties {
                    response_topic: Some(ByteStr::from("r")),
                    ..empty()
                },
            ),
            (
                "correlationData",
                Binary(b"d"),
                Properties {
                    correlation_data: Some(Bytes::from_static(b"d")),
                    ..empty()
                },
            ),
            (
                "subscriptionIdentifier",
                Number(3),
                Properties {
                    subscription_identifiers: vec![3],
                    ..empty()
                },
            ),
            (
                "sessionExpiryInterval",
                Number(4),
                Properties {
                    session_expiry_interval: Some(4),
                    ..empty()
                },
            ),
            (
                "requestProblemInformation",
                Number(0),
                Properties {
                    request_problem_information: Some(0),
                    ..empty()
                },
            ),
            (
                "willDelayInterval",
                Number(5),
                Properties {
                    will_delay_interval: Some(5),
                    ..empty()
                },
            ),
            (
                "requestResponseInformation",
                Number(1),
                Properties {
                    request_response_information: Some(1),
                    ..empty()
                },
            ),
            (
                "receiveMaximum",
                Number(6),
                Properties {
                    receive_maximum: Some(6),
                    ..empty()
                },
            ),
            // A User Property's value is two texts: name and value.
            (
                "userProperties",
                Absent,
                Properties {
                    user_properties: vec![(ByteStr::from("n"), ByteStr::from("v"))],
                    ..empty()
                },
            ),
        ];
        for (name, value, expected) in cases {
            let index = Number(property_index(name));
            let list = match value {
                Absent => List(vec![index, Text("n"), Text("v")]),
                value => List(vec![index, value]),
            };
            assert_eq!(Reader::new(pack(&[list])).properties(), expected, "{name}");
        }
    }

    /// What `unpack` and `propertiesFrom` in support.js make of packed properties: the name of
    /// each index, with its value as text (numbers in decimal).
    fn unpack(packed: &[u8]) -> Vec<(&'static str, String)> {
        let mut reader = Reader::new(packed.to_vec());
        let mut named = Vec::new();
        while let Some(index) = reader.number() {
            let name = PROPERTIES[index as usize].1;
            let value = match reader.data[reader.at] {
                tag::NUMBER => reader.number().unwrap().to_string(),
                tag::BYTES => String::from_utf8(reader.bytes().unwrap().to_vec()).unwrap(),
                _ if index == property::USER_PROPERTY => {
                    let name = reader.text().unwrap();
                    name + "=" + &reader.text().unwrap()
                }
                _ => reader.text().unwrap(),
            };
            named.push((name, value));
        }
        assert_eq!(
            reader.at,
            packed.len(),
            "the list ends with one absent value"
        );
        named
    }

    #[test]
    fn received_properties_are_written_by_their_index() {
        let text = |value: &str| Some(ByteStr::from(value));
        let properties = Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(2),
            content_type: text("c"),
            response_topic: text("r"),
            correlation_data: Some(Bytes::from_static(b"d")),
            subscription_identifiers: vec![3, 4],
            session_expiry_interval: Some(5),
            assigned_client_identifier: text("a"),
            server_keep_alive: Some(6),
            response_information: text("i"),
            server_reference: text("s"),
            reason_string: text("why"),
            receive_maximum: Some(7),
            topic_alias_maximum: Some(8),
            maximum_qos: Some(1),
            retain_available: Some(0),
            user_properties: vec![(ByteStr::from("n"), ByteStr::from("v"))],
            maximum_packet_size: Some(9),
            wildcard_subscription_available: Some(1),
            subscription_identifier_available: Some(0),
            shared_subscription_available: Some(1),
            ..Properties::default()
        };
        let mut packed = Vec::new();
        write_properties(&properties, &mut packed);
        let expected = [
            ("payloadFormatIndicator", "1"),
            ("messageExpiryInterval", "2"),
            ("contentType", "c"),
            ("responseTopic", "r"),
            ("correlationData", "d"),
            ("subscriptionIdentifiers", "3"),
            ("subscriptionIdentifiers", "4"),
            ("sessionExpiryInterval", "5"),
            ("assignedClientIdentifier", "a"),
            ("serverKeepAlive", "6"),
            ("responseInformation", "i"),
            ("serverReference", "s"),
            ("reasonString", "why"),
            ("receiveMaximum", "7"),
            ("topicAliasMaximum", "8"),
            ("maximumQos", "1"),
            ("retainAvailable", "0"),
            ("maximumPacketSize", "9"),
            ("wildcardSubscriptionAvailable", "1"),
            ("subscriptionIdentifierAvailable", "0"),
            ("sharedSubscriptionAvailable", "1"),
            ("userProperties", "n=v"),
        ]
        .map(|(name, value)| (name, value.to_string()));
        assert_eq!(unpack(&packed), expected);
    }
}
