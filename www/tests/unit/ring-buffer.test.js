// SeriesBuffer: bounded memory, contiguous newest-first views, time windows, budget changes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeriesBuffer } from '../../src/model/ring-buffer.js';

const list = (array) => Array.from(array);

test('keeps every point below the budget, oldest first', () => {
  const buffer = new SeriesBuffer(1000);
  for (let i = 0; i < 700; i++) buffer.push(i, i * 2);
  const { times, values } = buffer.view();
  assert.equal(times.length, 700);
  assert.equal(times[0], 0);
  assert.equal(values[699], 1398);
  assert.equal(buffer.total, 700);
});

test('drops the oldest past the budget and stays contiguous across wraps', () => {
  const buffer = new SeriesBuffer(5);
  for (let i = 0; i < 23; i++) {
    buffer.push(i, i * 3);
    const { times, values } = buffer.view();
    const expected = [];
    for (let t = Math.max(0, i - 4); t <= i; t++) expected.push(t);
    assert.deepEqual(list(times), expected, `after ${i + 1} pushes`);
    assert.deepEqual(list(values), expected.map((t) => t * 3));
  }
  assert.equal(buffer.length, 5);
  assert.equal(buffer.total, 23);
});

test('storage grows with use, never past the budget', () => {
  const buffer = new SeriesBuffer(100_000);
  buffer.push(1, 1);
  assert.ok(buffer.times.length <= 512, 'a fresh series holds little memory');
  for (let i = 0; i < 250_000; i++) buffer.push(i, i);
  assert.equal(buffer.capacity, 100_000);
  assert.equal(buffer.times.length, 200_000);
  const { times } = buffer.view();
  assert.equal(times.length, 100_000);
  assert.equal(times[0], 150_000);
  assert.equal(times[99_999], 249_999);
});

test('view(since) selects a time window by binary search', () => {
  const buffer = new SeriesBuffer(10);
  for (let i = 0; i < 15; i++) buffer.push(i * 10, i);
  assert.deepEqual(list(buffer.view(100).times), [100, 110, 120, 130, 140]);
  assert.deepEqual(list(buffer.view(95).values), [10, 11, 12, 13, 14]);
  assert.equal(buffer.view(1000).times.length, 0);
  assert.equal(buffer.view(-5).times.length, 10);
});

test('setBudget keeps the newest points and the total', () => {
  const buffer = new SeriesBuffer(100);
  for (let i = 0; i < 80; i++) buffer.push(i, i);
  buffer.setBudget(10);
  assert.deepEqual(list(buffer.view().times), [70, 71, 72, 73, 74, 75, 76, 77, 78, 79]);
  assert.equal(buffer.total, 80);
  buffer.push(80, 80);
  assert.equal(buffer.view().times[0], 71);
  buffer.setBudget(1000);
  for (let i = 81; i < 600; i++) buffer.push(i, i);
  assert.equal(buffer.view().times.length, 529);
});

test('clear forgets the points', () => {
  const buffer = new SeriesBuffer(4);
  for (let i = 0; i < 9; i++) buffer.push(i, i);
  buffer.clear();
  assert.equal(buffer.view().times.length, 0);
  buffer.push(5, 5);
  assert.deepEqual(list(buffer.view().times), [5]);
});
