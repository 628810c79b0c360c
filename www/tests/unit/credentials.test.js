// Sign-in credentials: which refusals ask for the form, the storage policy (memory, the tab's
// sessionStorage only when asked, never anything else), and the API's Authorization header.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  signInRefusal,
  looksLikeToken,
  authorizationHeader,
  connectCredentials,
  credentialsProblem,
  CredentialStore,
  tabCredentialStore,
  REMEMBER_KEY,
} from '../../src/credentials.js';

/** An MqttError as the client rejects with it. */
const mqttError = (code, reasonCode) => Object.assign(new Error(code), { name: 'MqttError', code, reasonCode });

test('refused CONNACKs that ask for credentials, in 5.0 and in 3.1.1 codes', () => {
  assert.equal(signInRefusal(mqttError('BAD_CREDENTIALS', 0x86)), 'bad-credentials');
  assert.equal(signInRefusal(mqttError('BAD_CREDENTIALS', 0x04)), 'bad-credentials');
  assert.equal(signInRefusal(mqttError('NOT_AUTHORIZED', 0x87)), 'not-authorized');
  assert.equal(signInRefusal(mqttError('NOT_AUTHORIZED', 0x05)), 'not-authorized');
});

test('other failures are not a sign-in matter', () => {
  for (const error of [
    mqttError('CONNECTION_REFUSED', 0x88), // server unavailable
    mqttError('CONNECTION_REFUSED', 0x86), // not how the client reports bad credentials
    mqttError('CONNECTION_REFUSED', 0x8a), // banned
    mqttError('CONNECTION_REFUSED', undefined),
    mqttError('SUBSCRIBE_REFUSED', 0x87), // a SUBACK refusal is the subscription's
    mqttError('SERVER_DISCONNECTED', 0x87),
    mqttError('CONNECT_FAILED', undefined),
    new Error('bad user name or password'),
    null,
    undefined,
    'CONNECTION_REFUSED',
  ]) {
    assert.equal(signInRefusal(error), null, String(error?.code ?? error));
  }
});

test('a token is recognised as the gateway does: eyJ, three base64url parts', () => {
  assert.equal(looksLikeToken('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln-_'), true);
  assert.equal(looksLikeToken('eyJ.a.b'), true);
  assert.equal(looksLikeToken('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0'), false, 'two parts');
  assert.equal(looksLikeToken('eyJa.b.c.d'), false, 'four parts');
  assert.equal(looksLikeToken('eyJa.b+.c'), false, 'not base64url');
  assert.equal(looksLikeToken('hunter2'), false);
  assert.equal(looksLikeToken(''), false);
});

test('the API gets HTTP Basic for a password, Bearer for a token, nothing without credentials', () => {
  assert.equal(authorizationHeader({ username: 'admin', password: 'correct horse' }), `Basic ${Buffer.from('admin:correct horse').toString('base64')}`);
  // UTF-8, as the gateway decodes it (btoa alone would throw on these).
  assert.equal(authorizationHeader({ username: 'jürgen', password: 'pässwörd€' }), `Basic ${Buffer.from('jürgen:pässwörd€', 'utf8').toString('base64')}`);
  assert.equal(authorizationHeader({ username: '', password: 'eyJa.eyJb.c' }), 'Bearer eyJa.eyJb.c');
  assert.equal(authorizationHeader({ username: 'dashboard-7', password: 'eyJa.eyJb.c' }), 'Bearer eyJa.eyJb.c');
  assert.equal(authorizationHeader(null), null);
  assert.equal(authorizationHeader({ username: 'a', password: '' }), null);
});

test('connect options carry the credentials, or empty ones when signed out', () => {
  assert.deepEqual(connectCredentials({ username: 'ann', password: 'pw' }), { username: 'ann', password: 'pw' });
  assert.deepEqual(connectCredentials(null), { username: '', password: '' });
});

