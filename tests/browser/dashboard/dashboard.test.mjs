// The dashboard end to end: a real gateway, Debian's Chromium, paho-mqtt and mosquitto_sub over
// TCP on the other side. Run by `cargo xtask test` (step "browser tests: dashboard") or by hand:
//   cargo xtask dist && cargo build -p gateway && node --test tests/browser/dashboard/
//
// Every test fails on console errors or uncaught exceptions in the page.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { startGateway, openBrowser, openDashboard, publish, snapshot, waitForSnapshot, screenshot, sleep } from './harness.mjs';

let gateway;
let browser;
let page;
let errors;

before(async () => {
  gateway = await startGateway();
  ({ browser, page, errors } = await openBrowser());
});

after(async () => {
  await browser?.close();
  if (gateway) {
    const code = await gateway.stop();
    gateway.cleanup();
    assert.equal(code, 0, 'the gateway exits 0 on SIGTERM');
  }
});

afterEach(() => {
  assert.deepEqual(errors.splice(0), [], 'no console errors');
});

test('JSON payloads plot one series per numeric field, appear in the log, and look right', async () => {
  await openDashboard(page, gateway, '/?sub=demo/%23');
  const count = 400;
  await publish(gateway, { topic: 'demo/sensor1', count, rate: 200, kind: 'json' });
  const state = await waitForSnapshot(
    page,
    (s) => s.series.filter((series) => series.topic === 'demo/sensor1' && series.total === count).length === 2,
    { what: `two series with ${count} points` },
  );
  const names = state.series.map((s) => s.name).sort();
  assert.deepEqual(names, ['demo/sensor1 hum', 'demo/sensor1 temp']);
  for (const series of state.series) {
    assert.equal(series.points, count, `${series.name} holds every point`);
    assert.notEqual(series.chart, null, `${series.name} is on a chart`);
  }
  assert.equal(state.received, count);
  assert.equal(state.subscriptions[0].count, count, 'the demo/# subscription counted every message');

  // The log shows the JSON, newest first; the topic tree holds the topic.
  const firstRow = page.locator('.log-row').first();
  await firstRow.waitFor();
  assert.match(await firstRow.locator('.payload').textContent(), /^\{"temp": [\d.]+, "hum": [\d.]+\}$/);
  assert.equal(await firstRow.locator('.topic').textContent(), 'demo/sensor1');
  assert.equal(await page.locator('#topic-tree [data-path="demo/sensor1"]').count(), 1);

  // Pretty JSON in the detail pane.
  await page.selectOption('#log-format', 'json');
  await firstRow.click();
  assert.match(await page.locator('#log-detail pre').textContent(), /^\{\n {2}"temp": /);

  // Grouped by field (the default), temp and hum get a chart each, titled by the field, its
  // canvas drawn (uPlot) and its series in its legend.
  for (const [id, field] of [
    [1, 'temp'],
    [2, 'hum'],
  ]) {
    assert.equal(await page.locator(`.chart[data-chart="${id}"] canvas`).count() >= 1, true);
    assert.equal(await page.locator(`.chart[data-chart="${id}"] .chart-title`).textContent(), field);
    assert.equal(await page.locator(`.chart[data-chart="${id}"] .chart-legend [data-series]`).count(), 1);
  }

  await page.locator('#series-panel summary').click();
  const path = await screenshot(page, 'dashboard-json', { fullPage: true });
  console.log(`screenshot: ${path}`);
});

test('plain numbers plot, other text is only logged', async () => {
  await publish(gateway, { topic: 'demo/number', count: 50, rate: 500, kind: 'number' });
  await publish(gateway, { topic: 'demo/text', count: 30, rate: 500, kind: 'text' });
  const state = await waitForSnapshot(page, (s) => s.series.some((x) => x.name === 'demo/number' && x.total === 50) && s.received >= 480, {
    what: 'the plain-number series and the text messages',
  });
  assert.ok(!state.series.some((s) => s.topic === 'demo/text'), 'no series for text payloads');
  const number = state.series.find((s) => s.name === 'demo/number');
  assert.equal(number.field, '');

  await page.fill('#log-filter', 'hello');
  await waitForSnapshot(page, (s) => s.logRows === 30, { what: 'the log filtered to the 30 text messages' });
  assert.equal(await page.locator('.log-row .topic').first().textContent(), 'demo/text');
  assert.equal(await page.locator('.log-row .payload').first().textContent(), 'hello 29');
  await page.fill('#log-filter', '');
  await waitForSnapshot(page, (s) => s.logRows === s.logged, { what: 'the filter cleared' });
});

test('a 10k msgs/s burst for 3 s: every message counted and plotted', async () => {
  // Frame intervals, long tasks and the JS heap during this burst are measured by
  // `cargo xtask bench --only browser` (bench/browser/dashboard.mjs), not asserted here.
  const before = await snapshot(page);
  const count = 30_000;
  await publish(gateway, { topic: 'demo/burst', count, rate: 10_000, kind: 'counter' });
  const state = await waitForSnapshot(page, (s) => s.received === before.received + count && s.series.some((x) => x.name === 'demo/burst v' && x.total === count), {
    timeoutMs: 30_000,
    what: `all ${count} burst messages`,
  });
  const burst = state.series.find((s) => s.name === 'demo/burst v');
  assert.equal(burst.points, count, 'every burst point is held (the budget is 100k)');
  assert.notEqual(burst.chart, null, 'the burst series is on a chart');
  assert.equal(state.subscriptions[0].count, before.subscriptions[0].count + count, 'the demo/# subscription counted every message');
  await screenshot(page, 'dashboard-burst', { fullPage: true });
});

test('the publish form reaches a mosquitto_sub over TCP', async () => {
  const subscriber = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(gateway.mqttPort), '-t', 'demo/from-dashboard', '-C', '1', '-W', '15', '-i', 'dashboard-test-sub']);
  let received = '';
  subscriber.stdout.on('data', (chunk) => (received += chunk));
  const exited = new Promise((resolve) => subscriber.on('exit', resolve));
  // Wait for its subscription to exist before publishing.
  const deadline = Date.now() + 10_000;
  for (;;) {
    const subscriptions = await (await fetch(`${gateway.url}/api/v1/subscriptions`)).json();
    if (subscriptions.some((s) => s.client_id === 'dashboard-test-sub')) break;
    assert.ok(Date.now() < deadline, 'mosquitto_sub subscribed');
    await sleep(50);
  }
  await page.fill('#publish-form [name=topic]', 'demo/from-dashboard');
  await page.fill('#publish-form [name=payload]', 'hello from the dashboard');
  await page.selectOption('#publish-form [name=qos]', '1');
  await page.click('#publish-form button[type=submit]');
  assert.equal(await exited, 0, 'mosquitto_sub got its message and exited');
  assert.equal(received.trim(), 'hello from the dashboard');
  await page.waitForFunction(() => document.getElementById('publish-result').textContent.startsWith('published'));
  const state = await snapshot(page);
  assert.equal(state.sent, 1);
});

