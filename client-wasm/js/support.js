// The JS half of client-wasm's browser layer: what is cheaper or safer to do on this side of
// the boundary. `MqttClient`, the class of the API, is defined here and exported by the package
// as it is: it checks arguments, keeps listeners and the Promises of pending requests, and hands
// the protocol work to a Rust `Client` (web/mod.rs). Rust hands over a whole decoded WebSocket
// frame at once (one byte copy and one table of numbers), and the message objects are built
// here, so that no field of any message crosses the boundary on its own. User callbacks run here
// too, each in its own try/catch, so a throwing listener neither skips the others nor unwinds
// through the client's Rust code.
//
// The option objects of the API are checked and flattened here as well, and the objects Rust
// reports (properties, event details, results) are built here from flat lists: named fields and
// their checks take far less room as a table in JS than as code in the wasm module.
//
// Every number the two halves agree on (kinds of calls and effects, slots of packed values,
// indices of properties, errors and their texts) comes from src/abi.rs, copied below; this file
// uses those names and no numbers of its own for them.

// ---- The ABI shared with Rust, rendered from src/abi.rs: edit it there, then run
// CLIENT_WASM_WRITE_ABI=1 cargo test -p client-wasm abi (a test fails while the two differ) ----
const HANDLER_SOCKET_OPEN = 0;
const HANDLER_SOCKET_MESSAGE = 1;
const HANDLER_SOCKET_CLOSE = 2;
const HANDLER_TIMER = 3;
const HANDLER_FLUSH = 4;
const HANDLER_CREDENTIALS_FAILED = 5;
const HANDLER_AUTH = 6;
const EFFECT_CONNECT = 0;
const EFFECT_CLOSE = 1;
const EFFECT_RECONNECT = 2;
const EFFECT_ERROR = 3;
const EFFECT_RESOLVE = 4;
const EFFECT_REJECT = 5;
const EFFECT_MESSAGES = 6;
const EFFECT_RELEASE = 7;
const EFFECT_AUTH = 8;
const REQUEST_PUBLISH = 0;
const REQUEST_SUBSCRIBE = 1;
const REQUEST_UNSUBSCRIBE = 2;
const REQUEST_REAUTHENTICATE = 3;
const REQUEST_ID_CONNECT = 0;
const TAG_ABSENT = 0;
const TAG_FALSE = 1;
const TAG_TRUE = 2;
const TAG_NUMBER = 3;
const TAG_BYTES = 4;
const TAG_TEXT = 5;
const TAG_LIST = 6;
const CONNECT_PROTOCOL_VERSION = 0;
const CONNECT_WILL_TOPIC = 1;
const CONNECT_WILL_PAYLOAD = 2;
const CONNECT_WILL_QOS = 3;
const CONNECT_WILL_RETAIN = 4;
const CONNECT_WILL_PROPERTIES = 5;
const CONNECT_RECONNECT = 6;
const CONNECT_MIN_DELAY_MS = 7;
const CONNECT_MAX_DELAY_MS = 8;
const CONNECT_CLIENT_ID = 9;
const CONNECT_KEEPALIVE = 10;
const CONNECT_CLEAN = 11;
const CONNECT_SESSION_EXPIRY = 12;
const CONNECT_USERNAME = 13;
const CONNECT_PASSWORD = 14;
const CONNECT_OFFLINE_QUEUE_LIMIT = 15;
const CONNECT_CONNECT_TIMEOUT_MS = 16;
const CONNECT_MAXIMUM_PACKET_SIZE = 17;
const CONNECT_PROPERTIES = 18;
const CONNECT_SEED_HIGH = 19;
const CONNECT_SEED_LOW = 20;
const CREDENTIALS_USERNAME = 0;
const CREDENTIALS_PASSWORD = 1;
const CREDENTIALS_AUTHENTICATION_DATA = 2;
const PUBLISH_TOPIC = 0;
const PUBLISH_QOS = 1;
const PUBLISH_RETAIN = 2;
const PUBLISH_PROPERTIES = 3;
const SUBSCRIBE_FILTER = 0;
const SUBSCRIBE_QOS = 1;
const SUBSCRIBE_NO_LOCAL = 2;
const SUBSCRIBE_RETAIN_AS_PUBLISHED = 3;
const SUBSCRIBE_RETAIN_HANDLING = 4;
const SUBSCRIBE_PROPERTIES = 5;
const UNSUBSCRIBE_FILTER = 0;
const UNSUBSCRIBE_PROPERTIES = 1;
const META_TOPIC_START = 0;
const META_TOPIC_LENGTH = 1;
const META_PAYLOAD_START = 2;
const META_PAYLOAD_LENGTH = 3;
const META_FLAGS = 4;
const META_FIELDS = 5;
const FLAG_QOS = 3;
const FLAG_RETAIN = 4;
const FLAG_DUP = 8;
const FLAG_PROPERTIES = 16;
const FLAG_ASCII_TOPIC = 32;
const PROPERTY_PAYLOAD_FORMAT_INDICATOR = 0;
const PROPERTY_MESSAGE_EXPIRY_INTERVAL = 1;
const PROPERTY_CONTENT_TYPE = 2;
const PROPERTY_RESPONSE_TOPIC = 3;
const PROPERTY_CORRELATION_DATA = 4;
const PROPERTY_SUBSCRIPTION_IDENTIFIER = 5;
const PROPERTY_SESSION_EXPIRY_INTERVAL = 6;
const PROPERTY_REQUEST_PROBLEM_INFORMATION = 7;
const PROPERTY_WILL_DELAY_INTERVAL = 8;
const PROPERTY_REQUEST_RESPONSE_INFORMATION = 9;
const PROPERTY_RECEIVE_MAXIMUM = 10;
const PROPERTY_USER_PROPERTY = 11;
const PROPERTY_SUBSCRIPTION_IDENTIFIERS = 12;
const PROPERTY_ASSIGNED_CLIENT_IDENTIFIER = 13;
const PROPERTY_SERVER_KEEP_ALIVE = 14;
const PROPERTY_RESPONSE_INFORMATION = 15;
const PROPERTY_SERVER_REFERENCE = 16;
const PROPERTY_REASON_STRING = 17;
const PROPERTY_TOPIC_ALIAS_MAXIMUM = 18;
const PROPERTY_MAXIMUM_QOS = 19;
const PROPERTY_RETAIN_AVAILABLE = 20;
const PROPERTY_MAXIMUM_PACKET_SIZE = 21;
const PROPERTY_WILDCARD_SUBSCRIPTION_AVAILABLE = 22;
const PROPERTY_SUBSCRIPTION_IDENTIFIER_AVAILABLE = 23;
const PROPERTY_SHARED_SUBSCRIPTION_AVAILABLE = 24;
const PROPERTY_AUTHENTICATION_METHOD = 25;
const PROPERTY_AUTHENTICATION_DATA = 26;
const ERROR_INVALID_OPTIONS = 0;
const ERROR_CONNECTION_REFUSED = 1;
const ERROR_BAD_CREDENTIALS = 2;
const ERROR_NOT_AUTHORIZED = 3;
const ERROR_CREDENTIALS_FAILED = 4;
const ERROR_CONNECT_FAILED = 5;
const ERROR_CONNECT_TIMEOUT = 6;
const ERROR_KEEPALIVE_TIMEOUT = 7;
const ERROR_CONNECTION_LOST = 8;
const ERROR_SERVER_DISCONNECTED = 9;
const ERROR_PROTOCOL = 10;
const ERROR_MALFORMED = 11;
const ERROR_INVALID_ARGUMENT = 12;
const ERROR_SUBSCRIBE_REFUSED = 13;
const ERROR_UNSUBSCRIBE_REFUSED = 14;
const ERROR_PUBLISH_REFUSED = 15;
const ERROR_INVALID_TOPIC = 16;
const ERROR_PACKET_TOO_LARGE = 17;
const ERROR_QOS_NOT_SUPPORTED = 18;
const ERROR_QUEUE_FULL = 19;
const ERROR_CLOSED = 20;
const U8 = 255;
const U16 = 65535;
const U32 = 4294967295;
// The names of the states, by Client.state().
const STATES = ["connecting", "connected", "reconnecting", "closed"];
// The events of the effects below EFFECT_RESOLVE.
const EVENTS = ["connect", "close", "reconnect", "error"];
// Property names by index.
const PROPERTIES = [
  "payloadFormatIndicator", "messageExpiryInterval", "contentType", "responseTopic",
  "correlationData", "subscriptionIdentifier", "sessionExpiryInterval",
  "requestProblemInformation", "willDelayInterval", "requestResponseInformation",
  "receiveMaximum", "userProperties", "subscriptionIdentifiers", "assignedClientIdentifier",
  "serverKeepAlive", "responseInformation", "serverReference", "reasonString",
  "topicAliasMaximum", "maximumQos", "retainAvailable", "maximumPacketSize",
  "wildcardSubscriptionAvailable", "subscriptionIdentifierAvailable",
  "sharedSubscriptionAvailable", "authenticationMethod", "authenticationData",
];
// The checks of the properties sent with a plain value, from index 0: the largest number,
// "s" a string, "b" bytes.
const SENT = [U8, U32, "s", "s", "b", U32, U32, U8, U32, U8, U16];
// Per error kind: code, summary, and the details as ERRORS in abi.rs says.
const ERRORS = [
  ["INVALID_OPTIONS", "invalid option", ": $d"],
  ["CONNECTION_REFUSED", "connection refused by the broker", ": $r"],
  ["BAD_CREDENTIALS", "connection refused by the broker", ": $r"],
  ["NOT_AUTHORIZED", "connection refused by the broker", ": $r"],
  ["CREDENTIALS_FAILED", "the credentials function or onAuth failed (see the error's cause)", ""],
  ["CONNECT_FAILED", "could not connect: the connection closed before the broker accepted it", ""],
  ["CONNECT_TIMEOUT", "no CONNACK from the broker within the connect timeout", ""],
  ["KEEPALIVE_TIMEOUT", "keep alive timeout: nothing received from the broker for 1.5 times the keep alive", ""],
  ["CONNECTION_LOST", "connection lost", ""],
  ["SERVER_DISCONNECTED", "disconnected by the broker", ": $r"],
  ["PROTOCOL_ERROR", "protocol error from the broker", ": $d"],
  ["PROTOCOL_ERROR", "malformed packet from the broker", ": $r"],
  ["INVALID_ARGUMENT", "invalid argument", "$e"],
  ["SUBSCRIBE_REFUSED", "subscription refused by the broker", ": $r"],
  ["UNSUBSCRIBE_REFUSED", "unsubscribe refused by the broker", ": $r"],
  ["PUBLISH_REFUSED", "publish refused by the broker", ": $r"],
  ["INVALID_TOPIC", "invalid topic", ": $t"],
  ["PACKET_TOO_LARGE", "packet too large", ": $a bytes exceed the maximum packet size of $b bytes"],
  ["QOS_NOT_SUPPORTED", "QoS not supported by the broker", ": QoS $a requested, the broker's maximum is $b"],
  ["QUEUE_FULL", "offline queue full", ": $a operations already wait for the connection (offlineQueueLimit)"],
  ["CLOSED", "the client is closed", ""],
];
// The details of INVALID_ARGUMENT by EncodeProblem.
const ENCODE = [
  ": a string or binary field is longer than 65535 bytes [MQTT-1.5.4-1]",
  ": a subscription identifier exceeds 268435455 [MQTT-1.5.5]",
  ": the packet cannot be encoded",
];
// The rules a topic breaks, by topic_error_index.
const TOPIC = [
  "topic names and filters must be at least one character long [MQTT-4.7.3-1]",
  "a topic name must not contain wildcard characters [MQTT-3.3.2-2]",
  "a topic must not contain the null character U+0000 [MQTT-4.7.3-2]",
  "'#' must be the last character of a filter and occupy a whole level [MQTT-4.7.1-2]",
  "'+' must occupy an entire level of a filter [MQTT-4.7.1-3]",
  "a topic must not be longer than 65535 bytes [MQTT-4.7.3-3]",
  "a shared subscription is $share/{ShareName}/{filter} with a non-empty share name without '/', '+' or '#' and a non-empty filter [MQTT-4.8.2-1] [MQTT-4.8.2-2]",
];
// Reason codes below 0x80, whose descriptions come first in REASONS; from 0x80 on they follow
// one per code.
const LOW_REASONS = [0, 1, 2, 4, 16, 17, 24, 25];
const REASONS = (
  "success|granted QoS 1|granted QoS 2|disconnect with will message|no matching subscribers|" +
  "no subscription existed|continue authentication|re-authenticate|unspecified error|" +
  "malformed packet|protocol error|implementation specific error|" +
  "unsupported protocol version|client identifier not valid|bad user name or password|" +
  "not authorized|server unavailable|server busy|banned|server shutting down|" +
  "bad authentication method|keep alive timeout|session taken over|topic filter invalid|" +
  "topic name invalid|packet identifier in use|packet identifier not found|" +
  "receive maximum exceeded|topic alias invalid|packet too large|message rate too high|" +
  "quota exceeded|administrative action|payload format invalid|retain not supported|" +
  "QoS not supported|use another server|server moved|shared subscriptions not supported|" +
  "connection rate exceeded|maximum connect time|subscription identifiers not supported|" +
  "wildcard subscriptions not supported"
).split("|");
// ---- End of the ABI ----

