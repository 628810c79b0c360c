// Authentication of the client-wasm package in Chromium against a real gateway that checks a
// password file (`gateway passwd`) and allows no anonymous clients: credentials given by a
// function before every attempt (a password rotated between attempts gets the client back in),
// typed refusals that stop the reconnects, and MQTT 5.0 enhanced authentication with
// SCRAM-SHA-256 through `onAuth` (the SCRAM client is the page's, on WebCrypto: app/scram.mjs),
// with `reauthenticate()`. Last, the failures of an exchange that the gateway cannot provoke
// (an `onAuth` that throws), against a scripted broker.
//
// Environment: see support.mjs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { scramStart } from './app/scram.mjs';
import { buildScratchApp, launchChromium, openPage, serve, setPassword, sleep, startGateway, waitFor } from './support.mjs';

// MQTT.js's own packet codec and WebSocket server, for the scripted broker (resolved from
// MQTT.js, whose dependencies they are).
const fromMqttJs = createRequire(createRequire(import.meta.url).resolve('mqtt'));
const mqttPacket = fromMqttJs('mqtt-packet');
const { WebSocketServer } = fromMqttJs('ws');

const ADMIN = ['admin', 'admin-secret'];

let work;
let passwordFile;
let gateway;
let app;
let server;
let browser;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'client-wasm-auth-'));
  passwordFile = join(work, 'passwords');
  setPassword(passwordFile, ...ADMIN);
  for (const [user, password] of [['alice', 'alice-1'], ['bob', 'bob-1'], ['carol', 'carol-secret']]) {
    setPassword(passwordFile, user, password);
  }
  // No lock-out: the tests fail authentications on purpose, all from 127.0.0.1.
  gateway = await startGateway(['--password-file', passwordFile, '--admin-user', ADMIN[0], '--max-auth-failures', '0']);
  app = await buildScratchApp();
  server = await serve(app.dist);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.close();
  await gateway?.stop();
  if (app) rmSync(app.work, { recursive: true, force: true });
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A page of the scratch app, ready to drive `window.auth`. */
async function authPage() {
  const { page, errors } = await openPage(browser, server, 'index.html');
  await page.waitForFunction(() => window.auth !== undefined);
  return { page, errors };
}

/** A request to the gateway's HTTP API as the admin. */
function admin(path, init = {}) {
  const authorization = `Basic ${Buffer.from(ADMIN.join(':')).toString('base64')}`;
  return fetch(`${gateway.httpUrl}${path}`, { ...init, headers: { authorization } });
}

/** The gateway's `mqtt_auth_refused_total` for `reason`. */
async function refusals(reason) {
  const response = await admin('/metrics');
  assert.equal(response.status, 200);
  const text = await response.text();
  const match = text.match(new RegExp(`^mqtt_auth_refused_total\\{reason="${reason}"\\} (\\d+)$`, 'm'));
  return Number(match?.[1] ?? 0);
}

/** Whether an MQTT.js client over TCP gets in as `user` with `password` (false: refused). */
async function acceptsOverTcp(user, password) {
  try {
    const client = await mqtt.connectAsync(gateway.mqttUrl, { username: user, password, protocolVersion: 5, reconnectPeriod: 0 });
    await client.endAsync();
    return true;
  } catch (error) {
    if (error.code !== 0x86) throw error;
    return false;
  }
}

/** Gives `user` a new password in the file, and has the gateway read it again (SIGHUP). */
async function rotate(user, password) {
  setPassword(passwordFile, user, password);
  const reloads = () => gateway.output.filter((line) => line.includes('SIGHUP: reloading')).length;
  const before = reloads();
  gateway.kill('SIGHUP');
  await waitFor('the reload', () => reloads() > before);
  await waitFor(`the new password of ${user}`, () => acceptsOverTcp(user, password));
}

/** Drops the gateway's connection of client `id` (admin API). */
async function dropConnection(id) {
  const response = await admin(`/api/v1/clients/${id}`, { method: 'DELETE' });
  assert.equal(response.status, 204);
}

