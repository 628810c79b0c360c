// The client-wasm npm package as users consume it: `npm pack` of client-wasm/pkg installed into
// a scratch application, bundled by Vite, served over HTTP and run in Debian's Chromium
// (through playwright-core) against a real gateway, exchanging messages with an MQTT.js client
// over TCP.
//
// Environment: GATEWAY_BIN (default target/debug/gateway), CLIENT_WASM_PKG (default
// client-wasm/pkg, built by `cargo xtask dist`), CHROMIUM (default /usr/bin/chromium).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { build } from 'vite';
import mqtt from 'mqtt';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../../..');
const gatewayBin = process.env.GATEWAY_BIN ?? join(root, 'target/debug/gateway');
const packageDir = process.env.CLIENT_WASM_PKG ?? join(root, 'client-wasm/pkg');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
// `--expose-gc` gives pages `gc()`, for the test of a client the page no longer refers to.
const CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--js-flags=--expose-gc'];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(what, check, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** The gateway on free ports; resolves once both listeners are announced. */
async function startGateway() {
  const dataDir = mkdtempSync(join(tmpdir(), 'client-wasm-test-'));
  const child = spawn(gatewayBin, ['--tcp', '127.0.0.1:0', '--http', '127.0.0.1:0', '--data-dir', dataDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn,gateway=info' },
  });
  const output = [];
  const addresses = {};
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${output.join('\n')}`)), 15_000);
    child.on('exit', (code) => reject(new Error(`gateway exited with ${code}:\n${output.join('\n')}`)));
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        output.push(line);
        const match = line.match(/listening (mqtt|http) (\S+)/);
        if (match) addresses[match[1]] = match[2];
        if (addresses.mqtt && addresses.http) {
          clearTimeout(timer);
          resolve();
        }
      });
    }
  });
  return {
    mqttUrl: `mqtt://${addresses.mqtt}`,
    httpUrl: `http://${addresses.http}`,
    wsUrl: `ws://${addresses.http}/mqtt`,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await Promise.race([exited, sleep(8_000)]);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Packs the package, installs the tarball into a copy of app/, and bundles it with Vite. */
async function buildScratchApp() {
  assert.ok(existsSync(join(packageDir, 'package.json')), `no package at ${packageDir}: run \`cargo xtask dist\``);
  const work = mkdtempSync(join(tmpdir(), 'client-wasm-app-'));
  const packed = JSON.parse(execFileSync('npm', ['pack', packageDir, '--pack-destination', work, '--json'], { encoding: 'utf8' }));
  const tarball = join(work, packed[0].filename);
  const appDir = join(work, 'app');
  cpSync(join(here, 'app'), appDir, { recursive: true });
  writeFileSync(join(appDir, 'package.json'), JSON.stringify({ name: 'client-wasm-scratch', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', tarball], { cwd: appDir, stdio: 'inherit' });
  const installed = JSON.parse(readFileSync(join(appDir, 'node_modules/client-wasm/package.json'), 'utf8'));
  assert.equal(installed.type, 'module');
  await build({
    root: appDir,
    logLevel: 'warn',
    configFile: false,
    worker: { format: 'es' },
    build: {
      outDir: join(appDir, 'dist'),
      target: 'es2022',
      rollupOptions: { input: { main: join(appDir, 'index.html'), worker: join(appDir, 'worker.html') } },
    },
  });
  return { work, dist: join(appDir, 'dist'), files: packed[0].files.map((file) => file.path) };
}

const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };

/** A static file server for the bundle on a free loopback port. */
async function serve(dir) {
  const server = createServer((request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    try {
      const body = readFileSync(join(dir, path));
      response.writeHead(200, { 'content-type': MIME[extname(path)] ?? 'application/octet-stream' });
      response.end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((resolve) => server.close(resolve)) };
}

let gateway;
let app;
let server;
let browser;

before(async () => {
  gateway = await startGateway();
  app = await buildScratchApp();
  server = await serve(app.dist);
  browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  await server?.close();
  await gateway?.stop();
  if (app) rmSync(app.work, { recursive: true, force: true });
});

async function openPage(path) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console error: ${message.text()}`);
  });
  await page.goto(`${server.url}/${path}`);
  return { page, errors };
}

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
  for (const declaration of ['class MqttClient', 'static connect(url: string, options?: ConnectOptions', 'interface MqttClientEventMap', 'subscribe(filter: string']) {
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
