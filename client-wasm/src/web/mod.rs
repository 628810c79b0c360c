//! The browser driver: the Rust half of `MqttClient`, over the core [`Session`].
//!
//! `MqttClient` itself is a JS class in `js/support.js`, which the package exports as it is: it
//! checks the arguments, keeps the listeners and the Promises of pending requests, and leaves
//! the protocol to a [`Client`]. support.js cannot import the glue (which imports it), so it
//! makes clients through the [`Entry`] that [`start`] hands it.
//!
//! One `Rc<RefCell<Driver>>` per client holds the session, the WebSocket with its handlers, the
//! timer and what a turn queues for JS. Its one strong owner is the [`Client`], which the JS
//! `MqttClient` holds. Every callback (socket, timer, microtask) calls the handler function
//! support.js made for the client and keeps in its `Events` object, which calls
//! [`Client::handle`]; there are no `Closure`s (and no `Closure::forget`).
//!
//! Lifetime: the handler holds the `MqttClient`, and the driver holds the `Events` object, so
//! while the client is open (connecting, connected or reconnecting) it stays alive even when
//! the application keeps no reference to it, as an open WebSocket with listeners does. When it
//! closes for good (`end()`, or a failure without reconnect), its socket is closed, its timer
//! cleared, and a last effect has support.js drop the handler: from then on only the
//! application holds the client, which the garbage collector frees with its Rust half once the
//! application lets go (or `free()` does at once). A call that comes after `free()` does
//! nothing.
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

use crate::abi::{effect, flag, handler, meta, request, request_id};
use crate::error::ClientError;
use crate::packed;
use crate::session::{Completion, Event, OutgoingMessage, RequestId, Session};
use alloc::rc::Rc;
use alloc::vec::Vec;
pub use bindings::MqttClient;
use bindings::{Uint8Array, performance_now};
pub use convert::error_value as error_to_js;
use core::cell::RefCell;
use mqtt_codec::{ByteStr, PublishPacket};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = include_str!("../../js/types.d.ts");

/// One WebSocket, opened by `openSocket` in support.js with the client's handler.
struct Socket {
    socket: JsValue,
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Detaches the handlers first: no event of a socket the driver let go of may reach it.
        bindings::close_socket(&self.socket);
    }
}

/// Distinct topics a batch remembers to write each only once.
const TOPICS_REMEMBERED: usize = 16;

/// The messages of one turn, packed for `buildMessages` in `js/support.js`.
#[derive(Default)]
struct MessageBatch {
    data: Vec<u8>,
    /// Per message, the numbers of [`meta`]: where the topic and the payload are, and flags.
    meta: Vec<u32>,
    /// Distinct topics of this batch and where they start in `data`: a short list, because
    /// frames usually repeat a few topics, started again when full.
    topics: Vec<(ByteStr, u32)>,
    /// The properties of the messages that have some, one list after the other (see
    /// [`packed::write_properties`]).
    properties: Vec<u8>,
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
                    self.topics.clear();
                }
                self.topics.push((publish.topic.clone(), start));
                start
            }
        };
        let payload_start = self.data.len() as u32;
        self.data.extend_from_slice(&publish.payload);
        // The QoS takes the bits of flag::QOS.
        let mut flags = publish.qos as u32;
        if publish.retain {
            flags |= flag::RETAIN;
        }
        if publish.dup {
            flags |= flag::DUP;
        }
        if !publish.properties.is_empty() {
            flags |= flag::PROPERTIES;
            packed::write_properties(&publish.properties, &mut self.properties);
        }
        if publish.topic.is_ascii() {
            flags |= flag::ASCII_TOPIC;
        }
        let mut fields = [0; meta::FIELDS];
        fields[meta::TOPIC_START] = topic_start;
        fields[meta::TOPIC_LENGTH] = publish.topic.len() as u32;
        fields[meta::PAYLOAD_START] = payload_start;
        fields[meta::PAYLOAD_LENGTH] = publish.payload.len() as u32;
        fields[meta::FLAGS] = flags;
        self.meta.extend_from_slice(&fields);
    }

    /// The message objects, leaving the batch empty (its buffers are kept for the next one).
    fn take(&mut self) -> Option<JsValue> {
        if self.meta.is_empty() {
            return None;
        }
        let messages = bindings::build_messages(&self.data, &self.meta, &self.properties);
        self.data.clear();
        self.meta.clear();
        self.topics.clear();
        self.properties.clear();
        Some(messages)
    }
}

