// FrameScheduler: coalesced frames, the 250 ms tick, the work record. The clock and the
// animation frames are the test's.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameScheduler, TICK_MS, FRAME_SAMPLES } from '../../src/frame-scheduler.js';

function setup(work = 0) {
  const clock = { now: 1000 };
  const queued = [];
  const intervals = [];
  const draws = [];
  const scheduler = new FrameScheduler(
    (now, tick) => {
      draws.push([now, tick]);
      clock.now += work;
    },
    {
      now: () => clock.now,
      requestAnimationFrame: (callback) => queued.push(callback),
      setInterval: (callback, ms) => intervals.push([callback, ms]),
    },
  );
  const runFrames = () => queued.splice(0).forEach((callback) => callback(clock.now));
  return { scheduler, clock, queued, intervals, draws, runFrames };
}

test('requests before a frame make one frame', () => {
  const { scheduler, queued, draws, runFrames } = setup();
  scheduler.request();
  scheduler.request();
  scheduler.request();
  assert.equal(queued.length, 1);
  runFrames();
  assert.equal(draws.length, 1);
  scheduler.request();
  assert.equal(queued.length, 1, 'a request after the frame asks for the next one');
});

test('nothing is drawn without a request', () => {
  const { queued, draws } = setup();
  assert.equal(queued.length, 0);
  assert.equal(draws.length, 0);
});

test('ticks come at most every TICK_MS', () => {
  const { scheduler, clock, draws, runFrames } = setup();
  // 1000 (first frame), 1016, 1032, 1282, 1298, 1531 (249 ms after the last tick), 1532.
  for (const step of [0, 16, 16, TICK_MS, 16, TICK_MS - 17, 1]) {
    clock.now += step;
    scheduler.request();
    runFrames();
  }
  assert.deepEqual(draws.map(([, tick]) => tick), [true, false, false, true, false, false, true]);
  assert.deepEqual(draws[0], [1000, true]);
});

test('the interval asks for a frame every TICK_MS', () => {
  const { scheduler, intervals, queued } = setup();
  scheduler.start();
  assert.equal(intervals.length, 1);
  assert.equal(intervals[0][1], TICK_MS);
  intervals[0][0]();
  assert.equal(queued.length, 1);
});

/** Lets the microtasks queued so far run. */
const microtasks = () => new Promise((resolve) => setTimeout(resolve, 0));

test('frame work durations are kept, the newest FRAME_SAMPLES of them', async () => {
  const { scheduler, runFrames } = setup(3);
  assert.deepEqual(scheduler.work(), { frames: 0, recent: [] });
  scheduler.request();
  runFrames();
  await microtasks();
  assert.deepEqual(scheduler.work(), { frames: 1, recent: [3] });
  for (let i = 0; i < FRAME_SAMPLES + 10; i++) {
    scheduler.request();
    runFrames();
    await microtasks();
  }
  const { frames, recent } = scheduler.work();
  assert.equal(frames, FRAME_SAMPLES + 11);
  assert.equal(recent.length, FRAME_SAMPLES);
});

test('a frame’s work includes what its draw left for a microtask (uPlot draws in one)', async () => {
  const clock = { now: 1000 };
  const queued = [];
  const scheduler = new FrameScheduler(
    () => {
      clock.now += 2;
      queueMicrotask(() => (clock.now += 5));
    },
    { now: () => clock.now, requestAnimationFrame: (callback) => queued.push(callback), setInterval: () => {} },
  );
  scheduler.request();
  queued.splice(0).forEach((callback) => callback(clock.now));
  await microtasks();
  assert.deepEqual(scheduler.work().recent, [7]);
});
