// numericFields: which payloads plot, and under which field names.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { numericFields, MAX_FIELDS } from '../../src/model/numeric.js';

const cases = [
  ['21.5', [['', 21.5]]],
  [' -3e2\n', [['', -300]]],
  ['.5', [['', 0.5]]],
  ['+7', [['', 7]]],
  ['0', [['', 0]]],
  ['{"temp": 21.5, "hum": 40}', [['temp', 21.5], ['hum', 40]]],
  ['{"env": {"temp": 1, "ok": true, "name": "x"}, "n": null}', [['env.temp', 1]]],
  ['[1, 2, {"v": 3}]', [['[0]', 1], ['[1]', 2], ['[2].v', 3]]],
  ['{"readings": [4, 5]}', [['readings[0]', 4], ['readings[1]', 5]]],
  ['{"s": "21.5"}', []],
  ['hello', []],
  ['21.5 degrees', []],
  ['', []],
  ['{broken', []],
  ['true', []],
  ['NaN', []],
  ['Infinity', []],
  ['1e999', []],
  ['0x10', []],
];

for (const [payload, expected] of cases) {
  test(`numericFields(${JSON.stringify(payload)})`, () => {
    assert.deepEqual(numericFields(payload), expected);
  });
}

test('fields and depth are bounded', () => {
  const wide = JSON.stringify(Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`f${i}`, i])));
  assert.equal(numericFields(wide).length, MAX_FIELDS);
  let deep = '1';
  for (let i = 0; i < 20; i++) deep = `{"a": ${deep}}`;
  assert.deepEqual(numericFields(deep), []);
});
