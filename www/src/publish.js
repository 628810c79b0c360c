// The publish form: checks the topic, publishes through the connected client and says how it
// went in the form's result line. The publish promise settles on the broker's acknowledgement
// for QoS 1 and 2, so "(acknowledged)" is only shown once the broker has it.

import { topicProblem } from './model/topic-filter.js';
import { describeError } from './errors.js';

/**
 * Publishes on each submit of `form`, reporting in `result`.
 *
 * @param {HTMLFormElement} form with fields topic, payload, qos and retain
 * @param {HTMLElement} result the line under the form
 * @param {object} hooks
 * @param {() => object | null} hooks.client the connected MQTT client, or null
 * @param {() => void} hooks.onSent a message was published (counted in the header)
 * @param {() => void} hooks.onDone a publish attempt settled (asks for a frame)
 */
export function bindPublishForm(form, result, hooks) {
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    publishFromForm(form.elements, result, hooks);
  });
}

async function publishFromForm(fields, result, { client, onSent, onDone }) {
  const topic = fields.topic.value.trim();
  const problem = topicProblem(topic);
  result.classList.toggle('error', problem !== null);
  if (problem !== null) {
    result.textContent = problem;
    return;
  }
  const connected = client();
  if (connected === null) {
    result.classList.add('error');
    result.textContent = 'not connected';
    return;
  }
  const qos = Number(fields.qos.value);
  const retain = fields.retain.checked;
  result.textContent = 'publishing…';
  try {
    await connected.publish(topic, fields.payload.value, { qos, retain });
    onSent();
    result.textContent = `published to ${topic}${qos > 0 ? ' (acknowledged)' : ''}`;
  } catch (error) {
    result.classList.add('error');
    result.textContent = `not published: ${describeError(error)}`;
  }
  onDone();
}
