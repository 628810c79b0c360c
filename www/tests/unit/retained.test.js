// The retained panel's REST call and the wording of its results.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fetchRetained, retainedPayload, retainedSummary, NotAllowedError, notAllowedText } from '../../src/retained.js';

function fakeFetch(status, body) {
  const calls = [];
  const fetchImpl = async (url, init) => {
    calls.push({ url, init });
    const json = async () => {
      if (body === undefined) throw new SyntaxError('Unexpected token < in JSON');
      return body;
    };
    return { ok: status >= 200 && status < 300, status, json };
  };
  return { fetchImpl, calls };
}

test('the filter is sent encoded, with a limit, and no Authorization when signed out', async () => {
  const listed = [{ topic: 'a/b', qos: 1, size: 4, encoding: 'utf8', payload: 'open', truncated: false }];
  const { fetchImpl, calls } = fakeFetch(200, listed);
  assert.deepEqual(await fetchRetained('sensors/+/#', { fetchImpl }), listed);
  assert.deepEqual(calls, [{ url: '/api/v1/retained?filter=sensors%2F%2B%2F%23&limit=1000', init: { headers: {} } }]);
});

test('the signed-in credentials go along as the Authorization header', async () => {
  const { fetchImpl, calls } = fakeFetch(200, []);
  await fetchRetained('#', { fetchImpl, authorization: 'Basic YTpi' });
  assert.deepEqual(calls[0].init, { headers: { Authorization: 'Basic YTpi' } });
});

test('a refusal throws the API’s error text, or the HTTP status', async () => {
  await assert.rejects(fetchRetained('a/#/b', { fetchImpl: fakeFetch(400, { error: 'invalid topic filter' }).fetchImpl }), /^Error: invalid topic filter$/);
  await assert.rejects(fetchRetained('#', { fetchImpl: fakeFetch(503, {}).fetchImpl }), /^Error: HTTP 503$/);
  await assert.rejects(fetchRetained('#', { fetchImpl: fakeFetch(502, undefined).fetchImpl }), /^Error: HTTP 502$/, 'a body that is not JSON');
});

test('401 and 403 are "not allowed", worded for who may list', async () => {
  for (const [status, body, wording] of [
    [401, { error: 'credentials required' }, /^not allowed: sign in as an admin user/],
    [401, undefined, /^not allowed: sign in as an admin user/],
    [403, { error: 'not an admin user' }, /^not allowed: listing retained messages needs an admin user$/],
  ]) {
    const error = await fetchRetained('#', { fetchImpl: fakeFetch(status, body).fetchImpl }).then(
      () => assert.fail('resolved'),
      (error) => error,
    );
    assert.ok(error instanceof NotAllowedError, `${status}`);
    assert.equal(error.status, status);
    assert.match(notAllowedText(error), wording);
  }
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
