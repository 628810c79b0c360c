// The dashboard's sign-in against a gateway with accounts and an ACL: a password file made with
// `gateway passwd` (an admin, a viewer that may read sensors/# only, and a device that may
// publish there), `--acl-file`, `--admin-user admin`, and an HTTPS listener with a certificate
// made by openssl (see pki.mjs), and an HS256 secret for tokens (`--jwt-secret-file`).
//
// The page is refused anonymously and shows the sign-in form; a wrong password is said so in
// the form; the right one connects, the `?sub=` filter applies, and a TCP device's JSON plots.
// A filter the user may not read shows its SUBACK refusal; the retained panel says "not
// allowed" to a non-admin and lists the messages for the admin; a connection the gateway drops
// comes back with the same credentials; a reload asks again unless "remember on this tab" was
// ticked; "Sign out" forgets and shows the form; a token pasted as the password, with no user
// name, signs in too (and the API takes it as a bearer token); and it all works over https/wss.
//
// Every page runs under the gateway's Content-Security-Policy; every test fails on a CSP
// violation (reported by a `securitypolicyviolation` listener installed before the page's own
// scripts) and on console errors other than the ones a test expects. The last test proves the
// listener and the policy work by having an inline style and a foreign WebSocket blocked.

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway, openBrowser, publish, snapshot, waitForSnapshot, screenshot, addPasswordUser } from './harness.mjs';
import { makeCertificates, spkiHash } from './pki.mjs';

const TEST_TIMEOUT_MS = 120_000;

const USERS = {
  admin: 'admin-Pa55-word',
  viewer: 'viewer-pässword-1',
  device: 'device-password-1',
};

const ACL = `# Nothing for anonymous clients (they are refused anyway once accounts exist).
user admin
topic readwrite #

user viewer
topic read sensors/#

user device
topic write sensors/#
`;

/** The policy dashboard.rs serves, as the browser must see it. */
const EXPECTED_CSP =
  "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Chromium's own log line for the API's 403, which a test that expects it accepts. */
const FORBIDDEN_LOAD = /Failed to load resource: the server responded with a status of 403/;

let dir;
let gateway;
/** The HS256 secret the gateway checks tokens with. */
const jwtSecret = randomBytes(32).toString('hex');
let pin;
/** The main browser: one page, like one tab, for the tests that follow each other. */
let main;
/** CSP violations reported by any page of any browser, as `directive blockedURI`. */
const violations = [];

