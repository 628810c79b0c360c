// Charts take turns under a busy stream: at most every REDRAW_MS each, at most half per frame.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chartsToDraw, REDRAW_MS } from '../../src/ui/redraw.js';

/** Frames at 60 Hz where every chart always has something new; returns each chart's draw times. */
function simulate(count, frames) {
  const charts = Array.from({ length: count }, (_, id) => ({ id, lastDraw: -Infinity, draws: [] }));
  for (let frame = 0; frame < frames; frame++) {
    const now = frame * (1000 / 60);
    const drawn = chartsToDraw(charts, now, () => true);
    assert.ok(drawn.length <= Math.max(1, Math.ceil(count / 2)), `frame ${frame}: at most half the charts`);
    for (const chart of drawn) {
      chart.lastDraw = now;
      chart.draws.push(now);
    }
  }
  return charts;
}

test('two busy charts alternate, each at 30 redraws a second', () => {
  const charts = simulate(2, 60);
  for (const chart of charts) assert.equal(chart.draws.length, 30, `chart ${chart.id}`);
  const first = new Set(charts[0].draws);
  assert.ok(charts[1].draws.every((time) => !first.has(time)), 'never in the same frame');
});

test('one busy chart draws every other frame; eight take turns four at a time', () => {
  assert.equal(simulate(1, 60)[0].draws.length, 30);
  for (const chart of simulate(8, 60)) assert.equal(chart.draws.length, 30, `chart ${chart.id}`);
});

test('a chart with nothing new is not drawn, and a quiet chart draws at once when something arrives', () => {
  const quiet = { lastDraw: 0 };
  const busy = { lastDraw: 0 };
  assert.deepEqual(chartsToDraw([quiet, busy], REDRAW_MS, (chart) => chart === busy), [busy]);
  assert.deepEqual(chartsToDraw([quiet, busy], REDRAW_MS - 1, () => true), [], 'too soon after the last draw');
  const fresh = { lastDraw: -Infinity };
  assert.deepEqual(chartsToDraw([busy, fresh], REDRAW_MS, () => true), [fresh], 'the longest waiting first');
});
