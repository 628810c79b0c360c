// TopicTree, SeriesStore and RateMeter.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TopicTree } from '../../src/model/topic-tree.js';
import { SeriesStore, seriesCsv } from '../../src/model/series-store.js';
import { RateMeter } from '../../src/model/rate.js';

const bytes = (text) => new TextEncoder().encode(text);

test('the topic tree counts per topic and per branch, and marks retained topics', () => {
  const tree = new TopicTree();
  tree.add('home/kitchen/temp', bytes('21'), false, 0, 1);
  tree.add('home/kitchen/temp', bytes('22'), false, 1, 2);
  tree.add('home/door', bytes('open'), true, 1, 3);
  assert.equal(tree.topics, 2);
  assert.equal(tree.find('home').total, 3);
  assert.equal(tree.find('home').count, 0);
  const temp = tree.find('home/kitchen/temp');
  assert.equal(temp.count, 2);
  assert.equal(new TextDecoder().decode(temp.lastPayload), '22');
  assert.equal(tree.find('home/door').retained, true);
  assert.deepEqual(tree.find('home').sortedChildren().map((n) => n.name), ['door', 'kitchen']);
  assert.equal(tree.find('home/kitchen/temp').path, 'home/kitchen/temp');
  // Live copies arrive without the flag: the marker stays until the message is deleted.
  tree.add('home/door', bytes('closed'), false, 1, 4);
  assert.equal(tree.find('home/door').retained, true);
  tree.unmarkRetained('home/door');
  assert.equal(tree.find('home/door').retained, false);
});

test('the topic tree is bounded', () => {
  const tree = new TopicTree(10);
  for (let i = 0; i < 20; i++) tree.add(`t/${i}`, bytes('x'), false, 0, i);
  assert.ok(tree.nodes <= 10);
  assert.equal(tree.dropped, 11);
});

test('series are created per topic and field, bounded in number', () => {
  const store = new SeriesStore({ budget: 3, maxSeries: 3 });
  const created = [];
  store.onSeries = (series) => created.push(series.name);
  store.ingest('demo/a', '{"temp": 21.5, "hum": 40}', 1);
  store.ingest('demo/a', '{"temp": 22, "hum": 41}', 2);
  store.ingest('demo/b', '7', 3);
  store.ingest('demo/c', '8', 4);
  store.ingest('demo/d', 'not a number', 5);
  assert.deepEqual(created, ['demo/a temp', 'demo/a hum', 'demo/b']);
  assert.equal(store.droppedPoints, 1);
  const temp = store.list[0];
  assert.deepEqual(Array.from(temp.buffer.view().values), [21.5, 22]);
  assert.equal(seriesCsv(temp), 'unix_time,iso_time,demo/a temp\n1.000,1970-01-01T00:00:01.000Z,21.5\n2.000,1970-01-01T00:00:02.000Z,22\n');
});

test('the rate meter measures events per second', () => {
  const meter = new RateMeter(2000, 8);
  for (let t = 0; t < 4000; t += 10) meter.add(10, t);
  const rate = meter.rate(4000);
  assert.ok(Math.abs(rate - 1000) < 100, `${rate}`);
  assert.equal(meter.rate(20_000), 0);
});
