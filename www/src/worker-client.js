// The page's side of the ingest worker (worker/core.js): MQTT clients that live in the worker,
// seen from the page through the same API as client-wasm's MqttClient (connect, subscribe,
// unsubscribe, publish, end, and the connect/reconnect/close/error events), so Connection,
// Subscriptions and the panels do not know the difference. Messages do not come per client:
// every client's messages arrive as batches (worker/batch.js) through `onBatch`, one per
// animation frame the page asks for with `frameDrawn()`.

import { Batch } from './worker/batch.js';
import { fromWire } from './worker/wire.js';

export class IngestWorker {
  /**
   * @param {Worker} worker running worker/ingest-worker.js (or anything that speaks its protocol)
   * @param {(batch: Batch) => void} onBatch each batch, in order
   */
  constructor(worker, onBatch) {
    this.worker = worker;
    this.onBatch = onBatch;
    this.nextCall = 1;
    this.nextClient = 1;
    /** Call id -> [resolve, reject]. */
    this.pending = new Map();
    /** Client number -> WorkerClient, while connected or connecting. */
    this.clients = new Map();
    /** Messages the worker dropped because the page did not take its batches (see core.js). */
    this.dropped = 0;
    this.batches = 0;
    worker.onmessage = (event) => this.receive(event.data);
    // A worker that cannot start (its script or the wasm failed to load) fails every call.
    worker.onerror = (event) => {
      const error = new Error(`the MQTT worker failed: ${event.message ?? 'could not start'}`);
      for (const [, reject] of this.pending.values()) reject(error);
      this.pending.clear();
    };
    /** What Connection's `loadClient` resolves to: connect(url, options) like MqttClient's. */
    this.clientClass = { connect: (url, options) => this.connect(url, options) };
  }

  /** The page drew a frame: the worker may send the next batch. */
  frameDrawn() {
    this.worker.postMessage({ type: 'frame' });
  }

  async connect(url, options) {
    const client = new WorkerClient(this, this.nextClient++);
    this.clients.set(client.number, client);
    try {
      const { clientId, connack } = await this.call(client.number, 'connect', [url, options]);
      client.clientId = clientId;
      client.connack = connack;
      return client;
    } catch (error) {
      this.clients.delete(client.number);
      throw error;
    }
  }

  call(client, method, args) {
    const id = this.nextCall++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, [resolve, reject]);
      this.worker.postMessage({ type: 'call', id, client, method, args });
    });
  }

  receive(message) {
    if (message.type === 'batch') {
      this.batches += 1;
      this.dropped += message.data.dropped;
      this.onBatch(new Batch(message.data));
    } else if (message.type === 'reply') {
      const callbacks = this.pending.get(message.id);
      if (callbacks === undefined) return;
      this.pending.delete(message.id);
      if (message.ok) callbacks[0](fromWire(message.value));
      else callbacks[1](fromWire(message.error));
    } else if (message.type === 'event') {
      const client = this.clients.get(message.client);
      if (client === undefined) return;
      const detail = fromWire(message.detail);
      // A reconnect's CONNACK replaces the first one, as MqttClient's `connack` does.
      if (message.event === 'connect') client.connack = detail;
      client.dispatchEvent(new CustomEvent(message.event, { detail }));
    }
  }
}

/** One client in the worker. */
class WorkerClient extends EventTarget {
  constructor(worker, number) {
    super();
    this.ingest = worker;
    this.number = number;
    this.clientId = '';
    /** The last CONNACK's detail ({sessionPresent, properties}), as MqttClient's `connack`. */
    this.connack = undefined;
  }

  subscribe(filter, options) {
    return this.ingest.call(this.number, 'subscribe', [filter, options]);
  }

  unsubscribe(filter, options) {
    return this.ingest.call(this.number, 'unsubscribe', [filter, options]);
  }

  publish(topic, payload, options) {
    return this.ingest.call(this.number, 'publish', [topic, payload, options]);
  }

  async end() {
    try {
      await this.ingest.call(this.number, 'end', []);
    } finally {
      this.ingest.clients.delete(this.number);
    }
  }
}

/** Starts the ingest worker. */
export function startIngestWorker(onBatch) {
  const worker = new Worker(new URL('./worker/ingest-worker.js', import.meta.url), { type: 'module', name: 'mqtt-ingest' });
  return new IngestWorker(worker, onBatch);
}