/** An HS256 token for `claims`, signed with the gateway's secret. */
function token(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${unsigned}.${createHmac('sha256', jwtSecret).update(unsigned).digest('base64url')}`;
}

/** HTTP Basic for Node's fetch. */
const basic = (user) => `Basic ${Buffer.from(`${user}:${USERS[user]}`).toString('base64')}`;

/** The gateway's connected clients, asked as the admin. */
async function clients() {
  const response = await fetch(`${gateway.url}/api/v1/clients`, { headers: { Authorization: basic('admin') } });
  assert.equal(response.status, 200);
  return response.json();
}

/** A browser whose pages report CSP violations here; `args` go to Chromium. */
async function browserWithCspWatch(args = []) {
  const opened = await openBrowser({ args });
  await opened.context.exposeFunction('reportCspViolation', (text) => violations.push(text));
  // Installed before any of the page's scripts, in every document of the context.
  await opened.context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      window.reportCspViolation(`${event.effectiveDirective} ${event.blockedURI}`);
    });
  });
  return opened;
}

/** Waits for the sign-in form, then fills it in and submits it. */
async function signIn(page, user, password, { remember = false } = {}) {
  await page.locator('#signin').waitFor({ state: 'visible' });
  await page.fill('#signin [name=username]', user);
  await page.fill('#signin [name=password]', password);
  await page.setChecked('#signin [name=remember]', remember);
  await page.click('#signin button[type=submit]');
}

/** Waits until the page is connected with every subscription settled (active or refused). */
function waitSignedIn(page, what = 'the signed-in connection') {
  return waitForSnapshot(page, (s) => s.state === 'connected' && !s.signInShown && s.subscriptions.every((sub) => sub.status !== 'pending'), { what });
}

/** What the tab keeps in its storages, as text. */
function storages(page) {
  return page.evaluate(() => ({ session: JSON.stringify({ ...sessionStorage }), local: JSON.stringify({ ...localStorage }) }));
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dashboard-signin-'));
  const passwords = join(dir, 'passwords');
  for (const [user, password] of Object.entries(USERS)) addPasswordUser(passwords, user, password);
  writeFileSync(join(dir, 'acl'), ACL);
  writeFileSync(join(dir, 'jwt-secret'), jwtSecret);
  const pki = makeCertificates(dir);
  pin = spkiHash(pki.cert);
  gateway = await startGateway({
    args: ['--password-file', passwords, '--acl-file', join(dir, 'acl'), '--admin-user', 'admin', '--jwt-secret-file', join(dir, 'jwt-secret'), '--https', '127.0.0.1:0', '--tls-cert', pki.cert, '--tls-key', pki.key],
  });
  main = await browserWithCspWatch();
});

after(async () => {
  await main?.browser.close();
  if (gateway) {
    const code = await gateway.stop();
    // Nothing the gateway printed names a password.
    const printed = gateway.output.join('\n');
    for (const password of Object.values(USERS)) assert.equal(printed.includes(password), false, 'a password in the log');
    gateway.cleanup();
    assert.equal(code, 0, 'the gateway exits 0 on SIGTERM');
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

afterEach(() => {
  assert.deepEqual(violations.splice(0), [], 'no CSP violations');
});

/** Console errors of `errors` (spliced) that `expected` does not cover. */
function unexpected(errors, expected = []) {
  return errors.splice(0).filter((error) => !expected.some((pattern) => pattern.test(error)));
}

test('refused anonymously, the page asks; a wrong password is said so; the right one connects and plots', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, errors } = main;
  const sockets = [];
  page.on('websocket', (socket) => sockets.push(socket.url()));
  const response = await page.goto(`${gateway.url}/?sub=sensors/%23`);
  const headers = response.headers();
  assert.equal(headers['content-security-policy'], EXPECTED_CSP);
  assert.equal(headers['referrer-policy'], 'no-referrer');
  assert.equal(headers['x-content-type-options'], 'nosniff');

  await page.locator('#signin').waitFor({ state: 'visible' });
  let state = await snapshot(page);
  assert.equal(state.state, 'refused');
  assert.equal(state.signInShown, true);
  assert.deepEqual(state.subscriptions.map((s) => [s.filter, s.status]), [['sensors/#', 'pending']], 'the ?sub= filter waits');
  assert.equal(await page.textContent('#signin-message'), '', 'no error before anything was tried');
  assert.equal(await page.isVisible('#signout'), false);
  console.log(`screenshot: ${await screenshot(page, 'signin-form')}`);

  await signIn(page, 'viewer', 'not the password');
  await page.waitForFunction(() => document.getElementById('signin-message').textContent === 'wrong user name or password');
  assert.equal(await page.isVisible('#signin'), true, 'the form stays');
  assert.equal(await page.inputValue('#signin [name=username]'), 'viewer', 'the user name is kept');
  assert.equal(await page.inputValue('#signin [name=password]'), '', 'the password is not');
  state = await snapshot(page);
  assert.equal(state.state, 'refused');
  assert.equal(state.signedInAs, null);
  // The status bar is drawn on the next tick.
  await page.waitForFunction(() => document.getElementById('status').dataset.state === 'refused');
  console.log(`screenshot: ${await screenshot(page, 'signin-wrong-password')}`);

  await signIn(page, 'viewer', USERS.viewer);
  state = await waitSignedIn(page);
  assert.equal(state.signedInAs, 'viewer');
  assert.deepEqual(state.subscriptions.map((s) => [s.filter, s.status]), [['sensors/#', 'active']], 'the ?sub= filter applied once signed in');
  assert.equal(await page.isVisible('#signout'), true);
  assert.equal(await page.textContent('#account-user'), 'viewer');
  assert.equal(await page.inputValue('#signin [name=password]'), '', 'no password left in the form');
  assert.ok(sockets.length >= 3 && sockets.every((url) => url === `ws://127.0.0.1:${gateway.httpPort}/mqtt`), `same-origin WebSockets only: ${sockets}`);
  const dashboards = (await clients()).filter((c) => c.transport === 'ws');
  assert.deepEqual(dashboards.map((c) => c.username), ['viewer']);

  // A TCP device signs in too; its JSON plots.
  const count = 200;
  await publish(gateway, { topic: 'sensors/room1', count, rate: 200, kind: 'json', username: 'device', password: USERS.device });
  state = await waitForSnapshot(page, (s) => s.series.filter((x) => x.topic === 'sensors/room1' && x.total === count).length === 2, { what: `two series with ${count} points` });
  assert.deepEqual(state.series.map((s) => s.name).sort(), ['sensors/room1 hum', 'sensors/room1 temp']);
  await page.waitForFunction((expected) => document.getElementById('count-in').textContent === expected, String(count));

  // Nothing of the password in the address or in either storage.
  assert.equal(page.url().includes(USERS.viewer), false);
  const kept = await storages(page);
  assert.equal(kept.session, '{}', 'nothing in sessionStorage without "remember"');
  assert.equal(kept.local.includes(USERS.viewer) || kept.local.includes('viewer'), false, kept.local);
  console.log(`screenshot: ${await screenshot(page, 'signin-signed-in', { fullPage: true })}`);
  assert.deepEqual(unexpected(errors), []);
});

