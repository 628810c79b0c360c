// Persistent sessions of the client-wasm package across lost connections, in Chromium against a
// real gateway, with the TCP proxy of proxy.mjs between them. What the package's README
// promises: "MQTT 5.0 reconnects resume the broker's session when it kept one
// (`sessionExpiry`) [...] Unacknowledged QoS 1/2 publishes are sent again with DUP set", and
// `clean` is "clean session (3.1.1) / clean start of the first connection (5.0)".
//
// The browser publishes at QoS 1 and 2, the gateway's acknowledgements are dropped by the
// proxy, and the connection is cut: the client must reconnect without clean start, resend both
// PUBLISHes with DUP and their packet identifiers, and settle their Promises; the subscriber
// gets the QoS 2 message exactly once and the QoS 1 message at least once. Meanwhile messages
// for the browser's session wait in the gateway and arrive on resume. Once with the gateway
// staying up (5.0 and 3.1.1), once across a kill -9 and a restart on the same data directory.
// Last, a QoS 2 publish whose PUBCOMP was lost: the resumed connection releases it (PUBREL).
//
// Environment: see support.mjs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { startProxy } from './proxy.mjs';
import { buildScratchApp, launchChromium, openPage, serve, startGateway, waitFor } from './support.mjs';

let app;
let server;
let browser;

before(async () => {
  app = await buildScratchApp();
  server = await serve(app.dist);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (app) rmSync(app.work, { recursive: true, force: true });
});

/** An MQTT.js client over TCP subscribed to `filter` at QoS 2, recording what it receives. */
async function subscriber(gateway, clientId, filter) {
  const client = await mqtt.connectAsync(gateway.mqttUrl, { clientId, protocolVersion: 5, reconnectPeriod: 0 });
  const messages = [];
  client.on('message', (topic, payload) => messages.push({ topic, text: payload.toString() }));
  await client.subscribeAsync(filter, { qos: 2 });
  return { client, messages };
}

/**
 * The page's console errors, less Chromium's own report of each connection the proxy refused
 * or cut on purpose ("WebSocket connection to '...' failed: ...").
 */
const unexpected = (errors, proxy) => errors.filter((error) => !error.includes(`WebSocket connection to 'ws://127.0.0.1:${proxy.port}/mqtt' failed`));

const count = (messages, topic, text) => messages.filter((message) => message.topic === topic && message.text === text).length;

/** A page connected through `proxy` as `clientId`, subscribed to `${prefix}/down/#` at QoS 2. */
async function connectedPage(proxy, clientId, prefix, options) {
  const { page, errors } = await openPage(browser, server, 'index.html');
  await page.waitForFunction(() => window.harness !== undefined);
  const url = `ws://127.0.0.1:${proxy.port}/mqtt`;
  const connectOptions = { clientId, keepalive: 30, reconnect: { minDelayMs: 100, maxDelayMs: 500 }, ...options };
  assert.equal(await page.evaluate(([url, options]) => window.harness.connect(url, options), [url, connectOptions]), 'connected');
  const granted = await page.evaluate((filter) => window.harness.subscribe(filter, { qos: 2 }), `${prefix}/down/#`);
  assert.equal(granted.qos, 2);
  return { page, errors };
}

/**
 * With every packet of the gateway dropped, the page publishes `${prefix}/up/q1` and `/q2`;
 * returns once `upstream` received both and the gateway's PUBACK and PUBREC were dropped, with
 * both Promises still pending.
 */
async function publishUnacknowledged(proxy, page, prefix, upstream) {
  proxy.drop = () => true;
  await page.evaluate((prefix) => {
    window.harness.publishTracked(`${prefix}/up/q1`, 'once or more', 1);
    window.harness.publishTracked(`${prefix}/up/q2`, 'exactly once', 2);
  }, prefix);
  await waitFor('the subscriber to get both', () => upstream.messages.length === 2);
  await waitFor('the PUBACK and the PUBREC, dropped', () => ['puback', 'pubrec'].every((type) => proxy.log.some((packet) => packet.from === 'gateway' && packet.type === type && packet.dropped)));
  assert.deepEqual(await page.evaluate(() => window.harness.tracked.map((entry) => entry.settled)), ['pending', 'pending']);
}

