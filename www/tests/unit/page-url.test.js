// The `?sub=` filters in the page's address: read on load, written back on every change.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { subscriptionFilters, searchWithSubscriptions } from '../../src/page-url.js';

test('the sub parameters are read in order, decoded', () => {
  assert.deepEqual(subscriptionFilters('?sub=sensors/%23&sub=test&sub=a/%2B/b'), ['sensors/#', 'test', 'a/+/b']);
  assert.deepEqual(subscriptionFilters(''), []);
  assert.deepEqual(subscriptionFilters('?url=ws%3A%2F%2Fx%2Fmqtt'), []);
});

test('empty and invalid filters in the address are skipped', () => {
  assert.deepEqual(subscriptionFilters('?sub=&sub=a/%23/b&sub=x%2B&sub=ok/%2B'), ['ok/+']);
});

test('mirroring replaces the sub parameters and keeps the others', () => {
  assert.equal(searchWithSubscriptions('?url=ws%3A%2F%2Fx%2Fmqtt&sub=old&protocol=4', ['new/#', 'b']), '?url=ws%3A%2F%2Fx%2Fmqtt&protocol=4&sub=new%2F%23&sub=b');
  assert.equal(searchWithSubscriptions('', ['a']), '?sub=a');
});

test('no subscriptions and no other parameters leave no query at all', () => {
  assert.equal(searchWithSubscriptions('?sub=a&sub=b', []), '');
  assert.equal(searchWithSubscriptions('', []), '');
});

test('what is mirrored reads back as the same filters', () => {
  const filters = ['sensors/+/temp', '#', 'a b/ü', '$SYS/#', 'x&y=z'];
  assert.deepEqual(subscriptionFilters(searchWithSubscriptions('?protocol=5', filters)), filters);
});
