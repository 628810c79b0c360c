// Decimator: exact column extremes against a brute-force reference (one-off windows, sliding
// windows, ring eviction, rebuilds), the output bound, and that a sliding window costs the new
// points, not the points held.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SeriesBuffer } from '../../src/model/ring-buffer.js';
import { Decimator } from '../../src/model/decimate.js';

const START = 1_700_000_000;

/** A small seeded generator (mulberry32), so a failure can be replayed. */
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A source of points like arrivals: times that repeat (a batch of messages handled at once),
 * step a little, or jump after a silence; small integer values, so extremes tie often.
 */
function source(seed, time = START) {
  const next = random(seed);
  return {
    time,
    push(buffer, count) {
      for (let i = 0; i < count; i++) {
        const roll = next();
        if (roll > 0.995) this.time += 0.5 + next();
        else if (roll > 0.3) this.time += next() * 0.003;
        buffer.push(this.time, Math.floor(next() * 41) - 20);
      }
    },
  };
}

/**
 * Asserts that `output` is the decimation of the buffer's points in [from, to] at the
 * decimator's width: the columns' extremes, the window's first and last points, each column at
 * most 4 raw points in time order, the width wide enough for `columns`, range() its extremes.
 */
function assertDecimated(decimator, buffer, from, to, columns, output, label) {
  const { times, values } = buffer.view();
  const rawTimes = [];
  const rawValues = [];
  for (let i = 0; i < times.length; i++) {
    if (times[i] >= from && times[i] <= to) {
      rawTimes.push(times[i]);
      rawValues.push(values[i]);
    }
  }
  const range = decimator.range();
  if (rawTimes.length === 0) {
    assert.equal(output.times.length, 0, label);
    assert.ok(Number.isNaN(range.min) && Number.isNaN(range.max), label);
    return;
  }
  const width = decimator.width;
  const span = (to < Infinity ? to : rawTimes[rawTimes.length - 1]) - (from > -Infinity ? from : rawTimes[0]);
  assert.ok(width >= span / columns, `${label}: width ${width} for a span of ${span} over ${columns} columns`);
  assert.ok(Number.isInteger(Math.log2(width / 0.001)), `${label}: width ${width} is 1 ms times a power of two`);
  assert.ok(output.times.length <= 4 * columns + 8, `${label}: ${output.times.length} points for ${columns} columns`);

  const extremes = (columnTimes, columnValues) => {
    const columns = new Map();
    for (let i = 0; i < columnTimes.length; i++) {
      const column = Math.floor(columnTimes[i] / width);
      const entry = columns.get(column);
      if (entry === undefined) columns.set(column, { min: columnValues[i], max: columnValues[i], count: 1 });
      else {
        entry.min = Math.min(entry.min, columnValues[i]);
        entry.max = Math.max(entry.max, columnValues[i]);
        entry.count += 1;
      }
    }
    return columns;
  };
  const expected = extremes(rawTimes, rawValues);
  const actual = extremes(output.times, output.values);
  assert.equal(actual.size, expected.size, `${label}: columns`);
  for (const [column, { min, max }] of expected) {
    const got = actual.get(column);
    assert.ok(got !== undefined, `${label}: column ${column} is missing`);
    assert.equal(got.min, min, `${label}: column ${column} minimum`);
    assert.equal(got.max, max, `${label}: column ${column} maximum`);
    assert.ok(got.count <= 4, `${label}: column ${column} has ${got.count} points`);
  }
  // Every output point is a raw point, in the raw points' order.
  let j = 0;
  for (let k = 0; k < output.times.length; k++) {
    while (j < rawTimes.length && !(rawTimes[j] === output.times[k] && rawValues[j] === output.values[k])) j++;
    assert.ok(j < rawTimes.length, `${label}: output point ${k} (${output.times[k]}, ${output.values[k]}) is not a raw point in order`);
    j++;
  }
  const last = output.times.length - 1;
  assert.deepEqual([output.times[0], output.values[0]], [rawTimes[0], rawValues[0]], `${label}: first point`);
  assert.deepEqual([output.times[last], output.values[last]], [rawTimes.at(-1), rawValues.at(-1)], `${label}: last point`);
  assert.deepEqual(range, { min: Math.min(...output.values), max: Math.max(...output.values) }, `${label}: range`);
}

