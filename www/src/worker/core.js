// The ingest worker's logic (ingest-worker.js runs it in a Web Worker): it owns the MQTT
// clients (client-wasm works in a worker as in a page), runs the page's requests on them,
// forwards their events, and turns their messages into one batch per animation frame.
//
// Why a worker: at 10,000 msg/s, decoding frames, building message objects, decoding payload
// text and parsing JSON cost the page's thread several milliseconds per frame, which is what
// made the dashboard stutter. Here they cost the worker's thread; the page gets one transferred
// batch per frame (batch.js) whose numbers are already extracted, and only files and draws.
//
// When a batch goes: the page posts 'frame' after each frame it draws. If messages are waiting,
// they go at once; if none are, the next message goes as soon as it arrives (so a quiet topic
// shows without delay) and the rest wait for the next 'frame'. A hidden page draws no frames,
// so a batch also goes when messages have waited `FALLBACK_MS`.
//
// Bounds: while the page does not take batches, at most `MAX_PENDING_MESSAGES` messages or
// `MAX_PENDING_BYTES` of payload wait here; messages beyond are dropped and counted, and the
// count travels with the next batch (`dropped`), so the page can say so.

import { BatchWriter } from './batch.js';
import { toWire } from './wire.js';
import { numericFields, MAX_TEXT } from '../model/numeric.js';

export const FALLBACK_MS = 250;
export const MAX_PENDING_MESSAGES = 500_000;
export const MAX_PENDING_BYTES = 64 * 1024 * 1024;

/** First byte of a payload that may be a number or JSON (digits, sign, '.', '{', '[', space). */
const NUMERIC_START = new Uint8Array(256);
for (const c of '0123456789+-.{[ \t\r\n') NUMERIC_START[c.charCodeAt(0)] = 1;

const EVENTS = ['connect', 'reconnect', 'close', 'error'];
const NO_NUMBERS = [];

export class IngestCore {
  /**
   * @param {object} parts
   * @param {() => Promise<{connect(url: string, options: object): Promise<object>}>} parts.loadClient
   *   resolves to client-wasm's MqttClient class
   * @param {(message: object, transfer?: Transferable[]) => void} parts.post to the page
   * @param {() => number} [parts.now] Unix time in ms
   * @param {(callback: () => void, ms: number) => unknown} [parts.setTimeout]
   * @param {{messages: number, bytes: number}} [parts.limits] what may wait for the page
   */
  constructor({
    loadClient,
    post,
    now = () => performance.timeOrigin + performance.now(),
    setTimeout: later = (f, ms) => setTimeout(f, ms),
    limits = { messages: MAX_PENDING_MESSAGES, bytes: MAX_PENDING_BYTES },
  }) {
    this.loadClient = loadClient;
    this.post = post;
    this.now = now;
    this.later = later;
    this.limits = limits;
    /** The page's client number -> the client. */
    this.clients = new Map();
    this.writer = new BatchWriter();
    this.decoder = new TextDecoder();
    /** The page drew a frame since the last batch went. */
    this.wanted = true;
    this.fallbackArmed = false;
    this.dropped = 0;
    this.batches = 0;
  }

  /** A message from the page. */
  handle(message) {
    if (message.type === 'frame') {
      this.wanted = true;
      if (this.writer.count > 0 || this.dropped > 0) this.flush();
    } else if (message.type === 'call') {
      this.call(message);
    }
  }

  async call({ id, client: number, method, args }) {
    try {
      let value;
      if (method === 'connect') {
        const MqttClient = await this.loadClient();
        const client = await MqttClient.connect(args[0], args[1]);
        this.attach(number, client);
        value = { clientId: client.clientId, connack: client.connack };
      } else {
        const client = this.clients.get(number);
        if (client === undefined) throw new Error('the client was ended');
        value = await client[method](...args);
        if (method === 'end') this.clients.delete(number);
      }
      this.post({ type: 'reply', id, ok: true, value: toWire(value) });
    } catch (error) {
      this.post({ type: 'reply', id, ok: false, error: toWire(error) });
    }
  }

  attach(number, client) {
    this.clients.set(number, client);
    client.onMessages((messages) => this.receive(messages));
    for (const event of EVENTS) {
      client.addEventListener(event, (e) => this.post({ type: 'event', client: number, event, detail: toWire(e.detail) }));
    }
  }

  /** One frame of messages from a client. */
  receive(messages) {
    const time = this.now() / 1000;
    const writer = this.writer;
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i];
      if (writer.count >= this.limits.messages || writer.size + message.payload.length > this.limits.bytes) {
        this.dropped += 1;
        continue;
      }
      writer.add(message, this.numbers(message.payload), time);
    }
    if (this.wanted) this.flush();
    else if (!this.fallbackArmed) {
      this.fallbackArmed = true;
      this.later(() => {
        this.fallbackArmed = false;
        if (this.writer.count > 0 || this.dropped > 0) this.flush();
      }, FALLBACK_MS);
    }
  }

  /** The numeric fields of a payload; the first byte keeps binary and plain text from decoding. */
  numbers(payload) {
    if (payload.length === 0 || payload.length > MAX_TEXT || NUMERIC_START[payload[0]] !== 1) return NO_NUMBERS;
    return numericFields(this.decoder.decode(payload));
  }

  /** Sends what waits as one batch. */
  flush() {
    const { data, transfer } = this.writer.take();
    data.dropped = this.dropped;
    this.dropped = 0;
    this.wanted = false;
    this.batches += 1;
    this.post({ type: 'batch', data }, transfer);
  }
}