test('a password is required, and MQTT 3.1.1 needs a user name with it', () => {
  assert.equal(credentialsProblem({ username: 'ann', password: 'pw' }, 5), null);
  assert.equal(credentialsProblem({ username: '', password: 'eyJa.b.c' }, 5), null);
  assert.match(credentialsProblem({ username: '', password: 'eyJa.b.c' }, 4), /3\.1\.1 needs a user name/);
  assert.match(credentialsProblem({ username: 'ann', password: '' }, 5), /password/);
});

/** A Storage that records every call. */
class MemoryStorage {
  constructor() {
    this.items = new Map();
    this.calls = [];
  }
  getItem(key) {
    this.calls.push(['get', key]);
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.calls.push(['set', key]);
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.calls.push(['remove', key]);
    this.items.delete(key);
  }
}

test('credentials are kept only when "remember" is ticked, and forgotten on sign out', () => {
  const storage = new MemoryStorage();
  const store = new CredentialStore(storage);
  assert.equal(store.load(), null);

  store.keep({ username: 'ann', password: 'pw' }, false);
  assert.equal(storage.items.size, 0, 'not remembered: nothing written');
  assert.equal(store.load(), null);

  store.keep({ username: 'ann', password: 'pw', extra: 'not kept' }, true);
  assert.deepEqual([...storage.items.keys()], [REMEMBER_KEY]);
  assert.deepEqual(store.load(), { username: 'ann', password: 'pw' });

  // Unticking it on the next sign-in removes the earlier copy.
  store.keep({ username: 'bo', password: 'pw2' }, false);
  assert.equal(storage.items.size, 0);

  store.keep({ username: 'ann', password: 'pw' }, true);
  store.forget();
  assert.equal(storage.items.size, 0);
  assert.equal(store.load(), null);
});

test('unreadable remembered credentials are dropped, and blocked storage keeps nothing', () => {
  const storage = new MemoryStorage();
  const store = new CredentialStore(storage);
  for (const junk of ['{not json', '"text"', '{"username": "a"}', '{"username": "a", "password": ""}', '{"username": 1, "password": "p"}']) {
    storage.items.set(REMEMBER_KEY, junk);
    assert.equal(store.load(), null, junk);
    assert.equal(storage.items.has(REMEMBER_KEY), false, `${junk} removed`);
  }
  const throwing = {
    getItem() {
      throw new Error('SecurityError');
    },
    setItem() {
      throw new Error('QuotaExceededError');
    },
    removeItem() {
      throw new Error('SecurityError');
    },
  };
  const blocked = new CredentialStore(throwing);
  blocked.keep({ username: 'a', password: 'p' }, true);
  blocked.forget();
  assert.equal(blocked.load(), null);
  assert.equal(new CredentialStore(null).load(), null);
});

test('the tab store is sessionStorage, never localStorage', () => {
  const session = new MemoryStorage();
  const local = new MemoryStorage();
  const saved = Object.getOwnPropertyDescriptors(globalThis);
  try {
    Object.defineProperty(globalThis, 'sessionStorage', { value: session, configurable: true });
    Object.defineProperty(globalThis, 'localStorage', { value: local, configurable: true });
    const store = tabCredentialStore();
    store.keep({ username: 'ann', password: 'pw' }, true);
    assert.deepEqual(store.load(), { username: 'ann', password: 'pw' });
    store.forget();
    assert.ok(session.calls.length > 0, 'sessionStorage was used');
    assert.deepEqual(local.calls, [], 'localStorage was never touched');
  } finally {
    for (const name of ['sessionStorage', 'localStorage']) {
      if (saved[name]) Object.defineProperty(globalThis, name, saved[name]);
      else delete globalThis[name];
    }
  }
});

test('no module but settings.js (which saves no credential) touches localStorage', async () => {
  const { readdir, readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const source = new URL('../../src/', import.meta.url).pathname;
  const users = [];
  for (const entry of await readdir(source, { recursive: true })) {
    if (!entry.endsWith('.js')) continue;
    const text = await readFile(join(source, entry), 'utf8');
    // Code, not comments: strip // and /* */ comments first.
    const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:])\/\/.*$/gm, '$1');
    if (code.includes('localStorage')) users.push(entry);
  }
  assert.deepEqual(users, ['settings.js']);
});
