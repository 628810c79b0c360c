//! Imports from the global scope and from `js/support.js`.
//!
//! The timer and clock functions are looked up on the global object at each call (not on
//! `window`), so the client works in a page and in a Web Worker alike.
//!
//! The few built-in types the driver needs are declared here rather than taken from js-sys:
//! depending on js-sys links the type descriptors of all its bindings (exported symbols, so
//! roots of the link), and the closure shims they name stay in the module's function table after
//! wasm-bindgen drops the descriptors, where wasm-opt cannot prune them (0.5 KB gzipped).

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// A JS `Uint8Array`.
    pub type Uint8Array;

    #[wasm_bindgen(method, getter)]
    pub fn length(this: &Uint8Array) -> u32;

    /// `Uint8Array.prototype.set.call(target, source)`: copies `source` into `target`, a view
    /// of wasm memory of the same length.
    #[wasm_bindgen(js_namespace = ["Uint8Array", "prototype", "set"], js_name = call)]
    pub fn copy_into(target: &mut [u8], source: &Uint8Array);

    /// `clearTimeout` of the global scope.
    #[wasm_bindgen(js_name = clearTimeout)]
    pub fn clear_timeout(handle: &JsValue);

    /// `performance.now()`: monotonic milliseconds, unaffected by timer throttling.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    pub fn performance_now() -> f64;
}

#[wasm_bindgen(module = "/js/support.js")]
extern "C" {
    /// `MqttClient`, the class of the API, which the package exports as it is. Bound as a
    /// function that is never called: a reexported function can skip TypeScript (the class is
    /// declared in `types.d.ts`), where a reexported type is declared as `unknown`.
    #[wasm_bindgen(reexport, js_name = MqttClient, skip_typescript)]
    fn mqtt_client_class();

    /// The client class of the API, for the wasm-bindgen tests, which use it as JS code does.
    pub type MqttClient;

    /// `MqttClient.connect()` (a Promise), for the wasm-bindgen tests (the package has no use
    /// for it, so it is not in it).
    #[wasm_bindgen(static_method_of = MqttClient)]
    pub fn connect(url: &str, options: &JsValue) -> JsValue;

    /// Hands over the `Entry` of the module, once it is instantiated.
    pub fn start(entry: JsValue);

    /// Builds the message objects of one frame from views into wasm memory.
    #[wasm_bindgen(js_name = buildMessages)]
    pub fn build_messages(data: &[u8], meta: &[u32], properties: &[u8]) -> JsValue;

    /// Queues an effect of a turn, of `kind` ([`crate::abi::effect`]): an event with its detail
    /// built from `number` and `value`, resolving or rejecting the Promise of request `number`
    /// with `value`, the delivery of messages `value`, or the release of the handler.
    pub fn effect(events: &JsValue, kind: i32, number: f64, value: &JsValue);

    /// Runs the queued effects, in order.
    #[wasm_bindgen(js_name = runEffects)]
    pub fn run_effects(events: &JsValue);

    /// The `MqttError` for a `ClientError`: see `convert::error_value` and
    /// [`crate::abi::error_parts`].
    #[wasm_bindgen(js_name = clientError)]
    pub fn client_error(kind: i32, reason_code: i32, detail: &str, a: f64, b: f64) -> JsValue;

    /// A WebSocket to the client's URL, kept by `events` (subprotocol `mqtt`, binary frames as
    /// ArrayBuffers), whose events call the client's handler with `(kind, data)`, `kind` one of
    /// the `SOCKET_` codes of [`crate::abi::handler`] (an error is always followed by a close);
    /// `undefined` for a malformed URL.
    #[wasm_bindgen(js_name = openSocket)]
    pub fn open_socket(events: &JsValue) -> JsValue;

    /// A timer (of the global scope's `setTimeout`) that calls the client's handler with
    /// `TIMER` after `delay_ms`; returns its handle.
    pub fn timer(events: &JsValue, delay_ms: f64) -> JsValue;

    /// Sends one binary message; a socket that cannot send reports its close event instead.
    pub fn send(socket: &JsValue, data: &[u8]);

    /// Queues a microtask that calls the client's handler with `FLUSH`.
    pub fn microtask(events: &JsValue);

    /// Detaches the socket's handlers, then closes it.
    #[wasm_bindgen(js_name = closeSocket)]
    pub fn close_socket(socket: &JsValue);

    /// Received properties as an object, from [`crate::packed::write_properties`]' bytes.
    #[wasm_bindgen(js_name = propertiesObject)]
    pub fn properties_object(packed: &[u8]) -> JsValue;

    /// `{ qos, reasonCode }`, or `{ reasonCode }` when `qos` is negative.
    pub fn result(qos: i32, reason_code: u8) -> JsValue;
}
