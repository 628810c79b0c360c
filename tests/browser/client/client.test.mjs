// The client-wasm npm package as users consume it: `npm pack` of client-wasm/pkg installed into
// a scratch application, bundled by Vite, served over HTTP and run in Debian's Chromium
// (through playwright-core) against a real gateway, exchanging messages with an MQTT.js client
// over TCP.
//
// Environment: see support.mjs. The authentication tests are in auth.test.mjs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { buildScratchApp, launchChromium, openPage as open, packageDir, serve, sleep, startGateway, waitFor } from './support.mjs';

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

const openPage = (path) => open(browser, server, path);

async function tcpClient(clientId) {
  const client = await mqtt.connectAsync(gateway.mqttUrl, { clientId, protocolVersion: 5, reconnectPeriod: 0 });
  const messages = [];
  client.on('message', (topic, payload, packet) => messages.push({ topic, text: payload.toString(), qos: packet.qos }));
  return { client, messages };
}

const byTopic = (a, b) => a.topic.localeCompare(b.topic);

test('the package ships ESM glue, types, the optimised wasm and a README', () => {
  for (const file of ['package.json', 'client_wasm.js', 'client_wasm.d.ts', 'client_wasm_bg.wasm', 'README.md']) {
    assert.ok(app.files.includes(file), `${file} is in the tarball (${app.files.join(', ')})`);
  }
  // The glue and support.js are bundled into client_wasm.js.
  assert.ok(!app.files.some((file) => file.startsWith('snippets/')), 'no separate JS snippets are in the tarball');
  const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
  assert.equal(manifest.name, 'client-wasm');
  assert.equal(manifest.type, 'module');
  assert.equal(manifest.types, './client_wasm.d.ts');
  assert.ok(manifest.exports['.'].import);
  const types = readFileSync(join(packageDir, 'client_wasm.d.ts'), 'utf8');
  for (const declaration of ['class MqttClient', 'static connect(url: string, options?: ConnectOptions', 'interface MqttClientEventMap', 'subscribe(filter: string', 'credentials?: () =>', 'onAuth?: (', 'reauthenticate(data?', '"BAD_CREDENTIALS"', '"NOT_AUTHORIZED"', '"CREDENTIALS_FAILED"']) {
    assert.ok(types.includes(declaration), `the .d.ts declares ${declaration}`);
  }
});

test('a Vite-bundled page exchanges QoS 0/1/2 with a TCP client across a forced reconnect', { timeout: 60_000 }, async () => {
  const { page, errors } = await openPage('index.html');
  await page.waitForFunction(() => window.harness !== undefined);
  const state = await page.evaluate(
    ([url]) => window.harness.connect(url, { clientId: 'pw-client', protocolVersion: 5, keepalive: 10, reconnect: { minDelayMs: 200, maxDelayMs: 1000 } }),
    [gateway.wsUrl],
  );
  assert.equal(state, 'connected');
  const granted = await page.evaluate(() => window.harness.subscribe('pw/to-browser/#', { qos: 2 }));
  assert.deepEqual(granted, { qos: 2, reasonCode: 2 });
  const tcp = await tcpClient('pw-tcp');
  await tcp.client.subscribeAsync('pw/to-tcp/#', { qos: 2 });

  const pageMessages = () => page.evaluate(() => window.harness.messages);
  const expected = (prefix, text) => [0, 1, 2].map((qos) => ({ topic: `${prefix}/q${qos}`, text: `${text} ${qos}`, qos }));

  // Round 1: both directions at every QoS.
  for (const qos of [0, 1, 2]) await tcp.client.publishAsync(`pw/to-browser/r1/q${qos}`, `r1 ${qos}`, { qos });
  await waitFor('round 1 in the page', async () => (await pageMessages()).length === 3);
  assert.deepEqual((await pageMessages()).map(({ topic, text, qos }) => ({ topic, text, qos })).sort(byTopic), expected('pw/to-browser/r1', 'r1'));
  await page.evaluate(() => window.harness.publishEach('pw/to-tcp/r1', 'r1'));
  await waitFor('round 1 over TCP', () => tcp.messages.length === 3);
  assert.deepEqual([...tcp.messages].sort(byTopic), expected('pw/to-tcp/r1', 'r1'));

  // The gateway drops the browser's connection; it publishes while it is away.
  await page.evaluate(() => window.harness.publishOnClose('pw/to-tcp/offline'));
  const response = await fetch(`${gateway.httpUrl}/api/v1/clients/pw-client`, { method: 'DELETE' });
  assert.equal(response.status, 204);
  await waitFor('the reconnect', () => page.evaluate(() => window.harness.events.some((event) => event.type === 'connect')));
  const events = await page.evaluate(() => window.harness.events);
  assert.deepEqual(
    events.map((event) => event.type),
    ['close', 'reconnect', 'connect'],
  );
  assert.equal(events[1].attempt, 1);
  assert.equal(events[2].sessionPresent, false);
  const queued = await page.evaluate(() => window.harness.queuedResults());
  assert.deepEqual(queued, [0, 1, 2].map((qos) => ({ qos, state: 'reconnecting', ok: true })));
  await waitFor('the offline publishes over TCP', () => tcp.messages.length === 6);
  assert.deepEqual(tcp.messages.slice(3).sort(byTopic), expected('pw/to-tcp/offline', 'offline'));

  // Round 2: the page subscribed again by itself, so messages flow both ways once more.
  for (const qos of [0, 1, 2]) await tcp.client.publishAsync(`pw/to-browser/r2/q${qos}`, `r2 ${qos}`, { qos });
  await waitFor('round 2 in the page', async () => (await pageMessages()).length === 6);
  assert.deepEqual((await pageMessages()).slice(3).map(({ topic, text, qos }) => ({ topic, text, qos })).sort(byTopic), expected('pw/to-browser/r2', 'r2'));
  await page.evaluate(() => window.harness.publishEach('pw/to-tcp/r2', 'r2'));
  await waitFor('round 2 over TCP', () => tcp.messages.length === 9);
  assert.deepEqual(tcp.messages.slice(6).sort(byTopic), expected('pw/to-tcp/r2', 'r2'));

  assert.equal(await page.evaluate(() => window.harness.end()), 'closed');
  await tcp.client.endAsync();
  assert.deepEqual(errors, []);
  await page.close();
});

