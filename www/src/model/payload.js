// Payloads for people: bytes as text, pretty JSON or a hex dump, and one-line previews.
//
// MQTT payloads are bytes. Text is decoded as UTF-8 (invalid sequences become U+FFFD, never an
// exception); whether a payload "is text" is decided by the absence of control characters other
// than whitespace, as the gateway's `/api/v1/retained` preview does. Every function bounds its
// output so that a 1 MiB payload cannot freeze the page.

const decoder = new TextDecoder('utf-8', { fatal: false });

/** Most characters a one-line preview shows. */
export const PREVIEW_CHARS = 200;
/** Most bytes a hex dump shows. */
export const HEX_BYTES = 4096;
/** Most characters of text or JSON shown in full views. */
export const FULL_CHARS = 256 * 1024;

/** The payload as UTF-8 text. */
export function decodeText(bytes) {
  return decoder.decode(bytes);
}

/** The first `limit` bytes as text, without the broken character a cut may leave at the end. */
function decodeHead(bytes, limit) {
  if (bytes.length <= limit) return decoder.decode(bytes);
  return decoder.decode(bytes.subarray(0, limit)).replace(/\uFFFD{1,3}$/, '');
}

/** Whether decoded text looks like text rather than binary. */
export function looksLikeText(text) {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0xfffd) return false;
    if (code < 0x20 && code !== 0x09 && code !== 0x0a && code !== 0x0d) return false;
    if (code === 0x7f) return false;
  }
  return true;
}

/** JSON pretty-printed with two spaces, or null when the text is not JSON. */
export function prettyJson(text) {
  const trimmed = text.trim();
  if (trimmed === '' || !'{["-0123456789tfn'.includes(trimmed[0])) return null;
  try {
    return JSON.stringify(JSON.parse(trimmed), null, 2);
  } catch {
    return null;
  }
}

/** A classic hex dump: offset, 16 bytes in hex, and their printable ASCII. */
export function hexDump(bytes, limit = HEX_BYTES) {
  const shown = bytes.subarray(0, limit);
  const lines = [];
  for (let offset = 0; offset < shown.length; offset += 16) {
    const row = shown.subarray(offset, offset + 16);
    let hex = '';
    let ascii = '';
    for (let i = 0; i < 16; i++) {
      if (i < row.length) {
        hex += row[i].toString(16).padStart(2, '0') + (i === 7 ? '  ' : ' ');
        ascii += row[i] >= 0x20 && row[i] < 0x7f ? String.fromCharCode(row[i]) : '.';
      } else {
        hex += i === 7 ? '    ' : '   ';
      }
    }
    lines.push(`${offset.toString(16).padStart(8, '0')}  ${hex} |${ascii}|`);
  }
  if (bytes.length > limit) lines.push(`... ${bytes.length - limit} more bytes`);
  return lines.join('\n');
}

/** Hex bytes on one line, for previews. */
export function hexLine(bytes, limit = 64) {
  let out = '';
  const end = Math.min(bytes.length, limit);
  for (let i = 0; i < end; i++) out += (i ? ' ' : '') + bytes[i].toString(16).padStart(2, '0');
  return bytes.length > limit ? `${out} …` : out;
}

/**
 * The payload shown in a given format ('text', 'json' or 'hex'), falling back to hex for binary
 * payloads and to text for non-JSON ones. Returns the text and the format actually used.
 */
export function formatPayload(bytes, format, limit = FULL_CHARS) {
  const text = decodeHead(bytes, limit * 4);
  if (format === 'hex' || !looksLikeText(text)) return { text: hexDump(bytes), format: 'hex' };
  if (format === 'json') {
    const pretty = prettyJson(text);
    if (pretty !== null) return { text: clip(pretty, limit), format: 'json' };
  }
  return { text: clip(text, limit), format: 'text' };
}

/** A one-line preview of a payload ('text'/'json' show text, 'hex' or binary show bytes). */
export function previewPayload(bytes, format) {
  if (bytes.length === 0) return '(empty)';
  if (format === 'hex') return hexLine(bytes);
  const text = decodeHead(bytes, PREVIEW_CHARS * 4);
  if (!looksLikeText(text)) return hexLine(bytes);
  return clip(text.replace(/\s+/g, ' '), PREVIEW_CHARS);
}

function clip(text, limit) {
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}