/** Calls `points` and checks its answer. */
function check(decimator, buffer, from, to, columns, label) {
  const output = decimator.points(from, to, columns);
  assertDecimated(decimator, buffer, from, to, columns, output, label);
  return output;
}

test('one-off windows match the brute-force reference', () => {
  for (let seed = 1; seed <= 5; seed++) {
    const buffer = new SeriesBuffer(5000);
    source(seed).push(buffer, 5000);
    const { times } = buffer.view();
    const first = times[0];
    const last = times[times.length - 1];
    const windows = [
      [-Infinity, Infinity],
      [last - (last - first) / 10, Infinity],
      [first + (last - first) / 3, first + (2 * (last - first)) / 3],
      [-Infinity, first + (last - first) / 2],
      [times[1234], times[4321]],
      [last - 0.001, last],
    ];
    for (const [from, to] of windows) {
      for (const columns of [1, 7, 100, 1000]) {
        const label = `seed ${seed}, [${from - START}, ${to - START}], ${columns} columns`;
        check(new Decimator(buffer), buffer, from, to, columns, label);
      }
    }
    // One decimator through all of them: every change of window rebuilds or reuses correctly.
    const decimator = new Decimator(buffer);
    for (const [from, to] of windows) {
      for (const columns of [1000, 7, 100]) check(decimator, buffer, from, to, columns, `seed ${seed}, reused`);
    }
  }
});

test('a sliding window stays exact over many calls', () => {
  for (let seed = 11; seed <= 14; seed++) {
    const buffer = new SeriesBuffer(100_000);
    const points = source(seed);
    points.push(buffer, 3000);
    const next = random(seed);
    const sliding = new Decimator(buffer);
    const openEnded = new Decimator(buffer);
    const all = new Decimator(buffer);
    const single = new Decimator(buffer);
    for (let call = 0; call < 300; call++) {
      points.push(buffer, Math.floor(next() * 30));
      const now = points.time + next() * 0.002;
      check(sliding, buffer, now - 2, now, 200, `seed ${seed}, call ${call}, last 2 s`);
      // One column: the window often holds only the newest column, begun before the window.
      check(single, buffer, now - 0.05, now, 1, `seed ${seed}, call ${call}, last 50 ms in one column`);
      check(openEnded, buffer, now - 2, Infinity, 150, `seed ${seed}, call ${call}, from now - 2 s on`);
      check(all, buffer, -Infinity, Infinity, 120, `seed ${seed}, call ${call}, all`);
    }
  }
});

test('stays exact while the ring drops points, even more than it holds between calls', () => {
  for (let seed = 21; seed <= 24; seed++) {
    const buffer = new SeriesBuffer(500);
    const points = source(seed);
    const next = random(seed);
    const sliding = new Decimator(buffer);
    const all = new Decimator(buffer);
    for (let call = 0; call < 400; call++) {
      points.push(buffer, call % 50 === 49 ? 700 : Math.floor(next() * 40));
      const now = points.time;
      check(sliding, buffer, now - 1, now, 60, `seed ${seed}, call ${call}, last second`);
      check(all, buffer, -Infinity, Infinity, 60, `seed ${seed}, call ${call}, all`);
    }
  }
});

test('the output stays within 4 points per column for 100,000 points', () => {
  const buffer = new SeriesBuffer(100_000);
  const points = source(31);
  points.push(buffer, 100_000);
  const decimator = new Decimator(buffer);
  for (const columns of [300, 1000, 1]) {
    check(decimator, buffer, -Infinity, Infinity, columns, `all, ${columns} columns`);
    check(decimator, buffer, points.time - 20, points.time, columns, `last 20 s, ${columns} columns`);
  }
});

