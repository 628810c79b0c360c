// The dashboard on one node of a cluster, a device on another: two gateways joined through
// Debian's nats-server (started here on a free loopback port). The page names the node it
// reached, and plots what a paho publisher sends to the other node.
//   cargo xtask dist && cargo build -p gateway && node --test tests/browser/dashboard/cluster.test.mjs

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { startGateway, openBrowser, openDashboard, publish, snapshot, waitForSnapshot, screenshot, sleep } from './harness.mjs';

let nats;
let natsUrl;
const nodes = [];
let browser;
let page;
let errors;

/** A free loopback port. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts connections on `port` (at most 10 s). */
async function listening(port) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const open = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    assert.ok(Date.now() < deadline, 'nats-server listens within 10 s');
    await sleep(50);
  }
}

before(async () => {
  const port = await freePort();
  nats = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  await listening(port);
  natsUrl = `nats://127.0.0.1:${port}`;
  for (const name of ['a', 'b']) nodes.push(await startGateway({ args: ['--cluster', natsUrl, '--node-name', name] }));
  ({ browser, page, errors } = await openBrowser());
});

after(async () => {
  await browser?.close();
  for (const node of nodes) {
    await node.stop();
    node.cleanup();
  }
  nats?.kill();
});

afterEach(() => {
  assert.deepEqual(errors.splice(0), [], 'no console errors');
});

test('the page names its node and plots what a device sends to another node', async () => {
  const [a, b] = nodes;
  await openDashboard(page, a, '/?sub=sensors/%23');
  await page.waitForFunction(() => document.getElementById('status-text').textContent === 'connected to node a (MQTT 5.0)');

  // The page's subscription reaches node b through NATS a moment after its SUBACK: probe until
  // the page sees one.
  const deadline = Date.now() + 15_000;
  while ((await snapshot(page)).received === 0) {
    assert.ok(Date.now() < deadline, 'a message published on b reached the page on a within 15 s');
    await publish(b, { topic: 'sensors/probe', count: 1, rate: 10, kind: 'counter' });
  }
  const count = 60;
  await publish(b, { topic: 'sensors/kitchen', count, rate: 200, kind: 'json' });
  const state = await waitForSnapshot(page, (s) => s.series.filter((x) => x.topic === 'sensors/kitchen' && x.total === count).length === 2, {
    what: `temp and hum of sensors/kitchen, ${count} points each, from node b`,
  });
  assert.deepEqual(state.series.filter((x) => x.topic === 'sensors/kitchen').map((x) => x.name).sort(), ['sensors/kitchen hum', 'sensors/kitchen temp']);
  await screenshot(page, 'cluster-node-a', { fullPage: true });
});