const status = (page, name) => page.evaluate((name) => window.auth.status(name), name);

test('refused credentials are typed errors with the reason code as sent, in MQTT 5.0 and 3.1.1', { timeout: 60_000 }, async () => {
  const { page, errors } = await authPage();
  const cases = [
    // A wrong password: bad user name or password.
    [{ user: 'alice', password: 'wrong', protocolVersion: 5 }, 'BAD_CREDENTIALS', 0x86],
    [{ user: 'alice', password: 'wrong', protocolVersion: 4 }, 'BAD_CREDENTIALS', 0x04],
    // No credentials at all, and anonymous clients are not allowed: not authorized.
    [{ protocolVersion: 5 }, 'NOT_AUTHORIZED', 0x87],
    [{ protocolVersion: 4 }, 'NOT_AUTHORIZED', 0x05],
  ];
  for (const [index, [options, code, reasonCode]] of cases.entries()) {
    const name = `refused-${index}`;
    const result = await page.evaluate(([url, name, options]) => window.auth.connect(url, name, options), [gateway.wsUrl, name, { ...options, clientId: `pw-${name}` }]);
    assert.equal(result.error?.code, code, JSON.stringify(result));
    assert.equal(result.error.reasonCode, reasonCode, JSON.stringify(result));
    assert.equal(result.error.name, 'MqttError');
    assert.equal((await status(page, name)).calls, 1);
  }
  assert.deepEqual(errors, []);
  await page.close();
});

test('the credentials function is called before every attempt: a password rotated between attempts gets the client back in', { timeout: 60_000 }, async () => {
  const { page, errors } = await authPage();
  const result = await page.evaluate(
    ([url]) => window.auth.connect(url, 'rotating', { clientId: 'pw-rotating', user: 'alice', password: 'alice-1', reconnect: { minDelayMs: 100, maxDelayMs: 500 } }),
    [gateway.wsUrl],
  );
  assert.equal(result.state, 'connected', JSON.stringify(result));
  assert.equal((await status(page, 'rotating')).calls, 1);
  for (const [round, password] of ['alice-2', 'alice-3'].entries()) {
    // The broker now knows only the new password...
    await rotate('alice', password);
    assert.equal(await acceptsOverTcp('alice', `alice-${round + 1}`), false, 'the previous password is refused');
    // ...which the application's function gives from now on; the connection drops.
    await page.evaluate(([password]) => window.auth.setPassword('rotating', password), [password]);
    await dropConnection('pw-rotating');
    const connects = round + 1;
    const current = await waitFor('the reconnect', async () => {
      const current = await status(page, 'rotating');
      return current.events.filter((event) => event.type === 'connect').length === connects && current;
    });
    assert.equal(current.state, 'connected');
    assert.equal(current.calls, 2 + round, 'one more call for the one more attempt');
    assert.deepEqual(
      current.events.slice(-3).map(({ type, reconnect, attempt, error }) => ({ type, reconnect, attempt, code: error?.code })),
      [
        { type: 'close', reconnect: true, attempt: undefined, code: 'SERVER_DISCONNECTED' },
        { type: 'reconnect', reconnect: undefined, attempt: 1, code: undefined },
        { type: 'connect', reconnect: undefined, attempt: undefined, code: undefined },
      ],
    );
  }
  await page.evaluate(() => window.auth.end('rotating'));
  assert.deepEqual(errors, []);
  await page.close();
});

