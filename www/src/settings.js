// Connection settings: their defaults, the copy kept in localStorage under `SETTINGS_KEY`, the
// page address's overrides (`?url=`, `?protocol=4|5`) and the values read back from the
// connection form. Everything here is a pure function of plain values except `loadSettings`
// and `saveSettings`, the two that touch the page's storage and address.

/** The localStorage key; changing it would forget every saved setting. */
export const SETTINGS_KEY = 'mqtt-gateway-dashboard';

/** A client id for this page load only (see `initialSettings` for why it is never saved). */
export function newClientId() {
  return `dashboard-${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * The settings a page starts with: defaults for the page's own origin, overridden by what was
 * saved, overridden by the address's parameters.
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
    username: '',
    password: '',
  };
  let saved = {};
  try {
    saved = JSON.parse(stored ?? '{}');
  } catch {
    // Something else wrote the key, or an old page wrote it badly: start from the defaults.
    saved = {};
  }
  const params = new URLSearchParams(search);
  // The password is never saved, so never restored either.
  const settings = { ...defaults, ...saved, password: '' };
  // A saved client id would make two tabs take each other over; keep the fresh one.
  settings.clientId = defaults.clientId;
  if (params.get('url')) settings.url = params.get('url');
  if (params.get('protocol') === '4' || params.get('protocol') === '5') settings.protocolVersion = Number(params.get('protocol'));
  return settings;
}

/** What is saved of `settings`: never the password, nor the client id (see above). */
export function storedSettings({ url, protocolVersion, keepalive, username }) {
  return JSON.stringify({ url, protocolVersion, keepalive, username });
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
    username: fields.username.value,
    password: fields.password.value,
  };
}

/** The settings this page starts with, from its storage and its address. */
export function loadSettings() {
  return initialSettings({
    stored: readStored(),
    search: location.search,
    protocol: location.protocol,
    host: location.host,
    clientId: newClientId(),
  });
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
