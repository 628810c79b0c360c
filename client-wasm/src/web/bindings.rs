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

#[wasm_bindgen(module = "/js/support.js")]
extern "C" {
    /// `MqttClient`, the class of the API, which the package exports as it is. Bound as a
    /// function that is never called: a reexported function can skip TypeScript (the class is
    /// declared in `types.d.ts`), where a reexported type is declared as `unknown`.
    #[wasm_bindgen(reexport, js_name = MqttClient, skip_typescript)]
    fn mqtt_client_class();

    /// The client class of the API, for the wasm-bindgen tests, which use it as JS code does.
    pub type MqttClient;

    /// `MqttClient.connect()`, for the wasm-bindgen tests (the package has no use for it, so
    /// it is not in it).
    #[wasm_bindgen(static_method_of = MqttClient)]
    pub fn connect(url: &str, options: &JsValue) -> Promise;

    /// Hands over the `Entry` of the module, once it is instantiated.
    pub fn start(entry: JsValue);

    /// `(kind, data) => handler.handle(kind, data)`, for a `Handler`.
    #[wasm_bindgen(js_name = handlerFunction)]
    pub fn handler_function(handler: JsValue) -> Function;

    /// Builds the message objects of one frame from views into wasm memory.
    #[wasm_bindgen(js_name = buildMessages)]
    pub fn build_messages(data: &[u8], meta: &[u32], properties: &Array) -> Array;

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

    /// Received properties as an object, from `[index, value, ...]`.
    #[wasm_bindgen(js_name = propertiesObject)]
    pub fn properties_object(list: &Array) -> JsValue;

    /// `{ qos, reasonCode }`, or `{ reasonCode }` when `qos` is negative.
    pub fn result(qos: i32, reason_code: u8) -> JsValue;
}
