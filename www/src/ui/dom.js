// Tiny DOM helpers: element creation without innerHTML (payloads and topics are untrusted text,
// so they only ever reach the page through textContent) and number formatting.

/**
 * Creates an element. `props` sets properties (className, textContent, title, ...) except keys
 * starting with `data-`/`aria-` or `attrs`, which become attributes; `on` maps event names to
 * listeners.
 */
export function h(tag, props = {}, children = []) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === 'on') {
      for (const [event, listener] of Object.entries(value)) element.addEventListener(event, listener);
    } else if (key.startsWith('data-') || key.startsWith('aria-') || key === 'role' || key === 'for') {
      element.setAttribute(key, String(value));
    } else {
      element[key] = value;
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** 12,345 */
export function formatCount(n) {
  return integer.format(n);
}

/** A rate for people: 0, 8.5, 120, 12.3k. */
export function formatRate(perSecond) {
  if (perSecond >= 10_000) return `${(perSecond / 1000).toFixed(1)}k`;
  if (perSecond >= 100) return integer.format(perSecond);
  return perSecond < 0.05 ? '0' : perSecond.toFixed(1);
}

/** HH:MM:SS.mmm in local time, from Unix seconds. */
export function formatTime(unixSeconds) {
  const date = new Date(unixSeconds * 1000);
  const pad = (n, width = 2) => String(n).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** A value for a legend: up to 6 significant digits. */
export function formatValue(value) {
  if (!Number.isFinite(value)) return '–';
  if (Number.isInteger(value) && Math.abs(value) < 1e12) return String(value);
  return String(Number(value.toPrecision(6)));
}

/** Offers `text` as a file download. */
export function download(filename, text, type = 'text/csv') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = h('a', { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