test('a sliding window costs the new points, not the points held', () => {
  // 100,000 points at 10 kHz: a 10 s window over 1000 columns holds about 160 points a column.
  const buffer = new SeriesBuffer(100_000);
  let time = START;
  let value = 0;
  const push = (count) => {
    for (let i = 0; i < count; i++) {
      time += 0.0001;
      value = (value * 7 + 3) % 101;
      buffer.push(time, value);
    }
  };
  push(100_000);
  const decimator = new Decimator(buffer);
  decimator.points(time - 10, time, 1000);
  const afterBuild = decimator.pointsRead;
  assert.ok(afterBuild >= 99_000, `the first call reads the window (${afterBuild} points)`);

  for (let call = 0; call < 1000; call++) {
    push(10);
    decimator.points(time - 10, time, 1000);
  }
  // Folding reads each new point once, and each point again once when its column becomes the
  // window's first. Rescanning the window, or even only the first column, on every call would
  // read 100,000 or 160,000 points.
  const read = decimator.pointsRead - afterBuild;
  assert.ok(read <= 3 * 10_000, `1000 calls adding 10 points each read ${read} points`);
  check(decimator, buffer, time - 10, time, 1000, 'after 1000 calls');
});

test('a new width rebuilds from the held points', () => {
  const buffer = new SeriesBuffer(20_000);
  const points = source(41);
  points.push(buffer, 20_000);
  const decimator = new Decimator(buffer);
  check(decimator, buffer, points.time - 30, points.time, 1000, '1000 columns');
  const narrow = decimator.width;
  const before = decimator.pointsRead;
  check(decimator, buffer, points.time - 30, points.time, 50, '50 columns');
  assert.ok(decimator.width > narrow, 'fewer columns are wider');
  const held = buffer.view(points.time - 30).times.length;
  assert.equal(decimator.pointsRead - before, held, 'the rebuild read the window once');
  check(decimator, buffer, points.time - 30, points.time, 1000, 'back to 1000 columns');
  assert.equal(decimator.width, narrow);

  // The whole range grows past powers of two as points arrive: the width follows it.
  const growing = new SeriesBuffer(100_000);
  const all = new Decimator(growing);
  const more = source(42);
  const widths = new Set();
  for (let call = 0; call < 200; call++) {
    more.push(growing, 100);
    check(all, growing, -Infinity, Infinity, 100, `all, call ${call}`);
    widths.add(all.width);
  }
  assert.ok(widths.size >= 3, `the width grew with the range (${[...widths].join(', ')})`);
});

test('a span wavering around a power of two does not rebuild on every call', () => {
  // A full ring at a steady rate: its span is 1.0001 s or 0.9999 s by turns, which at 125 columns
  // asks for 16 ms or 8 ms columns.
  const buffer = new SeriesBuffer(1000);
  let time = START;
  for (let i = 0; i < 1000; i++) buffer.push((time += i % 2 === 0 ? 0.000901 : 0.001101), i % 13);
  const decimator = new Decimator(buffer);
  check(decimator, buffer, -Infinity, Infinity, 125, 'first call');
  const before = decimator.pointsRead;
  for (let call = 0; call < 100; call++) {
    buffer.push((time += call % 2 === 0 ? 0.000901 : 0.001101), call % 13);
    check(decimator, buffer, -Infinity, Infinity, 125, `call ${call}`);
  }
  assert.equal(decimator.width, 0.016);
  const read = decimator.pointsRead - before;
  assert.ok(read < 1000, `100 calls adding a point each read ${read} points`);
});

