// The publish form: validation, the offline case, and what its result line says.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bindPublishForm } from '../../src/publish.js';

/** Just enough of a form, its fields and the result line. */
function setup({ client = null, topic = 'demo/t', payload = 'hi', qos = '0', retain = false } = {}) {
  let submit;
  const form = {
    elements: { topic: { value: topic }, payload: { value: payload }, qos: { value: qos }, retain: { checked: retain } },
    addEventListener: (type, listener) => type === 'submit' && (submit = listener),
  };
  const classes = new Set();
  const result = {
    textContent: '',
    classList: {
      add: (name) => classes.add(name),
      toggle: (name, on) => (on ? classes.add(name) : classes.delete(name)),
    },
  };
  const counts = { sent: 0, done: 0 };
  bindPublishForm(form, result, { client: () => client, onSent: () => (counts.sent += 1), onDone: () => (counts.done += 1) });
  const press = async () => {
    let prevented = false;
    submit({ preventDefault: () => (prevented = true) });
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(prevented, 'the page does not navigate');
  };
  return { press, result, error: () => classes.has('error'), counts };
}

function fakeClient(fail) {
  return {
    published: [],
    async publish(topic, payload, options) {
      this.published.push([topic, payload, options]);
      if (fail) throw fail;
    },
  };
}

test('a published QoS 1 message is acknowledged and counted', async () => {
  const client = fakeClient();
  const { press, result, error, counts } = setup({ client, topic: ' demo/a ', qos: '1', retain: true });
  await press();
  assert.deepEqual(client.published, [['demo/a', 'hi', { qos: 1, retain: true }]]);
  assert.equal(result.textContent, 'published to demo/a (acknowledged)');
  assert.equal(error(), false);
  assert.deepEqual(counts, { sent: 1, done: 1 });
});

test('QoS 0 is not called acknowledged', async () => {
  const { press, result } = setup({ client: fakeClient() });
  await press();
  assert.equal(result.textContent, 'published to demo/t');
});

test('an invalid topic is refused before anything is sent', async () => {
  const client = fakeClient();
  const { press, result, error, counts } = setup({ client, topic: 'a/+/b' });
  await press();
  assert.equal(client.published.length, 0);
  assert.notEqual(result.textContent, '');
  assert.equal(error(), true);
  assert.deepEqual(counts, { sent: 0, done: 0 });
});

test('offline, nothing is sent', async () => {
  const { press, result, error } = setup();
  await press();
  assert.equal(result.textContent, 'not connected');
  assert.equal(error(), true);
});

test('a refused publish says why and is not counted', async () => {
  const { press, result, error, counts } = setup({ client: fakeClient(Object.assign(new Error('not authorized'), { reasonCode: 0x87 })) });
  await press();
  assert.equal(result.textContent, 'not published: not authorized (reason 0x87)');
  assert.equal(error(), true);
  assert.deepEqual(counts, { sent: 0, done: 1 });
});
