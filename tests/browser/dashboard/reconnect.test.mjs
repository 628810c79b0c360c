// The dashboard's connection states: across a gateway restart the status shows "reconnecting in
// N s" while the gateway is down, then connected again, and plotting resumes on the same series;
// a URL that is no MQTT endpoint shows "refused" with the reason.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startGateway, openBrowser, openDashboard, publish, waitForSnapshot, screenshot } from './harness.mjs';

/** What Chromium itself logs for a WebSocket that cannot connect while the gateway is down. */
const EXPECTED_WHILE_DOWN = /WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/mqtt' failed/;

test('a gateway restart shows the reconnecting state and plotting resumes', async () => {
  let gateway = await startGateway();
  const { browser, page, errors } = await openBrowser();
  try {
    await openDashboard(page, gateway, '/?sub=demo/%23');
    await publish(gateway, { topic: 'demo/restart', count: 100, rate: 200, kind: 'json' });
    await waitForSnapshot(page, (s) => s.series.some((x) => x.name === 'demo/restart temp' && x.total === 100), { what: '100 points before the restart' });

    const { mqttPort, httpPort, dataDir } = gateway;
    assert.equal(await gateway.stop(), 0);
    await waitForSnapshot(page, (s) => s.state === 'reconnecting', { what: 'the reconnecting state' });
    await page.waitForFunction(() => /^reconnecting/.test(document.getElementById('status-text').textContent));
    assert.equal(await page.getAttribute('#status', 'data-state'), 'reconnecting');
    await screenshot(page, 'dashboard-reconnecting');

    gateway = await startGateway({ dataDir, tcpPort: mqttPort, httpPort });
    await waitForSnapshot(page, (s) => s.state === 'connected', { timeoutMs: 30_000, what: 'the reconnection' });
    // The client resubscribes by itself; wait until the gateway knows the subscription again.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const subscriptions = await (await fetch(`${gateway.url}/api/v1/subscriptions`)).json();
      if (subscriptions.some((s) => s.filter === 'demo/#' && s.online)) break;
      assert.ok(Date.now() < deadline, 'the dashboard resubscribed after reconnecting');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await publish(gateway, { topic: 'demo/restart', count: 100, rate: 200, kind: 'json' });
    await waitForSnapshot(page, (s) => s.series.some((x) => x.name === 'demo/restart temp' && x.total === 200), { what: 'plotting to resume' });
    await screenshot(page, 'dashboard-reconnected');
  } finally {
    await browser.close();
    await gateway.stop();
    gateway.cleanup();
  }
  const unexpected = errors.filter((error) => !EXPECTED_WHILE_DOWN.test(error));
  assert.deepEqual(unexpected, [], 'no console errors besides the browser reporting the refused WebSocket');
});

test('a URL that is no MQTT endpoint shows refused with the reason', async () => {
  const gateway = await startGateway();
  const { browser, page, errors } = await openBrowser();
  try {
    const url = `ws://127.0.0.1:${gateway.httpPort}/not-mqtt`;
    await page.goto(`${gateway.url}/?url=${encodeURIComponent(url)}`);
    await page.waitForFunction(() => document.getElementById('status').dataset.state === 'refused');
    assert.match(await page.textContent('#status-text'), /^refused: .+/);
    assert.equal(await page.inputValue('#connection [name=url]'), url, 'the URL is shown for editing');
  } finally {
    await browser.close();
    await gateway.stop();
    gateway.cleanup();
  }
  // Chromium reports the failed handshake itself; nothing else may be logged.
  const unexpected = errors.filter((error) => !/WebSocket connection to '.*\/not-mqtt' failed/.test(error));
  assert.deepEqual(unexpected, []);
});
