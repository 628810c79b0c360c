// Connection: the states a client's events lead to, their wording, and clients overtaken by a
// newer Connect or a Disconnect. The MQTT client is a fake with the real one's events.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Connection } from '../../src/connection.js';

class FakeClient extends EventTarget {
  constructor(url, options) {
    super();
    this.url = url;
    this.options = options;
    this.ended = false;
  }
  async end() {
    this.ended = true;
  }
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** A MqttClient class whose `connect` waits until the test settles it. */
function fakeClientClass() {
  const attempts = [];
  const MqttClient = {
    connect(url, options) {
      return new Promise((resolve, reject) => {
        const client = new FakeClient(url, options);
        attempts.push({ client, accept: () => resolve(client), refuse: (error) => reject(error) });
      });
    },
  };
  return { MqttClient, attempts };
}

function setup(hooks = {}) {
  const { MqttClient, attempts } = fakeClientClass();
  const calls = [];
  const failures = [];
  const connection = new Connection({
    onFailed: (error) => failures.push(error),
    ...hooks,
    loadClient: async () => MqttClient,
    onChange: () => calls.push(`change:${connection.state}`),
    onConnected: () => calls.push('connected'),
    onReconnected: () => calls.push('reconnected'),
    onDisconnect: () => calls.push('disconnect'),
  });
  return { connection, attempts, calls, failures };
}

const settings = { url: 'ws://127.0.0.1:8080/mqtt', clientId: 'dashboard-t', protocolVersion: 5, keepalive: 30, username: '', password: '' };
const refused = (reasonCode) => Object.assign(new Error('connection refused by the broker'), { code: 'CONNECTION_REFUSED', reasonCode });
const settle = () => new Promise((resolve) => setImmediate(resolve));

test('connecting, then connected, with the settings as client options', async () => {
  const { connection, attempts, calls } = setup();
  const done = connection.connect({ ...settings, username: 'ann', password: 'pw' });
  await settle();
  assert.equal(connection.state, 'connecting');
  assert.equal(connection.statusText(0), 'connecting to ws://127.0.0.1:8080/mqtt…');
  const [{ client, accept }] = attempts;
  assert.equal(client.url, settings.url);
  assert.deepEqual(client.options, {
    clientId: 'dashboard-t',
    protocolVersion: 5,
    keepalive: 30,
    clean: true,
    reconnect: { minDelayMs: 500, maxDelayMs: 10_000 },
    username: 'ann',
    password: 'pw',
  });
  accept();
  await done;
  assert.equal(connection.client, client);
  assert.equal(connection.state, 'connected');
  assert.equal(connection.statusText(0), 'connected (MQTT 5.0)');
  assert.deepEqual(calls, ['disconnect', 'change:connecting', 'change:connected', 'connected']);
});

test('no user name or password options when they are empty; MQTT 3.1.1 is named so', async () => {
  const { connection, attempts } = setup();
  const done = connection.connect({ ...settings, protocolVersion: 4 });
  await settle();
  assert.equal('username' in attempts[0].client.options, false);
  assert.equal('password' in attempts[0].client.options, false);
  attempts[0].accept();
  await done;
  assert.equal(connection.statusText(0), 'connected (MQTT 3.1.1)');
});

test('a failed connect shows refused with the reason', async () => {
  const { connection, attempts } = setup();
  const done = connection.connect(settings);
  await settle();
  attempts[0].refuse(Object.assign(new Error('bad user name or password'), { reasonCode: 0x86 }));
  await done;
  assert.equal(connection.state, 'refused');
  assert.equal(connection.client, null);
  assert.equal(connection.statusText(0), 'refused: bad user name or password (reason 0x86)');
});

test('a dropped connection counts down to the next attempt, then comes back', async () => {
  const { connection, attempts, calls } = setup();
  const done = connection.connect(settings);
  await settle();
  attempts[0].accept();
  await done;
  const { client } = attempts[0];
  calls.length = 0;

  client.emit('close', { error: new Error('connection lost'), reconnect: true });
  assert.equal(connection.state, 'reconnecting');
  assert.equal(connection.lastError, 'connection lost');
  client.emit('reconnect', { attempt: 2, delayMs: 3000 });
  const at = connection.reconnectAt;
  assert.equal(connection.statusText(at - 2500), 'reconnecting in 3 s (attempt 2) · connection lost');
  assert.equal(connection.statusText(at - 900), 'reconnecting in 1 s (attempt 2) · connection lost');
  assert.equal(connection.statusText(at + 10), 'reconnecting… (attempt 2) · connection lost');

  client.emit('connect');
  assert.equal(connection.state, 'connected');
  assert.equal(connection.lastError, '');
  assert.equal(connection.reconnectAttempt, 0);
  assert.deepEqual(calls, ['change:reconnecting', 'change:reconnecting', 'change:connected', 'reconnected']);
});

test('a reconnect event without an attempt number counts attempts itself', async () => {
  const { connection, attempts } = setup();
  const done = connection.connect(settings);
  await settle();
  attempts[0].accept();
  await done;
  attempts[0].client.emit('reconnect', {});
  attempts[0].client.emit('reconnect', {});
  assert.equal(connection.reconnectAttempt, 2);
});

test('a close without reconnect is refused or closed, as its error says', async () => {
  for (const [detail, state, text] of [
    [{ error: Object.assign(new Error('not authorized'), { code: 'CONNECTION_REFUSED' }), reconnect: false }, 'refused', 'refused: not authorized'],
    [{ error: Object.assign(new Error('not authorized'), { code: 'NOT_AUTHORIZED' }), reconnect: false }, 'refused', 'refused: not authorized'],
    [{ error: new Error('protocol error'), reconnect: false }, 'closed', 'not connected: protocol error'],
    [{ reconnect: false }, 'closed', 'not connected'],
  ]) {
    const { connection, attempts } = setup();
    const done = connection.connect(settings);
    await settle();
    attempts[0].accept();
    await done;
    attempts[0].client.emit('close', detail);
    assert.equal(connection.state, state);
    assert.equal(connection.statusText(0), text);
  }
});

test('an error event is remembered and redrawn without changing the state', async () => {
  const { connection, attempts, calls } = setup();
  const done = connection.connect(settings);
  await settle();
  attempts[0].accept();
  await done;
  calls.length = 0;
  attempts[0].client.emit('error', new Error('queue full'));
  assert.equal(connection.state, 'connected');
  assert.equal(connection.lastError, 'queue full');
  assert.deepEqual(calls, ['change:connected']);
});

test('Disconnect ends the client, and its later events are ignored', async () => {
  const { connection, attempts, calls } = setup();
  const done = connection.connect(settings);
  await settle();
  attempts[0].accept();
  await done;
  const { client } = attempts[0];
  await connection.disconnect();
  assert.equal(client.ended, true);
  assert.equal(connection.client, null);
  assert.equal(connection.state, 'closed');
  assert.equal(connection.statusText(0), 'not connected: disconnected');
  calls.length = 0;
  client.emit('close', { error: new Error('late'), reconnect: true });
  client.emit('reconnect', { attempt: 1, delayMs: 500 });
  client.emit('connect');
  client.emit('error', new Error('late error'));
  assert.equal(connection.state, 'closed');
  assert.equal(connection.lastError, '');
  assert.deepEqual(calls, [], 'nothing redrawn, nothing resubscribed');
});

test('a connect overtaken by a newer one ends its client and leaves the newer in charge', async () => {
  const { connection, attempts } = setup();
  const first = connection.connect(settings);
  await settle();
  const second = connection.connect({ ...settings, url: 'ws://other/mqtt' });
  await settle();
  assert.equal(attempts.length, 2);
  attempts[0].accept();
  await first;
  assert.equal(attempts[0].client.ended, true, 'the overtaken client is ended');
  assert.equal(connection.client, null);
  assert.equal(connection.state, 'connecting');
  attempts[1].accept();
  await second;
  assert.equal(connection.client, attempts[1].client);
  assert.equal(connection.state, 'connected');
});

test('an overtaken connect that fails does not overwrite the newer state', async () => {
  const { connection, attempts } = setup();
  const first = connection.connect(settings);
  await settle();
  const second = connection.connect(settings);
  await settle();
  attempts[1].accept();
  await second;
  attempts[0].refuse(new Error('too late'));
  await first;
  assert.equal(connection.state, 'connected');
});

test('a refused connect is reported to onFailed with the client’s error', async () => {
  const { connection, attempts, failures } = setup();
  const done = connection.connect(settings);
  await settle();
  const error = refused(0x87);
  attempts[0].refuse(error);
  await done;
  assert.deepEqual(failures, [error]);
});

test('a close for good with an error goes to onFailed; a retried one or a clean one does not', async () => {
  for (const [detail, reported] of [
    [{ error: refused(0x86), reconnect: false }, true],
    [{ error: new Error('protocol error'), reconnect: false }, true],
    [{ error: new Error('connection lost'), reconnect: true }, false],
    [{ reconnect: false }, false],
  ]) {
    const { connection, attempts, failures } = setup();
    const done = connection.connect(settings);
    await settle();
    attempts[0].accept();
    await done;
    attempts[0].client.emit('close', detail);
    assert.deepEqual(failures, reported ? [detail.error] : [], JSON.stringify(detail));
  }
});

test('an overtaken connect’s refusal is not reported', async () => {
  const { connection, attempts, failures } = setup();
  const first = connection.connect(settings);
  await settle();
  const second = connection.connect(settings);
  await settle();
  attempts[0].refuse(refused(0x87));
  await first;
  attempts[1].accept();
  await second;
  assert.deepEqual(failures, []);
});

test('a broker URL the page may not reach is refused before any attempt', async () => {
  const { connection, attempts } = setup({ urlProblem: (url) => (url.includes('evil') ? 'not this one' : null) });
  await connection.connect({ ...settings, url: 'ws://evil/mqtt' });
  assert.equal(attempts.length, 0);
  assert.equal(connection.state, 'refused');
  assert.equal(connection.statusText(0), 'refused: not this one');
  const done = connection.connect(settings);
  await settle();
  assert.equal(attempts.length, 1);
  attempts[0].accept();
  await done;
  assert.equal(connection.state, 'connected');
});

test('a node of a cluster is named, from the CONNACK and again from each reconnect’s', async () => {
  const { connection, attempts } = setup();
  const done = connection.connect(settings);
  await settle();
  const [{ client, accept }] = attempts;
  client.connack = { sessionPresent: false, properties: { userProperties: { node: 'a' } } };
  accept();
  await done;
  assert.equal(connection.statusText(0), 'connected to node a (MQTT 5.0)');
  client.emit('close', { reconnect: true });
  client.emit('connect', { sessionPresent: false, properties: { userProperties: { node: 'b' } } });
  assert.equal(connection.statusText(0), 'connected to node b (MQTT 5.0)', 'the load balancer sent it elsewhere');
  client.emit('connect', { sessionPresent: false });
  assert.equal(connection.statusText(0), 'connected (MQTT 5.0)', 'a single node names none');
});