/// Everything one client owns.
struct Driver {
    session: Session,
    socket: Option<Socket>,
    /// Left pending when the driver is dropped: the handler then finds no client.
    timer_handle: Option<JsValue>,
    timer_due: Option<f64>,
    /// Whether the microtask that sends what API calls wrote is queued.
    flush_scheduled: bool,
    /// The JS `Events` object (support.js): the EventTarget of the client's events, with the
    /// callbacks of `onMessage` and `onMessages`, the Promises of pending requests under their
    /// `RequestId` (0 for `connect()`'s), which support.js numbers and effects settle, the
    /// broker's URL and the client's handler (see the module header).
    events: JsValue,
    batch: MessageBatch,
    /// Whether `connect()`'s Promise waits for the first connection to succeed or fail.
    connecting: bool,
    /// Whether this turn queued effects for `bindings::run_effects`.
    effects_queued: bool,
}

impl Driver {
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
            bindings::microtask(&self.events);
        }
        self.arm_timer(now);
    }

    /// Queues an effect (see `bindings::effect`), run once the turn released the driver.
    fn effect(&mut self, kind: i32, number: impl Into<f64>, value: &JsValue) {
        self.effects_queued = true;
        bindings::effect(&self.events, kind, number.into(), value);
    }

    fn deliver_batch(&mut self) {
        if let Some(messages) = self.batch.take() {
            self.effect(effect::MESSAGES, 0, &messages);
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
                    // support.js resolves with the `MqttClient`.
                    self.effect(effect::RESOLVE, request_id::CONNECT, &JsValue::UNDEFINED);
                }
                let properties = convert::properties_to_js(&properties);
                self.effect(effect::CONNECT, session_present, &properties);
            }
            Event::ConnectionLost { error, reconnect } => {
                if !self.connecting {
                    let refused = matches!(
                        error,
                        ClientError::ConnectionRefused(_)
                            | ClientError::BadCredentials(_)
                            | ClientError::NotAuthorized(_)
                            | ClientError::CredentialsFailed
                    );
                    let error = convert::error_value(&error);
                    if refused {
                        self.effect(effect::ERROR, 0, &error);
                    }
                    self.effect(effect::CLOSE, reconnect, &error);
                }
            }
            Event::Reconnecting { attempt, delay_ms } => {
                self.effect(effect::RECONNECT, attempt, &delay_ms.into());
            }
            Event::Closed { error } => {
                self.socket = None;
                match (core::mem::take(&mut self.connecting), &error) {
                    (true, _) => {
                        let error = error.unwrap_or(ClientError::Closed);
                        let error = convert::error_value(&error);
                        self.effect(effect::REJECT, request_id::CONNECT, &error);
                    }
                    // After end(): the only "close" this connection reports.
                    (false, None) => {
                        self.effect(effect::CLOSE, false, &JsValue::UNDEFINED);
                    }
                    // A failure already reported its "close" through ConnectionLost.
                    (false, Some(_)) => {}
                }
                // The socket is gone and the timer is cleared by this turn: once support.js lets
                // go of its handler, only the application holds the client.
                self.effect(effect::RELEASE, 0, &JsValue::UNDEFINED);
            }
            Event::Completed { request, result } => {
                let (kind, value) = match result {
                    Ok(completion) => (effect::RESOLVE, completion_value(completion)),
                    Err(error) => (effect::REJECT, convert::error_value(&error)),
                };
                self.effect(kind, request, &value);
            }
            Event::Error(error) => {
                self.effect(effect::ERROR, 0, &convert::error_value(&error));
            }
            Event::Auth {
                reason_code,
                properties,
            } => {
                let properties = convert::properties_to_js(&properties);
                self.effect(effect::AUTH, reason_code.as_u8(), &properties);
            }
            Event::Message(_) => {}
        }
    }

    fn open_socket(&mut self, now: f64) {
        self.socket = None;
        let socket = bindings::open_socket(&self.events);
        if socket.is_undefined() {
            // A malformed URL; the session treats it like a failed connection.
            self.session.handle_transport_closed(now);
        } else {
            self.socket = Some(Socket { socket });
        }
    }

    /// What JS reports through the client's handler: `kind` is one of [`handler`]'s (`data`
    /// is a `Uint8Array` for `SOCKET_MESSAGE`, and for `SOCKET_OPEN` with a credentials
    /// function).
    fn handle(&mut self, kind: i32, data: &JsValue, now: f64) {
        match kind {
            handler::SOCKET_OPEN => {
                // With a credentials function, this attempt's credentials, packed.
                if !data.is_undefined() {
                    let credentials = packed::credentials(convert::copy(data));
                    self.session.set_credentials(credentials);
                }
                self.session.handle_open(now);
            }
            handler::CREDENTIALS_FAILED => self.session.handle_credentials_failed(now),
            handler::AUTH => {
                let data = convert::copy(data);
                self.session.authenticate(data.into(), now);
            }
            handler::SOCKET_MESSAGE => {
                let bytes: &Uint8Array = data.unchecked_ref();
                let length = bytes.length() as usize;
                bindings::copy_into(self.session.receive_buffer(length), bytes);
                self.session.handle_received(now);
            }
            handler::SOCKET_CLOSE => {
                self.socket = None;
                self.session.handle_transport_closed(now);
            }
            handler::TIMER => {
                self.timer_handle = None;
                self.timer_due = None;
                self.session.handle_timeout(now);
            }
            // handler::FLUSH, the flush microtask, which this turn's `drive` answers.
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
            self.timer_handle = Some(bindings::timer(&self.events, delay));
        }
    }
}

