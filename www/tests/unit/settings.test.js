// Connection settings: defaults, what is restored from storage, the address's overrides, and
// what is saved.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initialSettings, storedSettings, settingsFromForm, newClientId, storedNeedsCleaning, brokerUrlProblem, SETTINGS_KEY } from '../../src/settings.js';

const page = { stored: null, search: '', protocol: 'http:', host: '127.0.0.1:8080', clientId: 'dashboard-fresh' };

test('with nothing saved, the page connects to its own origin with MQTT 5', () => {
  assert.deepEqual(initialSettings(page), {
    url: 'ws://127.0.0.1:8080/mqtt',
    clientId: 'dashboard-fresh',
    protocolVersion: 5,
    keepalive: 30,
  });
  assert.equal(initialSettings({ ...page, protocol: 'https:', host: 'example.org' }).url, 'wss://example.org/mqtt');
});

test('saved settings are restored, but never a credential or a client id', () => {
  const stored = JSON.stringify({ url: 'ws://127.0.0.1:8080/other', protocolVersion: 4, keepalive: 10, username: 'ann', password: 'secret', clientId: 'old-tab' });
  const settings = initialSettings({ ...page, stored });
  assert.deepEqual(settings, { url: 'ws://127.0.0.1:8080/other', clientId: 'dashboard-fresh', protocolVersion: 4, keepalive: 10 });
});

test('a saved broker URL of another origin is not restored (the page could not reach it)', () => {
  const stored = JSON.stringify({ url: 'ws://broker:9001/mqtt', protocolVersion: 4 });
  const settings = initialSettings({ ...page, stored });
  assert.equal(settings.url, 'ws://127.0.0.1:8080/mqtt');
  assert.equal(settings.protocolVersion, 4);
});

test('a user name or password saved by an older page is cleaned out of storage', () => {
  assert.equal(storedNeedsCleaning(JSON.stringify({ url: 'ws://a/mqtt', username: 'ann' })), true);
  assert.equal(storedNeedsCleaning(JSON.stringify({ url: 'ws://a/mqtt', password: 'x' })), true);
  assert.equal(storedNeedsCleaning(storedSettings({ url: 'ws://a/mqtt', protocolVersion: 5, keepalive: 30 })), false);
  for (const stored of [null, '', '{bad', 'null', '"text"']) assert.equal(storedNeedsCleaning(stored), false, String(stored));
});

test('unreadable saved settings are ignored', () => {
  for (const stored of ['{not json', '', 'null']) {
    const settings = initialSettings({ ...page, stored });
    assert.equal(settings.url, 'ws://127.0.0.1:8080/mqtt', `stored ${JSON.stringify(stored)}`);
    assert.equal(settings.protocolVersion, 5);
  }
});

test('the address overrides the broker URL and the protocol, which must be 4 or 5', () => {
  const stored = JSON.stringify({ url: 'ws://127.0.0.1:8080/saved', protocolVersion: 5 });
  const settings = initialSettings({ ...page, stored, search: '?url=ws%3A%2F%2Fother%3A1%2Fmqtt&protocol=4' });
  // Taken as asked; brokerUrlProblem then says why it is not reachable from this page.
  assert.equal(settings.url, 'ws://other:1/mqtt');
  assert.equal(settings.protocolVersion, 4);
  assert.equal(initialSettings({ ...page, stored, search: '?protocol=3' }).protocolVersion, 5);
  assert.equal(initialSettings({ ...page, stored, search: '?url=' }).url, 'ws://127.0.0.1:8080/saved');
});

test('what is saved leaves out any credential and the client id', () => {
  const saved = JSON.parse(storedSettings({ url: 'ws://a/mqtt', clientId: 'x', protocolVersion: 4, keepalive: 5, username: 'u', password: 'p' }));
  assert.deepEqual(saved, { url: 'ws://a/mqtt', protocolVersion: 4, keepalive: 5 });
});

test('saved settings come back as they were saved', () => {
  const settings = { ...initialSettings(page), url: 'ws://127.0.0.1:8080/b', protocolVersion: 4, keepalive: 0 };
  const restored = initialSettings({ ...page, stored: storedSettings(settings) });
  assert.deepEqual(restored, settings);
});

test('the broker must be the page’s own origin, as the CSP (connect-src self) insists', () => {
  const http = { protocol: 'http:', host: '127.0.0.1:8080' };
  const https = { protocol: 'https:', host: 'gateway.lan:8443' };
  assert.equal(brokerUrlProblem('ws://127.0.0.1:8080/mqtt', http), null);
  assert.equal(brokerUrlProblem('ws://127.0.0.1:8080/not-mqtt', http), null);
  assert.equal(brokerUrlProblem('wss://gateway.lan:8443/mqtt', https), null);
  assert.match(brokerUrlProblem('ws://gateway.lan:8443/mqtt', https), /only to the gateway that serves it \(wss:\/\/gateway\.lan:8443/);
  assert.match(brokerUrlProblem('ws://127.0.0.1:9001/mqtt', http), /only to the gateway/);
  assert.match(brokerUrlProblem('ws://evil.example/mqtt', http), /only to the gateway/);
  assert.match(brokerUrlProblem('http://127.0.0.1:8080/mqtt', http), /only to the gateway/);
  assert.match(brokerUrlProblem('not a url', http), /^not a URL/);
});

test('the form is read with trimmed text and numbers', () => {
  const field = (value) => ({ value });
  const settings = settingsFromForm({
    url: field('  ws://c/mqtt '),
    clientId: field(' me '),
    protocolVersion: field('4'),
    keepalive: field('not a number'),
  });
  assert.deepEqual(settings, { url: 'ws://c/mqtt', clientId: 'me', protocolVersion: 4, keepalive: 0 });
  assert.equal(settingsFromForm({ ...Object.fromEntries(['url', 'clientId', 'protocolVersion'].map((n) => [n, field('5')])), keepalive: field('60') }).keepalive, 60);
});

test('client ids are fresh per page and the storage key is the one pages have always used', () => {
  assert.match(newClientId(), /^dashboard-[0-9a-z]{1,8}$/);
  assert.notEqual(newClientId(), newClientId());
  assert.equal(SETTINGS_KEY, 'mqtt-gateway-dashboard');
});
