//! Imports from the global scope and from `js/support.js`.
//!
//! The timer and clock functions are looked up on the global object at each call (not on
//! `window`), so the client works in a page and in a Web Worker alike.

use js_sys::{Array, Function, Promise};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `setTimeout` of the global scope, which calls `handler(argument)`; returns its handle.
    #[wasm_bindgen(js_name = setTimeout)]
    pub fn set_timeout(handler: &Function, delay_ms: f64, argument: i32) -> JsValue;

    /// `clearTimeout` of the global scope.
    #[wasm_bindgen(js_name = clearTimeout)]
    pub fn clear_timeout(handle: &JsValue);

    /// `performance.now()`: monotonic milliseconds, unaffected by timer throttling.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    pub fn performance_now() -> f64;
}

#[wasm_bindgen]
extern "C" {
    /// The options of `connect()`, typed for the `.d.ts` (checked field by field in `convert`).
    #[wasm_bindgen(typescript_type = "ConnectOptions")]
    pub type ConnectOptionsArg;

    /// The options of `subscribe()`.
    #[wasm_bindgen(typescript_type = "SubscribeOptions")]
    pub type SubscribeOptionsArg;

    /// The options of `unsubscribe()`.
    #[wasm_bindgen(typescript_type = "UnsubscribeOptions")]
    pub type UnsubscribeOptionsArg;

    /// The options of `publish()`.
    #[wasm_bindgen(typescript_type = "PublishOptions")]
    pub type PublishOptionsArg;
}

#[wasm_bindgen(module = "/js/support.js")]
extern "C" {
    /// Builds the message objects of one frame from views into wasm memory.
    #[wasm_bindgen(js_name = buildMessages)]
    pub fn build_messages(data: &[u8], meta: &[u32], properties: &Array) -> Array;

    /// A new `Events` object: the client's EventTarget and callbacks.
    pub fn events() -> JsValue;

    /// Adds (`add`) or removes a callback of `onMessages` (`batch`) or of `onMessage`.
    pub fn callback(events: &JsValue, batch: bool, add: bool, callback: &Function);

    /// `addEventListener` (`add`) or `removeEventListener` on the client's events.
    pub fn listen(
        events: &JsValue,
        kind: &JsValue,
        listener: &JsValue,
        options: &JsValue,
        add: bool,
    );

    /// Queues an effect of a turn: event `kind` (0 connect, 1 close, 2 reconnect, 3 error) with
    /// its detail built from `a` and `b`, 4 or 5 resolving or rejecting the Promise of request
    /// `a` with `b`, 6 the delivery of messages `a`.
    pub fn effect(events: &JsValue, kind: i32, a: &JsValue, b: &JsValue);

    /// Runs the queued effects, in order.
    #[wasm_bindgen(js_name = runEffects)]
    pub fn run_effects(events: &JsValue);

    /// The `MqttError` for a `ClientError`: see `convert::error_value`.
    #[wasm_bindgen(js_name = clientError)]
    pub fn client_error(kind: i32, reason_code: i32, detail: &str, a: f64, b: f64) -> JsValue;

    /// A WebSocket to `url` (subprotocol `mqtt`, binary frames as ArrayBuffers) whose events
    /// call `handler(kind, data)`: 0 open, 1 a binary message (`data` a `Uint8Array`), 2 closed
    /// (an error is always followed by a close). Throws for a malformed URL.
    #[wasm_bindgen(js_name = openSocket, catch)]
    pub fn open_socket(url: &str, handler: &Function) -> Result<JsValue, JsValue>;

    /// Sends one binary message; a socket that cannot send reports its close event instead.
    pub fn send(socket: &JsValue, data: &[u8]);

    /// Queues a microtask that calls `handler(argument)`.
    pub fn microtask(handler: &Function, argument: i32);

    /// Detaches the socket's handlers, then closes it.
    #[wasm_bindgen(js_name = closeSocket)]
    pub fn close_socket(socket: &JsValue);

    /// `connect()`'s options checked and flattened (see `convert::connect_options`); throws
    /// an `INVALID_ARGUMENT` error naming a malformed field.
    #[wasm_bindgen(js_name = connectOptions, catch)]
    pub fn connect_options(options: &JsValue) -> Result<JsValue, JsValue>;

    /// `publish()`'s payload and options: `[payload, qos, retain, properties]`.
    #[wasm_bindgen(js_name = publishOptions, catch)]
    pub fn publish_options(payload: &JsValue, options: &JsValue) -> Result<JsValue, JsValue>;

    /// `subscribe()`'s options: `[qos, noLocal, retainAsPublished, retainHandling, properties]`.
    #[wasm_bindgen(js_name = subscribeOptions, catch)]
    pub fn subscribe_options(options: &JsValue) -> Result<JsValue, JsValue>;

    /// `unsubscribe()`'s options: the properties list.
    #[wasm_bindgen(js_name = unsubscribeOptions, catch)]
    pub fn unsubscribe_options(options: &JsValue) -> Result<JsValue, JsValue>;

    /// Received properties as an object, from `[index, value, ...]`.
    #[wasm_bindgen(js_name = propertiesObject)]
    pub fn properties_object(list: &Array) -> JsValue;

    /// `{ qos, reasonCode }`, or `{ reasonCode }` when `qos` is negative.
    pub fn result(qos: i32, reason_code: u8) -> JsValue;

    /// A Promise for request `id`, settled by an effect or [`settle`].
    pub fn pending(events: &JsValue, id: u32) -> Promise;

    /// Resolves (`ok`) or rejects the Promise of request `id` with `value`.
    pub fn settle(events: &JsValue, id: u32, ok: bool, value: &JsValue);
}
