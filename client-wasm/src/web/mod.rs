//! The browser driver: `MqttClient` as JS sees it, over the core [`Session`].
//!
//! One `Rc<RefCell<Driver>>` per client holds the session, the WebSocket with its handlers, the
//! timer and the pending Promises. Every callback (socket, timer, microtask) holds only a `Weak`
//! to it, and every `Closure` lives in the driver (no `Closure::forget`): dropping the client
//! drops them all. While the first connection is being made, the driver holds itself (the
//! Promise of `connect()` is its only other owner), and lets go once that Promise settles.
//!
//! Re-entrancy: user code (listeners, callbacks, Promise executors of the caller) may call back
//! into the client, so it never runs while the driver is borrowed. A turn borrows the driver,
//! feeds the session, queues what JS must be told as effects (on the `Events` object of
//! support.js), releases the borrow, and only then has support.js run them.
//!
//! Writes made by API calls are sent from a microtask, so a burst of `publish()` calls in one
//! task leaves as one WebSocket message (the gateway accepts many packets per frame). Writes
//! that answer the broker (acknowledgements, PINGREQ) leave at once.

mod bindings;
mod convert;

use crate::error::ClientError;
use crate::session::{Completion, Event, OutgoingMessage, RequestId, Session};
use alloc::rc::{Rc, Weak};
use alloc::{string::String, vec::Vec};
use bindings::performance_now;
pub use bindings::{
    ConnectOptionsArg, PublishOptionsArg, SubscribeOptionsArg, UnsubscribeOptionsArg,
};
pub use convert::error_value as error_to_js;
use core::cell::RefCell;
use js_sys::{Array, Function, Promise, Uint8Array};
use mqtt_codec::{ByteStr, Properties, PublishPacket, SubscriptionOptions};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = include_str!("../../js/types.d.ts");

/// An operation of the API, started by [`MqttClient::request`].
enum Call {
    Publish(OutgoingMessage),
    Subscribe(String, SubscriptionOptions, Properties),
    Unsubscribe(String, Properties),
}

/// One WebSocket, opened by `openSocket` in support.js with the driver's handler.
struct Socket {
    socket: JsValue,
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Detaches the handlers first: none may run once the closure is gone.
        bindings::close_socket(&self.socket);
    }
}

/// Distinct topics a batch remembers to write each only once.
const TOPICS_REMEMBERED: usize = 16;

/// The messages of one turn, packed for `buildMessages` in `js/support.js`.
#[derive(Default)]
struct MessageBatch {
    data: Vec<u8>,
    /// Per message: topic offset, topic length, payload offset, payload length, flags.
    meta: Vec<u32>,
    /// The latest distinct topics of this batch and where they start in `data`; a short list
    /// because frames usually repeat a few topics.
    topics: Vec<(ByteStr, u32)>,
    properties: Vec<JsValue>,
}

impl MessageBatch {
    fn push(&mut self, publish: PublishPacket) {
        let known = self
            .topics
            .iter()
            .rev()
            .find(|(topic, _)| *topic == publish.topic);
        let topic_start = match known {
            Some(&(_, start)) => start,
            None => {
                let start = self.data.len() as u32;
                self.data.extend_from_slice(publish.topic.as_bytes());
                if self.topics.len() == TOPICS_REMEMBERED {
                    self.topics.remove(0);
                }
                self.topics.push((publish.topic.clone(), start));
                start
            }
        };
        let payload_start = self.data.len() as u32;
        self.data.extend_from_slice(&publish.payload);
        let mut flags = publish.qos as u32;
        if publish.retain {
            flags |= 4;
        }
        if publish.dup {
            flags |= 8;
        }
        if !publish.properties.is_empty() {
            flags |= 16;
            self.properties
                .push(convert::properties_to_js(&publish.properties));
        }
        if publish.topic.is_ascii() {
            flags |= 32;
        }
        self.meta.extend_from_slice(&[
            topic_start,
            publish.topic.len() as u32,
            payload_start,
            publish.payload.len() as u32,
            flags,
        ]);
    }

    /// The message objects, leaving the batch empty (its buffers are kept for the next one).
    fn take(&mut self) -> Option<Array> {
        if self.meta.is_empty() {
            return None;
        }
        let properties: Array = self.properties.drain(..).collect();
        let messages = bindings::build_messages(&self.data, &self.meta, &properties);
        self.data.clear();
        self.meta.clear();
        self.topics.clear();
        Some(messages)
    }
}