test('credentials refused on a reconnect stop the retry loop with BAD_CREDENTIALS', { timeout: 60_000 }, async () => {
  const { page, errors } = await authPage();
  const result = await page.evaluate(
    ([url]) => window.auth.connect(url, 'stale', { clientId: 'pw-stale', user: 'bob', password: 'bob-1', reconnect: { minDelayMs: 100, maxDelayMs: 200 } }),
    [gateway.wsUrl],
  );
  assert.equal(result.state, 'connected', JSON.stringify(result));
  // The broker changes bob's password; the application keeps giving the old one.
  await rotate('bob', 'bob-2');
  const refusedBefore = await refusals('bad_password');
  await dropConnection('pw-stale');
  const closed = await waitFor('the client to close', async () => {
    const current = await status(page, 'stale');
    return current.state === 'closed' && current;
  });
  assert.deepEqual(
    closed.events.map(({ type, reconnect, attempt, error }) => ({ type, reconnect, attempt, code: error?.code, reasonCode: error?.reasonCode })),
    [
      { type: 'close', reconnect: true, attempt: undefined, code: 'SERVER_DISCONNECTED', reasonCode: 0x98 },
      { type: 'reconnect', reconnect: undefined, attempt: 1, code: undefined, reasonCode: undefined },
      { type: 'error', reconnect: undefined, attempt: undefined, code: 'BAD_CREDENTIALS', reasonCode: 0x86 },
      { type: 'close', reconnect: false, attempt: undefined, code: 'BAD_CREDENTIALS', reasonCode: 0x86 },
    ],
  );
  assert.equal(closed.calls, 2);
  assert.equal(await refusals('bad_password'), refusedBefore + 1);
  // No further attempt: at least ten reconnect delays later, still one refusal and two calls.
  await sleep(2_000);
  const later = await status(page, 'stale');
  assert.equal(later.calls, 2);
  assert.equal(later.events.length, closed.events.length);
  assert.equal(await refusals('bad_password'), refusedBefore + 1);
  assert.deepEqual(errors, []);
  await page.close();
});