fn completion_value(completion: Completion) -> JsValue {
    match completion {
        Completion::Published => JsValue::UNDEFINED,
        Completion::Subscribed { qos, reason_code } => {
            bindings::result(i32::from(qos as u8), reason_code.as_u8())
        }
        Completion::Unsubscribed { reason_code } => bindings::result(-1, reason_code.as_u8()),
        // support.js makes `{ reasonCode: 0, properties }` of it.
        Completion::Reauthenticated { properties } => convert::properties_to_js(&properties),
    }
}

/// One turn: borrow, feed the session with `input`, drive, release, then run the effects. Not
/// generic over `input`: one copy of the turn serves every caller.
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

/// Runs once the module is instantiated: hands support.js the [`Entry`] it makes clients with.
#[wasm_bindgen(start, private)]
fn start() {
    hand_over_entry();
}

/// What [`start`] does; public for the wasm-bindgen tests, whose runner calls no start function.
pub fn hand_over_entry() {
    bindings::start(Entry.into());
}

/// The way into Rust for support.js (see the module header).
#[wasm_bindgen(private, skip_typescript)]
pub struct Entry;

#[wasm_bindgen]
impl Entry {
    /// A client connecting to the URL of `events` with the options packed by `connectOptions`,
    /// reporting to `events` and called back through its handler. Invalid options reject
    /// `connect()`'s Promise instead, and make no client.
    pub fn connect(&self, options: JsValue, events: JsValue) -> Option<Client> {
        let (options, seed) = packed::connect_options(convert::copy(&options));
        let now = performance_now();
        let session = match Session::new(options, seed, now) {
            Ok(session) => session,
            Err(error) => {
                let error = convert::error_value(&error);
                bindings::effect(&events, effect::REJECT, request_id::CONNECT.into(), &error);
                bindings::run_effects(&events);
                return None;
            }
        };
        let driver = Rc::new(RefCell::new(Driver {
            session,
            socket: None,
            timer_handle: None,
            timer_due: None,
            flush_scheduled: false,
            events,
            batch: MessageBatch::default(),
            connecting: true,
            effects_queued: false,
        }));
        run_turn(&driver, true, &mut |_, _| {});
        Some(Client { driver })
    }
}

