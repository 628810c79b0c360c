// The client in a Web Worker whose timers are throttled like a background tab's: every timer
// fires only on the next `throttleMs` boundary (so at least a whole keepalive late). Messages
// still arrive on time, and each one is echoed back, as an application reacting to data would.
import init, { MqttClient } from 'client-wasm';

self.onmessage = async (event) => {
  const { url, throttleMs, keepalive, inTopic, outTopic } = event.data;
  const realSetTimeout = self.setTimeout.bind(self);
  let timersFired = 0;
  let timersScheduled = 0;
  self.setTimeout = (callback, delay = 0, ...args) => {
    timersScheduled += 1;
    const due = performance.now() + delay;
    const boundary = (Math.floor(due / throttleMs) + 1) * throttleMs;
    return realSetTimeout(() => {
      timersFired += 1;
      callback(...args);
    }, boundary - performance.now());
  };

  await init();
  const client = await MqttClient.connect(url, { clientId: 'throttled-worker', keepalive, reconnect: { minDelayMs: 100, maxDelayMs: 200 } });
  for (const type of ['close', 'reconnect', 'error']) {
    client.addEventListener(type, (e) => postMessage({ type, code: e.detail?.error?.code ?? e.detail?.code, at: performance.now() }));
  }
  let received = 0;
  client.onMessage((message) => {
    received += 1;
    client.publish(outTopic, message.payload, { qos: 0 });
  });
  await client.subscribe(inTopic, { qos: 0 });
  postMessage({ type: 'ready' });
  // Reports come from message handling, not from (throttled) timers.
  client.onMessage((message) => {
    if (message.text() === 'report') {
      postMessage({ type: 'report', state: client.state, received, timersScheduled, timersFired });
    }
  });
};
