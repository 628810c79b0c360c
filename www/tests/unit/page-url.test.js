// The `?sub=` filters in the page's address: read on load, written back on every change.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { subscriptionFilters, searchWithSubscriptions, layoutFromSearch, searchWithLayout, layoutLink } from '../../src/page-url.js';
import { encodeLayout } from '../../src/model/layout.js';

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

const layout = { v: 1, mode: 'field', window: 60, paused: false, charts: [[['home/kitchen', 'temp']]], hidden: [] };

test('a layout link keeps the sub parameters as they are and adds the layout', () => {
  const location = { origin: 'http://127.0.0.1:8080', pathname: '/', search: '?sub=home%2F%23&protocol=4', hash: '#x' };
  const link = new URL(layoutLink(location, layout));
  assert.equal(link.origin + link.pathname, 'http://127.0.0.1:8080/');
  assert.equal(link.hash, '#x');
  assert.deepEqual(subscriptionFilters(link.search), ['home/#']);
  assert.equal(link.searchParams.get('protocol'), '4');
  assert.deepEqual(layoutFromSearch(link.search), layout);
  // A new layout replaces the old one.
  const again = searchWithLayout(link.search, encodeLayout({ ...layout, mode: 'topic' }));
  assert.equal(new URLSearchParams(again).getAll('layout').length, 1);
  assert.equal(layoutFromSearch(again).mode, 'topic');
});

test('no layout, or a malformed one, reads as none; the sub filters still read', () => {
  assert.equal(layoutFromSearch('?sub=a'), null);
  assert.equal(layoutFromSearch('?sub=a&layout=xyz'), null);
  assert.equal(layoutFromSearch('?sub=a&layout='), null);
  assert.deepEqual(subscriptionFilters('?sub=a&layout=xyz'), ['a']);
});