test('a buffer cleared and refilled between two calls is read afresh', () => {
  // More points than before and the same column width each time: only the newest point seen
  // (its value, then its time) tells that the buffer changed under the decimator.
  const buffer = new SeriesBuffer(1000);
  for (let i = 0; i < 100; i++) buffer.push(START + i * 0.01, i % 7);
  const decimator = new Decimator(buffer);
  check(decimator, buffer, -Infinity, Infinity, 100, 'before clear');
  buffer.clear();
  for (let i = 0; i < 150; i++) buffer.push(START + i * 0.01, (i * 3) % 11);
  check(decimator, buffer, -Infinity, Infinity, 100, 'refilled with other values');
  assert.equal(decimator.width, 0.016);
  buffer.clear();
  for (let i = 0; i < 160; i++) buffer.push(START + 5 + i * 0.01, (i * 3) % 11);
  check(decimator, buffer, -Infinity, Infinity, 100, 'refilled with the same values later');
  assert.equal(decimator.width, 0.016);
  buffer.clear();
  for (let i = 0; i < 20; i++) buffer.push(START + 9 + i * 0.01, i % 3);
  check(decimator, buffer, -Infinity, Infinity, 100, 'refilled with fewer points');
});

test('windows that grow to the left or shrink on the right stay exact', () => {
  const buffer = new SeriesBuffer(10_000);
  const points = source(51);
  points.push(buffer, 10_000);
  const end = points.time;
  const decimator = new Decimator(buffer);
  // 1 s to 1.55 s at 100 columns all take 16 ms columns; the window reaches further back each time.
  for (let span = 1; span < 1.575; span += 0.05) {
    check(decimator, buffer, end - span, end, 100, `last ${span} s`);
    assert.equal(decimator.width, 0.016);
  }
  for (let cut = 0; cut < 0.5; cut += 0.05) {
    check(decimator, buffer, end - 1.5, end - cut, 100, `ending ${cut} s early`);
    assert.equal(decimator.width, 0.016);
  }
});

test('an empty buffer or an empty window gives no points', () => {
  const buffer = new SeriesBuffer(100);
  const decimator = new Decimator(buffer);
  for (const [from, to] of [
    [-Infinity, Infinity],
    [START, START + 10],
  ]) {
    const { times, values } = decimator.points(from, to, 100);
    assert.equal(times.length, 0);
    assert.equal(values.length, 0);
    assert.ok(Number.isNaN(decimator.range().min) && Number.isNaN(decimator.range().max));
  }
  source(61).push(buffer, 50);
  const { times } = buffer.view();
  check(decimator, buffer, times[49] + 1, times[49] + 2, 100, 'after the newest point');
  check(decimator, buffer, times[0] - 2, times[0] - 1, 100, 'before the oldest point');
  check(decimator, buffer, times[10], times[5], 100, 'from after to');
  check(decimator, buffer, -Infinity, Infinity, 100, 'then all');
});

test('clear and setBudget between calls', () => {
  const buffer = new SeriesBuffer(3000);
  const points = source(71);
  points.push(buffer, 2000);
  const decimator = new Decimator(buffer);
  check(decimator, buffer, -Infinity, Infinity, 200, 'before clear');
  check(decimator, buffer, points.time - 1, points.time, 200, 'before clear, last second');

  buffer.clear();
  check(decimator, buffer, -Infinity, Infinity, 200, 'cleared');
  const again = source(72, points.time + 1);
  again.push(buffer, 100);
  check(decimator, buffer, -Infinity, Infinity, 200, 'refilled a little');

  // Cleared and refilled past the old total between two calls: the total alone went up.
  const sliding = new Decimator(buffer);
  check(sliding, buffer, again.time - 1, again.time, 200, 'before the second clear');
  buffer.clear();
  const third = source(73, again.time + 1);
  third.push(buffer, 2500);
  check(sliding, buffer, third.time - 1, third.time, 200, 'refilled past the old total');
  check(decimator, buffer, -Infinity, Infinity, 200, 'refilled, all');

  buffer.setBudget(700);
  check(sliding, buffer, third.time - 1, third.time, 200, 'budget shrunk');
  check(decimator, buffer, -Infinity, Infinity, 200, 'budget shrunk, all');
  third.push(buffer, 300);
  check(sliding, buffer, third.time - 1, third.time, 200, 'budget shrunk, more points');
  buffer.setBudget(5000);
  third.push(buffer, 3000);
  check(sliding, buffer, third.time - 1, third.time, 200, 'budget grown');
  check(decimator, buffer, -Infinity, Infinity, 200, 'budget grown, all');
});