test('the retained browser lists retained messages from the API', async () => {
  await page.fill('#publish-form [name=topic]', 'demo/retained/door');
  await page.fill('#publish-form [name=payload]', 'open');
  await page.check('#publish-form [name=retain]');
  await page.click('#publish-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('publish-result').textContent.startsWith('published to demo/retained/door'));
  await page.locator('#retained summary').click();
  await page.fill('#retained-form [name=filter]', 'demo/retained/#');
  await page.click('#retained-form button[type=submit]');
  const item = page.locator('#retained-list li[data-topic="demo/retained/door"]');
  await item.waitFor();
  assert.match(await item.textContent(), /open/);
  // The tree redraws a few times a second; the marker survives the live copy of the message.
  await page.locator('#topic-tree [data-path="demo/retained/door"] .retained').waitFor();

  // Clearing deletes it from the broker and from the tree's markers.
  await item.locator('button').click();
  await page.locator('#retained-list li[data-topic="demo/retained/door"]').waitFor({ state: 'detached' });
  await page.locator('#topic-tree [data-path="demo/retained/door"] .retained').waitFor({ state: 'detached' });
});

test('phone width and dark mode stay readable', async () => {
  const phone = await openBrowser({ width: 390, height: 844, colorScheme: 'dark' });
  try {
    await openDashboard(phone.page, gateway, '/?sub=demo/%23');
    await publish(gateway, { topic: 'demo/phone', count: 120, rate: 400, kind: 'json' });
    await waitForSnapshot(phone.page, (s) => s.series.filter((x) => x.topic === 'demo/phone' && x.total === 120).length === 2, {
      what: 'the phone page to plot',
    });
    const overflow = await phone.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal scrolling on a phone (${overflow}px too wide)`);
    await screenshot(phone.page, 'dashboard-phone-dark', { fullPage: true });
    assert.deepEqual(phone.errors, [], 'no console errors on the phone page');
  } finally {
    await phone.browser.close();
  }
});