test('a connected client that the page no longer refers to stays connected through garbage collection', { timeout: 60_000 }, async () => {
  const { page, errors } = await openPage('index.html');
  await page.waitForFunction(() => window.harness !== undefined);
  await page.evaluate(([url]) => window.harness.connectAndLetGo(url, 'pw/let-go'), [gateway.wsUrl]);
  // Full collections with turns of the event loop between them, so that weak references are
  // cleared and finalizers run.
  await page.evaluate(async () => {
    for (let round = 0; round < 10; round++) {
      window.gc();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });
  const tcp = await tcpClient('pw-let-go-tcp');
  await tcp.client.publishAsync('pw/let-go', 'still here', { qos: 1 });
  await waitFor('the message in the page', () => page.evaluate(() => window.harness.letGo.length === 1));
  assert.deepEqual(await page.evaluate(() => window.harness.letGo), ['still here']);
  await tcp.client.endAsync();
  assert.deepEqual(errors, []);
  await page.close();
});

test('an ended client that the page no longer refers to is garbage collected', { timeout: 60_000 }, async () => {
  const { page, errors } = await openPage('index.html');
  await page.waitForFunction(() => window.harness !== undefined);
  assert.equal(await page.evaluate(([url]) => window.harness.endAndLetGo(url), [gateway.wsUrl]), 'closed');
  await waitFor('the client to be collected', () =>
    page.evaluate(async () => {
      window.gc();
      await new Promise((resolve) => setTimeout(resolve, 50));
      return window.harness.collected;
    }),
  );
  assert.deepEqual(errors, []);
  await page.close();
});

test('in a Web Worker whose timers are throttled past the keepalive, no false disconnect', { timeout: 60_000 }, async () => {
  const { page, errors } = await openPage('worker.html');
  await page.waitForFunction(() => window.workerHarness !== undefined);
  const reports = () => page.evaluate(() => window.workerHarness.reports());
  // Keepalive 1 s, but the worker's timers fire only on 4 s boundaries: a client that timed
  // its liveness by timer firings would see 4 s of "silence" each time.
  await page.evaluate(
    ([url]) => window.workerHarness.start({ url, throttleMs: 4_000, keepalive: 1, inTopic: 'ka/in', outTopic: 'ka/out' }),
    [gateway.wsUrl],
  );
  await waitFor('the worker to connect', async () => (await reports()).some((report) => report.type === 'ready'), 15_000);
  const tcp = await tcpClient('ka-tcp');
  await tcp.client.subscribeAsync('ka/out', { qos: 0 });
  const sent = 60;
  for (let index = 0; index < sent; index++) {
    await tcp.client.publishAsync('ka/in', `tick ${index}`, { qos: 0 });
    await sleep(200);
  }
  await tcp.client.publishAsync('ka/in', 'report', { qos: 0 });
  const report = await waitFor('the worker report', async () => (await reports()).find((entry) => entry.type === 'report'));
  const problems = (await reports()).filter((entry) => ['close', 'reconnect', 'error', 'worker-error'].includes(entry.type));
  assert.deepEqual(problems, [], 'no connection event while messages kept arriving');
  assert.equal(report.state, 'connected');
  assert.ok(report.received >= sent, `the worker received ${report.received} of ${sent}`);
  // The client did run on the throttled timers (re-armed as traffic moved its deadlines).
  assert.ok(report.timersScheduled >= 1, `the client scheduled ${report.timersScheduled} throttled timers`);
  await waitFor('the echoes', () => tcp.messages.length >= sent);
  await tcp.client.endAsync();
  assert.deepEqual(errors, []);
  await page.close();
});
