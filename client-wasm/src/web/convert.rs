//! Conversions between JS values and the core's types: packed values, properties, payloads
//! and errors. What the packed bytes hold is [`crate::packed`]'s; what the numbers mean,
//! [`crate::abi`]'s.

use super::bindings::{self, Uint8Array};
use crate::abi;
use crate::error::ClientError;
use crate::packed;
use alloc::vec::Vec;
use mqtt_codec::Properties;
use wasm_bindgen::{JsCast, JsValue};

/// A JS `Error` for `error`, with `code` and `reasonCode`, built by `clientError` in
/// support.js from [`abi::error_parts`]: the message texts live there (a wasm-bindgen test
/// checks that they read as `ClientError::message` does).
pub fn error_value(error: &ClientError) -> JsValue {
    let reason = error.reason_code().map_or(-1, i32::from);
    let (kind, detail, a, b) = abi::error_parts(error);
    bindings::client_error(kind, reason, detail, a as f64, b as f64)
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
    let mut bytes = Vec::new();
    packed::write_properties(properties, &mut bytes);
    bindings::properties_object(&bytes)
}