test('a filter the user may not read shows its SUBACK refusal', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, errors } = main;
  await page.fill('#subscribe-form [name=filter]', 'secret/#');
  await page.click('#subscribe-form button[type=submit]');
  const item = page.locator('#subscription-list li[data-filter="secret/#"][data-status="refused"]');
  await item.waitFor();
  console.log(`screenshot: ${await screenshot(page, 'signin-suback-refused')}`);
  assert.match(await item.locator('.meta').textContent(), /^refused \(.*not authorized.*0x87.*\)/);
  const state = await snapshot(page);
  assert.equal(state.state, 'connected', 'a refused subscription leaves the connection up');
  assert.deepEqual(state.subscriptions.map((s) => [s.filter, s.status]), [['sensors/#', 'active'], ['secret/#', 'refused']]);
  assert.deepEqual(unexpected(errors), []);
});

test('the retained panel says "not allowed" to a non-admin', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, errors } = main;
  await page.click('#retained summary');
  await page.waitForFunction(() => document.getElementById('retained-status').dataset.state === 'not-allowed');
  assert.equal(await page.textContent('#retained-status'), 'not allowed: listing retained messages needs an admin user');
  assert.equal(await page.locator('#retained-list li').count(), 0);
  console.log(`screenshot: ${await screenshot(page, 'signin-retained-not-allowed')}`);
  await page.click('#retained summary');
  // Chromium logs the 403 itself; the page logs nothing.
  assert.deepEqual(unexpected(errors, [FORBIDDEN_LOAD]), []);
});

