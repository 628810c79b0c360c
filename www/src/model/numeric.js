// Which numbers a payload holds, for plotting.
//
// A payload plots when it is a plain number (`21.5`, ` -3e2 `) or JSON whose leaves include
// numbers: each numeric leaf becomes one field, named by its path (`temp`, `env.temp`,
// `readings[2]`, `[0].v`). A plain number has the empty path. Booleans, strings (even `"21.5"`),
// nulls and non-finite values are not numbers here, and text that is neither gives no fields.
//
// Bounds: at most `MAX_FIELDS` fields per payload and `MAX_DEPTH` levels, so one huge document
// cannot create thousands of series or stall the page. Payloads longer than `MAX_TEXT` are not
// examined.

export const MAX_FIELDS = 64;
export const MAX_DEPTH = 8;
export const MAX_TEXT = 64 * 1024;

const PLAIN_NUMBER = /^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$/;

/**
 * The numeric fields of a payload's text, as `[path, value]` pairs in document order.
 * @param {string} text
 * @returns {Array<[string, number]>}
 */
export function numericFields(text) {
  if (text.length === 0 || text.length > MAX_TEXT) return [];
  const first = firstNonSpace(text);
  if (first === '{' || first === '[') {
    let document;
    try {
      document = JSON.parse(text);
    } catch {
      return [];
    }
    const fields = [];
    collect(document, '', 0, fields);
    return fields;
  }
  if (PLAIN_NUMBER.test(text)) {
    const value = Number(text);
    return Number.isFinite(value) ? [['', value]] : [];
  }
  return [];
}

function firstNonSpace(text) {
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c !== ' ' && c !== '\n' && c !== '\r' && c !== '\t') return c;
  }
  return '';
}

function collect(value, path, depth, fields) {
  if (fields.length >= MAX_FIELDS) return;
  if (typeof value === 'number') {
    if (Number.isFinite(value)) fields.push([path, value]);
    return;
  }
  if (value === null || typeof value !== 'object' || depth >= MAX_DEPTH) return;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length && fields.length < MAX_FIELDS; i++) {
      collect(value[i], `${path}[${i}]`, depth + 1, fields);
    }
    return;
  }
  for (const key of Object.keys(value)) {
    if (fields.length >= MAX_FIELDS) return;
    collect(value[key], path === '' ? key : `${path}.${key}`, depth + 1, fields);
  }
}