test('the page SCRAM client reproduces the example of RFC 7677', async () => {
  const encoder = new TextEncoder();
  const exchange = scramStart('user', 'rOprNGfwEbeRWgbNEkqO');
  assert.equal(new TextDecoder().decode(exchange.clientFirst), 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO');
  const serverFirst = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
  const clientFinal = await exchange.clientFinal(encoder.encode(serverFirst), 'pencil');
  assert.equal(
    new TextDecoder().decode(clientFinal),
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  );
  assert.equal(exchange.verify(encoder.encode('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')), true);
  assert.equal(exchange.verify(encoder.encode('v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')), false);
  await assert.rejects(exchange.clientFinal(encoder.encode('r=someone-else,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'), 'pencil'), /nonce/);
});

test('SCRAM-SHA-256 through onAuth: the exchange, the server signature, reauthenticate()', { timeout: 60_000 }, async () => {
  // `gateway passwd` keeps a SCRAM verifier beside each hash.
  assert.match(readFileSync(passwordFile, 'utf8'), /^carol:\$argon2id\$[^:]+:SCRAM-SHA-256\$4096:/m);
  const { page, errors } = await authPage();
  const connect = (name, password) =>
    page.evaluate(
      ([url, name, password]) =>
        window.auth.connect(url, name, { clientId: `pw-${name}`, user: 'carol', password, scram: true, reconnect: { minDelayMs: 100, maxDelayMs: 500 } }),
      [gateway.wsUrl, name, password],
    );
  const result = await connect('scram', 'carol-secret');
  assert.equal(result.state, 'connected', JSON.stringify(result));
  assert.equal(result.connack.method, 'SCRAM-SHA-256');
  let current = await status(page, 'scram');
  // One AUTH 0x18 (server-first) answered; the CONNACK's server-final proves the server's key.
  assert.deepEqual([current.calls, current.auths, current.verified], [1, [0x18], [true]]);

  // Re-authentication: AUTH 0x19 with a new client-first, the same exchange, AUTH 0x00.
  const again = await page.evaluate(() => window.auth.reauthenticate('scram', 'carol-secret'));
  assert.deepEqual(again, { reasonCode: 0, method: 'SCRAM-SHA-256', verified: true });
  current = await status(page, 'scram');
  assert.deepEqual([current.state, current.auths], ['connected', [0x18, 0x18]]);

  // A re-authentication with a wrong password: the broker disconnects (0x87), reauthenticate()
  // rejects with that, and the client reconnects (with the right password, from credentials).
  const refused = await page.evaluate(() => window.auth.reauthenticate('scram', 'wrong'));
  assert.equal(refused.error?.code, 'SERVER_DISCONNECTED', JSON.stringify(refused));
  assert.equal(refused.error.reasonCode, 0x87);
  current = await waitFor('the reconnect', async () => {
    const current = await status(page, 'scram');
    return current.events.some((event) => event.type === 'connect') && current;
  });
  assert.equal(current.state, 'connected');
  assert.equal(current.calls, 2);
  assert.deepEqual(current.verified, [true, true]);
  await page.evaluate(() => window.auth.end('scram'));

  // A wrong password at CONNECT: the proof fails, 0x86, for good.
  const wrong = await connect('scram-wrong', 'not-carols');
  assert.deepEqual([wrong.error?.code, wrong.error?.reasonCode], ['BAD_CREDENTIALS', 0x86], JSON.stringify(wrong));
  current = await status(page, 'scram-wrong');
  assert.deepEqual([current.calls, current.auths], [1, [0x18]]);
  assert.deepEqual(errors, []);
  await page.close();
});

/**
 * A scripted MQTT 5.0 broker over WebSocket for the method `TEST-ECHO`: it answers a CONNECT
 * (data `first:N`) with AUTH 0x18 `challenge:first:N`, and the client's AUTH 0x18 with the
 * CONNACK (data `final:<the answer>`); AUTH 0x19 (data D) with AUTH 0x18 `challenge:D`, and
 * the answer with AUTH 0x00 `final:<the answer>`, or with DISCONNECT 0x87 when the
 * re-authentication's data was `refuse`. It records every packet the clients send.
 */
async function scriptedBroker() {
  const received = [];
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => 'mqtt' });
  await new Promise((resolve) => server.once('listening', resolve));
  server.on('connection', (socket) => {
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    const send = (packet) => socket.send(mqttPacket.generate(packet, { protocolVersion: 5 }));
    const auth = (reasonCode, data) => ({ cmd: 'auth', reasonCode, properties: { authenticationMethod: 'TEST-ECHO', authenticationData: Buffer.from(data) } });
    let connected = false;
    let refuse = false;
    parser.on('packet', (packet) => {
      const data = packet.properties?.authenticationData?.toString();
      received.push({ cmd: packet.cmd, reasonCode: packet.reasonCode, method: packet.properties?.authenticationMethod, data });
      if (packet.cmd === 'connect') {
        send(auth(0x18, `challenge:${data}`));
      } else if (packet.cmd === 'auth' && packet.reasonCode === 0x19) {
        refuse = data === 'refuse';
        send(auth(0x18, `challenge:${data}`));
      } else if (packet.cmd === 'auth' && !connected) {
        connected = true;
        send({ cmd: 'connack', reasonCode: 0, sessionPresent: false, properties: { authenticationMethod: 'TEST-ECHO', authenticationData: Buffer.from(`final:${data}`) } });
      } else if (packet.cmd === 'auth' && refuse) {
        send({ cmd: 'disconnect', reasonCode: 0x87 });
        socket.close();
      } else if (packet.cmd === 'auth') {
        send(auth(0x00, `final:${data}`));
      } else if (packet.cmd === 'disconnect') {
        socket.close();
      }
    });
    socket.on('message', (bytes) => parser.parse(bytes));
  });
  return {
    url: `ws://127.0.0.1:${server.address().port}/mqtt`,
    received,
    /** Drops every connection. */
    drop: () => server.clients.forEach((socket) => socket.terminate()),
    close: () => new Promise((resolve) => {
      server.clients.forEach((socket) => socket.terminate());
      server.close(resolve);
    }),
  };
}

