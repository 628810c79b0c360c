// The sign-in form's behaviour over fake elements: when it shows and what it says for each
// refusal, which fields it keeps, what it remembers, and signing out.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SignIn } from '../../src/signin.js';
import { CredentialStore, REMEMBER_KEY } from '../../src/credentials.js';

class FakeElement extends EventTarget {
  constructor(props = {}) {
    super();
    this.hidden = false;
    this.textContent = '';
    this.value = '';
    this.checked = false;
    this.disabled = false;
    this.focused = false;
    this.classes = new Set();
    this.classList = {
      toggle: (name, on) => (on ? this.classes.add(name) : this.classes.delete(name)),
    };
    Object.assign(this, props);
  }
  focus() {
    this.focused = true;
  }
  click() {
    this.dispatchEvent(new Event('click'));
  }
}

class MemoryStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.get(key) ?? null;
  }
  setItem(key, value) {
    this.items.set(key, value);
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

/** A refused CONNACK as the client reports it: typed for credentials, plain otherwise. */
const refusalCode = (reasonCode) =>
  ({ 0x86: 'BAD_CREDENTIALS', 0x04: 'BAD_CREDENTIALS', 0x87: 'NOT_AUTHORIZED', 0x05: 'NOT_AUTHORIZED' })[reasonCode] ??
  'CONNECTION_REFUSED';
const refused = (reasonCode) =>
  Object.assign(new Error('connection refused by the broker'), { code: refusalCode(reasonCode), reasonCode });

function setup({ remembered = null, protocolVersion = 5 } = {}) {
  const storage = new MemoryStorage();
  if (remembered) storage.setItem(REMEMBER_KEY, JSON.stringify(remembered));
  const fields = { username: new FakeElement(), password: new FakeElement(), remember: new FakeElement() };
  const submitButton = new FakeElement();
  const form = new FakeElement({ hidden: true, elements: fields, querySelectorAll: () => [submitButton] });
  const elements = { form, message: new FakeElement(), open: new FakeElement(), signOut: new FakeElement(), account: new FakeElement() };
  const events = [];
  const signIn = new SignIn(elements, {
    store: new CredentialStore(storage),
    protocolVersion: () => protocolVersion,
    onSignIn: (credentials) => events.push(['signIn', credentials]),
    onSignOut: () => events.push(['signOut']),
  });
  const type = (username, password, remember = false) => {
    fields.username.value = username;
    fields.password.value = password;
    fields.remember.checked = remember;
    form.dispatchEvent(new Event('submit', { cancelable: true }));
  };
  return { signIn, storage, fields, form, submitButton, elements, events, type };
}

test('refused without credentials: the form shows with no error, focused on the user name', () => {
  const { signIn, form, elements, fields } = setup();
  assert.equal(signIn.credentials, null);
  assert.equal(signIn.failed(refused(0x87)), true);
  assert.equal(form.hidden, false);
  assert.equal(elements.message.textContent, '');
  assert.equal(fields.username.focused, true);
  assert.equal(elements.open.hidden, true, 'no "Sign in" button next to the form');
  assert.equal(elements.signOut.hidden, true);
});

test('submitting connects with the typed credentials, kept in memory only', () => {
  const { signIn, storage, events, type, form, submitButton, elements, fields } = setup();
  signIn.failed(refused(0x87));
  type('ann', 'hunter2');
  assert.deepEqual(events, [['signIn', { username: 'ann', password: 'hunter2' }]]);
  assert.deepEqual(signIn.credentials, { username: 'ann', password: 'hunter2' });
  assert.equal(storage.items.size, 0, 'nothing in sessionStorage without "remember"');
  assert.equal(submitButton.disabled, true, 'one attempt at a time');
  assert.equal(elements.message.textContent, 'signing in…');

  signIn.connected();
  assert.equal(form.hidden, true);
  assert.equal(submitButton.disabled, false);
  assert.equal(fields.password.value, '', 'the form keeps no password once signed in');
  assert.equal(elements.signOut.hidden, false);
  assert.equal(elements.account.hidden, false);
  assert.equal(elements.account.textContent, 'ann');
  assert.equal(elements.open.hidden, true);
});

test('a wrong password says so; the form keeps the user name and "remember", not the password', () => {
  const { signIn, storage, type, form, fields, elements } = setup();
  signIn.failed(refused(0x87));
  type('ann', 'wrong', true);
  assert.equal(signIn.failed(refused(0x86)), true);
  assert.equal(form.hidden, false);
  assert.equal(elements.message.textContent, 'wrong user name or password');
  assert.equal(elements.message.classes.has('error'), true);
  assert.equal(fields.username.value, 'ann');
  assert.equal(fields.password.value, '');
  assert.equal(fields.remember.checked, true);
  assert.equal(fields.password.focused, true, 'typing starts at the password');
  assert.equal(signIn.credentials, null);
  assert.equal(storage.items.size, 0, 'refused credentials are not remembered');
});

test('a refused token is worded as one (it may have expired)', () => {
  const { signIn, type, elements, fields } = setup();
  type('', 'eyJa.eyJb.c');
  signIn.failed(refused(0x86));
  assert.equal(elements.message.textContent, 'token refused (expired, or not for this gateway)');
  assert.equal(fields.password.value, '');
});

test('MQTT 3.1.1 codes are taken the same way, and 0x87 with credentials is "not authorized"', () => {
  const { signIn, type, elements } = setup();
  type('ann', 'pw');
  signIn.failed(refused(0x04));
  assert.equal(elements.message.textContent, 'wrong user name or password');
  type('ann', 'pw');
  signIn.failed(refused(0x05));
  assert.match(elements.message.textContent, /^not authorized/);
});

test('"remember on this tab" keeps the credentials in the tab’s storage once they worked', () => {
  const { signIn, type, storage } = setup();
  type('ann', 'hunter2', true);
  assert.equal(storage.items.size, 0, 'not before the gateway accepted them');
  signIn.connected();
  assert.deepEqual(JSON.parse(storage.getItem(REMEMBER_KEY)), { username: 'ann', password: 'hunter2' });
  const next = setup({ remembered: { username: 'ann', password: 'hunter2' } });
  assert.deepEqual(next.signIn.credentials, { username: 'ann', password: 'hunter2' });
  assert.equal(next.form.hidden, true, 'no form while the remembered credentials connect');
  // Signing in again without "remember" drops the earlier copy.
  next.signIn.failed(refused(0x87));
  next.type('bo', 'pw2', false);
  assert.equal(next.storage.items.size, 0);
  next.signIn.connected();
  assert.equal(next.storage.items.size, 0);
});

test('remembered credentials that are refused are forgotten', () => {
  const { signIn, storage, elements, fields } = setup({ remembered: { username: 'ann', password: 'old' } });
  signIn.failed(refused(0x86));
  assert.equal(storage.items.size, 0);
  assert.equal(signIn.credentials, null);
  assert.equal(fields.username.value, 'ann');
  assert.equal(elements.message.textContent, 'wrong user name or password');
});

test('sign out forgets the credentials, clears the tab’s copy, closes and shows the form', () => {
  const { signIn, storage, events, type, form, elements } = setup();
  type('ann', 'hunter2', true);
  signIn.connected();
  assert.equal(storage.items.size, 1);
  events.length = 0;
  elements.signOut.click();
  assert.deepEqual(events, [['signOut']]);
  assert.equal(signIn.credentials, null);
  assert.equal(storage.items.size, 0);
  assert.equal(form.hidden, false);
  assert.equal(elements.message.textContent, 'signed out');
  assert.equal(elements.signOut.hidden, true);
  assert.equal(elements.account.hidden, true);
});

test('other failures: told in the form after a sign-in, left to the status bar otherwise', () => {
  const { signIn, type, elements, form } = setup();
  assert.equal(signIn.failed(Object.assign(new Error('could not connect'), { code: 'CONNECT_FAILED' })), false);
  assert.equal(form.hidden, true);
  type('ann', 'pw');
  assert.equal(signIn.failed(Object.assign(new Error('no CONNACK'), { code: 'CONNECT_TIMEOUT' })), true);
  assert.equal(elements.message.textContent, 'could not connect: no CONNACK');
  assert.deepEqual(signIn.credentials, { username: 'ann', password: 'pw' }, 'kept for another try');
});

test('a token without a user name is refused up front for MQTT 3.1.1', () => {
  const { type, events, elements } = setup({ protocolVersion: 4 });
  type('', 'eyJa.eyJb.c');
  assert.deepEqual(events, []);
  assert.match(elements.message.textContent, /3\.1\.1 needs a user name/);
  const v5 = setup();
  v5.type('', 'eyJa.eyJb.c');
  assert.deepEqual(v5.events, [['signIn', { username: '', password: 'eyJa.eyJb.c' }]]);
  v5.signIn.connected();
  assert.equal(v5.elements.account.textContent, 'token');
});

test('anonymous and connected: a "Sign in…" button opens the form', () => {
  const { signIn, elements, form } = setup();
  signIn.connected();
  assert.equal(elements.open.hidden, false);
  assert.equal(elements.signOut.hidden, true);
  elements.open.click();
  assert.equal(form.hidden, false);
  assert.equal(elements.open.hidden, true);
});
