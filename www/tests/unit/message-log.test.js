// MessageLog: bounded ring, newest-first rows, incremental filter, pause.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageLog } from '../../src/model/message-log.js';

const message = (topic, text) => ({ topic, payload: new TextEncoder().encode(text), qos: 0, retain: false, time: 0 });

test('rows are newest first and the ring is bounded', () => {
  const log = new MessageLog(100);
  for (let i = 0; i < 250; i++) log.add(message(`t/${i}`, `${i}`));
  assert.equal(log.size(), 100);
  assert.equal(log.row(0).topic, 't/249');
  assert.equal(log.row(99).topic, 't/150');
  assert.equal(log.row(100), undefined);
  assert.equal(log.bySeq(150), undefined);
  assert.equal(log.bySeq(151).topic, 't/150');
});

test('the filter matches topics and payload text, case-insensitively, as messages arrive', () => {
  const log = new MessageLog(10);
  log.add(message('a/temp', '{"v":1}'));
  log.add(message('b/hum', 'HELLO'));
  log.setFilter('hello');
  assert.equal(log.size(), 1);
  assert.equal(log.row(0).topic, 'b/hum');
  log.add(message('c/Hello', 'x'));
  log.add(message('d', 'y'));
  assert.equal(log.size(), 2);
  assert.equal(log.row(0).topic, 'c/Hello');
  for (let i = 0; i < 20; i++) log.add(message('e', 'z'));
  assert.equal(log.size(), 0, 'matches of forgotten entries go too');
  log.setFilter('');
  assert.equal(log.size(), 10);
});

test('100k messages with a filter stay fast', () => {
  const log = new MessageLog(100_000);
  const started = performance.now();
  for (let i = 0; i < 200_000; i++) log.add(message(`s/${i % 10}`, `{"temp": ${i}}`));
  log.setFilter('s/3');
  for (let i = 0; i < 1000; i++) log.row(i);
  assert.equal(log.size(), 10_000);
  assert.ok(performance.now() - started < 5000);
});

test('pause stops recording and counts what went by', () => {
  const log = new MessageLog(10);
  log.add(message('a', '1'));
  log.setPaused(true);
  log.add(message('b', '2'));
  assert.equal(log.size(), 1);
  assert.equal(log.missed, 1);
  log.setPaused(false);
  log.add(message('c', '3'));
  assert.equal(log.row(0).topic, 'c');
  log.clear();
  assert.equal(log.size(), 0);
});
