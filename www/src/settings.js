// Connection settings: their defaults, the copy kept in localStorage under `SETTINGS_KEY`, the
// page address's overrides (`?url=`, `?protocol=4|5`) and the values read back from the
// connection form. Everything here is a pure function of plain values except `loadSettings`
// and `saveSettings`, the two that touch the page's storage and address.
//
// No credential is a setting: the user name and password (or token) belong to the sign-in
// form (signin.js, credentials.js), which never writes them to localStorage. A user name an
// older page saved here is dropped on load.

/** The localStorage key; changing it would forget every saved setting. */
export const SETTINGS_KEY = 'mqtt-gateway-dashboard';

/** A client id for this page load only (see `initialSettings` for why it is never saved). */
export function newClientId() {
  return `dashboard-${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * The settings a page starts with: defaults for the page's own origin, overridden by what was
 * saved (a broker URL only on this origin), overridden by the address's parameters.
 *
 * @param {object} page
 * @param {string | null} page.stored what localStorage holds under SETTINGS_KEY (null: nothing)
 * @param {string} page.search the address's query (`?url=...&protocol=4`)
 * @param {string} page.protocol the page's scheme, `http:` or `https:`
 * @param {string} page.host the page's host and port
 * @param {string} page.clientId the fresh client id to use
 */
export function initialSettings({ stored, search, protocol, host, clientId }) {
  // The gateway serves the page and MQTT over WebSocket on the same origin, so that is the
  // default broker; a page served over TLS must use wss.
  const scheme = protocol === 'https:' ? 'wss:' : 'ws:';
  const defaults = {
    url: `${scheme}//${host}/mqtt`,
    clientId,
    protocolVersion: 5,
    keepalive: 30,
  };
  let saved = {};
  try {
    saved = JSON.parse(stored ?? '{}');
  } catch {
    // Something else wrote the key, or an old page wrote it badly: start from the defaults.
    saved = {};
  }
  const params = new URLSearchParams(search);
  const settings = { ...defaults };
  if (saved !== null && typeof saved === 'object') {
    for (const key of ['protocolVersion', 'keepalive']) if (key in saved) settings[key] = saved[key];
    // A broker URL saved before the dashboard kept to its own origin would only be refused.
    if (typeof saved.url === 'string' && brokerUrlProblem(saved.url, { protocol, host }) === null) settings.url = saved.url;
  }
  // A saved client id would make two tabs take each other over; keep the fresh one.
  settings.clientId = defaults.clientId;
  if (params.get('url')) settings.url = params.get('url');
  if (params.get('protocol') === '4' || params.get('protocol') === '5') settings.protocolVersion = Number(params.get('protocol'));
  return settings;
}

/** What is saved of `settings`: never a credential, nor the client id (see above). */
export function storedSettings({ url, protocolVersion, keepalive }) {
  return JSON.stringify({ url, protocolVersion, keepalive });
}

/**
 * Whether what localStorage holds carries anything `storedSettings` would not write (a user
 * name or password saved by an older dashboard), so that it is written again without it.
 */
export function storedNeedsCleaning(stored) {
  try {
    const saved = JSON.parse(stored ?? 'null');
    return saved !== null && typeof saved === 'object' && ('username' in saved || 'password' in saved);
  } catch {
    return false;
  }
}

/**
 * Why the page may not connect to the broker at `url`, or null. The gateway serves the
 * dashboard with `connect-src 'self'`, so the browser would block any other origin's
 * WebSocket anyway; saying so beats a bare connection failure.
 *
 * @param {string} url the broker URL
 * @param {{protocol: string, host: string}} page the page's scheme (`http:`/`https:`) and host
 */
export function brokerUrlProblem(url, page) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return `not a URL: ${url}`;
  }
  const scheme = page.protocol === 'https:' ? 'wss:' : 'ws:';
  if (parsed.protocol !== scheme || parsed.host !== page.host) {
    return `the dashboard connects only to the gateway that serves it (${scheme}//${page.host}/...)`;
  }
  return null;
}

/**
 * The settings as typed into the connection form.
 * @param {{[name: string]: {value: string}}} fields the form's elements
 */
export function settingsFromForm(fields) {
  return {
    url: fields.url.value.trim(),
    clientId: fields.clientId.value.trim(),
    protocolVersion: Number(fields.protocolVersion.value),
    keepalive: Number(fields.keepalive.value) || 0,
  };
}

/** The settings this page starts with, from its storage and its address. */
export function loadSettings() {
  const stored = readStored();
  const settings = initialSettings({
    stored,
    search: location.search,
    protocol: location.protocol,
    host: location.host,
    clientId: newClientId(),
  });
  if (storedNeedsCleaning(stored)) saveSettings(initialSettings({ stored, search: '', protocol: location.protocol, host: location.host, clientId: '' }));
  return settings;
}

/** Saves `settings` for the next visit (see `storedSettings` for what is kept). */
export function saveSettings(settings) {
  try {
    localStorage.setItem(SETTINGS_KEY, storedSettings(settings));
  } catch {
    // Storage can be unavailable (private mode); settings then last for this page only.
  }
}

function readStored() {
  try {
    return localStorage.getItem(SETTINGS_KEY);
  } catch {
    // Even reading `localStorage` throws where storage is blocked; that is "nothing saved".
    return null;
  }
}
