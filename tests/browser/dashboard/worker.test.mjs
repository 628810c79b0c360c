// The dashboard's ingestion off the main thread: the MQTT client (client-wasm) runs in a Web
// Worker, which hands the page one batch per animation frame. Checked end to end against the
// real gateway and paho publishers over TCP: the page's own thread never instantiates the
// WebAssembly client, the worker exists, and a 10,000 msg/s stream over 20 topics (40 series)
// arrives complete, in batches (far fewer than messages), with nothing dropped.
// Run by `cargo xtask test` with the other dashboard tests, or:
//   node --test tests/browser/dashboard/worker.test.mjs

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, openBrowser, openDashboard, publish, snapshot, waitForSnapshot, screenshot } from './harness.mjs';

let gateway;
let browser;
let page;
let errors;

before(async () => {
  gateway = await startGateway();
  ({ browser, page, errors } = await openBrowser());
  // Counts WebAssembly instantiations on the page's own thread (the worker has its own globals).
  await page.addInitScript(() => {
    window.__mainThreadWasm = 0;
    for (const name of ['instantiate', 'instantiateStreaming', 'compile', 'compileStreaming']) {
      const original = WebAssembly[name];
      WebAssembly[name] = function (...args) {
        window.__mainThreadWasm += 1;
        return original.apply(this, args);
      };
    }
  });
});

after(async () => {
  await browser?.close();
  if (gateway) {
    await gateway.stop();
    gateway.cleanup();
  }
});

afterEach(() => {
  assert.deepEqual(errors.splice(0), [], 'no console errors');
});

test('the MQTT client runs in a worker, not on the page’s thread', async () => {
  await openDashboard(page, gateway, '/?sub=load/%23');
  const workers = page.workers().map((worker) => worker.url());
  assert.equal(workers.filter((url) => /\/assets\/ingest-worker-[\w-]+\.js$/.test(url)).length, 1, `one ingest worker among ${JSON.stringify(workers)}`);
  assert.equal(await page.evaluate(() => window.__mainThreadWasm), 0, 'no WebAssembly instantiated on the page’s thread');
});

test('10,000 msg/s over 20 topics arrive complete, in per-frame batches, nothing dropped', async () => {
  const topics = 20;
  const perTopic = 1500;
  const before = await snapshot(page);
  const beforeIngest = await page.evaluate(() => window.__dashboard.ingest());
  // 20 paho publishers at 500 msg/s each: 10,000 msg/s for 3 s in all.
  await Promise.all(
    Array.from({ length: topics }, (_, i) => publish(gateway, { topic: `load/room${String(i + 1).padStart(2, '0')}`, count: perTopic, rate: 500, kind: 'json' })),
  );
  const total = topics * perTopic;
  const state = await waitForSnapshot(page, (s) => s.received === before.received + total, { timeoutMs: 30_000, what: `all ${total} messages` });
  const load = state.series.filter((s) => s.topic.startsWith('load/'));
  assert.equal(load.length, 2 * topics, 'temp and hum of every room');
  for (const series of load) assert.equal(series.total, perTopic, `${series.name} got every point`);
  assert.equal(state.subscriptions[0].count, before.subscriptions[0].count + total, 'the load/# subscription counted every message');
  assert.equal(state.logged, before.logged + total, 'the log recorded every message');
  const ingest = await page.evaluate(() => window.__dashboard.ingest());
  const batches = ingest.batches - beforeIngest.batches;
  assert.equal(ingest.dropped, 0, 'the worker dropped nothing');
  assert.ok(batches > 0 && batches < total / 20, `${total} messages came in ${batches} batches`);
  await screenshot(page, 'worker-load', { fullPage: true });
});
