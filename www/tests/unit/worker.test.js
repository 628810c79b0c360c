// The ingest worker, without a Worker: its batches (packing and reading), when they go (the
// page's frames, the fallback timer, the bound on what waits), and the call protocol between
// the page's IngestWorker and the worker's IngestCore, joined in-process by structured clones
// as postMessage would. The MQTT client is a stand-in with the real one's API shape; the real
// one runs in the browser tests (tests/browser/dashboard).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchWriter, Batch } from '../../src/worker/batch.js';
import { IngestCore, FALLBACK_MS } from '../../src/worker/core.js';
import { IngestWorker } from '../../src/worker-client.js';
import { toWire, fromWire } from '../../src/worker/wire.js';

const bytes = (text) => new TextEncoder().encode(text);
const text = (view) => new TextDecoder().decode(view);
const moved = ({ data, transfer }) => new Batch(structuredClone(data, { transfer }));

test('a batch carries topics, payloads, flags, times, properties and points through a transfer', () => {
  const writer = new BatchWriter();
  writer.add({ topic: 'a/1', payload: bytes('{"t":1,"h":2}'), qos: 1, retain: true }, [['t', 1], ['h', 2]], 10.5);
  writer.add({ topic: 'b', payload: new Uint8Array([0, 255]), qos: 2, retain: false, properties: { contentType: 'x' } }, [], 11);
  for (let i = 0; i < 200; i++) writer.add({ topic: 'a/1', payload: bytes(String(i)), qos: 0, retain: false }, [['', i]], 12 + i);
  const taken = writer.take();
  assert.equal(writer.count, 0, 'the writer starts empty again');
  const batch = moved(taken);
  assert.equal(taken.data.topics.length, 2, 'each topic once per batch');
  assert.equal(batch.count, 202);
  assert.equal(batch.topic(0), 'a/1');
  assert.equal(text(batch.payload(0)), '{"t":1,"h":2}');
  assert.equal(batch.qos(0), 1);
  assert.equal(batch.retain(0), true);
  assert.equal(batch.time(0), 10.5);
  assert.equal(batch.properties(0), undefined);
  assert.equal(batch.topic(1), 'b');
  assert.deepEqual([...batch.payload(1)], [0, 255]);
  assert.equal(batch.qos(1), 2);
  assert.equal(batch.retain(1), false);
  assert.deepEqual(batch.properties(1), { contentType: 'x' });
  assert.equal(text(batch.payload(201)), '199');
  assert.equal(batch.pointCount, 202);
  assert.deepEqual([batch.pointMessage(1), batch.pointField(1), batch.pointValue(1)], [0, 'h', 2]);
  assert.deepEqual([batch.pointMessage(201), batch.pointField(201), batch.pointValue(201)], [201, '', 199]);
});

function core(options = {}) {
  const posted = [];
  const timers = [];
  const instance = new IngestCore({
    loadClient: async () => options.MqttClient,
    post: (message, transfer) => posted.push(message.type === 'batch' ? { type: 'batch', batch: moved({ data: message.data, transfer }) } : message),
    now: () => 1_700_000_000_000,
    setTimeout: (callback, ms) => timers.push({ callback, ms }),
    limits: options.limits,
  });
  const batches = () => posted.filter((m) => m.type === 'batch').map((m) => m.batch);
  return { core: instance, posted, timers, batches };
}

const message = (topic, payload) => ({ topic, payload: bytes(payload), qos: 0, retain: false });

test('the first message goes at once, later ones wait for the page to draw a frame', () => {
  const { core: worker, batches, timers } = core();
  worker.receive([message('a', '1')]);
  assert.equal(batches().length, 1, 'nothing waited: it goes at once');
  assert.equal(batches()[0].time(0), 1_700_000_000, 'Unix seconds');
  worker.receive([message('a', '2'), message('a', '3')]);
  worker.receive([message('b', 'x')]);
  assert.equal(batches().length, 1, 'the page has not drawn since');
  worker.handle({ type: 'frame' });
  assert.equal(batches().length, 2);
  assert.equal(batches()[1].count, 3, 'one batch with everything that waited');
  assert.deepEqual([batches()[1].pointCount, batches()[1].pointValue(1)], [2, 3], 'numbers extracted; text is not a number');
  worker.handle({ type: 'frame' });
  assert.equal(batches().length, 2, 'no empty batches');
  worker.receive([message('a', '4')]);
  assert.equal(batches().length, 3, 'the page was waiting: it goes at once');
  assert.equal(timers.length, 1, 'one fallback timer was armed while messages waited');
});

test('a page that draws no frames (a hidden tab) still gets batches, every FALLBACK_MS', () => {
  const { core: worker, batches, timers } = core();
  worker.receive([message('a', '1')]);
  worker.receive([message('a', '2')]);
  worker.receive([message('a', '3')]);
  assert.equal(timers.length, 1, 'armed once');
  assert.equal(timers[0].ms, FALLBACK_MS);
  timers[0].callback();
  assert.equal(batches().length, 2);
  assert.equal(batches()[1].count, 2);
  worker.receive([message('a', '4')]);
  assert.equal(timers.length, 2, 'armed again for the next wait');
});

test('what waits for the page is bounded: the rest is dropped and counted in the next batch', () => {
  const { core: worker, batches } = core({ limits: { messages: 3, bytes: 1 << 20 } });
  worker.receive([message('a', '0')]);
  worker.receive(Array.from({ length: 5 }, (_, i) => message('a', String(i + 1))));
  worker.handle({ type: 'frame' });
  assert.equal(batches()[1].count, 3);
  assert.equal(batches()[1].data.dropped, 2);
  const bytesBound = core({ limits: { messages: 100, bytes: 10 } });
  bytesBound.core.receive([message('a', '')]);
  bytesBound.core.receive([message('a', '123456'), message('a', '7890'), message('a', '1')]);
  bytesBound.core.handle({ type: 'frame' });
  assert.deepEqual([bytesBound.batches()[1].count, bytesBound.batches()[1].data.dropped], [2, 1], 'payload bytes are bounded too');
});