/// The Rust half of one `MqttClient`: the strong owner of its driver.
#[wasm_bindgen(private, skip_typescript)]
pub struct Client {
    driver: Rc<RefCell<Driver>>,
}

#[wasm_bindgen]
impl Client {
    /// Starts request `request` of `kind` ([`request`]'s): a publish of `payload` (a
    /// `Uint8Array`), a subscribe or an unsubscribe, with the topic or filter and the options
    /// packed by `publishArguments`, `subscribeOptions` or `unsubscribeOptions`, or a
    /// re-authentication with `payload` as its data. An effect settles its Promise.
    pub fn request(&self, kind: u32, request: RequestId, options: JsValue, payload: JsValue) {
        let mut items = packed::Reader::new(convert::copy(&options));
        run_turn(&self.driver, false, &mut |driver, now| {
            let topic = packed::topic(&mut items);
            let session = &mut driver.session;
            let started = match kind {
                request::PUBLISH => {
                    let (qos, retain, properties) = packed::publish_options(&mut items);
                    let message = OutgoingMessage {
                        topic,
                        payload: convert::copy(&payload).into(),
                        qos,
                        retain,
                        properties,
                    };
                    session.publish(request, message, now)
                }
                request::SUBSCRIBE => {
                    let (options, properties) = packed::subscribe_options(&mut items);
                    session.subscribe(request, &topic, options, properties, now)
                }
                request::UNSUBSCRIBE => {
                    let properties = packed::unsubscribe_properties(&mut items);
                    session.unsubscribe(request, &topic, properties, now)
                }
                // request::REAUTHENTICATE, with the authentication data as the payload.
                _ => session.reauthenticate(request, convert::copy(&payload).into(), now),
            };
            if let Err(error) = started {
                driver.effect(effect::REJECT, request, &convert::error_value(&error));
            }
        });
    }

    /// What the socket, the timer and the flush microtask report, through the handler: see
    /// [`Driver::handle`].
    pub fn handle(&self, kind: i32, data: JsValue) {
        run_turn(&self.driver, true, &mut |driver, now| {
            driver.handle(kind, &data, now)
        });
    }

    /// Disconnects (DISCONNECT, so no will is published) and closes the client; pending
    /// operations reject with `CLOSED`.
    pub fn end(&self) {
        run_turn(&self.driver, true, &mut |driver, now| {
            driver.session.end(now)
        });
    }

    /// The state, as an index of `STATES` in support.js: the order of [`State`] (see
    /// [`crate::abi::STATES`]).
    ///
    /// [`State`]: crate::session::State
    pub fn state(&self) -> i32 {
        self.session(|session| session.state() as i32)
    }

    /// Operations waiting in the offline queue (or for room in the in-flight window).
    pub fn queued(&self) -> usize {
        self.session(Session::queued)
    }
}

impl Client {
    /// `read` of the session. Never during a turn, since no JS runs then: the borrow cannot
    /// fail, and `try_borrow` leaves out the panic path that `borrow` carries.
    fn session<T: Default>(&self, read: impl FnOnce(&Session) -> T) -> T {
        self.driver
            .try_borrow()
            .map_or_else(|_| T::default(), |driver| read(&driver.session))
    }
}
