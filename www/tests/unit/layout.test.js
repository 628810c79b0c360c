// The plot layout: default grouping keys and the `layout=` link encoding.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { groupKey, encodeLayout, decodeLayout, MAX_LAYOUT_LENGTH } from '../../src/model/layout.js';

const series = (topic, field) => ({ topic, field });

test('by field, JSON fields group by their path and plain numbers by the topic last level', () => {
  assert.equal(groupKey(series('home/kitchen', 'temp'), 'field'), 'temp');
  assert.equal(groupKey(series('home/hall', 'env.co2'), 'field'), 'env.co2');
  assert.equal(groupKey(series('sensors/a/temp', ''), 'field'), 'temp');
  assert.equal(groupKey(series('temp', ''), 'field'), 'temp');
  assert.equal(groupKey(series('sensors/a/', ''), 'field'), '');
  // So a JSON temp and a plain-number temp plot together.
  assert.equal(groupKey(series('home/kitchen', 'temp'), 'field'), groupKey(series('sensors/b/temp', ''), 'field'));
});

test('by topic, every field of a topic groups together', () => {
  assert.equal(groupKey(series('home/kitchen', 'temp'), 'topic'), 'home/kitchen');
  assert.equal(groupKey(series('home/kitchen', 'env.co2'), 'topic'), 'home/kitchen');
  assert.equal(groupKey(series('sensors/a/temp', ''), 'topic'), 'sensors/a/temp');
});

const layout = {
  v: 1,
  mode: 'topic',
  window: 600,
  paused: true,
  charts: [
    [
      ['home/kitchen', 'temp'],
      ['home/kitchen', 'hum'],
    ],
    [['sensors/a,"b"/ü', '']],
    [],
  ],
  hidden: [['home/hall', 'env.co2']],
};

test('a layout survives encoding, and the encoding is URL-safe', () => {
  const encoded = encodeLayout(layout);
  assert.match(encoded, /^[A-Za-z0-9_-]+$/);
  assert.deepEqual(decodeLayout(encoded), layout);
  // Through a real query string too.
  const params = new URLSearchParams(`?sub=home%2F%23&layout=${encoded}`);
  assert.deepEqual(decodeLayout(params.get('layout')), layout);
});

const encodeJson = (text) => Buffer.from(text, 'utf8').toString('base64url');

test('malformed layouts decode to null', () => {
  const bad = [
    null,
    '',
    '!!!',
    'a b',
    encodeJson('not json'),
    encodeJson('[]'),
    encodeJson('null'),
    Buffer.from([0xff, 0xfe, 0x7b]).toString('base64url'),
    encodeLayout({ ...layout, v: 2 }),
    encodeLayout({ ...layout, mode: 'room' }),
    encodeLayout({ ...layout, window: -1 }),
    encodeLayout({ ...layout, window: 1.5 }),
    encodeLayout({ ...layout, window: '60' }),
    encodeLayout({ ...layout, window: 8 * 24 * 3600 }),
    encodeLayout({ ...layout, paused: 'yes' }),
    encodeLayout({ ...layout, charts: {} }),
    encodeLayout({ ...layout, charts: [[['a']]] }),
    encodeLayout({ ...layout, charts: [[['a', 1]]] }),
    encodeLayout({ ...layout, charts: [[['', 'temp']]] }),
    encodeLayout({ ...layout, charts: [['a', 'temp']] }),
    encodeLayout({ ...layout, hidden: undefined }),
    encodeLayout({ ...layout, charts: Array.from({ length: 65 }, () => []) }),
    encodeLayout({ ...layout, hidden: Array.from({ length: 1001 }, (_, i) => [`t${i}`, '']) }),
    'A'.repeat(MAX_LAYOUT_LENGTH + 4),
  ];
  for (const text of bad) assert.equal(decodeLayout(text), null, `rejects ${String(text).slice(0, 60)}`);
});

test('unknown extra keys are dropped, not carried', () => {
  const decoded = decodeLayout(encodeLayout({ ...layout, extra: 'x' }));
  assert.deepEqual(Object.keys(decoded).sort(), ['charts', 'hidden', 'mode', 'paused', 'v', 'window']);
  assert.deepEqual(decoded, layout);
});