const utf8 = new TextDecoder();
const encoder = new TextEncoder();

/** An application message received from the broker (declared in types.d.ts). */
class MqttMessage {
  constructor(topic, payload, qos, retain, dup, properties) {
    /** Topic name. */
    this.topic = topic;
    /** Payload bytes (a view into the frame's buffer; copy it before transferring `.buffer`). */
    this.payload = payload;
    /** QoS of the delivery: 0, 1 or 2. */
    this.qos = qos;
    /** Whether the broker sent it as a retained message. */
    this.retain = retain;
    /** Whether the broker marked it as a possible redelivery. */
    this.dup = dup;
    /** MQTT 5.0 properties, or undefined. */
    this.properties = properties;
  }

  /** The payload decoded as UTF-8. */
  text() {
    return utf8.decode(this.payload);
  }

  /** The payload parsed as JSON. */
  json() {
    return JSON.parse(this.text());
  }
}

function decodeTopic(bytes, start, length, ascii) {
  // Short ASCII topics (nearly all of them) are faster through fromCharCode than TextDecoder.
  if (ascii && length <= 256) {
    return String.fromCharCode.apply(null, bytes.subarray(start, start + length));
  }
  return utf8.decode(bytes.subarray(start, start + length));
}

/**
 * Builds the messages of one frame. `data`, `meta` and `properties` (the packed properties of
 * the messages that have some, in order) are views into wasm memory, valid only during this
 * call: the bytes are copied once, and every payload is a view of that copy.
 */
