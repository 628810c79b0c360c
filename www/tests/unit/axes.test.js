// The second y-axis rule: split at the widest gap in log magnitude beyond SPLIT_RATIO, with
// hysteresis around it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitAxes, LEFT, RIGHT, SPLIT_RATIO, HYSTERESIS } from '../../src/model/axes.js';

test('alike magnitudes share the left axis', () => {
  assert.deepEqual(splitAxes([21.5, 54], []), [LEFT, LEFT]);
  assert.deepEqual(splitAxes([1, 2, 3, 4], []), [LEFT, LEFT, LEFT, LEFT]);
  assert.deepEqual(splitAxes([-3, 9], []), [LEFT, LEFT]);
});

test('temp and hum on the left, CO2 on the right', () => {
  assert.deepEqual(splitAxes([21.5, 54, 400], []), [LEFT, LEFT, RIGHT]);
  assert.deepEqual(splitAxes([400, 21.5, 54], [undefined, undefined, undefined]), [RIGHT, LEFT, LEFT]);
});

test('the split is at the widest gap', () => {
  // 1, 2 | 100, 150, 1000: the gap 2 -> 100 (50x) is wider than 150 -> 1000 (6.7x).
  assert.deepEqual(splitAxes([1, 2, 100, 150, 1000], []), [LEFT, LEFT, RIGHT, RIGHT, RIGHT]);
});

test('series without points in view keep their axis, else go left', () => {
  assert.deepEqual(splitAxes([0, 20, 400], [RIGHT, LEFT, RIGHT]), [RIGHT, LEFT, RIGHT]);
  assert.deepEqual(splitAxes([0, 20, 400], []), [LEFT, LEFT, RIGHT]);
  assert.deepEqual(splitAxes([0, 0], []), [LEFT, LEFT]);
  assert.deepEqual(splitAxes([NaN, 5], [RIGHT, LEFT]), [LEFT, LEFT], 'one group: no right axis left over');
  assert.deepEqual(splitAxes([], []), []);
});

test('hysteresis: a split stays until the gap closes well below the threshold', () => {
  const split = [LEFT, RIGHT];
  const whole = [LEFT, LEFT];
  const justBelow = SPLIT_RATIO * 0.95;
  const wellBelow = (SPLIT_RATIO / HYSTERESIS) * 0.95;
  const justAbove = SPLIT_RATIO * 1.05;
  const wellAbove = SPLIT_RATIO * HYSTERESIS * 1.05;
  // From nothing, the threshold itself decides.
  assert.deepEqual(splitAxes([1, justBelow], []), whole);
  assert.deepEqual(splitAxes([1, justAbove], []), split);
  // Split: stays split just below, joins well below.
  assert.deepEqual(splitAxes([1, justBelow], split), split);
  assert.deepEqual(splitAxes([1, wellBelow], split), whole);
  // Whole: stays whole just above, splits well above.
  assert.deepEqual(splitAxes([1, justAbove], whole), whole);
  assert.deepEqual(splitAxes([1, wellAbove], whole), split);
});

test('a series drifting across the threshold back and forth does not flap', () => {
  let axes = [];
  const seen = [];
  for (let step = 0; step < 40; step++) {
    const ratio = SPLIT_RATIO * (1 + 0.1 * Math.sin(step / 3));
    axes = splitAxes([10, 10 * ratio], axes);
    seen.push(axes[1]);
  }
  const changes = seen.filter((axis, i) => i > 0 && axis !== seen[i - 1]).length;
  assert.ok(changes <= 1, `the axis changed ${changes} times`);
});

test('a new series joins by the fresh rule; a kept split is re-evaluated when it no longer fits', () => {
  // A third series far above both groups: re-split at the widest gap.
  assert.deepEqual(splitAxes([20, 400, 1e6], [LEFT, RIGHT, undefined]), [LEFT, LEFT, RIGHT]);
  // The right group drifted down to the left one's level: one axis again.
  assert.deepEqual(splitAxes([20, 30], [LEFT, RIGHT]), [LEFT, LEFT]);
  // A right axis with nothing on the left moves to the left.
  assert.deepEqual(splitAxes([400, 450], [RIGHT, RIGHT]), [LEFT, LEFT]);
});
