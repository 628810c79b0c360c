// Ingest: one message through the real models (counts, tree, log, series).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { messageHandler } from './pipeline.js';
import { Traffic } from '../../src/model/traffic.js';
import { Subscriptions } from '../../src/subscriptions.js';
import { TopicTree } from '../../src/model/topic-tree.js';
import { MessageLog } from '../../src/model/message-log.js';
import { SeriesStore } from '../../src/model/series-store.js';

const bytes = (text) => new TextEncoder().encode(text);

function setup() {
  const subscriptions = new Subscriptions({ client: () => null, onChange() {}, onFiltersChange() {}, onError() {} });
  const models = { traffic: new Traffic(), subscriptions, tree: new TopicTree(), log: new MessageLog(100), series: new SeriesStore({ budget: 1000 }) };
  let frames = 0;
  const handle = messageHandler(models, () => (frames += 1));
  return { models, handle, frames: () => frames };
}

test('a JSON message is counted, logged, filed in the tree and plotted per numeric field', () => {
  const { models, handle, frames } = setup();
  models.subscriptions.add('home/#', 0);
  models.subscriptions.add('office/#', 0);
  handle({ topic: 'home/kitchen', payload: bytes('{"temp": 21.5, "hum": 40, "name": "k"}'), qos: 1, retain: 1, properties: { contentType: 'json' } });

  assert.equal(models.traffic.received, 1);
  assert.equal(models.traffic.rateIn.total, 1);
  assert.deepEqual(models.subscriptions.list.map((s) => s.count), [1, 0]);
  assert.equal(models.tree.find('home/kitchen').count, 1);
  assert.equal(models.tree.find('home/kitchen').retained, true);
  const entry = models.log.row(0);
  assert.equal(entry.topic, 'home/kitchen');
  assert.equal(entry.qos, 1);
  assert.equal(entry.retain, true);
  assert.deepEqual(entry.properties, { contentType: 'json' });
  assert.deepEqual(models.series.list.map((s) => s.name).sort(), ['home/kitchen hum', 'home/kitchen temp']);
  assert.equal(frames(), 1);
});

test('plain numbers plot under the topic; text, binary and empty payloads are only logged', () => {
  const { models, handle } = setup();
  handle({ topic: 'n', payload: bytes(' 42.5') });
  handle({ topic: 't', payload: bytes('hello 1') });
  handle({ topic: 'b', payload: new Uint8Array([0xff, 0x31]) });
  handle({ topic: 'e', payload: new Uint8Array() });
  assert.deepEqual(models.series.list.map((s) => s.name), ['n']);
  assert.equal(models.series.list[0].buffer.length, 1);
  assert.equal(models.log.size(), 4);
  assert.equal(models.traffic.received, 4);
  const entry = models.log.row(0);
  assert.equal(entry.qos, 0, 'a missing QoS is 0');
  assert.equal(entry.retain, false);
});

test('messages carry wall-clock times in seconds', () => {
  const { models, handle } = setup();
  const before = Date.now() / 1000;
  handle({ topic: 'n', payload: bytes('1') });
  const time = models.log.row(0).time;
  assert.ok(Math.abs(time - before) < 5, `${time} is near ${before}`);
});

test('traffic counts what was sent and received, with rates', () => {
  const traffic = new Traffic();
  for (let i = 0; i < 10; i++) traffic.countReceived(1000 + i * 10);
  traffic.countSent(1000);
  assert.equal(traffic.received, 10);
  assert.equal(traffic.sent, 1);
  assert.ok(traffic.rateIn.rate(1100) > traffic.rateOut.rate(1100));
});