export function buildMessages(data, meta, properties) {
  const bytes = data.slice();
  const count = meta.length / META_FIELDS;
  const messages = new Array(count);
  let lastTopicStart = -1;
  let lastTopic = "";
  const packed = { bytes: properties, at: 0 };
  for (let index = 0, at = 0; index < count; index++, at += META_FIELDS) {
    const topicStart = meta[at + META_TOPIC_START];
    const flags = meta[at + META_FLAGS];
    // Rust writes a topic once per frame and points repeats at the same bytes.
    if (topicStart !== lastTopicStart) {
      lastTopic = decodeTopic(
        bytes,
        topicStart,
        meta[at + META_TOPIC_LENGTH],
        (flags & FLAG_ASCII_TOPIC) !== 0,
      );
      lastTopicStart = topicStart;
    }
    const payloadStart = meta[at + META_PAYLOAD_START];
    messages[index] = new MqttMessage(
      lastTopic,
      bytes.subarray(payloadStart, payloadStart + meta[at + META_PAYLOAD_LENGTH]),
      flags & FLAG_QOS,
      (flags & FLAG_RETAIN) !== 0,
      (flags & FLAG_DUP) !== 0,
      (flags & FLAG_PROPERTIES) !== 0 ? propertiesFrom(packed) : undefined,
    );
  }
  return messages;
}