/** The page's events so far, `await`ed until one of `type` is there. */
const waitForEvent = (page, type, after = 0) => waitFor(`a ${type} event`, () => page.evaluate(([type, after]) => window.harness.events.slice(after).find((event) => event.type === type), [type, after]));

/**
 * The client's packets on connection 1 and on the first connection after it, checked against
 * the promise: the new CONNECT has no clean start and resends the two PUBLISHes first, with
 * DUP and their identifiers, and then releases the QoS 2 one (PUBREL).
 */
function assertResent(proxy, firstCleanStart) {
  const fromClient = (connection) => proxy.log.filter((packet) => packet.from === 'client' && packet.connection === connection);
  const first = fromClient(1);
  const resumed = fromClient(Math.max(...proxy.log.map((packet) => packet.connection)));
  assert.equal(first[0].cleanStart, firstCleanStart, 'the first CONNECT');
  assert.equal(resumed[0].type, 'connect');
  assert.equal(resumed[0].cleanStart, false, 'the CONNECT that resumes has no clean start');
  const sent = first.filter((packet) => packet.type === 'publish');
  assert.deepEqual(sent.map(({ qos, dup }) => ({ qos, dup })), [{ qos: 1, dup: false }, { qos: 2, dup: false }]);
  const resent = resumed.filter((packet) => packet.type === 'publish').slice(0, 2);
  assert.deepEqual(
    resent.map(({ topic, qos, dup, packetId }) => ({ topic, qos, dup, packetId })),
    sent.map(({ topic, qos, packetId }) => ({ topic, qos, dup: true, packetId })),
    'both PUBLISHes again, with DUP and the same packet identifiers',
  );
  assert.ok(
    resumed.some((packet) => packet.type === 'pubrel' && packet.packetId === sent[1].packetId),
    'the QoS 2 message released on the new connection',
  );
}

/**
 * After the resume: a last message each way, in order behind the others, so that any duplicate
 * of them has arrived before it; then the counts.
 */
async function assertDeliveredOnce(page, prefix, upstream, downstreamPublisher) {
  await page.evaluate((prefix) => window.harness.publishTracked(`${prefix}/up/q2`, 'last', 2), prefix);
  await downstreamPublisher.publishAsync(`${prefix}/down/q2`, 'last', { qos: 2 });
  await waitFor('the last message upward', () => count(upstream.messages, `${prefix}/up/q2`, 'last') > 0);
  const pageMessages = () => page.evaluate(() => window.harness.messages);
  await waitFor('the last message in the page', async () => count(await pageMessages(), `${prefix}/down/q2`, 'last') > 0);
  const messages = await pageMessages();
  assert.equal(count(messages, `${prefix}/down/q2`, 'while away'), 1, 'the QoS 2 message for the session, exactly once');
  assert.ok(count(messages, `${prefix}/down/q1`, 'while away') >= 1, 'the QoS 1 message for the session, at least once');
  assert.equal(count(messages, `${prefix}/down/q2`, 'last'), 1);
}

/**
 * One loss and one resume: a close that announces a reconnect, then failed attempts while the
 * proxy refused (each a close and a reconnect), and one connect last; no error event.
 */
function assertEventsOfOneResume(events) {
  assert.deepEqual([events[0].type, events[0].reconnect], ['close', true]);
  assert.equal(events.at(-1).type, 'connect');
  assert.deepEqual(
    events.slice(1, -1).filter((event) => !['close', 'reconnect'].includes(event.type)),
    [],
    'only failed attempts between the loss and the resume',
  );
}