/// Everything one client owns.
struct Driver {
    session: Session,
    url: String,
    socket: Option<Socket>,
    /// The one closure JS calls back: socket events, the timer and the flush microtask,
    /// told apart by their first argument (see [`Driver::handle`]).
    handler: Closure<dyn FnMut(i32, JsValue)>,
    timer_handle: Option<JsValue>,
    timer_due: Option<f64>,
    /// Whether the microtask that sends what API calls wrote is queued.
    flush_scheduled: bool,
    /// Nothing per request: their Promises wait in the `Events` object of support.js, under
    /// their `RequestId` (0 for `connect()`'s), until an effect settles them.
    next_request: RequestId,
    /// The JS `Events` object (support.js): the EventTarget of the client's events, with the
    /// callbacks of `onMessage` and `onMessages`.
    events: JsValue,
    batch: MessageBatch,
    /// Whether `connect()`'s Promise waits for the first connection to succeed or fail.
    connecting: bool,
    /// Whether this turn queued effects for `bindings::run_effects`.
    effects_queued: bool,
    /// Self-ownership while `connect()` is pending; see the module header.
    owner: Option<Rc<RefCell<Driver>>>,
    weak: Weak<RefCell<Driver>>,
}

impl Driver {
    fn new_request(&mut self) -> RequestId {
        self.next_request = self.next_request.wrapping_add(1);
        self.next_request
    }

    fn send_transmit(&mut self) {
        self.session.transmit(|bytes| {
            if let Some(socket) = &self.socket {
                // A send on a closing socket fails; its close event follows and reconnects.
                bindings::send(&socket.socket, bytes);
            }
        });
    }

    /// Processes the session's outputs. `send_now` is false for API calls, whose writes are
    /// coalesced by the flush microtask.
    fn drive(&mut self, now: f64, send_now: bool) {
        loop {
            if send_now {
                self.send_transmit();
            }
            let Some(event) = self.session.poll_event() else {
                break;
            };
            if let Event::Message(publish) = event {
                self.batch.push(publish);
                continue;
            }
            // Messages first: they arrived before whatever this event reports.
            self.deliver_batch();
            self.handle_event(event, now);
        }
        self.deliver_batch();
        if !send_now && !self.flush_scheduled {
            self.flush_scheduled = true;
            bindings::microtask(self.handler.as_ref().unchecked_ref(), FLUSH);
        }
        self.arm_timer(now);
    }

    /// Queues an effect (see `bindings::effect`), run once the turn released the driver.
    fn effect(&mut self, kind: i32, a: &JsValue, b: &JsValue) {
        self.effects_queued = true;
        bindings::effect(&self.events, kind, a, b);
    }

    fn deliver_batch(&mut self) {
        if let Some(messages) = self.batch.take() {
            self.effect(MESSAGES, &messages, &JsValue::UNDEFINED);
        }
    }

    fn handle_event(&mut self, event: Event, now: f64) {
        match event {
            Event::OpenTransport => self.open_socket(now),
            Event::CloseTransport => {
                self.send_transmit();
                self.socket = None;
            }
            Event::Connected {
                session_present,
                properties,
            } => {
                if self.connecting {
                    self.connecting = false;
                    let client = MqttClient {
                        driver: self.owner.take().or_else(|| self.weak.upgrade()),
                    };
                    self.effect(RESOLVE, &CONNECT_REQUEST.into(), &client.into());
                }
                self.effect(
                    CONNECT,
                    &session_present.into(),
                    &convert::properties_to_js(&properties),
                );
            }
            Event::ConnectionLost { error, reconnect } => {
                if !self.connecting {
                    let refused = matches!(error, ClientError::ConnectionRefused(_));
                    let error = convert::error_value(&error);
                    if refused {
                        self.effect(ERROR, &error, &JsValue::UNDEFINED);
                    }
                    self.effect(CLOSE, &error, &reconnect.into());
                }
            }
            Event::Reconnecting { attempt, delay_ms } => {
                self.effect(RECONNECT, &attempt.into(), &delay_ms.into());
            }
            Event::Closed { error } => {
                self.socket = None;
                match (core::mem::take(&mut self.connecting), &error) {
                    (true, _) => {
                        let error = error.unwrap_or(ClientError::Closed);
                        let error = convert::error_value(&error);
                        self.effect(REJECT, &CONNECT_REQUEST.into(), &error);
                        // Nobody holds the client: let it go once this turn ends.
                        self.owner = None;
                    }
                    // After end(): the only "close" this connection reports.
                    (false, None) => {
                        self.effect(CLOSE, &JsValue::UNDEFINED, &false.into());
                    }
                    // A failure already reported its "close" through ConnectionLost.
                    (false, Some(_)) => {}
                }
            }
            Event::Completed { request, result } => {
                let (kind, value) = match result {
                    Ok(completion) => (RESOLVE, completion_value(completion)),
                    Err(error) => (REJECT, convert::error_value(&error)),
                };
                self.effect(kind, &request.into(), &value);
            }
            Event::Error(error) => {
                self.effect(ERROR, &convert::error_value(&error), &JsValue::UNDEFINED);
            }
            Event::Message(_) => {}
        }
    }