function report(error) {
  if (typeof reportError === "function") {
    reportError(error);
  } else {
    setTimeout(() => {
      throw error;
    });
  }
}

/** The client's EventTarget, with the callbacks of `onMessages` and `onMessage`. */
class Events extends EventTarget {
  constructor() {
    super();
    this.batch = [];
    this.each = [];
    // The "message" listeners, so that per-message events are dispatched only when wanted.
    this.listeners = [];
    // The URL of the broker, for every connection.
    this.url = "";
    // What the socket, the timer and the flush microtask call: `handler(kind, data)`, with the
    // HANDLER_ codes (`Driver::handle` in web/mod.rs).
    this.handler = undefined;
    // The application's credentials function, checked and packed (see `connectOptions`): a
    // Promise of the packed credentials of one attempt.
    this.credentials = undefined;
    // The application's `onAuth`, and the number of the broker's AUTH it answers last (an
    // answer to an older one, or from an earlier attempt, is dropped).
    this.onAuth = undefined;
    this.step = 0;
    // The detail of the last "connect" event.
    this.connack = undefined;
    // What the current turn of the client queued for after it: [kind, number, value, ...].
    this.effects = [];
    // The Promises of pending requests by request id: [resolve, reject].
    this.pending = new Map();
  }
}

// ---- The client ----

// Rust's way in: support.js cannot import the glue (which imports it), so the module's start
// function hands over the `Entry` whose `connect` makes a Rust `Client` (web/mod.rs).
let entry;

/** Called once, when the wasm module starts. */
export function start(rustEntry) {
  entry = rustEntry;
}

/**
 * An MQTT 3.1.1 / 5.0 client over WebSocket (documented in types.d.ts). Its `Events` are what
 * the Rust driver reports to; the Rust `Client` owns the driver. While open, the client is held
 * by its handler (see `connect`); once closed for good, only by the application.
 */
export class MqttClient {
  #events = new Events();
  #client;
  #clientId;
  // The last request id; the first is connect()'s.
  #request = REQUEST_ID_CONNECT;

  static connect(url, options) {
    const client = new MqttClient();
    // A throw here (an invalid option) rejects.
    return new Promise((resolve, reject) => {
      const values = connectOptions(options, client.#events);
      client.#clientId = values[CONNECT_CLIENT_ID];
      // While connecting, this holds the client, and so the driver (see web/mod.rs).
      client.#events.pending.set(REQUEST_ID_CONNECT, [() => resolve(client), reject]);
      // What the socket, the timer and microtasks call. It holds the client, as an open
      // WebSocket holds its listeners: a client keeps working while it is open, even when the
      // application keeps no reference to it, until it closes for good and the RELEASE effect
      // drops this handler (see web/mod.rs). After `free()` it calls nothing.
      client.#events.handler = (kind, data) => client.#client?.handle(kind, data);
      client.#events.url = url;
      client.#client = entry.connect(pack(values), client.#events);
    });
  }

  subscribe(filter, options) {
    return this.#start(REQUEST_SUBSCRIBE, () => [subscribeOptions(filter, options)]);
  }

  unsubscribe(filter, options) {
    return this.#start(REQUEST_UNSUBSCRIBE, () => [unsubscribeOptions(filter, options)]);
  }

  reauthenticate(data) {
    return this.#start(REQUEST_REAUTHENTICATE, () => [[], bytes(data, "data") ?? new Uint8Array()]).then(
      (properties) => ({ reasonCode: 0, properties }),
    );
  }

  publish(topic, payload, options) {
    return this.#start(REQUEST_PUBLISH, () => publishArguments(topic, payload, options));
  }

  /** Request `kind` (a REQUEST_ code) with the values and payload `check` returns (a throw rejects). */
  #start(kind, check) {
    return new Promise((resolve, reject) => {
      const [values, payload] = check();
      const id = (this.#request = (this.#request + 1) >>> 0);
      this.#events.pending.set(id, [resolve, reject]);
      this.#client.request(kind, id, pack(values), payload);
    });
  }

  onMessage(callback) {
    this.#events.each.push(callback);
  }

