// The retained panel's REST call and the wording of its results.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fetchRetained, retainedPayload, retainedSummary } from '../../src/retained.js';

function fakeFetch(status, body) {
  const calls = [];
  const fetchImpl = async (url) => {
    calls.push(url);
    return { ok: status >= 200 && status < 300, status, json: async () => body };
  };
  return { fetchImpl, calls };
}

test('the filter is sent encoded, with a limit', async () => {
  const listed = [{ topic: 'a/b', qos: 1, size: 4, encoding: 'utf8', payload: 'open', truncated: false }];
  const { fetchImpl, calls } = fakeFetch(200, listed);
  assert.deepEqual(await fetchRetained('sensors/+/#', fetchImpl), listed);
  assert.deepEqual(calls, ['/api/v1/retained?filter=sensors%2F%2B%2F%23&limit=1000']);
});

test('a refusal throws the API’s error text, or the HTTP status', async () => {
  await assert.rejects(fetchRetained('a/#/b', fakeFetch(400, { error: 'invalid topic filter' }).fetchImpl), /^Error: invalid topic filter$/);
  await assert.rejects(fetchRetained('#', fakeFetch(503, {}).fetchImpl), /^Error: HTTP 503$/);
});

test('payloads come back as bytes from text or base64', () => {
  assert.deepEqual(retainedPayload({ encoding: 'utf8', payload: 'ü1' }), new TextEncoder().encode('ü1'));
  assert.deepEqual(retainedPayload({ encoding: 'base64', payload: 'AP8x' }), new Uint8Array([0x00, 0xff, 0x31]));
});

test('the status line counts what was found', () => {
  assert.equal(retainedSummary(0), 'no retained messages match');
  assert.equal(retainedSummary(1), '1 retained message');
  assert.equal(retainedSummary(1234), '1,234 retained messages');
});