    fn open_socket(&mut self, now: f64) {
        self.socket = None;
        match self.new_socket() {
            Ok(socket) => self.socket = Some(socket),
            // A malformed URL throws at once; the session treats it like a failed connection.
            Err(_) => self.session.handle_transport_closed(now),
        }
    }

    fn new_socket(&self) -> Result<Socket, JsValue> {
        let socket = bindings::open_socket(&self.url, self.handler.as_ref().unchecked_ref())?;
        Ok(Socket { socket })
    }

    /// What JS reports through [`Driver::handler`]: `kind` is one of `SOCKET_OPEN`,
    /// `SOCKET_MESSAGE` (`data` is a `Uint8Array`), `SOCKET_CLOSE`, `TIMER` and `FLUSH`.
    fn handle(&mut self, kind: i32, data: &JsValue, now: f64) {
        match kind {
            SOCKET_OPEN => self.session.handle_open(now),
            SOCKET_MESSAGE => {
                let bytes: &Uint8Array = data.unchecked_ref();
                let length = bytes.length() as usize;
                bytes.copy_to(self.session.receive_buffer(length));
                self.session.handle_received(now);
            }
            SOCKET_CLOSE => {
                self.socket = None;
                self.session.handle_transport_closed(now);
            }
            TIMER => {
                self.timer_handle = None;
                self.timer_due = None;
                self.session.handle_timeout(now);
            }
            _ => self.flush_scheduled = false,
        }
    }

    /// Arms the timer for the session's next deadline, measured on `performance.now()`.
    fn arm_timer(&mut self, now: f64) {
        let due = self.session.poll_timeout();
        if due == self.timer_due {
            return;
        }
        if let Some(handle) = self.timer_handle.take() {
            bindings::clear_timeout(&handle);
        }
        self.timer_due = due;
        if let Some(due) = due {
            // Capped at setTimeout's limit of 2^31 - 1 ms; an early firing just re-arms.
            // Rounded up by hand (`f64::ceil` is `std`'s): the clamp keeps it within `u32`.
            let delay = (due - now).clamp(0.0, 2_147_483_647.0);
            let whole = f64::from(delay as u32);
            let delay = if whole < delay { whole + 1.0 } else { whole };
            self.timer_handle = Some(bindings::set_timeout(
                self.handler.as_ref().unchecked_ref(),
                delay,
                TIMER,
            ));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The timer must not fire into a dropped closure.
        if let Some(handle) = self.timer_handle.take() {
            bindings::clear_timeout(&handle);
        }
    }
}

/// The calls of [`Driver::handler`]: the events `openSocket` reports, the timer, the flush.
const SOCKET_OPEN: i32 = 0;
const SOCKET_MESSAGE: i32 = 1;
const SOCKET_CLOSE: i32 = 2;
const TIMER: i32 = 3;
const FLUSH: i32 = 4;

/// The effects of `bindings::effect`: the client's events, settling a request, messages.
const CONNECT: i32 = 0;
const CLOSE: i32 = 1;
const RECONNECT: i32 = 2;
const ERROR: i32 = 3;
const RESOLVE: i32 = 4;
const REJECT: i32 = 5;
const MESSAGES: i32 = 6;

/// The request whose Promise `connect()` returns.
const CONNECT_REQUEST: RequestId = 0;

fn completion_value(completion: Completion) -> JsValue {
    match completion {
        Completion::Published => JsValue::UNDEFINED,
        Completion::Subscribed { qos, reason_code } => {
            bindings::result(i32::from(qos as u8), reason_code.as_u8())
        }
        Completion::Unsubscribed { reason_code } => bindings::result(-1, reason_code.as_u8()),
    }
}

/// One turn: borrow, feed the session with `input`, drive, release, then run the effects.
fn turn(weak: &Weak<RefCell<Driver>>, send_now: bool, input: &mut dyn FnMut(&mut Driver, f64)) {
    let Some(driver) = weak.upgrade() else {
        return;
    };
    run_turn(&driver, send_now, input);
}

/// Not generic over `input`: one copy of the turn serves every caller.
fn run_turn(driver: &Rc<RefCell<Driver>>, send_now: bool, input: &mut dyn FnMut(&mut Driver, f64)) {
    let events = {
        let Ok(mut driver) = driver.try_borrow_mut() else {
            return;
        };
        let now = performance_now();
        input(&mut driver, now);
        driver.drive(now, send_now);
        // Most turns (a publish that waits for its acknowledgement) have nothing for JS.
        core::mem::take(&mut driver.effects_queued).then(|| driver.events.clone())
    };
    if let Some(events) = events {
        bindings::run_effects(&events);
    }
}

fn rejected(error: JsValue) -> Promise {
    Promise::reject(&error)
}

/// An MQTT 3.1.1 / 5.0 client over WebSocket. Create it with `MqttClient.connect()`.
#[wasm_bindgen]
pub struct MqttClient {
    /// Always set in practice: an `Option` because the driver hands out this object while it
    /// is borrowed, through its `Weak` to itself. Methods treat `None` as a closed client.
    driver: Option<Rc<RefCell<Driver>>>,
}

#[wasm_bindgen]
impl MqttClient {
    /// Connects to `url` (`ws://host:port/mqtt`); resolves once the broker accepted the
    /// connection (CONNACK), rejects with an `MqttError` (e.g. `CONNECTION_REFUSED`) otherwise.
    #[wasm_bindgen(unchecked_return_type = "Promise<MqttClient>")]
    pub fn connect(url: String, options: Option<bindings::ConnectOptionsArg>) -> Promise {
        let (options, seed) = match convert::connect_options(&options.into()) {
            Ok(converted) => converted,
            Err(error) => return rejected(error),
        };
        let now = performance_now();
        let session = match Session::new(options, seed, now) {
            Ok(session) => session,
            Err(error) => return rejected(convert::error_value(&error)),
        };
        let events = bindings::events();
        let promise = bindings::pending(&events, CONNECT_REQUEST);
        let driver = Rc::new_cyclic(|weak: &Weak<RefCell<Driver>>| {
            let handler_weak = weak.clone();
            RefCell::new(Driver {
                session,
                url,
                socket: None,
                handler: Closure::new(move |kind, data: JsValue| {
                    turn(&handler_weak, true, &mut |driver, now| {
                        driver.handle(kind, &data, now)
                    });
                }),
                timer_handle: None,
                timer_due: None,
                flush_scheduled: false,
                next_request: CONNECT_REQUEST,
                events,
                batch: MessageBatch::default(),
                connecting: true,
                effects_queued: false,
                owner: None,
                weak: weak.clone(),
            })
        });
        driver.borrow_mut().owner = Some(driver.clone());
        run_turn(&driver, true, &mut |_, _| {});
        promise
    }

