// Payload formatting: text, pretty JSON, hex, previews.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatPayload, previewPayload, hexDump, prettyJson, looksLikeText } from '../../src/model/payload.js';

const bytes = (text) => new TextEncoder().encode(text);

test('JSON is pretty-printed when asked, text otherwise', () => {
  assert.deepEqual(formatPayload(bytes('{"a":1}'), 'json'), { text: '{\n  "a": 1\n}', format: 'json' });
  assert.deepEqual(formatPayload(bytes('{"a":1}'), 'text'), { text: '{"a":1}', format: 'text' });
  assert.deepEqual(formatPayload(bytes('plain'), 'json'), { text: 'plain', format: 'text' });
});

test('binary payloads are shown in hex whatever the format', () => {
  const binary = new Uint8Array([0, 1, 2, 0xff]);
  assert.equal(formatPayload(binary, 'text').format, 'hex');
  assert.match(hexDump(binary), /^00000000 {2}00 01 02 ff/);
  assert.equal(previewPayload(binary, 'text'), '00 01 02 ff');
});

test('hex dump lines hold 16 bytes and printable ASCII', () => {
  const dump = hexDump(bytes('ABCDEFGHIJKLMNOPQ'));
  const lines = dump.split('\n');
  assert.equal(lines.length, 2);
  assert.ok(lines[0].endsWith('|ABCDEFGHIJKLMNOP|'), lines[0]);
  assert.ok(lines[1].startsWith('00000010  51'), lines[1]);
});

test('previews are one line, bounded, and survive a cut inside a character', () => {
  assert.equal(previewPayload(bytes('a\n  b'), 'text'), 'a b');
  assert.equal(previewPayload(new Uint8Array(), 'text'), '(empty)');
  const long = previewPayload(bytes('é'.repeat(2000)), 'text');
  assert.ok(long.length <= 201);
  assert.ok(long.startsWith('éé'));
});

test('text detection and JSON detection', () => {
  assert.equal(looksLikeText('tab\tand\nnewline'), true);
  assert.equal(looksLikeText('nul\u0000'), false);
  assert.equal(prettyJson('not json'), null);
  assert.equal(prettyJson('42'), '42');
});