  offMessage(callback) {
    removeItem(this.#events.each, callback);
  }

  onMessages(callback) {
    this.#events.batch.push(callback);
  }

  offMessages(callback) {
    removeItem(this.#events.batch, callback);
  }

  addEventListener(type, listener, options) {
    listen(this.#events, type, listener, options, true);
  }

  removeEventListener(type, listener, options) {
    listen(this.#events, type, listener, options, false);
  }

  get state() {
    return STATES[this.#client.state()];
  }

  get clientId() {
    return this.#clientId;
  }

  get queued() {
    return this.#client.queued();
  }

  get connack() {
    return this.#events.connack;
  }

  end() {
    this.#client.end();
    return Promise.resolve();
  }

  /** Frees the Rust client at once, rather than when the garbage collector finds this one. */
  free() {
    this.#client.free();
    this.#client = undefined;
  }
}
if (Symbol.dispose) MqttClient.prototype[Symbol.dispose] = MqttClient.prototype.free;

/** `addEventListener` (`add`) or `removeEventListener`. */
function listen(events, type, listener, options, add) {
  if (type === "message") {
    removeItem(events.listeners, listener);
    if (add) events.listeners.push(listener);
  }
  if (add) events.addEventListener(type, listener, options);
  else events.removeEventListener(type, listener, options);
}

/** Hands one frame's messages to the batch callbacks, the per-message callbacks and listeners. */
function deliver(messages, events) {
  for (const callback of events.batch.slice()) {
    try {
      callback(messages);
    } catch (error) {
      report(error);
    }
  }
  if (events.each.length > 0) {
    const callbacks = events.each.slice();
    for (const message of messages) {
      for (const callback of callbacks) {
        try {
          callback(message);
        } catch (error) {
          report(error);
        }
      }
    }
  }
  if (events.listeners.length > 0) {
    for (const message of messages) {
      events.dispatchEvent(new CustomEvent("message", { detail: message }));
    }
  }
}


// ---- Errors ----

// The texts of the errors are ERRORS, ENCODE, TOPIC, LOW_REASONS and REASONS, from abi.rs.

/** `not authorized (0x87)`: reason `code` described, and `sent`, the byte the broker sent. */
const describe = (code, sent) =>
  `${REASONS[code < 128 ? LOW_REASONS.indexOf(code) : code - 128 + LOW_REASONS.length]} (0x${sent
    .toString(16)
    .toUpperCase()
    .padStart(2, "0")})`;

/**
 * The `MqttError` for error `kind` (an ERROR_ code, its row in `ERRORS`), with the broker's
 * `reasonCode` when non-negative, a text detail `d` and numbers `a` and `b` (a reason code, a
 * `TOPIC` or `ENCODE` index, sizes), written into the row's details (see `ERRORS` in abi.rs).
 */
export function clientError(kind, reasonCode, d, a, b) {
  const [code, summary, details] = ERRORS[kind];
  const detail = details
    .replace("$a", a)
    .replace("$b", b)
    .replace("$r", () => describe(a, b || a))
    .replace("$t", () => TOPIC[a])
    .replace("$e", () => ENCODE[a])
    .replace("$d", () => d);
  const error = mqttError(code, summary + detail, reasonCode);
  if (kind === ERROR_CREDENTIALS_FAILED) error.cause = cause;
  return error;
}

// What the application's credentials function or onAuth threw, while the client reports it.
let cause;

/**
 * Reports that the credentials function or onAuth failed with `error` (the cause of the
 * client's error).
 */
function credentialsFailed(handler, error) {
  cause = error;
  handler(HANDLER_CREDENTIALS_FAILED);
  cause = undefined;
}

/** An `Error` with the client's `code` (and the broker's `reasonCode` when there is one). */
function mqttError(code, message, reasonCode) {
  const error = new Error(message);
  error.name = "MqttError";
  error.code = code;
  if (reasonCode >= 0) {
    error.reasonCode = reasonCode;
  }
  return error;
}

// ---- The WebSocket ----

/**
 * Opens a WebSocket to the client's URL (subprotocol `mqtt`, binary frames as ArrayBuffers)
 * whose events call `handler(kind, data)` with a HANDLER_SOCKET_ code: open, a binary message
 * as a Uint8Array, closed. An error is always followed by a close event, which does the work. A malformed URL
 * (the constructor throws) gives undefined, so that Rust need not catch.
 *
 * With a credentials function, this attempt's credentials are asked for at the same time, and
 * the socket reports its opening once it has them too (packed, for CONNECT), or
 * HANDLER_CREDENTIALS_FAILED when the function fails. Nothing is reported once the client let
 * go of the socket (`closeSocket` cleared its handlers): a late answer belongs to an attempt
 * that is over.
 */
export function openSocket(events) {
  const handler = events.handler;
  let socket;
  try {
    socket = new WebSocket(events.url, "mqtt");
  } catch {
    return undefined;
  }
  // Answers to the broker's AUTH from an earlier attempt are dropped.
  events.step++;
  const credentials = events.credentials?.();
  credentials?.catch((error) => socket.onclose && credentialsFailed(handler, error));
  socket.binaryType = "arraybuffer";
  socket.onopen = () =>
    credentials
      ? credentials.then((packed) => socket.onclose && handler(HANDLER_SOCKET_OPEN, packed), () => {})
      : handler(HANDLER_SOCKET_OPEN);
  socket.onmessage = (event) => {
    if (event.data instanceof ArrayBuffer) handler(HANDLER_SOCKET_MESSAGE, new Uint8Array(event.data));
  };
  socket.onclose = () => handler(HANDLER_SOCKET_CLOSE);
  return socket;
}

/** Sends `data` (a view into wasm memory, copied by `send`); a closing socket throws. */
export function send(socket, data) {
  try {
    socket.send(data);
  } catch {
    // Its close event follows.
  }
}

/**
 * A timer that calls the client's handler after `delay` ms; `setTimeout` is looked up on the
 * global object at each call, so that the client works in a page and in a Web Worker alike.
 */
export const timer = (events, delay) => setTimeout(events.handler, delay, HANDLER_TIMER);

/**
 * Queues a microtask that calls the client's handler (it sends what API calls wrote), unless
 * the client closed for good in the meantime and dropped it.
 */
export function microtask(events) {
  queueMicrotask(() => events.handler?.(HANDLER_FLUSH));
}

/** Detaches the handlers (no event may reach the client once it dropped the socket), then closes. */
export function closeSocket(socket) {
  socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
  socket.close();
}

/** Removes `item` (compared with ===) from `array`; true if it was there. */
function removeItem(array, item) {
  const index = array.indexOf(item);
  if (index >= 0) {
    array.splice(index, 1);
  }
  return index >= 0;
}

// ---- Options: checked here, handed to Rust packed into bytes (see web/convert.rs) ----

const absent = (value) => value === undefined || value === null;

/** An `INVALID_ARGUMENT` error: "`name` must be `expected`". */
function invalid(name, expected) {
  return mqttError("INVALID_ARGUMENT", `${name} must be ${expected}`, -1);
}

/** `object[name]`, or undefined when `object` is not an object. */
const field = (object, name) =>
  typeof object === "object" && object !== null ? object[name] : undefined;

function string(object, name) {
  const value = field(object, name);
  if (absent(value)) return undefined;
  if (typeof value !== "string") throw invalid(name, "a string");
  return value;
}

/** A function, or undefined. */
function callback(object, name) {
  const value = field(object, name);
  if (absent(value)) return undefined;
  if (typeof value !== "function") throw invalid(name, "a function");
  return value;
}

function boolean(object, name) {
  const value = field(object, name);
  if (absent(value)) return undefined;
  if (typeof value !== "boolean") throw invalid(name, "a boolean");
  return value;
}

/** A whole number in 0..=maximum. */
function integer(object, name, maximum) {
  const value = field(object, name);
  if (absent(value)) return undefined;
  if (!(Number.isInteger(value) && value >= 0 && value <= maximum)) {
    throw invalid(name, "a whole number in range");
  }
  return value;
}

/** A value of 0, 1 or 2 (QoS, Retain Handling); `undefined` when absent. */
function upToTwo(object, name) {
  const value = integer(object, name, 255);
  if (value > 2) throw invalid(name, "0, 1 or 2");
  return value;
}

/** The bytes of a string (UTF-8), a typed array or DataView, or an ArrayBuffer. */
function bytes(value, name) {
  if (absent(value)) return undefined;
  if (typeof value === "string") return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  throw invalid(name, "a string, a Uint8Array, an ArrayBuffer or undefined");
}

/**
 * Properties to send, as [index, value, ...] (PROPERTY_ indices, the sent ones checked as `SENT`
 * says); a User Property is [PROPERTY_USER_PROPERTY, name, value].
 */
function properties(object) {
  const list = [];
  object = field(object, "properties");
  if (absent(object)) return list;
  SENT.forEach((kind, index) => {
    const name = PROPERTIES[index];
    const value =
      kind === "s" ? string(object, name)
      : kind === "b" ? bytes(field(object, name), name)
      : integer(object, name, kind);
    if (value !== undefined) list.push(index, value);
  });
  const user = field(object, "userProperties");
  if (absent(user)) return list;
  if (!(user instanceof Object)) throw invalid("userProperties", "an object of strings");
  for (const [name, value] of Object.entries(user)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (typeof item !== "string") {
        throw invalid("userProperties values", "strings or arrays of strings");
      }
      list.push(PROPERTY_USER_PROPERTY, name, item);
    }
  }
  return list;
}

/**
 * `connect()` options, checked in order, in their CONNECT_ slots; the callbacks go to `events`
 * (the credentials function wrapped so that it checks and packs what it gives).
 */
function connectOptions(options, events) {
  if (!absent(options) && typeof options !== "object") throw invalid("options", "an object");
  const values = [];
  const protocol = integer(options, "protocolVersion", U8);
  if (protocol !== undefined && protocol !== 4 && protocol !== 5) {
    throw invalid("protocolVersion", "4 or 5");
  }
  values[CONNECT_PROTOCOL_VERSION] = protocol;
  // Without a will, its values are all absent.
  const will = field(options, "will");
  const willTopic = string(will, "topic");
  if (!absent(will) && willTopic === undefined) throw invalid("will.topic", "a string");
  const reconnect = field(options, "reconnect");
  values[CONNECT_WILL_TOPIC] = willTopic;
  values[CONNECT_WILL_PAYLOAD] = bytes(field(will, "payload"), "will.payload");
  values[CONNECT_WILL_QOS] = upToTwo(will, "qos");
  values[CONNECT_WILL_RETAIN] = boolean(will, "retain");
  values[CONNECT_WILL_PROPERTIES] = properties(will);
  // Enabled unless false; an object gives the bounds.
  values[CONNECT_RECONNECT] = reconnect !== false;
  values[CONNECT_MIN_DELAY_MS] = integer(reconnect, "minDelayMs", U32);
  values[CONNECT_MAX_DELAY_MS] = integer(reconnect, "maxDelayMs", U32);
  values[CONNECT_CLIENT_ID] =
    string(options, "clientId") ?? `wasm-${randomBelow(2 ** 48).toString(16).padStart(12, "0")}`;
  values[CONNECT_KEEPALIVE] = integer(options, "keepalive", U16);
  values[CONNECT_CLEAN] = boolean(options, "clean");
  values[CONNECT_SESSION_EXPIRY] = integer(options, "sessionExpiry", U32);
  values[CONNECT_USERNAME] = string(options, "username");
  values[CONNECT_PASSWORD] = bytes(field(options, "password"), "password");
  // Enhanced authentication (5.0): the method and initial data go with the CONNECT properties.
  const method = string(options, "authenticationMethod");
  const data = bytes(field(options, "authenticationData"), "authenticationData");
  events.onAuth = callback(options, "onAuth") ?? (() => {
    throw invalid("onAuth", "a function to answer the broker's AUTH");
  });
  const credentials = callback(options, "credentials");
  if (credentials) {
    if ((values[CONNECT_USERNAME] ?? values[CONNECT_PASSWORD] ?? data) !== undefined) {
      throw invalid("username, password and authenticationData", "left out when credentials gives them");
    }
    // Called for every attempt; a throw, a rejection or a malformed result fails the attempt.
    events.credentials = () =>
      Promise.resolve()
        .then(credentials)
        .then((result) => {
          const given = [];
          given[CREDENTIALS_USERNAME] = string(result, "username");
          given[CREDENTIALS_PASSWORD] = bytes(field(result, "password"), "password");
          given[CREDENTIALS_AUTHENTICATION_DATA] = bytes(field(result, "authenticationData"), "authenticationData");
          if (protocol === 4 && given[CREDENTIALS_PASSWORD] && given[CREDENTIALS_USERNAME] === undefined) {
            throw invalid("username", "given with a password in MQTT 3.1.1 [MQTT-3.1.2-22]");
          }
          if (given[CREDENTIALS_AUTHENTICATION_DATA] && method === undefined) {
            throw invalid("authenticationData", "given with an authenticationMethod");
          }
          return pack(given);
        });
  }
  values[CONNECT_OFFLINE_QUEUE_LIMIT] = integer(options, "offlineQueueLimit", U32);
  values[CONNECT_CONNECT_TIMEOUT_MS] = integer(options, "connectTimeoutMs", U32);
  values[CONNECT_MAXIMUM_PACKET_SIZE] = integer(options, "maximumPacketSize", U32);
  const list = (values[CONNECT_PROPERTIES] = properties(options));
  if (method !== undefined) list.push(PROPERTY_AUTHENTICATION_METHOD, method);
  if (data) list.push(PROPERTY_AUTHENTICATION_DATA, data);
  // The seed of the reconnect jitter, in two halves.
  values[CONNECT_SEED_HIGH] = randomBelow(2 ** 32);
  values[CONNECT_SEED_LOW] = randomBelow(2 ** 32);
  return values;
}

const randomBelow = (limit) => Math.floor(Math.random() * limit);

/** `publish()` arguments: [values in their PUBLISH_ slots, payload]. */
function publishArguments(topic, payload, options) {
  const data = bytes(payload, "payload") ?? new Uint8Array();
  const values = [];
  values[PUBLISH_TOPIC] = topic;
  values[PUBLISH_QOS] = upToTwo(options, "qos");
  values[PUBLISH_RETAIN] = boolean(options, "retain");
  values[PUBLISH_PROPERTIES] = properties(options);
  return [values, data];
}

/** `subscribe()` arguments, in their SUBSCRIBE_ slots. */
function subscribeOptions(filter, options) {
  const values = [];
  values[SUBSCRIBE_FILTER] = filter;
  values[SUBSCRIBE_QOS] = upToTwo(options, "qos");
  values[SUBSCRIBE_NO_LOCAL] = boolean(options, "noLocal");
  values[SUBSCRIBE_RETAIN_AS_PUBLISHED] = boolean(options, "retainAsPublished");
  values[SUBSCRIBE_RETAIN_HANDLING] = upToTwo(options, "retainHandling");
  values[SUBSCRIBE_PROPERTIES] = properties(options);
  return values;
}

/** `unsubscribe()` arguments, in their UNSUBSCRIBE_ slots. */
function unsubscribeOptions(filter, options) {
  const values = [];
  values[UNSUBSCRIBE_FILTER] = filter;
  values[UNSUBSCRIBE_PROPERTIES] = properties(options);
  return values;
}

// Each packed value is a tag byte (TAG_) and its data: a little-endian u32 for a number; a u32
// length and the bytes for bytes and UTF-8 text; a u32 length and the items for a list.

/**
 * Checked option values packed into bytes, which `Reader` in packed.rs reads back in order
 * (a slot left empty packs as absent): one copy into wasm memory instead of a call across the
 * boundary per value.
 */
function pack(values) {
  const out = [];
  const word = (number) => out.push(number & 255, (number >> 8) & 255, (number >> 16) & 255, number >>> 24);
  const put = (value) => {
    if (value === undefined) {
      out.push(TAG_ABSENT);
    } else if (typeof value === "boolean") {
      out.push(value ? TAG_TRUE : TAG_FALSE);
    } else if (typeof value === "number") {
      out.push(TAG_NUMBER);
      word(value);
    } else if (Array.isArray(value)) {
      out.push(TAG_LIST);
      word(value.length);
      value.forEach(put);
    } else {
      const text = typeof value === "string";
      const data = text ? encoder.encode(value) : value;
      out.push(text ? TAG_TEXT : TAG_BYTES);
      word(data.length);
      for (const byte of data) out.push(byte);
    }
  };
  // Not forEach, which would skip an empty slot.
  for (const value of values) put(value);
  return new Uint8Array(out);
}

// ---- Objects built from what Rust reports ----

/**
 * The values Rust packed (see `Writer` in packed.rs) from `packed.at` in `packed.bytes` to
 * the next absent value, which `packed.at` is left after.
 */
function unpack(packed) {
  const { bytes } = packed;
  let { at } = packed;
  const word = () => (bytes[at++] | (bytes[at++] << 8) | (bytes[at++] << 16) | (bytes[at++] << 24)) >>> 0;
  const values = [];
  for (let tag; at < bytes.length && (tag = bytes[at++]) !== TAG_ABSENT; ) {
    if (tag === TAG_NUMBER) {
      values.push(word());
    } else {
      const length = word();
      const data = bytes.slice(at, (at += length));
      values.push(tag === TAG_TEXT ? utf8.decode(data) : data);
    }
  }
  packed.at = at;
  return values;
}

/** Received properties, packed by `write_properties` in packed.rs. */
export const propertiesObject = (bytes) => propertiesFrom({ bytes, at: 0 });

/**
 * The next received properties in `packed` (see `unpack`), [index, value, ...]: Subscription
 * Identifiers gather into an array, and repeated User Property names into arrays.
 */
function propertiesFrom(packed) {
  const list = unpack(packed);
  const result = {};
  for (let at = 0; at < list.length; at += 2) {
    const index = list[at];
    const value = list[at + 1];
    if (index === PROPERTY_USER_PROPERTY) {
      // [index, name, value]: one item more than the others.
      const user = (result.userProperties ??= {});
      const item = list[at + 2];
      const known = user[value];
      user[value] = known === undefined ? item : Array.isArray(known) ? [...known, item] : [known, item];
      at++;
    } else if (index === PROPERTY_SUBSCRIPTION_IDENTIFIERS) {
      (result.subscriptionIdentifiers ??= []).push(value);
    } else {
      result[PROPERTIES[index]] = value;
    }
  }
  return result;
}

/** Resolves (`ok`) or rejects the Promise of request `id` with `value`. */
function settle(events, id, ok, value) {
  const handlers = events.pending.get(id);
  if (handlers) {
    events.pending.delete(id);
    handlers[ok ? 0 : 1](value);
  }
}

/**
 * Queues an effect (an EFFECT_ code) of the client's current turn: one of its `EVENTS` (its
 * detail built from `number` and `value`), settling the Promise of request `number` with `value`
 * (`EFFECT_RESOLVE`, `EFFECT_REJECT`), the delivery of messages `value` (`EFFECT_MESSAGES`), or
 * dropping the handler (`EFFECT_RELEASE`). They run once the turn is over, when the
 * client can be called again.
 */
export function effect(events, kind, number, value) {
  events.effects.push(kind, number, value);
}

/** Runs the queued effects in order (a call they make into the client queues and runs its own). */
export function runEffects(events) {
  const effects = events.effects;
  events.effects = [];
  for (let at = 0; at < effects.length; at += 3) {
    const kind = effects[at];
    const number = effects[at + 1];
    const value = effects[at + 2];
    if (kind === EFFECT_RESOLVE || kind === EFFECT_REJECT) {
      settle(events, number, kind === EFFECT_RESOLVE, value);
    } else if (kind === EFFECT_MESSAGES) {
      deliver(value, events);
    } else if (kind === EFFECT_RELEASE) {
      // Closed for good: nothing will call the handler again, and it holds the client.
      events.handler = undefined;
    } else if (kind === EFFECT_AUTH) {
      answerAuth(events, number, value);
    } else {
      // Connect: sessionPresent (1 or 0) and properties; close: reconnect (1 or 0) and the error
      // (none after end()); reconnect: attempt and delay; error: the error.
      const detail =
        kind === EFFECT_CONNECT ? { sessionPresent: number === 1, properties: value }
        : kind === EFFECT_CLOSE ? (value === undefined ? { reconnect: number === 1 } : { error: value, reconnect: number === 1 })
        : kind === EFFECT_RECONNECT ? { attempt: number, delayMs: value }
        : value;
      if (kind === EFFECT_CONNECT) events.connack = detail;
      // dispatchEvent reports what a listener throws by itself.
      events.dispatchEvent(new CustomEvent(EVENTS[kind], { detail }));
    }
  }
}

/**
 * Has `onAuth` answer the broker's AUTH (reason code `reasonCode`, `properties` an object or
 * undefined): its answer (a Promise, maybe) goes back in an AUTH, and its failure (a throw, a
 * rejection, a result that is not bytes) fails the attempt or the connection with
 * `CREDENTIALS_FAILED`, unless a later AUTH or attempt made it stale.
 */
function answerAuth(events, reasonCode, properties) {
  const step = ++events.step;
  const current = () => step === events.step && events.handler;
  Promise.resolve()
    .then(() => events.onAuth(properties?.authenticationData ?? new Uint8Array(), reasonCode, properties))
    .then((data) => {
      data = bytes(data, "onAuth's result") ?? new Uint8Array();
      if (current()) events.handler(HANDLER_AUTH, data);
    })
    .catch((error) => current() && credentialsFailed(events.handler, error));
}

/** What a subscribe (`qos` >= 0) or an unsubscribe resolves with. */
export const result = (qos, reasonCode) => (qos < 0 ? { reasonCode } : { qos, reasonCode });

