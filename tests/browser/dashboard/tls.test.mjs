// The dashboard over HTTPS: the gateway's --https listener serving a certificate made here by
// Debian's openssl, Debian's Chromium trusting exactly that certificate through its SPKI hash
// (--ignore-certificate-errors-spki-list), the page connecting over wss:// to its own origin's
// /mqtt, a paho publisher over TCP feeding its charts, and its publish form reaching a
// mosquitto_sub over mqtts. Without the flag, the same Chromium refuses the certificate: the
// trust comes from the pin, not from anything lax.
//
// Every test fails on console errors or uncaught exceptions in the page.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway, openBrowser, publish, waitForSnapshot, screenshot, sleep } from './harness.mjs';
import { makeCertificates, spkiHash } from './pki.mjs';

/** Each test's bound: every wait inside is bounded too; this catches anything that is not. */
const TEST_TIMEOUT_MS = 120_000;

let pki;
let pkiDir;
let gateway;
let pin;

before(async () => {
  pkiDir = mkdtempSync(join(tmpdir(), 'dashboard-tls-'));
  pki = makeCertificates(pkiDir);
  pin = spkiHash(pki.cert);
  // The same hash by another route, so a mistake in the openssl pipeline cannot go unnoticed.
  const spki = new X509Certificate(readFileSync(pki.cert)).publicKey.export({ type: 'spki', format: 'der' });
  assert.equal(pin, createHash('sha256').update(spki).digest('base64'));
  gateway = await startGateway({
    args: ['--mqtts', '127.0.0.1:0', '--https', '127.0.0.1:0', '--tls-cert', pki.cert, '--tls-key', pki.key],
  });
  assert.ok(gateway.httpsPort && gateway.mqttsPort, 'the gateway announced its TLS listeners');
});

after(async () => {
  if (gateway) {
    const code = await gateway.stop();
    gateway.cleanup();
    assert.equal(code, 0, 'the gateway exits 0 on SIGTERM');
  }
  if (pkiDir) rmSync(pkiDir, { recursive: true, force: true });
});

test('without the pin Chromium refuses the test certificate', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { browser, page } = await openBrowser();
  try {
    await assert.rejects(page.goto(`${gateway.httpsUrl}/`), /ERR_CERT_AUTHORITY_INVALID/);
  } finally {
    await browser.close();
  }
});

test('the dashboard over https connects with wss to its own origin and plots TCP messages', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { browser, page, errors } = await openBrowser({ args: [`--ignore-certificate-errors-spki-list=${pin}`] });
  const sockets = [];
  page.on('websocket', (socket) => sockets.push(socket.url()));
  let subscriber;
  try {
    const response = await page.goto(`https://127.0.0.1:${gateway.httpsPort}/?sub=demo/%23`);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-security-policy'] ?? '', /connect-src/, 'the CSP is served over https too');
    const security = await response.securityDetails();
    assert.equal(security?.subjectName, 'gateway', 'the page came with the test certificate');
    await waitForSnapshot(page, (s) => s.state === 'connected' && s.subscriptions.length > 0 && s.subscriptions.every((sub) => sub.status === 'active'), {
      what: 'the dashboard to connect over wss and subscribe',
    });
    assert.equal(await page.evaluate(() => window.isSecureContext), true);
    assert.deepEqual(sockets, [`wss://127.0.0.1:${gateway.httpsPort}/mqtt`], 'one WebSocket, wss to the same origin');

    // The gateway sees the dashboard's session as wss (its API on the plain listener).
    const clients = await (await fetch(`${gateway.url}/api/v1/clients`)).json();
    assert.deepEqual(clients.map((c) => c.transport), ['wss'], JSON.stringify(clients));

    // Over TCP in, over wss out: the charts plot.
    const count = 200;
    await publish(gateway, { topic: 'demo/tls', count, rate: 200, kind: 'json' });
    const state = await waitForSnapshot(
      page,
      (s) => s.series.filter((series) => series.topic === 'demo/tls' && series.total === count).length === 2,
      { what: `two series with ${count} points` },
    );
    assert.equal(state.received, count);
    assert.deepEqual(state.series.map((s) => s.name).sort(), ['demo/tls hum', 'demo/tls temp']);
    const row = page.locator('.log-row').first();
    await row.waitFor();
    assert.equal(await row.locator('.topic').textContent(), 'demo/tls');
    // The counters are drawn once per frame: wait for the page to show every message.
    await page.waitForFunction((expected) => document.getElementById('count-in').textContent === expected, String(count));
    const path = await screenshot(page, 'dashboard-tls', { fullPage: true });
    console.log(`screenshot: ${path}`);

    // Over wss in, over mqtts out: the publish form reaches mosquitto_sub with the CA as --cafile.
    subscriber = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(gateway.mqttsPort), '--cafile', pki.ca, '-t', 'demo/from-https', '-C', '1', '-W', '15', '-i', 'tls-dashboard-sub']);
    let received = '';
    subscriber.stdout.on('data', (chunk) => (received += chunk));
    subscriber.stderr.on('data', (chunk) => (received += chunk));
    const exited = new Promise((resolve) => subscriber.on('exit', resolve));
    const deadline = Date.now() + 10_000;
    for (;;) {
      const subscriptions = await (await fetch(`${gateway.url}/api/v1/subscriptions`)).json();
      if (subscriptions.some((s) => s.client_id === 'tls-dashboard-sub')) break;
      assert.ok(Date.now() < deadline, `mosquitto_sub subscribed over mqtts: ${received}`);
      await sleep(50);
    }
    await page.fill('#publish-form [name=topic]', 'demo/from-https');
    await page.fill('#publish-form [name=payload]', 'sealed both ways');
    await page.selectOption('#publish-form [name=qos]', '1');
    await page.click('#publish-form button[type=submit]');
    assert.equal(await exited, 0, `mosquitto_sub got its message and exited: ${received}`);
    assert.equal(received.trim(), 'sealed both ways');
  } finally {
    if (subscriber && subscriber.exitCode === null && subscriber.signalCode === null) subscriber.kill('SIGKILL');
    await browser.close();
  }
  assert.deepEqual(errors, [], 'no console errors');
});
