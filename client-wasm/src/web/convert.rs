//! Conversions between JS values and the core's types: option objects, properties, payloads
//! and errors.
//!
//! Fields are read one by one with `Reflect.get` rather than through serde: serde's
//! deserializers (and the float formatting their error messages pull in) would take about a
//! third of the package's size budget. Every malformed field is reported by name as an
//! `INVALID_ARGUMENT` error.

use crate::backoff::Backoff;
use crate::error::ClientError;
use crate::options::{Options, WillOptions};
use alloc::{string::String, vec::Vec};
use bytes::Bytes;
use js_sys::{Array, ArrayBuffer, Object, Reflect, Uint8Array};
use mqtt_codec::{ByteStr, Properties, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
use wasm_bindgen::{JsCast, JsValue};

use super::bindings::mqtt_error;

/// A JS `Error` for `error`, with `code` and `reasonCode`.
pub fn error_value(error: &ClientError) -> JsValue {
    let reason = error
        .reason_code()
        .map_or(-1, |code| i32::from(code.as_u8()));
    mqtt_error(error.code(), &error.message(), reason)
}

/// A JS `Error` with code `INVALID_ARGUMENT`: "`name` must be `expected`".
pub fn invalid_argument(name: &str, expected: &str) -> JsValue {
    let mut message = String::with_capacity(name.len() + expected.len() + 9);
    message.push_str(name);
    message.push_str(" must be ");
    message.push_str(expected);
    mqtt_error("INVALID_ARGUMENT", &message, -1)
}

fn absent(value: &JsValue) -> bool {
    value.is_undefined() || value.is_null()
}

/// `object[key]`, or `undefined` when `object` is not an object.
fn field(object: &JsValue, key: &str) -> JsValue {
    if !object.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn string_field(object: &JsValue, key: &str) -> Result<Option<String>, JsValue> {
    let value = field(object, key);
    if absent(&value) {
        return Ok(None);
    }
    value
        .as_string()
        .map(Some)
        .ok_or_else(|| invalid_argument(key, "a string"))
}

fn bool_field(object: &JsValue, key: &str) -> Result<Option<bool>, JsValue> {
    let value = field(object, key);
    if absent(&value) {
        return Ok(None);
    }
    value
        .as_bool()
        .map(Some)
        .ok_or_else(|| invalid_argument(key, "a boolean"))
}

/// A whole number in `0..=maximum`.
fn integer_field(object: &JsValue, key: &str, maximum: u32) -> Result<Option<u32>, JsValue> {
    let value = field(object, key);
    if absent(&value) {
        return Ok(None);
    }
    match value.as_f64() {
        Some(number)
            if number >= 0.0
                && number <= f64::from(maximum)
                && f64::from(number as u32) == number =>
        {
            Ok(Some(number as u32))
        }
        _ => Err(invalid_argument(key, "a whole number in range")),
    }
}

fn u8_field(object: &JsValue, key: &str) -> Result<Option<u8>, JsValue> {
    Ok(integer_field(object, key, 255)?.map(|value| value as u8))
}

fn u16_field(object: &JsValue, key: &str) -> Result<Option<u16>, JsValue> {
    Ok(integer_field(object, key, 65_535)?.map(|value| value as u16))
}

fn u32_field(object: &JsValue, key: &str) -> Result<Option<u32>, JsValue> {
    integer_field(object, key, u32::MAX)
}

fn qos_field(object: &JsValue, key: &str) -> Result<QoS, JsValue> {
    let bits = u8_field(object, key)?.unwrap_or(0);
    QoS::from_bits(bits).ok_or_else(|| invalid_argument(key, "0, 1 or 2"))
}

/// A payload given as `string`, `Uint8Array` (or another typed array view), `ArrayBuffer`, or
/// nothing.
pub fn payload_from_js(value: &JsValue) -> Result<Bytes, JsValue> {
    if absent(value) {
        return Ok(Bytes::new());
    }
    if let Some(text) = value.as_string() {
        return Ok(Bytes::from(text));
    }
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return Ok(Bytes::from(bytes.to_vec()));
    }
    if let Some(buffer) = value.dyn_ref::<ArrayBuffer>() {
        return Ok(Bytes::from(Uint8Array::new(buffer).to_vec()));
    }
    if ArrayBuffer::is_view(value) {
        // Other typed arrays and DataView: their bytes, not their elements.
        let buffer = field(value, "buffer");
        let offset = field(value, "byteOffset").as_f64().unwrap_or(0.0) as u32;
        let length = field(value, "byteLength").as_f64().unwrap_or(0.0) as u32;
        let view = Uint8Array::new_with_byte_offset_and_length(&buffer, offset, length);
        return Ok(Bytes::from(view.to_vec()));
    }
    Err(invalid_argument(
        "payload",
        "a string, a Uint8Array, an ArrayBuffer or undefined",
    ))
}

fn text_field(object: &JsValue, key: &str) -> Result<Option<ByteStr>, JsValue> {
    Ok(string_field(object, key)?.map(ByteStr::from))
}

fn bytes_field(object: &JsValue, key: &str) -> Result<Option<Bytes>, JsValue> {
    let value = field(object, key);
    if absent(&value) {
        return Ok(None);
    }
    payload_from_js(&value).map(Some)
}

/// The properties a client may send (PUBLISH, SUBSCRIBE, UNSUBSCRIBE, CONNECT, will).
pub fn properties_from_js(value: &JsValue) -> Result<Properties, JsValue> {
    if absent(value) {
        return Ok(Properties::default());
    }
    Ok(Properties {
        payload_format_indicator: u8_field(value, "payloadFormatIndicator")?,
        message_expiry_interval: u32_field(value, "messageExpiryInterval")?,
        content_type: text_field(value, "contentType")?,
        response_topic: text_field(value, "responseTopic")?,
        correlation_data: bytes_field(value, "correlationData")?,
        subscription_identifiers: u32_field(value, "subscriptionIdentifier")?
            .into_iter()
            .collect(),
        session_expiry_interval: u32_field(value, "sessionExpiryInterval")?,
        request_problem_information: u8_field(value, "requestProblemInformation")?,
        will_delay_interval: u32_field(value, "willDelayInterval")?,
        request_response_information: u8_field(value, "requestResponseInformation")?,
        receive_maximum: u16_field(value, "receiveMaximum")?,
        user_properties: user_properties_from_js(&field(value, "userProperties"))?,
        ..Properties::default()
    })
}

/// `{ name: "value", repeated: ["a", "b"] }` into ordered pairs.
fn user_properties_from_js(value: &JsValue) -> Result<Vec<(ByteStr, ByteStr)>, JsValue> {
    if absent(value) {
        return Ok(Vec::new());
    }
    let Some(object) = value.dyn_ref::<Object>() else {
        return Err(invalid_argument("userProperties", "an object of strings"));
    };
    let mut pairs = Vec::new();
    for entry in Object::entries(object).iter() {
        let entry: Array = entry.unchecked_into();
        let name = entry.get(0).as_string().unwrap_or_default();
        let value = entry.get(1);
        let values = if Array::is_array(&value) {
            value.unchecked_into::<Array>()
        } else {
            Array::of1(&value)
        };
        for value in values.iter() {
            let Some(value) = value.as_string() else {
                return Err(invalid_argument(
                    "userProperties values",
                    "strings or arrays of strings",
                ));
            };
            pairs.push((ByteStr::from(name.as_str()), ByteStr::from(value)));
        }
    }
    Ok(pairs)
}

/// Sets the fields of a JS object, skipping absent values.
struct ObjectBuilder(Object);

impl ObjectBuilder {
    fn set(&self, key: &str, value: &JsValue) {
        let _ = Reflect::set(&self.0, &JsValue::from_str(key), value);
    }

    fn number<T: Into<f64> + Copy>(&self, key: &str, value: Option<T>) {
        if let Some(value) = value {
            self.set(key, &JsValue::from_f64(value.into()));
        }
    }

    fn text(&self, key: &str, value: &Option<ByteStr>) {
        if let Some(value) = value {
            self.set(key, &JsValue::from_str(value));
        }
    }

    fn bytes(&self, key: &str, value: &Option<Bytes>) {
        if let Some(value) = value {
            self.set(key, &Uint8Array::from(&value[..]).into());
        }
    }
}

/// Received properties as a JS object (`undefined` when there are none).
pub fn properties_to_js(properties: &Properties) -> JsValue {
    if properties.is_empty() {
        return JsValue::UNDEFINED;
    }
    let object = ObjectBuilder(Object::new());
    object.number(
        "payloadFormatIndicator",
        properties.payload_format_indicator,
    );
    object.number("messageExpiryInterval", properties.message_expiry_interval);
    object.text("contentType", &properties.content_type);
    object.text("responseTopic", &properties.response_topic);
    object.bytes("correlationData", &properties.correlation_data);
    if !properties.subscription_identifiers.is_empty() {
        let identifiers: Array = properties
            .subscription_identifiers
            .iter()
            .map(|identifier| JsValue::from_f64(f64::from(*identifier)))
            .collect();
        object.set("subscriptionIdentifiers", &identifiers);
    }
    object.number("sessionExpiryInterval", properties.session_expiry_interval);
    object.text(
        "assignedClientIdentifier",
        &properties.assigned_client_identifier,
    );
    object.number("serverKeepAlive", properties.server_keep_alive);
    object.text("responseInformation", &properties.response_information);
    object.text("serverReference", &properties.server_reference);
    object.text("reasonString", &properties.reason_string);
    object.number("receiveMaximum", properties.receive_maximum);
    object.number("topicAliasMaximum", properties.topic_alias_maximum);
    object.number("maximumQos", properties.maximum_qos);
    object.number("retainAvailable", properties.retain_available);
    object.number("maximumPacketSize", properties.maximum_packet_size);
    object.number(
        "wildcardSubscriptionAvailable",
        properties.wildcard_subscription_available,
    );
    object.number(
        "subscriptionIdentifierAvailable",
        properties.subscription_identifier_available,
    );
    object.number(
        "sharedSubscriptionAvailable",
        properties.shared_subscription_available,
    );
    if !properties.user_properties.is_empty() {
        object.set(
            "userProperties",
            &user_properties_to_js(&properties.user_properties),
        );
    }
    object.0.into()
}

fn user_properties_to_js(pairs: &[(ByteStr, ByteStr)]) -> JsValue {
    let object = Object::new();
    for (name, value) in pairs {
        let name = JsValue::from_str(name);
        let value = JsValue::from_str(value);
        let existing = Reflect::get(&object, &name).unwrap_or(JsValue::UNDEFINED);
        let merged = if existing.is_undefined() {
            value
        } else if Array::is_array(&existing) {
            existing.unchecked_ref::<Array>().push(&value);
            existing
        } else {
            Array::of2(&existing, &value).into()
        };
        let _ = Reflect::set(&object, &name, &merged);
    }
    object.into()
}

/// The core's options from the `connect()` options object; `random_id` names clients that
/// gave no `clientId`.
pub fn connect_options(
    value: &JsValue,
    random_id: impl FnOnce() -> String,
) -> Result<Options, JsValue> {
    if !absent(value) && !value.is_object() {
        return Err(invalid_argument("options", "an object"));
    }
    let defaults = Options::default();
    let protocol = match u8_field(value, "protocolVersion")? {
        None | Some(5) => ProtocolVersion::V5,
        Some(4) => ProtocolVersion::V311,
        Some(_) => return Err(invalid_argument("protocolVersion", "4 or 5")),
    };
    let will_value = field(value, "will");
    let will = if absent(&will_value) {
        None
    } else {
        let Some(topic) = string_field(&will_value, "topic")? else {
            return Err(invalid_argument("will.topic", "a string"));
        };
        Some(WillOptions {
            topic,
            payload: payload_from_js(&field(&will_value, "payload"))?,
            qos: qos_field(&will_value, "qos")?,
            retain: bool_field(&will_value, "retain")?.unwrap_or(false),
            properties: properties_from_js(&field(&will_value, "properties"))?,
        })
    };
    let reconnect_value = field(value, "reconnect");
    let reconnect = match reconnect_value.as_bool() {
        Some(false) => None,
        Some(true) => defaults.reconnect,
        None if absent(&reconnect_value) => defaults.reconnect,
        None => {
            let default = Backoff::default();
            Some(Backoff {
                min_delay_ms: u32_field(&reconnect_value, "minDelayMs")?
                    .unwrap_or(default.min_delay_ms),
                max_delay_ms: u32_field(&reconnect_value, "maxDelayMs")?
                    .unwrap_or(default.max_delay_ms),
            })
        }
    };
    Ok(Options {
        protocol,
        client_id: string_field(value, "clientId")?.unwrap_or_else(random_id),
        keep_alive: u16_field(value, "keepalive")?.unwrap_or(defaults.keep_alive),
        clean: bool_field(value, "clean")?.unwrap_or(defaults.clean),
        session_expiry: u32_field(value, "sessionExpiry")?,
        username: string_field(value, "username")?,
        password: bytes_field(value, "password")?,
        will,
        reconnect,
        offline_queue_limit: u32_field(value, "offlineQueueLimit")?
            .map_or(defaults.offline_queue_limit, |limit| limit as usize),
        connect_timeout_ms: u32_field(value, "connectTimeoutMs")?
            .unwrap_or(defaults.connect_timeout_ms),
        maximum_packet_size: u32_field(value, "maximumPacketSize")?,
        properties: properties_from_js(&field(value, "properties"))?,
    })
}

/// QoS, retain and properties of a `publish()` call.
pub fn publish_options(value: &JsValue) -> Result<(QoS, bool, Properties), JsValue> {
    if absent(value) {
        return Ok((QoS::AtMostOnce, false, Properties::default()));
    }
    Ok((
        qos_field(value, "qos")?,
        bool_field(value, "retain")?.unwrap_or(false),
        properties_from_js(&field(value, "properties"))?,
    ))
}

/// Options and properties of a `subscribe()` call.
pub fn subscribe_options(value: &JsValue) -> Result<(SubscriptionOptions, Properties), JsValue> {
    let retain_handling = match u8_field(value, "retainHandling")? {
        None | Some(0) => RetainHandling::SendAtSubscribe,
        Some(1) => RetainHandling::SendIfNew,
        Some(2) => RetainHandling::DoNotSend,
        Some(_) => return Err(invalid_argument("retainHandling", "0, 1 or 2")),
    };
    let options = SubscriptionOptions {
        qos: qos_field(value, "qos")?,
        no_local: bool_field(value, "noLocal")?.unwrap_or(false),
        retain_as_published: bool_field(value, "retainAsPublished")?.unwrap_or(false),
        retain_handling,
    };
    Ok((options, properties_from_js(&field(value, "properties"))?))
}

/// Properties of an `unsubscribe()` call.
pub fn unsubscribe_options(value: &JsValue) -> Result<Properties, JsValue> {
    properties_from_js(&field(value, "properties"))
}
