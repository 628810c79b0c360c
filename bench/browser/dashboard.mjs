// The dashboard under a burst, for `cargo xtask bench` (browser part): a gateway with the
// dashboard embedded, the dashboard in Chromium (through Playwright, for the DevTools metrics)
// subscribed to `demo/#`, and an MQTT.js publisher over TCP sending 30,000 counter messages
// ({"v": i}) at 10,000 msg/s. Measured from the first message to the moment the page counted the
// last: the intervals between animation frames, the page's own frame work, long tasks, and the
// JS heap after a full garbage collection. Prints one line, `dashboard: {JSON}`, and exits 0;
// exits 1 when the page did not count every message within 30 s.
//
// Usage: node bench/browser/dashboard.mjs (GATEWAY_BIN: a gateway that embeds www/dist;
// CHROMIUM). Browser and harness as in tests/browser/dashboard.

import mqtt from 'mqtt';
import { openBrowser, openDashboard, snapshot, startGateway, waitForSnapshot } from '../../tests/browser/dashboard/harness.mjs';

const COUNT = 30_000;
const RATE = 10_000;

/** Publishes `COUNT` messages to `topic` paced by the clock (message i due at i / RATE s). */
async function publishBurst(gateway, topic) {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${gateway.mqttPort}`, { clientId: 'bench-dashboard-publisher', reconnectPeriod: 0 });
  const started = performance.now();
  let index = 0;
  while (index < COUNT) {
    const due = Math.min(COUNT, Math.floor(((performance.now() - started) / 1000) * RATE) + 1);
    for (; index < due; index++) client.publish(topic, JSON.stringify({ v: index }));
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  // Behind every message on the same connection: once acknowledged, all were written.
  await client.publishAsync('bench/done', 'done', { qos: 1 });
  await client.endAsync();
  return (performance.now() - started) / 1000;
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

const gateway = await startGateway();
const { browser, context, page } = await openBrowser();
try {
  await openDashboard(page, gateway, '/?sub=demo/%23');
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  await page.evaluate(() => {
    window.__frameDeltas = [];
    window.__longTasks = [];
    window.__measuring = true;
    let last = performance.now();
    const loop = (now) => {
      window.__frameDeltas.push(now - last);
      last = now;
      if (window.__measuring) requestAnimationFrame(loop);
    };
    requestAnimationFrame(loop);
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
    }).observe({ type: 'longtask' });
  });
  const started = Date.now();
  const publishSeconds = await publishBurst(gateway, 'demo/burst');
  const published = Date.now();
  await waitForSnapshot(page, (s) => s.received === COUNT && s.series.some((x) => x.name === 'demo/burst v' && x.total === COUNT), {
    timeoutMs: 30_000,
    what: `all ${COUNT} burst messages`,
  });
  const caughtUp = Date.now();
  const frames = await page.evaluate(() => {
    window.__measuring = false;
    return { deltas: window.__frameDeltas, longTasks: window.__longTasks };
  });
  await cdp.send('HeapProfiler.collectGarbage');
  const { metrics } = await cdp.send('Performance.getMetrics');
  const heap = metrics.find((metric) => metric.name === 'JSHeapUsedSize').value;
  const work = await page.evaluate(() => window.__dashboard.frameWork());
  const state = await snapshot(page);

  const deltas = frames.deltas.slice(1).sort((a, b) => a - b);
  const recentWork = work.recent.slice().sort((a, b) => a - b);
  const report = {
    messages: COUNT,
    rate: RATE,
    publish_seconds: publishSeconds,
    caught_up_seconds_after_publisher: (caughtUp - published) / 1000,
    seconds: (caughtUp - started) / 1000,
    frames: deltas.length,
    frame_interval_ms: { p50: quantile(deltas, 0.5), p95: quantile(deltas, 0.95), p99: quantile(deltas, 0.99), max: deltas.at(-1) },
    frames_over_50ms: deltas.filter((delta) => delta > 50).length,
    frame_work_ms: { p50: quantile(recentWork, 0.5), p95: quantile(recentWork, 0.95), max: recentWork.at(-1) },
    long_tasks: frames.longTasks.length,
    longest_task_ms: Math.max(0, ...frames.longTasks),
    js_heap_mib: Math.round((heap / 1048576) * 10) / 10,
    points_held: state.series.find((series) => series.name === 'demo/burst v').points,
  };
  console.log(`dashboard: ${JSON.stringify(report)}`);
} finally {
  await browser.close();
  await gateway.stop();
  gateway.cleanup();
}