const PROFILES = [
  { name: '5.0, session expiry 300 s (clean start on the first connection only)', version: 5, options: { protocolVersion: 5, sessionExpiry: 300 }, firstCleanStart: true },
  { name: '3.1.1, clean session false', version: 4, options: { protocolVersion: 4, clean: false }, firstCleanStart: false },
];

for (const profile of PROFILES) {
  test(`${profile.name}: a cut connection resumes the session, publishes in flight are resent with DUP and settle, messages sent meanwhile arrive`, { timeout: 60_000 }, async () => {
    const gateway = await startGateway();
    const proxy = await startProxy(gateway.httpPort);
    const prefix = `resume/v${profile.version}`;
    const upstream = await subscriber(gateway, `resume-up-v${profile.version}`, `${prefix}/up/#`);
    const publisher = await mqtt.connectAsync(gateway.mqttUrl, { clientId: `resume-pub-v${profile.version}`, protocolVersion: 5, reconnectPeriod: 0 });
    try {
      const { page, errors } = await connectedPage(proxy, `pw-resume-v${profile.version}`, prefix, profile.options);
      await publishUnacknowledged(proxy, page, prefix, upstream);

      // Cut, and keep the browser away while messages for its session arrive.
      proxy.refuse = true;
      proxy.cut();
      await waitForEvent(page, 'close');
      await publisher.publishAsync(`${prefix}/down/q1`, 'while away', { qos: 1 });
      await publisher.publishAsync(`${prefix}/down/q2`, 'while away', { qos: 2 });
      assert.ok(['resolved', 'pending'].includes((await page.evaluate(() => window.harness.tracked[0])).settled));

      proxy.drop = null;
      proxy.refuse = false;
      const connected = await waitForEvent(page, 'connect');
      assert.equal(connected.sessionPresent, true, 'the gateway kept the session');
      await waitFor('both publishes to settle', () => page.evaluate(() => window.harness.tracked.every((entry) => entry.settled !== 'pending')));
      assert.deepEqual(await page.evaluate(() => window.harness.tracked.map(({ settled, code }) => ({ settled, code }))), [
        { settled: 'resolved', code: undefined },
        { settled: 'resolved', code: undefined },
      ]);
      assertResent(proxy, profile.firstCleanStart);

      await assertDeliveredOnce(page, prefix, upstream, publisher);
      assert.equal(count(upstream.messages, `${prefix}/up/q2`, 'exactly once'), 1, 'the QoS 2 message reached the subscriber exactly once');
      assert.ok(count(upstream.messages, `${prefix}/up/q1`, 'once or more') >= 1);
      assertEventsOfOneResume(await page.evaluate(() => window.harness.events));
      assert.deepEqual(unexpected(errors, proxy), []);
      await page.close();
    } finally {
      await upstream.client.endAsync();
      await publisher.endAsync();
      await proxy.close();
      await gateway.stop();
    }
  });
}

