// The scratch page of the package test: it imports client-wasm exactly as an application
// bundled by Vite would, and exposes a small driver (`window.harness`) to the Playwright test.
import init, { MqttClient } from 'client-wasm';

await init();

const harness = {
  client: null,
  messages: [],
  events: [],
  queued: [],

  async connect(url, options) {
    const client = await MqttClient.connect(url, options);
    this.client = client;
    client.onMessage((message) => {
      this.messages.push({ topic: message.topic, text: message.text(), qos: message.qos, retain: message.retain });
    });
    for (const type of ['connect', 'close', 'reconnect', 'error']) {
      client.addEventListener(type, (event) => {
        const detail = event.detail ?? {};
        this.events.push({ type, state: client.state, code: detail.code ?? detail.error?.code, attempt: detail.attempt, sessionPresent: detail.sessionPresent });
      });
    }
    return client.state;
  },

  /** Publishes `count` messages at QoS 0, 1, 2, ... as soon as the connection closes. */
  publishOnClose(topicPrefix) {
    const client = this.client;
    const onClose = () => {
      client.removeEventListener('close', onClose);
      for (const qos of [0, 1, 2]) {
        const state = client.state;
        const done = client.publish(`${topicPrefix}/q${qos}`, `offline ${qos}`, { qos }).then(
          () => ({ qos, state, ok: true }),
          (error) => ({ qos, state, ok: false, code: error.code }),
        );
        this.queued.push(done);
      }
    };
    client.addEventListener('close', onClose);
  },

  async queuedResults() {
    return Promise.all(this.queued);
  },

  async subscribe(filter, options) {
    return this.client.subscribe(filter, options);
  },

  async publishEach(topicPrefix, text) {
    for (const qos of [0, 1, 2]) {
      await this.client.publish(`${topicPrefix}/q${qos}`, `${text} ${qos}`, { qos });
    }
  },

  state() {
    return this.client?.state;
  },

  async end() {
    await this.client.end();
    return this.client.state;
  },

  /**
   * Connects a client, subscribes it and leaves it with only an `onMessage` callback: nothing
   * of the page refers to it afterwards, as in an application that sets a client up in a
   * function and returns.
   */
  async connectAndLetGo(url, filter) {
    const client = await MqttClient.connect(url, { clientId: 'pw-let-go', protocolVersion: 5 });
    client.onMessage((message) => this.letGo.push(message.text()));
    await client.subscribe(filter, { qos: 1 });
  },
  letGo: [],

  /**
   * Connects a client, ends it and lets go of it, watching it with a FinalizationRegistry:
   * `collected` turns true once the garbage collector freed it.
   */
  async endAndLetGo(url) {
    const client = await MqttClient.connect(url, { clientId: 'pw-ended', protocolVersion: 5 });
    await client.end();
    this.registry = new FinalizationRegistry(() => {
      this.collected = true;
    });
    this.registry.register(client, 'ended');
    return client.state;
  },
  collected: false,
};

window.harness = harness;
document.getElementById('status').textContent = 'ready';
