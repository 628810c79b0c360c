// Connection settings: defaults, what is restored from storage, the address's overrides, and
// what is saved.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initialSettings, storedSettings, settingsFromForm, newClientId, SETTINGS_KEY } from '../../src/settings.js';

const page = { stored: null, search: '', protocol: 'http:', host: '127.0.0.1:8080', clientId: 'dashboard-fresh' };

test('with nothing saved, the page connects to its own origin with MQTT 5', () => {
  assert.deepEqual(initialSettings(page), {
    url: 'ws://127.0.0.1:8080/mqtt',
    clientId: 'dashboard-fresh',
    protocolVersion: 5,
    keepalive: 30,
    username: '',
    password: '',
  });
  assert.equal(initialSettings({ ...page, protocol: 'https:', host: 'example.org' }).url, 'wss://example.org/mqtt');
});

test('saved settings are restored, but never a password or a client id', () => {
  const stored = JSON.stringify({ url: 'ws://broker:9001/mqtt', protocolVersion: 4, keepalive: 10, username: 'ann', password: 'secret', clientId: 'old-tab' });
  const settings = initialSettings({ ...page, stored });
  assert.equal(settings.url, 'ws://broker:9001/mqtt');
  assert.equal(settings.protocolVersion, 4);
  assert.equal(settings.keepalive, 10);
  assert.equal(settings.username, 'ann');
  assert.equal(settings.password, '');
  assert.equal(settings.clientId, 'dashboard-fresh');
});

test('unreadable saved settings are ignored', () => {
  for (const stored of ['{not json', '', 'null']) {
    const settings = initialSettings({ ...page, stored });
    assert.equal(settings.url, 'ws://127.0.0.1:8080/mqtt', `stored ${JSON.stringify(stored)}`);
    assert.equal(settings.protocolVersion, 5);
  }
});

test('the address overrides the broker URL and the protocol, which must be 4 or 5', () => {
  const stored = JSON.stringify({ url: 'ws://saved/mqtt', protocolVersion: 5 });
  const settings = initialSettings({ ...page, stored, search: '?url=ws%3A%2F%2Fother%3A1%2Fmqtt&protocol=4' });
  assert.equal(settings.url, 'ws://other:1/mqtt');
  assert.equal(settings.protocolVersion, 4);
  assert.equal(initialSettings({ ...page, stored, search: '?protocol=3' }).protocolVersion, 5);
  assert.equal(initialSettings({ ...page, stored, search: '?url=' }).url, 'ws://saved/mqtt');
});

test('what is saved leaves out the password and the client id', () => {
  const saved = JSON.parse(storedSettings({ url: 'ws://a/mqtt', clientId: 'x', protocolVersion: 4, keepalive: 5, username: 'u', password: 'p' }));
  assert.deepEqual(saved, { url: 'ws://a/mqtt', protocolVersion: 4, keepalive: 5, username: 'u' });
});

test('saved settings come back as they were saved', () => {
  const settings = { ...initialSettings(page), url: 'ws://b/mqtt', protocolVersion: 4, keepalive: 0, username: 'bo' };
  const restored = initialSettings({ ...page, stored: storedSettings(settings) });
  assert.deepEqual(restored, { ...settings, password: '' });
});

test('the form is read with trimmed text and numbers', () => {
  const field = (value) => ({ value });
  const settings = settingsFromForm({
    url: field('  ws://c/mqtt '),
    clientId: field(' me '),
    protocolVersion: field('4'),
    keepalive: field('not a number'),
    username: field(' spaced '),
    password: field(' pw '),
  });
  assert.deepEqual(settings, { url: 'ws://c/mqtt', clientId: 'me', protocolVersion: 4, keepalive: 0, username: ' spaced ', password: ' pw ' });
  assert.equal(settingsFromForm({ ...Object.fromEntries(['url', 'clientId', 'protocolVersion', 'username', 'password'].map((n) => [n, field('5')])), keepalive: field('60') }).keepalive, 60);
});

test('client ids are fresh per page and the storage key is the one pages have always used', () => {
  assert.match(newClientId(), /^dashboard-[0-9a-z]{1,8}$/);
  assert.notEqual(newClientId(), newClientId());
  assert.equal(SETTINGS_KEY, 'mqtt-gateway-dashboard');
});
