// The retained-messages panel: asks the gateway's REST API (`GET /api/v1/retained`) which
// retained messages match a filter, lists them, marks their topics retained in the topic tree,
// and clears one by publishing an empty retained message to its topic (what MQTT defines as
// deleting it). It loads when the panel is opened and on its Load button, not continuously:
// the list can be long and the live topic tree already shows new retained messages.

import { formatCount } from './ui/dom.js';
import { renderRetained } from './ui/panels.js';
import { describeError } from './errors.js';

/** The most messages asked for at once; the list is for looking, not for exporting. */
const LIMIT = 1000;

/**
 * The retained messages matching `filter`, as the API lists them:
 * `{topic, qos, size, encoding: 'utf8' | 'base64', payload, truncated}`.
 * Throws with the API's error text when it refuses.
 */
export async function fetchRetained(filter, fetchImpl = (url) => fetch(url)) {
  const response = await fetchImpl(`/api/v1/retained?filter=${encodeURIComponent(filter)}&limit=${LIMIT}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ?? `HTTP ${response.status}`);
  return body;
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
export function bindRetainedPanel({ details, form, status, list }, { tree, client, onSent, onDone }) {
  const filterText = () => form.elements.filter.value.trim();

  async function load(filter) {
    status.classList.remove('error');
    status.textContent = 'loading…';
    try {
      const messages = await fetchRetained(filter);
      const time = Date.now() / 1000;
      for (const message of messages) tree.markRetained(message.topic, retainedPayload(message), message.qos, time);
      status.textContent = retainedSummary(messages.length);
      renderRetained(list, messages, (topic) => clear(topic, filter));
    } catch (error) {
      status.classList.add('error');
      status.textContent = `could not load: ${describeError(error)}`;
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
}

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
