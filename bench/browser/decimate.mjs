// The chart decimator's cost per frame, in Node (no browser): 40 series of 100,000 held points
// each, a frame every 1/60 s drawing the last 60 s at 1000 pixel columns, as the dashboard does.
// Two loads: 10,000 msg/s spread over the 40 series (about 4 new points per series per frame),
// and every series at 10,000 msg/s (170 new points each per frame). For scale, the same frame
// with a fresh decimator per series (a rebuild: what any decimation that rescans would pay).
// Prints one line, `decimate: {JSON}`, with microseconds per call (one series) and per frame.
//
// Usage: node bench/browser/decimate.mjs

import { SeriesBuffer } from '../../www/src/model/ring-buffer.js';
import { Decimator } from '../../www/src/model/decimate.js';

const SERIES = 40;
const HELD = 100_000;
const FRAME = 1 / 60;
const WINDOW = 60;
const COLUMNS = 1000;
const FRAMES = 600;

/** Runs `frames` frames with `perFrame` new points per series; returns microseconds per frame. */
function run(perFrame, frames, rebuild) {
  const rate = perFrame / FRAME;
  let now = 1_700_000_000;
  let seed = 1;
  const value = () => (seed = (seed * 16807) % 2147483647) % 1000;
  const buffers = [];
  for (let s = 0; s < SERIES; s++) {
    const buffer = new SeriesBuffer(HELD);
    for (let i = 0; i < HELD; i++) buffer.push(now - (HELD - i) / rate, value());
    buffers.push(buffer);
  }
  let decimators = buffers.map((buffer) => new Decimator(buffer));
  for (const decimator of decimators) decimator.points(now - WINDOW, now, COLUMNS);
  let elapsed = 0n;
  let drawn = 0;
  for (let frame = 0; frame < frames; frame++) {
    for (const buffer of buffers) {
      for (let i = 0; i < perFrame; i++) buffer.push(now + (i + 1) / rate, value());
    }
    now += FRAME;
    const began = process.hrtime.bigint();
    if (rebuild) decimators = buffers.map((buffer) => new Decimator(buffer));
    for (const decimator of decimators) {
      drawn += decimator.points(now - WINDOW, now, COLUMNS).times.length;
      decimator.range();
    }
    elapsed += process.hrtime.bigint() - began;
  }
  const frameMicroseconds = Number(elapsed) / 1000 / frames;
  return {
    newPointsPerSeries: perFrame,
    callMicroseconds: round(frameMicroseconds / SERIES),
    frameMicroseconds: round(frameMicroseconds),
    pointsDrawnPerSeries: Math.round(drawn / frames / SERIES),
  };
}

const round = (x) => Math.round(x * 100) / 100;

const spread = Math.round(10_000 * FRAME / SERIES);
const results = {
  series: SERIES,
  held: HELD,
  columns: COLUMNS,
  spread: run(spread, FRAMES, false),
  everySeriesAt10k: run(Math.round(10_000 * FRAME), FRAMES, false),
  rebuildEveryFrame: run(Math.round(10_000 * FRAME), 20, true),
};
console.log(`decimate: ${JSON.stringify(results)}`);