test('errors keep their code and reason code across the wire', () => {
  const error = new Error('not authorized (0x87)');
  error.name = 'MqttError';
  error.code = 'NOT_AUTHORIZED';
  error.reasonCode = 0x87;
  const back = fromWire(structuredClone(toWire({ error, reconnect: false, list: [error] })));
  assert.ok(back.error instanceof Error);
  assert.deepEqual([back.error.name, back.error.message, back.error.code, back.error.reasonCode], ['MqttError', 'not authorized (0x87)', 'NOT_AUTHORIZED', 0x87]);
  assert.equal(back.reconnect, false);
  assert.equal(back.list[0].code, 'NOT_AUTHORIZED');
  const payload = new Uint8Array([1, 2]);
  assert.equal(toWire(payload), payload, 'byte arrays pass as they are');
});

/** A client with client-wasm's API shape, answering from a script. */
class ScriptedClient extends EventTarget {
  static made = [];
  static refuse = null;
  static async connect(url, options) {
    if (ScriptedClient.refuse) throw ScriptedClient.refuse;
    const client = new ScriptedClient();
    client.url = url;
    client.options = options;
    client.clientId = options.clientId;
    client.connack = { sessionPresent: false, properties: { userProperties: { node: 'a' } } };
    ScriptedClient.made.push(client);
    return client;
  }
  onMessages(callback) {
    this.deliver = callback;
  }
  async subscribe(filter, options) {
    if (filter === 'forbidden') {
      const error = new Error('not authorized');
      error.code = 'NOT_AUTHORIZED';
      error.reasonCode = 0x87;
      throw error;
    }
    return { qos: options.qos, reasonCode: options.qos };
  }
  async publish(topic, payload, options) {
    this.published = [topic, payload, options];
    return { reasonCode: 0 };
  }
  async end() {
    this.ended = true;
  }
}

/** The page's IngestWorker and the worker's IngestCore, joined through structured clones. */
function joined() {
  const received = [];
  const fakeWorker = {
    postMessage: (message) => queueMicrotask(() => worker.handle(structuredClone(message))),
  };
  const page = new IngestWorker(fakeWorker, (batch) => received.push(batch));
  const worker = new IngestCore({
    loadClient: async () => ScriptedClient,
    post: (message, transfer) => queueMicrotask(() => fakeWorker.onmessage({ data: structuredClone(message, { transfer }) })),
  });
  return { page, worker, received };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 5));

test('clients in the worker answer the page like MqttClient: connect, subscribe, publish, events, end', async () => {
  ScriptedClient.made = [];
  ScriptedClient.refuse = null;
  const { page, received } = joined();
  const client = await page.clientClass.connect('ws://h/mqtt', { clientId: 'dash-1', keepalive: 30 });
  assert.equal(client.clientId, 'dash-1');
  assert.deepEqual(client.connack, { sessionPresent: false, properties: { userProperties: { node: 'a' } } }, 'the CONNACK crosses');
  const inWorker = ScriptedClient.made[0];
  assert.deepEqual([inWorker.url, inWorker.options.keepalive], ['ws://h/mqtt', 30]);

  assert.deepEqual(await client.subscribe('a/#', { qos: 1 }), { qos: 1, reasonCode: 1 });
  await assert.rejects(client.subscribe('forbidden', { qos: 0 }), (error) => error.code === 'NOT_AUTHORIZED' && error.reasonCode === 0x87);
  assert.deepEqual(await client.publish('t', new Uint8Array([1]), { qos: 1, retain: true }), { reasonCode: 0 });
  assert.deepEqual(inWorker.published, ['t', new Uint8Array([1]), { qos: 1, retain: true }]);

  const closes = [];
  client.addEventListener('close', (event) => closes.push(event.detail));
  const failure = new Error('connection lost');
  failure.code = 'CONNECTION_LOST';
  inWorker.dispatchEvent(new CustomEvent('close', { detail: { error: failure, reconnect: true } }));
  await settle();
  assert.equal(closes.length, 1);
  assert.equal(closes[0].reconnect, true);
  assert.equal(closes[0].error.code, 'CONNECTION_LOST');
  inWorker.dispatchEvent(new CustomEvent('connect', { detail: { sessionPresent: true, properties: { userProperties: { node: 'b' } } } }));
  await settle();
  assert.equal(client.connack.properties.userProperties.node, 'b', 'a reconnect’s CONNACK replaces it');

  inWorker.deliver([message('a/1', '5'), message('a/2', '{"v": 6}')]);
  await settle();
  assert.equal(received.length, 1);
  assert.deepEqual([received[0].count, received[0].pointField(1), received[0].pointValue(1)], [2, 'v', 6]);
  assert.equal(page.batches, 1);

  await client.end();
  assert.equal(inWorker.ended, true);
  await assert.rejects(client.subscribe('a', { qos: 0 }), /ended/);
});

test('a refused connect rejects with the client’s error, code included', async () => {
  const refusal = new Error('bad user name or password (0x86)');
  refusal.code = 'BAD_CREDENTIALS';
  refusal.reasonCode = 0x86;
  ScriptedClient.refuse = refusal;
  const { page } = joined();
  await assert.rejects(page.clientClass.connect('ws://h/mqtt', { clientId: 'x' }), (error) => error.code === 'BAD_CREDENTIALS' && error.reasonCode === 0x86);
  assert.equal(page.clients.size, 0);
  ScriptedClient.refuse = null;
});
