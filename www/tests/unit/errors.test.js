// describeError: the one-line wording of errors shown on the page.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeError } from '../../src/errors.js';

test('an error is described by its message, or its type when it has none', () => {
  assert.equal(describeError(new Error('socket closed')), 'socket closed');
  assert.equal(describeError({ type: 'error' }), 'error');
  assert.equal(describeError('plain text'), 'plain text');
});

test('nothing at all is an unknown error', () => {
  assert.equal(describeError(null), 'unknown error');
  assert.equal(describeError(undefined), 'unknown error');
});

test('a reason code is added in hex unless the message already shows one', () => {
  assert.equal(describeError({ message: 'not authorized', reasonCode: 0x87 }), 'not authorized (reason 0x87)');
  assert.equal(describeError({ message: 'refused', reasonCode: 5 }), 'refused (reason 0x05)');
  assert.equal(describeError({ message: 'refused (0x87)', reasonCode: 0x87 }), 'refused (0x87)');
  assert.equal(describeError({ reasonCode: 0x80 }), '(reason 0x80)');
});

test('an object with nothing to say falls back to its string form', () => {
  assert.equal(describeError({}), '[object Object]');
  assert.equal(describeError(42), '42');
});