test('5.0: across a kill -9 of the gateway and a restart on its data directory, the session resumes and the QoS 2 publish in flight is not delivered twice', { timeout: 90_000 }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'client-wasm-resume-'));
  let gateway = await startGateway([], { dataDir });
  const proxy = await startProxy(gateway.httpPort);
  const prefix = 'restart';
  let upstream = await subscriber(gateway, 'restart-up', `${prefix}/up/#`);
  let publisher;
  try {
    const { page, errors } = await connectedPage(proxy, 'pw-restart', prefix, { protocolVersion: 5, sessionExpiry: 300 });
    // The gateway sends its PUBREC only once the packet identifier it records is durable.
    await publishUnacknowledged(proxy, page, prefix, upstream);

    proxy.refuse = true;
    gateway.kill('SIGKILL');
    await gateway.exited;
    await upstream.client.endAsync(true);
    await waitForEvent(page, 'close');
    gateway = await startGateway([], { dataDir });
    proxy.targetPort = gateway.httpPort;
    // A new subscriber: a second delivery of the QoS 2 message would reach it.
    upstream = await subscriber(gateway, 'restart-up-2', `${prefix}/up/#`);
    publisher = await mqtt.connectAsync(gateway.mqttUrl, { clientId: 'restart-pub', protocolVersion: 5, reconnectPeriod: 0 });
    await publisher.publishAsync(`${prefix}/down/q1`, 'while away', { qos: 1 });
    await publisher.publishAsync(`${prefix}/down/q2`, 'while away', { qos: 2 });

    proxy.drop = null;
    proxy.refuse = false;
    const connected = await waitForEvent(page, 'connect');
    assert.equal(connected.sessionPresent, true, 'the restarted gateway has the session from its store');
    await waitFor('both publishes to settle', () => page.evaluate(() => window.harness.tracked.every((entry) => entry.settled !== 'pending')), 20_000);
    assert.deepEqual(await page.evaluate(() => window.harness.tracked.map((entry) => entry.settled)), ['resolved', 'resolved']);
    assertResent(proxy, true);
    assertEventsOfOneResume(await page.evaluate(() => window.harness.events));

    await assertDeliveredOnce(page, prefix, upstream, publisher);
    assert.equal(count(upstream.messages, `${prefix}/up/q2`, 'exactly once'), 0, 'the resent QoS 2 message was not delivered again');
    assert.deepEqual(unexpected(errors, proxy), []);
    await page.close();
  } finally {
    await upstream.client.endAsync(true);
    await publisher?.endAsync();
    await proxy.close();
    await gateway.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('5.0: a QoS 2 publish whose PUBCOMP was lost is released again on resume (PUBREL, no second PUBLISH) and settles', { timeout: 60_000 }, async () => {
  const gateway = await startGateway();
  const proxy = await startProxy(gateway.httpPort);
  const prefix = 'release';
  const upstream = await subscriber(gateway, 'release-up', `${prefix}/up/#`);
  try {
    const { page, errors } = await connectedPage(proxy, 'pw-release', prefix, { protocolVersion: 5, sessionExpiry: 300 });
    proxy.drop = (packet) => packet.type === 'pubcomp';
    await page.evaluate((prefix) => window.harness.publishTracked(`${prefix}/up/q2`, 'exactly once', 2), prefix);
    await waitFor('the PUBCOMP, dropped', () => proxy.log.some((packet) => packet.type === 'pubcomp' && packet.dropped));
    assert.equal(await page.evaluate(() => window.harness.tracked[0].settled), 'pending');
    proxy.cut();
    proxy.drop = null;
    await waitForEvent(page, 'connect');
    await waitFor('the publish to settle', () => page.evaluate(() => window.harness.tracked[0].settled !== 'pending'));
    assert.equal(await page.evaluate(() => window.harness.tracked[0].settled), 'resolved');
    const { packetId } = proxy.log.find((packet) => packet.from === 'client' && packet.type === 'publish');
    const resumed = proxy.log.filter((packet) => packet.from === 'client' && packet.connection === proxy.connections);
    assert.deepEqual(
      resumed.slice(0, 2).map(({ type, cleanStart, packetId }) => ({ type, cleanStart, packetId })),
      [
        { type: 'connect', cleanStart: false, packetId: undefined },
        { type: 'pubrel', cleanStart: undefined, packetId },
      ],
      'the new connection releases the message first',
    );
    assert.ok(!resumed.some((packet) => packet.type === 'publish'), 'no second PUBLISH');
    await page.evaluate((prefix) => window.harness.publishTracked(`${prefix}/up/q2`, 'last', 2), prefix);
    await waitFor('the last message upward', () => count(upstream.messages, `${prefix}/up/q2`, 'last') > 0);
    assert.equal(count(upstream.messages, `${prefix}/up/q2`, 'exactly once'), 1);
    assert.deepEqual(unexpected(errors, proxy), []);
    await page.close();
  } finally {
    await upstream.client.endAsync();
    await proxy.close();
    await gateway.stop();
  }
});
