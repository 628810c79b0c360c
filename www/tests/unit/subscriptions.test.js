// Subscriptions: the list, the broker's answers, resending across clients, the match cache.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Subscriptions } from '../../src/subscriptions.js';

/** A client whose SUBACK answers are scripted per filter. */
function fakeClient(answers = {}) {
  return {
    subscribed: [],
    unsubscribed: [],
    async subscribe(filter, { qos }) {
      this.subscribed.push([filter, qos]);
      const answer = answers[filter] ?? { qos };
      if (answer instanceof Error) throw answer;
      return answer;
    },
    async unsubscribe(filter) {
      this.unsubscribed.push(filter);
      if (answers.unsubscribe instanceof Error) throw answers.unsubscribe;
    },
  };
}

function setup(client = null) {
  const events = { changes: 0, filters: [], errors: [] };
  const current = { client };
  const subscriptions = new Subscriptions({
    client: () => current.client,
    onChange: () => (events.changes += 1),
    onFiltersChange: (filters) => events.filters.push(filters),
    onError: (text) => events.errors.push(text),
  });
  return { subscriptions, events, current };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test('a filter added while offline waits as pending and is sent by the next client', async () => {
  const { subscriptions, events, current } = setup();
  subscriptions.subscribe('sensors/#', 1);
  assert.deepEqual(events.filters, [['sensors/#']]);
  assert.equal(subscriptions.list[0].status, 'pending');

  current.client = fakeClient({ 'sensors/#': { qos: 0 } });
  subscriptions.sendAll();
  await settle();
  assert.deepEqual(current.client.subscribed, [['sensors/#', 1]]);
  assert.equal(subscriptions.list[0].status, 'active');
  assert.equal(subscriptions.list[0].granted, 0, 'the granted QoS is the broker’s');
});

test('a SUBACK reason code of 0x80 or more refuses the filter', async () => {
  const { subscriptions, current } = setup(fakeClient({ 'secret/#': { qos: 0, reasonCode: 0x87 } }));
  subscriptions.subscribe('secret/#', 0);
  await settle();
  const [subscription] = subscriptions.list;
  assert.equal(subscription.status, 'refused');
  assert.equal(subscription.reason, 'reason 0x87');
  assert.equal(current.client.subscribed.length, 1);
});

test('a failed SUBSCRIBE refuses the filter, unless its client was replaced meanwhile', async () => {
  const failing = fakeClient({ a: new Error('timed out') });
  const { subscriptions, current } = setup(failing);
  subscriptions.subscribe('a', 0);
  await settle();
  assert.equal(subscriptions.list[0].status, 'refused');
  assert.equal(subscriptions.list[0].reason, 'timed out');

  subscriptions.add('a', 0);
  const sent = subscriptions.send(subscriptions.list[0]);
  current.client = fakeClient();
  await sent;
  assert.equal(subscriptions.list[0].status, 'pending', 'an old client’s failure says nothing about the filter');
});

test('adding a filter twice keeps one entry with the new QoS', () => {
  const { subscriptions } = setup();
  subscriptions.add('a/+', 0);
  subscriptions.list[0].count = 5;
  subscriptions.add('a/+', 2);
  assert.equal(subscriptions.list.length, 1);
  assert.equal(subscriptions.list[0].qos, 2);
  assert.equal(subscriptions.list[0].count, 5);
});

test('after a reconnect only pending entries are sent again', async () => {
  const client = fakeClient();
  const { subscriptions } = setup(client);
  subscriptions.subscribe('a', 0);
  subscriptions.subscribe('b', 1);
  await settle();
  client.subscribed.length = 0;
  subscriptions.list[1].status = 'pending';
  subscriptions.resendPending();
  await settle();
  assert.deepEqual(client.subscribed, [['b', 1]]);

  subscriptions.markPending();
  assert.deepEqual(subscriptions.list.map((s) => s.status), ['pending', 'pending']);
});

test('unsubscribing removes the entry, mirrors the filters and tells the broker', async () => {
  const client = fakeClient();
  const { subscriptions, events } = setup(client);
  subscriptions.subscribe('a', 0);
  subscriptions.subscribe('b', 0);
  await settle();
  await subscriptions.unsubscribe('a');
  assert.deepEqual(subscriptions.filters(), ['b']);
  assert.deepEqual(events.filters.at(-1), ['b']);
  assert.deepEqual(client.unsubscribed, ['a']);
  await subscriptions.unsubscribe('not there');
  assert.deepEqual(client.unsubscribed, ['a']);
});

test('a refused filter is removed without an UNSUBSCRIBE; a failed one is reported', async () => {
  const client = fakeClient({ no: { qos: 0, reasonCode: 0x80 }, unsubscribe: new Error('offline') });
  const { subscriptions, events } = setup(client);
  subscriptions.subscribe('no', 0);
  subscriptions.subscribe('yes', 0);
  await settle();
  await subscriptions.unsubscribe('no');
  assert.deepEqual(client.unsubscribed, []);
  await subscriptions.unsubscribe('yes');
  assert.deepEqual(events.errors, ['unsubscribe yes: offline']);
});

test('matching is cached per topic and follows additions and removals', () => {
  const { subscriptions } = setup();
  subscriptions.add('home/#', 0);
  subscriptions.add('home/+/temp', 0);
  assert.deepEqual(subscriptions.matching('home/kitchen/temp').map((s) => s.filter), ['home/#', 'home/+/temp']);
  assert.strictEqual(subscriptions.matching('home/kitchen/temp'), subscriptions.matching('home/kitchen/temp'), 'cached');
  assert.deepEqual(subscriptions.matching('office/temp'), []);
  subscriptions.add('office/#', 0);
  assert.deepEqual(subscriptions.matching('office/temp').map((s) => s.filter), ['office/#']);
  assert.equal(subscriptions.matching('home/kitchen/temp').length, 2);
  subscriptions.unsubscribe('home/#');
  assert.deepEqual(subscriptions.matching('home/kitchen/temp').map((s) => s.filter), ['home/+/temp']);
});

test('the match cache stays bounded', () => {
  const { subscriptions } = setup();
  subscriptions.add('#', 0);
  for (let i = 0; i < 25_000; i++) subscriptions.matching(`t/${i}`);
  assert.ok(subscriptions.matchCache.size <= 10_000, `${subscriptions.matchCache.size} cached topics`);
  assert.equal(subscriptions.matching('t/1').length, 1);
});