    /// Subscribes to a topic filter; resolves with `{ qos, reasonCode }` from the SUBACK, and
    /// rejects with `SUBSCRIBE_REFUSED` (and the `reasonCode`) when the broker refuses.
    #[wasm_bindgen(unchecked_return_type = "Promise<SubscribeResult>")]
    pub fn subscribe(
        &self,
        filter: String,
        options: Option<bindings::SubscribeOptionsArg>,
    ) -> Promise {
        let (options, properties) = match convert::subscribe_options(&options.into()) {
            Ok(converted) => converted,
            Err(error) => return rejected(error),
        };
        self.request(Call::Subscribe(filter, options, properties))
    }

    /// Unsubscribes from a topic filter; resolves with `{ reasonCode }` from the UNSUBACK.
    #[wasm_bindgen(unchecked_return_type = "Promise<UnsubscribeResult>")]
    pub fn unsubscribe(
        &self,
        filter: String,
        options: Option<bindings::UnsubscribeOptionsArg>,
    ) -> Promise {
        let properties = match convert::unsubscribe_options(&options.into()) {
            Ok(properties) => properties,
            Err(error) => return rejected(error),
        };
        self.request(Call::Unsubscribe(filter, properties))
    }

    /// Publishes a message. Resolves once written (QoS 0), on PUBACK (QoS 1) or on PUBCOMP
    /// (QoS 2). While disconnected the publish waits in the offline queue; when that is full
    /// the Promise rejects with `QUEUE_FULL`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn publish(
        &self,
        topic: String,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array | ArrayBuffer")]
        payload: JsValue,
        options: Option<bindings::PublishOptionsArg>,
    ) -> Promise {
        let (payload, qos, retain, properties) =
            match convert::publish_options(&payload, &options.into()) {
                Ok(converted) => converted,
                Err(error) => return rejected(error),
            };
        let message = OutgoingMessage {
            topic,
            payload,
            qos,
            retain,
            properties,
        };
        self.request(Call::Publish(message))
    }

