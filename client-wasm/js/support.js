// The JS half of client-wasm's browser layer: what is cheaper or safer to do on this side of
// the boundary. Rust hands over a whole decoded WebSocket frame at once (one byte copy and one
// table of numbers), and the message objects are built here, so that no field of any message
// crosses the boundary on its own. User callbacks run here too, each in its own try/catch, so a
// throwing listener neither skips the others nor unwinds through the client's Rust code.

const utf8 = new TextDecoder();

// Per message, `meta` holds: topic offset, topic length, payload offset, payload length, flags.
const FIELDS = 5;
const FLAG_RETAIN = 4;
const FLAG_DUP = 8;
const FLAG_PROPERTIES = 16;
const FLAG_ASCII_TOPIC = 32;

/** An application message received from the broker. */
export class MqttMessage {
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
 * Builds the messages of one frame. `data` and `meta` are views into wasm memory, valid only
 * during this call: the bytes are copied once, and every payload is a view of that copy.
 */
export function buildMessages(data, meta, properties) {
  const bytes = data.slice();
  const count = meta.length / FIELDS;
  const messages = new Array(count);
  let lastTopicStart = -1;
  let lastTopic = "";
  let propertyIndex = 0;
  for (let index = 0, at = 0; index < count; index++, at += FIELDS) {
    const topicStart = meta[at];
    const flags = meta[at + 4];
    // Rust writes a topic once per frame and points repeats at the same bytes.
    if (topicStart !== lastTopicStart) {
      lastTopic = decodeTopic(bytes, topicStart, meta[at + 1], (flags & FLAG_ASCII_TOPIC) !== 0);
      lastTopicStart = topicStart;
    }
    const payloadStart = meta[at + 2];
    messages[index] = new MqttMessage(
      lastTopic,
      bytes.subarray(payloadStart, payloadStart + meta[at + 3]),
      flags & 3,
      (flags & FLAG_RETAIN) !== 0,
      (flags & FLAG_DUP) !== 0,
      (flags & FLAG_PROPERTIES) !== 0 ? properties[propertyIndex++] : undefined,
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

/** Hands one frame's messages to the batch callbacks, the per-message callbacks and listeners. */
export function deliver(messages, batchCallbacks, messageCallbacks, target, dispatchEach) {
  for (const callback of batchCallbacks.slice()) {
    try {
      callback(messages);
    } catch (error) {
      report(error);
    }
  }
  if (messageCallbacks.length > 0) {
    const callbacks = messageCallbacks.slice();
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
  if (dispatchEach) {
    for (const message of messages) {
      target.dispatchEvent(new CustomEvent("message", { detail: message }));
    }
  }
}

/** Dispatches a CustomEvent; listener exceptions are reported by dispatchEvent itself. */
export function dispatch(target, type, detail) {
  target.dispatchEvent(new CustomEvent(type, { detail }));
}

/** An `Error` with the client's `code` (and the broker's `reasonCode` when there is one). */
export function mqttError(code, message, reasonCode) {
  const error = new Error(message);
  error.name = "MqttError";
  error.code = code;
  if (reasonCode >= 0) {
    error.reasonCode = reasonCode;
  }
  return error;
}

/** Removes `item` (compared with ===) from `array`; true if it was there. */
export function removeItem(array, item) {
  const index = array.indexOf(item);
  if (index >= 0) {
    array.splice(index, 1);
  }
  return index >= 0;
}
