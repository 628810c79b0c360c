// The retained-messages panel: asks the gateway's REST API (`GET /api/v1/retained`) which
// retained messages match a filter, lists them, marks their topics retained in the topic tree,
// and clears one by publishing an empty retained message to its topic (what MQTT defines as
// deleting it). It loads when the panel is opened and on its Load button, not continuously:
// the list can be long and the live topic tree already shows new retained messages.
//
// Once the gateway has accounts, its API answers only admin users: the call carries the
// signed-in credentials (credentials.js, `authorizationHeader`), and a 401 or 403 shows as
// "not allowed" in the panel, with nothing listed.

import { formatCount } from './ui/dom.js';
import { renderRetained } from './ui/panels.js';
import { describeError } from './errors.js';

/** The most messages asked for at once; the list is for looking, not for exporting. */
const LIMIT = 1000;

/** The API refused the caller (401: no or wrong credentials, 403: not an admin user). */
export class NotAllowedError extends Error {
  constructor(status, detail) {
    super(detail ? `HTTP ${status}: ${detail}` : `HTTP ${status}`);
    this.name = 'NotAllowedError';
    this.status = status;
  }
}

/**
 * The retained messages matching `filter`, as the API lists them:
 * `{topic, qos, size, encoding: 'utf8' | 'base64', payload, truncated}`.
 * Throws `NotAllowedError` on 401/403, an Error with the API's error text on other refusals.
 *
 * @param {string} filter
 * @param {object} [options]
 * @param {string | null} [options.authorization] the `Authorization` header, if any
 * @param {(url: string, init: RequestInit) => Promise<Response>} [options.fetchImpl]
 */
export async function fetchRetained(filter, { authorization = null, fetchImpl = (url, init) => fetch(url, init) } = {}) {
  // The browser's own credentials (a TLS client certificate) still go along: the default
  // credentials mode, since `omit` would also drop a required client certificate.
  const init = { headers: authorization === null ? {} : { Authorization: authorization } };
  const response = await fetchImpl(`/api/v1/retained?filter=${encodeURIComponent(filter)}&limit=${LIMIT}`, init);
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's error page): the status says enough.
  }
  if (response.status === 401 || response.status === 403) throw new NotAllowedError(response.status, body?.error);
  if (!response.ok) throw new Error(body?.error ?? `HTTP ${response.status}`);
  return body;
}

/** The panel's line for a refusal: who may list retained messages. */
export function notAllowedText(error) {
  return error.status === 403
    ? 'not allowed: listing retained messages needs an admin user'
    : 'not allowed: sign in as an admin user to list retained messages';
}

/** A listed message's payload as bytes (the API sends text as is, anything else in base64). */
export function retainedPayload(message) {
  return message.encoding === 'utf8' ? new TextEncoder().encode(message.payload) : base64Bytes(message.payload);
}

/** The panel's status line for `count` messages found. */
export function retainedSummary(count) {
  return count === 0 ? 'no retained messages match' : `${formatCount(count)} retained message${count === 1 ? '' : 's'}`;
}

/**
 * Wires the panel: loads on opening and on submit, clears on a message's Clear button.
 *
 * @param {{details: HTMLDetailsElement, form: HTMLFormElement, status: HTMLElement, list: HTMLElement}} elements
 * @param {object} hooks
 * @param {import('./model/topic-tree.js').TopicTree} hooks.tree where topics are marked retained
 * @param {() => object | null} hooks.client the connected MQTT client, or null
 * @param {() => void} hooks.onSent a message was published (counted in the header)
 * @param {() => void} hooks.onDone a load settled (asks for a frame)
 */
export function bindRetainedPanel({ details, form, status, list }, { tree, client, authorization, onSent, onDone }) {
  const filterText = () => form.elements.filter.value.trim();
  // Each load and each reset takes a number; an answer for an older one is dropped (a load
  // that was under way while the person signed out must not list anything afterwards).
  let generation = 0;

  function show(text, state) {
    status.textContent = text;
    status.classList.toggle('error', state === 'error');
    status.dataset.state = state;
  }

  async function load(filter) {
    const mine = ++generation;
    show('loading…', 'loading');
    try {
      const messages = await fetchRetained(filter, { authorization: authorization() });
      if (mine !== generation) return;
      const time = Date.now() / 1000;
      for (const message of messages) tree.markRetained(message.topic, retainedPayload(message), message.qos, time);
      show(retainedSummary(messages.length), 'loaded');
      renderRetained(list, messages, (topic) => clear(topic, filter));
    } catch (error) {
      if (mine !== generation) return;
      list.replaceChildren();
      if (error instanceof NotAllowedError) show(notAllowedText(error), 'not-allowed');
      else show(`could not load: ${describeError(error)}`, 'error');
    }
    onDone();
  }

  async function clear(topic, filter) {
    const connected = client();
    if (connected === null) return;
    await connected.publish(topic, new Uint8Array(), { qos: 1, retain: true });
    tree.unmarkRetained(topic);
    onSent();
    load(filter);
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    load(filterText());
  });
  details.addEventListener('toggle', () => {
    if (details.open) load(filterText());
  });

  return {
    /** Loads again if the panel is open (the credentials changed). */
    refresh() {
      if (details.open) load(filterText());
    },
    /** Empties the panel (signed out: what was listed was for the credentials just dropped). */
    reset() {
      generation += 1;
      list.replaceChildren();
      show('', 'idle');
    },
  };
}

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