test('enhanced authentication against a scripted broker: onAuth for each AUTH 0x18, reauthenticate(), the failures', { timeout: 60_000 }, async () => {
  const broker = await scriptedBroker();
  const { page, errors } = await authPage();
  try {
    const result = await page.evaluate(([url]) => window.auth.connectScripted(url, 'echo'), [broker.url]);
    // CONNECT with the first data, onAuth's answer to the challenge, the CONNACK's final data.
    assert.deepEqual(result, { state: 'connected', connack: { data: 'final:answer:challenge:first:1', method: 'TEST-ECHO' } });
    assert.deepEqual(broker.received.splice(0), [
      { cmd: 'connect', reasonCode: undefined, method: 'TEST-ECHO', data: 'first:1' },
      { cmd: 'auth', reasonCode: 0x18, method: 'TEST-ECHO', data: 'answer:challenge:first:1' },
    ]);
    let current = await status(page, 'echo');
    assert.deepEqual(current.auths, [{ data: 'challenge:first:1', reasonCode: 0x18, method: 'TEST-ECHO' }]);

    // Re-authentication: AUTH 0x19, the same exchange, resolved by AUTH 0x00.
    const again = await page.evaluate(() => window.auth.reauthenticateWith('echo', 'again'));
    assert.deepEqual(again, { reasonCode: 0, data: 'final:answer:challenge:again' });
    assert.deepEqual(broker.received.splice(0), [
      { cmd: 'auth', reasonCode: 0x19, method: 'TEST-ECHO', data: 'again' },
      { cmd: 'auth', reasonCode: 0x18, method: 'TEST-ECHO', data: 'answer:challenge:again' },
    ]);

    // Refused by a DISCONNECT: reauthenticate() rejects with it, and the client reconnects
    // with fresh data from its credentials function.
    const refused = await page.evaluate(() => window.auth.reauthenticateWith('echo', 'refuse'));
    assert.equal(refused.error?.code, 'SERVER_DISCONNECTED', JSON.stringify(refused));
    assert.equal(refused.error.reasonCode, 0x87);
    current = await waitFor('the reconnect', async () => {
      const current = await status(page, 'echo');
      return current.events.some((event) => event.type === 'connect') && current;
    });
    assert.equal(current.calls, 2);
    const last = current.events.at(-1);
    assert.deepEqual([last.type, last.data], ['connect', 'final:answer:challenge:first:2']);

    // onAuth throws in a re-authentication: it rejects with CREDENTIALS_FAILED (the cause is
    // what onAuth threw), the client sends DISCONNECT and reconnects, where onAuth throws
    // again: the backoff goes on, every attempt failing the same way, until onAuth answers.
    await page.evaluate(() => window.auth.setFailAuth('echo', true));
    const failed = await page.evaluate(() => window.auth.reauthenticateWith('echo', 'x'));
    assert.deepEqual([failed.error?.code, failed.error?.cause], ['CREDENTIALS_FAILED', 'no answer today']);
    await waitFor('two failed attempts', async () => (await status(page, 'echo')).calls >= 4);
    current = await status(page, 'echo');
    const failures = current.events.filter((event) => event.type === 'close' && event.error?.code === 'CREDENTIALS_FAILED');
    assert.ok(failures.length >= 2, JSON.stringify(current.events));
    assert.ok(failures.every((event) => event.reconnect && event.error.cause === 'no answer today'));
    assert.ok(broker.received.some((packet) => packet.cmd === 'disconnect' && packet.reasonCode === 0x80));
    await page.evaluate(() => window.auth.setFailAuth('echo', false));
    await waitFor('the client back in', async () => (await status(page, 'echo')).state === 'connected');
    await page.evaluate(() => window.auth.end('echo'));

    // onAuth throws on the first attempt: connect() rejects with CREDENTIALS_FAILED.
    await page.evaluate(() => {
      window.auth.clients.first = undefined;
    });
    const first = await page.evaluate(([url]) => {
      const connecting = window.auth.connectScripted(url, 'first');
      window.auth.setFailAuth('first', true);
      return connecting;
    }, [broker.url]);
    assert.deepEqual([first.error?.code, first.error?.cause], ['CREDENTIALS_FAILED', 'no answer today']);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await broker.close();
  }
});
