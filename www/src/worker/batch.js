// The batch the ingest worker hands the page once per animation frame: every message received
// since the last batch, packed into a few typed arrays that are transferred (moved, not
// copied) with postMessage, plus the numbers the worker already extracted from the payloads.
//
// Layout of a batch (`BatchWriter.take()` builds it, `Batch` reads it):
// - `topics`: the distinct topics of the batch (strings), in first-seen order;
// - `meta`: four Uint32 per message: topic index, payload start, payload length, flags
//   (QoS in bits 0-1, RETAIN in bit 2);
// - `times`: the arrival time of each message, Unix seconds (the worker's clock: its
//   `performance.timeOrigin` is absolute, so page and worker agree);
// - `bytes`: the payloads, back to back;
// - `properties`: [message index, properties] for the rare messages that carry MQTT 5 ones;
// - `fields` and `points`: the numeric fields of the payloads (see model/numeric.js):
//   the distinct field paths, and three Float64 per point: message index, field index, value.
//
// Writing copies each payload once into `bytes`, which grows by doubling; the page's log keeps
// views into it, so a batch's bytes live as long as the page shows one of its messages.

const META = 4;
const FLAG_QOS = 0b11;
const FLAG_RETAIN = 0b100;

/** Grows `array` (a typed array) to hold at least `needed` elements, keeping its contents. */
function grown(array, needed) {
  if (needed <= array.length) return array;
  let length = Math.max(16, array.length);
  while (length < needed) length *= 2;
  const bigger = new array.constructor(length);
  bigger.set(array);
  return bigger;
}

export class BatchWriter {
  constructor() {
    this.reset();
  }

  reset() {
    this.count = 0;
    this.topics = [];
    this.topicIndex = new Map();
    this.meta = new Uint32Array(64 * META);
    this.times = new Float64Array(64);
    this.bytes = new Uint8Array(4096);
    this.byteLength = 0;
    this.properties = [];
    this.fields = [];
    this.fieldIndex = new Map();
    this.points = new Float64Array(3 * 64);
    this.pointCount = 0;
  }

  /**
   * Adds one message: `message` has topic, payload (Uint8Array), qos, retain and maybe
   * properties; `numbers` are its numeric fields as [path, value] pairs; `time` Unix seconds.
   */
  add(message, numbers, time) {
    const index = this.count;
    let topic = this.topicIndex.get(message.topic);
    if (topic === undefined) {
      topic = this.topics.length;
      this.topics.push(message.topic);
      this.topicIndex.set(message.topic, topic);
    }
    const payload = message.payload;
    this.bytes = grown(this.bytes, this.byteLength + payload.length);
    this.bytes.set(payload, this.byteLength);
    this.meta = grown(this.meta, (index + 1) * META);
    const at = index * META;
    this.meta[at] = topic;
    this.meta[at + 1] = this.byteLength;
    this.meta[at + 2] = payload.length;
    this.meta[at + 3] = (message.qos & FLAG_QOS) | (message.retain ? FLAG_RETAIN : 0);
    this.byteLength += payload.length;
    this.times = grown(this.times, index + 1);
    this.times[index] = time;
    if (message.properties !== undefined && message.properties !== null) this.properties.push([index, message.properties]);
    for (let i = 0; i < numbers.length; i++) {
      const [path, value] = numbers[i];
      let field = this.fieldIndex.get(path);
      if (field === undefined) {
        field = this.fields.length;
        this.fields.push(path);
        this.fieldIndex.set(path, field);
      }
      this.points = grown(this.points, (this.pointCount + 1) * 3);
      const p = this.pointCount * 3;
      this.points[p] = index;
      this.points[p + 1] = field;
      this.points[p + 2] = value;
      this.pointCount += 1;
    }
    this.count += 1;
  }

  /** Payload bytes held so far (what bounds the worker's memory while the page is busy). */
  get size() {
    return this.byteLength;
  }

  /**
   * The batch so far as plain data, and the buffers to transfer with it; the writer starts
   * empty again.
   */
  take() {
    const data = {
      count: this.count,
      topics: this.topics,
      meta: this.meta.slice(0, this.count * META),
      times: this.times.slice(0, this.count),
      bytes: this.bytes.slice(0, this.byteLength),
      properties: this.properties,
      fields: this.fields,
      points: this.points.slice(0, this.pointCount * 3),
    };
    this.reset();
    return { data, transfer: [data.meta.buffer, data.times.buffer, data.bytes.buffer, data.points.buffer] };
  }
}

/** Reads a batch made by `BatchWriter.take()` (after postMessage, or directly in tests). */
export class Batch {
  constructor(data) {
    this.data = data;
    this.count = data.count;
    this.pointCount = data.points.length / 3;
    // Message index -> properties, for the few messages that have them.
    this.propertiesOf = new Map(data.properties);
  }

  topic(index) {
    return this.data.topics[this.data.meta[index * META]];
  }

  /** The payload, a view into the batch's bytes. */
  payload(index) {
    const at = index * META;
    const start = this.data.meta[at + 1];
    return this.data.bytes.subarray(start, start + this.data.meta[at + 2]);
  }

  qos(index) {
    return this.data.meta[index * META + 3] & FLAG_QOS;
  }

  retain(index) {
    return (this.data.meta[index * META + 3] & FLAG_RETAIN) !== 0;
  }

  time(index) {
    return this.data.times[index];
  }

  properties(index) {
    return this.propertiesOf.get(index);
  }

  /** Point `i`: its message index, field path and value. */
  pointMessage(i) {
    return this.data.points[i * 3];
  }

  pointField(i) {
    return this.data.fields[this.data.points[i * 3 + 1]];
  }

  pointValue(i) {
    return this.data.points[i * 3 + 2];
  }
}
