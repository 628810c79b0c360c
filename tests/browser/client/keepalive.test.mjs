// Keep alive of the client-wasm package in Chromium against a real gateway, on an idle
// connection: PINGREQs alone keep it open (the gateway closes a connection that is silent for
// 1.5 times its keep alive), and a gateway that stops answering while its TCP connection stays
// open (SIGSTOP to the process this test started) is noticed through the keep alive, reported
// by a `close` event with KEEPALIVE_TIMEOUT, and reconnected to once it runs again (SIGCONT).
//
// Environment: see support.mjs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import mqtt from 'mqtt';
import { buildScratchApp, launchChromium, openPage, serve, sleep, startGateway, waitFor } from './support.mjs';

const KEEPALIVE_SECONDS = 2;

let gateway;
let app;
let server;
let browser;

before(async () => {
  gateway = await startGateway();
  app = await buildScratchApp();
  server = await serve(app.dist);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.close();
  await gateway?.stop();
  if (app) rmSync(app.work, { recursive: true, force: true });
});

/** A page whose client is connected as `clientId` with a keep alive of 2 s. */
async function connectedPage(clientId, options = {}) {
  const { page, errors } = await openPage(browser, server, 'index.html');
  await page.waitForFunction(() => window.harness !== undefined);
  const connectOptions = { clientId, protocolVersion: 5, keepalive: KEEPALIVE_SECONDS, reconnect: { minDelayMs: 200, maxDelayMs: 1000 }, ...options };
  assert.equal(await page.evaluate(([url, options]) => window.harness.connect(url, options), [gateway.wsUrl, connectOptions]), 'connected');
  return { page, errors };
}

/** The gateway's view of client `id` (`/api/v1/clients/{id}`), or null when not connected. */
async function clientInfo(id) {
  const response = await fetch(`${gateway.httpUrl}/api/v1/clients/${id}`);
  return response.status === 200 ? response.json() : null;
}

/** The gateway's `mqtt_packets_received_total`. */
async function packetsReceived() {
  const text = await (await fetch(`${gateway.httpUrl}/metrics`)).text();
  return Number(text.match(/^mqtt_packets_received_total (\d+)$/m)[1]);
}

const events = (page) => page.evaluate(() => window.harness.events);

test('an idle client stays connected on PINGREQs alone, on one connection, for more than 3 keep alives', { timeout: 60_000 }, async () => {
  const { page, errors } = await connectedPage('pw-idle');
  const before = await clientInfo('pw-idle');
  assert.equal(before.keep_alive, KEEPALIVE_SECONDS);
  const packetsBefore = await packetsReceived();
  // Silence but for the keep alive: the gateway would close the connection after 1.5 keep
  // alives without a packet.
  await sleep(3.5 * KEEPALIVE_SECONDS * 1000);
  assert.deepEqual(await events(page), [], 'no close, reconnect or error');
  assert.equal(await page.evaluate(() => window.harness.state()), 'connected');
  const now = await clientInfo('pw-idle');
  assert.deepEqual(
    { address: now.address, connected_since: now.connected_since },
    { address: before.address, connected_since: before.connected_since },
    'the same connection (peer address and CONNECT time) as before',
  );
  // Nothing but PINGREQs came from the only client meanwhile.
  assert.ok((await packetsReceived()) > packetsBefore, 'the client sent PINGREQs');
  await page.evaluate(() => window.harness.end());
  assert.deepEqual(errors, []);
  await page.close();
});

test('a gateway frozen with SIGSTOP (TCP open, no PINGRESP) is noticed by the keep alive, and reconnected to after SIGCONT', { timeout: 60_000 }, async () => {
  // Attempts against the frozen gateway get a TCP connection but never a CONNACK: they fail
  // after connectTimeoutMs and the backoff tries again.
  const { page, errors } = await connectedPage('pw-frozen', { connectTimeoutMs: 2_000 });
  assert.deepEqual(await page.evaluate(() => window.harness.subscribe('ka/frozen', { qos: 1 })), { qos: 1, reasonCode: 1 });
  const before = await clientInfo('pw-frozen');
  let frozen = false;
  try {
    gateway.kill('SIGSTOP');
    frozen = true;
    const stoppedAt = Date.now();
    // The bound is a timeout, generous for a 2 s keep alive (the verdict is due 1.5 keep alives
    // after the last packet received; the time it took is printed).
    const closed = await waitFor('the client to notice', async () => (await events(page)).find((event) => event.type === 'close'), 5 * KEEPALIVE_SECONDS * 1000);
    console.log(`the client noticed the frozen gateway after ${closed.at - stoppedAt} ms (keep alive ${KEEPALIVE_SECONDS} s)`);
    assert.equal(closed.code, 'KEEPALIVE_TIMEOUT');
    assert.equal(closed.reconnect, true);
    await waitFor('the reconnect event', async () => (await events(page)).some((event) => event.type === 'reconnect'));
    assert.equal(await page.evaluate(() => window.harness.state()), 'reconnecting');
    assert.ok(!(await events(page)).some((event) => event.type === 'connect'), 'no connection while the gateway is frozen');
  } finally {
    if (frozen) gateway.kill('SIGCONT');
  }
  const connected = await waitFor('the reconnect to succeed', async () => (await events(page)).find((event) => event.type === 'connect'), 20_000);
  assert.equal(await page.evaluate(() => window.harness.state()), 'connected');
  assert.equal(typeof connected.sessionPresent, 'boolean');
  const after = await waitFor('the gateway to list the new connection', async () => {
    const info = await clientInfo('pw-frozen');
    // Subscribed again too, if the gateway had not kept the session.
    return info && info.address !== before.address && info.subscriptions === 1 && info;
  });
  assert.equal(after.keep_alive, KEEPALIVE_SECONDS);
  // Messages flow again (the client subscribed again if the session was not kept).
  const tcp = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'ka-frozen-tcp', protocolVersion: 5, reconnectPeriod: 0 });
  await tcp.publishAsync('ka/frozen', 'after the freeze', { qos: 1 });
  await waitFor('the message in the page', () => page.evaluate(() => window.harness.messages.some((message) => message.text === 'after the freeze')));
  await tcp.endAsync();
  await page.evaluate(() => window.harness.end());
  // Chromium reports the attempts that timed out against the frozen gateway itself.
  assert.deepEqual(
    errors.filter((error) => !error.includes(`WebSocket connection to '${gateway.wsUrl}' failed`)),
    [],
  );
  await page.close();
});