test('a connection the gateway drops comes back with the same credentials', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, errors } = main;
  const [dashboard] = (await clients()).filter((c) => c.transport === 'ws');
  const reopened = new Promise((resolve) => page.once('websocket', resolve));
  const kicked = await fetch(`${gateway.url}/api/v1/clients/${encodeURIComponent(dashboard.id)}`, { method: 'DELETE', headers: { Authorization: basic('admin') } });
  assert.equal(kicked.status, 204);
  await reopened;
  const deadline = Date.now() + 15_000;
  let again;
  for (;;) {
    again = (await clients()).filter((c) => c.transport === 'ws');
    if (again.length === 1 && again[0].connected_since !== dashboard.connected_since) break;
    if (again.length === 1 && again[0].connected_seconds < dashboard.connected_seconds) break;
    assert.ok(Date.now() < deadline, `the dashboard reconnected: ${JSON.stringify(again)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(again[0].username, 'viewer', 'reconnected as the same user');
  let state = await waitSignedIn(page, 'the reconnection');
  assert.equal(state.signInShown, false, 'no form: the client reused the credentials');
  const before = state.series.find((s) => s.name === 'sensors/room1 temp').total;
  await publish(gateway, { topic: 'sensors/room1', count: 50, rate: 200, kind: 'json', username: 'device', password: USERS.device });
  state = await waitForSnapshot(page, (s) => s.series.find((x) => x.name === 'sensors/room1 temp')?.total === before + 50, { what: 'plotting to resume' });
  assert.deepEqual(unexpected(errors), []);
});

test('a reload asks again unless "remember on this tab" was ticked; sign out forgets', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, errors } = main;
  await page.reload();
  await page.locator('#signin').waitFor({ state: 'visible' });
  assert.equal((await snapshot(page)).signedInAs, null, 'not remembered: asked again');

  await signIn(page, 'viewer', USERS.viewer, { remember: true });
  await waitSignedIn(page);
  let kept = await storages(page);
  assert.notEqual(kept.session, '{}', 'remembered in sessionStorage');
  assert.equal(kept.local.includes(USERS.viewer), false, 'never in localStorage');
  assert.equal(page.url().includes(USERS.viewer), false, 'never in the address');

  await page.reload();
  const state = await waitSignedIn(page, 'the remembered sign-in after a reload');
  assert.equal(state.signedInAs, 'viewer');
  assert.equal(await page.isVisible('#signin'), false, 'not asked again');
  assert.deepEqual(state.subscriptions.map((s) => [s.filter, s.status]), [['sensors/#', 'active'], ['secret/#', 'refused']], 'the address kept both filters');

  await page.click('#signout');
  await page.locator('#signin').waitFor({ state: 'visible' });
  assert.equal(await page.textContent('#signin-message'), 'signed out');
  await waitForSnapshot(page, (s) => s.state === 'closed' && s.signedInAs === null, { what: 'the closed connection' });
  kept = await storages(page);
  assert.equal(kept.session, '{}', 'sessionStorage cleared');
  const deadline = Date.now() + 10_000;
  while ((await clients()).some((c) => c.transport === 'ws')) {
    assert.ok(Date.now() < deadline, 'the gateway saw the dashboard go');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // And the next load asks again.
  await page.reload();
  await page.locator('#signin').waitFor({ state: 'visible' });
  assert.deepEqual(unexpected(errors), []);
});

test('the admin signs in and the retained panel lists the messages; sign out empties it', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, errors } = main;
  await publish(gateway, { topic: 'sensors/kept', count: 1, rate: 100, kind: 'json', username: 'device', password: USERS.device, retain: true });
  await signIn(page, 'admin', USERS.admin);
  await waitSignedIn(page);
  await page.click('#retained summary');
  await page.waitForFunction(() => document.getElementById('retained-status').dataset.state === 'loaded');
  assert.equal(await page.textContent('#retained-status'), '1 retained message');
  assert.equal(await page.locator('#retained-list li[data-topic="sensors/kept"]').count(), 1);
  console.log(`screenshot: ${await screenshot(page, 'signin-admin-retained', { fullPage: true })}`);

  await page.click('#signout');
  await page.locator('#signin').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#retained-list li').count(), 0, 'what the admin saw is gone');
  assert.equal(await page.textContent('#retained-status'), '');
  await page.click('#retained summary');
  assert.deepEqual(unexpected(errors), []);
});

test('a token as the password, with no user name, signs in; the API takes it as a bearer token', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { page, errors } = main;
  const now = Math.floor(Date.now() / 1000);
  await page.reload();
  await signIn(page, '', token({ sub: 'admin', exp: now - 3600 }));
  await page.waitForFunction(() => document.getElementById('signin-message').textContent === 'token refused (expired, or not for this gateway)');
  assert.equal(await page.inputValue('#signin [name=password]'), '', 'the refused token is not kept');

  const valid = token({ sub: 'admin', exp: now + 600 });
  await signIn(page, '', valid);
  const state = await waitSignedIn(page);
  assert.equal(state.signedInAs, '', 'no user name was typed');
  assert.equal(await page.textContent('#account-user'), 'token');
  assert.deepEqual((await clients()).filter((c) => c.transport === 'ws').map((c) => c.username), ['admin'], 'the token’s subject is the user');
  await page.click('#retained summary');
  await page.waitForFunction(() => document.getElementById('retained-status').dataset.state === 'loaded');
  assert.equal(await page.locator('#retained-list li[data-topic="sensors/kept"]').count(), 1);
  await page.click('#retained summary');
  const kept = await storages(page);
  assert.equal(kept.session.includes(valid) || kept.local.includes(valid), false, 'the token is in no storage');
  await page.click('#signout');
  await page.locator('#signin').waitFor({ state: 'visible' });
  assert.deepEqual(unexpected(errors), []);
});

test('the same sign-in over https and wss', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { browser, page, errors } = await browserWithCspWatch([`--ignore-certificate-errors-spki-list=${pin}`]);
  const sockets = [];
  page.on('websocket', (socket) => sockets.push(socket.url()));
  try {
    const response = await page.goto(`${gateway.httpsUrl}/?sub=sensors/%23`);
    assert.equal(response.headers()['content-security-policy'], EXPECTED_CSP, 'the same policy over https');
    assert.equal((await response.securityDetails())?.subjectName, 'gateway');
    await signIn(page, 'viewer', 'wrong again');
    await page.waitForFunction(() => document.getElementById('signin-message').textContent === 'wrong user name or password');
    await signIn(page, 'viewer', USERS.viewer);
    const state = await waitSignedIn(page);
    assert.deepEqual(state.subscriptions.map((s) => [s.filter, s.status]), [['sensors/#', 'active']]);
    assert.ok(sockets.length > 0 && sockets.every((url) => url === `wss://127.0.0.1:${gateway.httpsPort}/mqtt`), `wss to its own origin only: ${sockets}`);
    assert.deepEqual((await clients()).filter((c) => c.transport === 'wss').map((c) => c.username), ['viewer']);

    await publish(gateway, { topic: 'sensors/tls', count: 100, rate: 200, kind: 'json', username: 'device', password: USERS.device });
    await waitForSnapshot(page, (s) => s.series.filter((x) => x.topic === 'sensors/tls' && x.total === 100).length === 2, { what: 'the TCP device plotted over wss' });
    await page.click('#retained summary');
    await page.waitForFunction(() => document.getElementById('retained-status').dataset.state === 'not-allowed');
    console.log(`screenshot: ${await screenshot(page, 'signin-tls-signed-in', { fullPage: true })}`);
  } finally {
    await browser.close();
  }
  assert.deepEqual(unexpected(errors, [FORBIDDEN_LOAD]), []);
});

test('the policy is in force: an inline style and a foreign WebSocket are blocked and reported', { timeout: TEST_TIMEOUT_MS }, async () => {
  const { browser, page } = await browserWithCspWatch();
  try {
    await page.goto(`${gateway.url}/`);
    await page.locator('#signin').waitFor({ state: 'visible' });
    assert.deepEqual(violations, [], 'the dashboard itself causes none');
    await page.evaluate(() => {
      const style = document.createElement('style');
      style.textContent = 'body { background: red; }';
      document.head.append(style);
      try {
        new WebSocket('ws://127.0.0.2:9/mqtt');
      } catch {
        // Blocked synchronously or asynchronously: either way reported.
      }
    });
    const deadline = Date.now() + 5_000;
    while (violations.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    const seen = violations.splice(0).map((text) => text.split(' ')[0]).sort();
    assert.deepEqual(seen, ['connect-src', 'style-src-elem']);
  } finally {
    await browser.close();
  }
});
