// Topic filter matching and validation, table-driven (MQTT 5.0 section 4.7).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { topicMatches, filterProblem, topicProblem } from '../../src/model/topic-filter.js';

const matches = [
  ['sensors/+/temp', 'sensors/a/temp', true],
  ['sensors/+/temp', 'sensors/a/b/temp', false],
  ['sensors/#', 'sensors', true],
  ['sensors/#', 'sensors/a/b', true],
  ['#', 'a/b', true],
  ['#', '$SYS/broker', false],
  ['+/broker', '$SYS/broker', false],
  ['$SYS/#', '$SYS/broker/uptime', true],
  ['a/b', 'a/b', true],
  ['a/b', 'a/b/c', false],
  ['a/+', 'a/', true],
  ['+', '/a', false],
  ['+/+', '/a', true],
  ['$share/group/a/+', 'a/x', true],
  ['$share/group/a/+', 'b/x', false],
];

for (const [filter, topic, expected] of matches) {
  test(`${filter} ${expected ? 'matches' : 'does not match'} ${topic}`, () => {
    assert.equal(topicMatches(filter, topic), expected);
  });
}

test('filter validation', () => {
  for (const good of ['#', 'a/+/b', 'a/#', '+', '$share/g/a/#', '/']) assert.equal(filterProblem(good), null, good);
  for (const bad of ['', 'a/#/b', 'a#', 'a/b+', 'a\u0000']) assert.notEqual(filterProblem(bad), null, bad);
});

test('topic validation', () => {
  assert.equal(topicProblem('a/b'), null);
  for (const bad of ['', 'a/+', 'a/#']) assert.notEqual(topicProblem(bad), null, bad);
});
