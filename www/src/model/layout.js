// The plot layout as data: how series are grouped onto charts by default, and the layout a link
// carries (`?layout=`), so that a shared link opens the same charts.
//
// Grouping: "by field" puts series showing the same quantity together, whatever topic they come
// from: the key is the JSON field path (`temp`, `env.co2`), or for a plain-number payload the
// topic's last level (so `sensors/+/temp` plots on one chart). "By topic" keeps the fields of
// one topic (one device's document) together.
//
// The link's layout is a small JSON document, base64url-encoded:
//   {v: 1, mode: 'field'|'topic', window: seconds (0: all), paused: bool,
//    charts: [[[topic, field], ...], ...], hidden: [[topic, field], ...]}
// Series are named by topic and field, never by ids, which are only valid in one page. Anything
// malformed (bad base64, bad UTF-8, bad JSON, another version, a wrong type, too large) decodes
// to null, and the page falls back to the default grouping.

export const LAYOUT_VERSION = 1;
export const GROUPING_MODES = ['field', 'topic'];

/** Longest `layout` parameter decoded, in characters: the address stays a reasonable size. */
export const MAX_LAYOUT_LENGTH = 32_768;
const MAX_CHARTS = 64;
/** Series named in one layout (the store holds at most 200 series). */
const MAX_NAMED_SERIES = 1000;
/** Longest time window accepted, in seconds (a week). */
const MAX_WINDOW_SECONDS = 7 * 24 * 3600;

/** The key that groups a series with others under `mode` ('field' or 'topic'). */
export function groupKey(series, mode) {
  if (mode === 'topic') return series.topic;
  if (series.field !== '') return series.field;
  return series.topic.slice(series.topic.lastIndexOf('/') + 1);
}

/** The key under which a layout names a series. */
export function seriesKey(topic, field) {
  return `${topic}\u0000${field}`;
}

/** A layout as the value of the `layout` parameter. */
export function encodeLayout(layout) {
  const bytes = new TextEncoder().encode(JSON.stringify(layout));
  let binary = '';
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The layout of a `layout` parameter, or null when it is not a valid one. */
export function decodeLayout(text) {
  if (typeof text !== 'string' || text === '' || text.length > MAX_LAYOUT_LENGTH || !/^[\w-]+$/.test(text)) return null;
  let value;
  try {
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    const bytes = Uint8Array.from(binary, (char) => char.charCodeAt(0));
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return null;
  }
  return validLayout(value);
}

/** `value` as a layout if it has exactly the expected shape, else null. */
function validLayout(value) {
  if (!isObject(value) || value.v !== LAYOUT_VERSION) return null;
  const { mode, window, paused, charts, hidden } = value;
  if (!GROUPING_MODES.includes(mode)) return null;
  if (!Number.isInteger(window) || window < 0 || window > MAX_WINDOW_SECONDS) return null;
  if (typeof paused !== 'boolean') return null;
  if (!Array.isArray(charts) || charts.length > MAX_CHARTS || !charts.every(isSeriesList)) return null;
  if (!isSeriesList(hidden)) return null;
  if (charts.reduce((sum, chart) => sum + chart.length, hidden.length) > MAX_NAMED_SERIES) return null;
  return {
    v: LAYOUT_VERSION,
    mode,
    window,
    paused,
    charts: charts.map((chart) => chart.map(([topic, field]) => [topic, field])),
    hidden: hidden.map(([topic, field]) => [topic, field]),
  };
}

function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An array of [topic, field] pairs of strings, the topic not empty. */
function isSeriesList(value) {
  return (
    Array.isArray(value) &&
    value.every((entry) => Array.isArray(entry) && entry.length === 2 && typeof entry[0] === 'string' && entry[0] !== '' && typeof entry[1] === 'string')
  );
}