    /// Calls `callback(message)` for every message received.
    #[wasm_bindgen(js_name = onMessage)]
    pub fn on_message(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(message: MqttMessage) => void")] callback: Function,
    ) {
        self.callback(false, true, &callback);
    }

    /// Stops calling a callback given to `onMessage`.
    #[wasm_bindgen(js_name = offMessage)]
    pub fn off_message(&self, callback: Function) {
        self.callback(false, false, &callback);
    }

    /// Calls `callback(messages)` once per received WebSocket frame with all its messages: the
    /// cheapest way to consume high message rates.
    #[wasm_bindgen(js_name = onMessages)]
    pub fn on_messages(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(messages: MqttMessage[]) => void")]
        callback: Function,
    ) {
        self.callback(true, true, &callback);
    }

    /// Stops calling a callback given to `onMessages`.
    #[wasm_bindgen(js_name = offMessages)]
    pub fn off_messages(&self, callback: Function) {
        self.callback(true, false, &callback);
    }

    /// Adds an event listener (typed overloads are declared in `MqttClientEventMap`).
    #[wasm_bindgen(js_name = addEventListener, skip_typescript)]
    pub fn add_event_listener(&self, kind: JsValue, listener: JsValue, options: JsValue) {
        if let Some(driver) = &self.driver {
            bindings::listen(&driver.borrow().events, &kind, &listener, &options, true);
        }
    }

    /// Removes an event listener.
    #[wasm_bindgen(js_name = removeEventListener, skip_typescript)]
    pub fn remove_event_listener(&self, kind: JsValue, listener: JsValue, options: JsValue) {
        if let Some(driver) = &self.driver {
            bindings::listen(&driver.borrow().events, &kind, &listener, &options, false);
        }
    }

    /// `"connecting" | "connected" | "reconnecting" | "closed"`.
    #[wasm_bindgen(getter, unchecked_return_type = "ClientState")]
    pub fn state(&self) -> JsValue {
        let state = self
            .driver
            .as_ref()
            .map_or("closed", |driver| driver.borrow().session.state().as_str());
        JsValue::from_str(state)
    }

    /// The client identifier sent in CONNECT.
    #[wasm_bindgen(getter, js_name = clientId, unchecked_return_type = "string")]
    pub fn client_id(&self) -> JsValue {
        self.driver.as_ref().map_or(JsValue::UNDEFINED, |driver| {
            JsValue::from_str(driver.borrow().session.client_id())
        })
    }

    /// Operations waiting in the offline queue (or for room in the in-flight window).
    #[wasm_bindgen(getter)]
    pub fn queued(&self) -> usize {
        self.driver
            .as_ref()
            .map_or(0, |driver| driver.borrow().session.queued())
    }

    /// Disconnects (DISCONNECT, so no will is published) and closes the client; pending
    /// operations reject with `CLOSED`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn end(&self) -> Promise {
        if let Some(driver) = &self.driver {
            run_turn(driver, true, &mut |driver, now| driver.session.end(now));
        }
        Promise::resolve(&JsValue::UNDEFINED)
    }

    /// Adds (`add`) or removes a callback of `onMessages` (`batch`) or `onMessage`.
    fn callback(&self, batch: bool, add: bool, callback: &Function) {
        if let Some(driver) = &self.driver {
            bindings::callback(&driver.borrow().events, batch, add, callback);
        }
    }

    fn request(&self, call: Call) -> Promise {
        let Some(driver) = &self.driver else {
            return rejected(convert::error_value(&ClientError::Closed));
        };
        let mut call = Some(call);
        let mut promise = None;
        let mut refused = None;
        run_turn(driver, false, &mut |driver, now| {
            let Some(call) = call.take() else {
                return;
            };
            let request = driver.new_request();
            promise = Some(bindings::pending(&driver.events, request));
            let session = &mut driver.session;
            let started = match call {
                Call::Publish(message) => session.publish(request, message, now),
                Call::Subscribe(filter, options, properties) => {
                    session.subscribe(request, &filter, options, properties, now)
                }
                Call::Unsubscribe(filter, properties) => {
                    session.unsubscribe(request, &filter, properties, now)
                }
            };
            if let Err(error) = started {
                refused = Some((driver.events.clone(), request, error));
            }
        });
        if let Some((events, request, error)) = refused {
            bindings::settle(&events, request, false, &convert::error_value(&error));
        }
        // No Promise only if the turn could not run, which a call from JS never meets.
        promise.unwrap_or_else(|| rejected(convert::error_value(&ClientError::Closed)))
    }
}
