// The scratch page of the package test: it imports client-wasm exactly as an application
// bundled by Vite would, and exposes a small driver (`window.harness`) to the Playwright test.
import init, { MqttClient } from 'client-wasm';
import { scramStart } from './scram.mjs';

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
      this.messages.push({ topic: message.topic, text: message.text(), qos: message.qos, retain: message.retain, dup: message.dup });
    });
    for (const type of ['connect', 'close', 'reconnect', 'error']) {
      client.addEventListener(type, (event) => {
        const detail = event.detail ?? {};
        this.events.push({ type, state: client.state, code: detail.code ?? detail.error?.code, attempt: detail.attempt, sessionPresent: detail.sessionPresent, reconnect: detail.reconnect, at: Date.now() });
      });
    }
    return client.state;
  },

  /** Publishes without waiting for it: `tracked` shows how each Promise has settled so far. */
  publishTracked(topic, text, qos) {
    const entry = { topic, qos, settled: 'pending' };
    this.tracked.push(entry);
    this.client.publish(topic, text, { qos }).then(
      () => (entry.settled = 'resolved'),
      (error) => Object.assign(entry, { settled: 'rejected', code: error.code }),
    );
  },
  tracked: [],

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

/** An error as the test reads it. */
const errorOf = (error) =>
  error && { name: error.name, code: error.code, reasonCode: error.reasonCode, message: error.message, cause: error.cause?.message };

/**
 * Clients that authenticate, by name: each records its events and how often its credentials
 * function was called. A password client's function gives `password` as it is when called (the
 * test changes it), a SCRAM client's starts a new SCRAM-SHA-256 exchange (client-first) for
 * `password`, whose client-final message `onAuth` gives; the server's signature is checked in
 * every CONNACK (`verified`).
 */
const auth = {
  clients: {},

  /** Connects; resolves with `{ state }` or `{ error }`. */
  async connect(url, name, { user, password, scram = false, ...options }) {
    const record = { client: null, user, password, calls: 0, events: [], auths: [], verified: [], exchange: null };
    this.clients[name] = record;
    const credentials = scram
      ? () => {
          record.calls += 1;
          record.exchange = { scram: scramStart(user), password: record.password };
          return { authenticationData: record.exchange.scram.clientFirst };
        }
      : async () => {
          record.calls += 1;
          // As an application fetching a token would, asynchronously.
          await new Promise((resolve) => setTimeout(resolve, 10));
          return { username: user, password: record.password };
        };
    const extra = scram
      ? {
          authenticationMethod: 'SCRAM-SHA-256',
          onAuth: (data, reasonCode) => {
            record.auths.push(reasonCode);
            return record.exchange.scram.clientFinal(data, record.exchange.password);
          },
        }
      : {};
    try {
      const client = await MqttClient.connect(url, { ...options, ...extra, credentials });
      record.client = client;
      for (const type of ['connect', 'close', 'reconnect', 'error']) {
        client.addEventListener(type, (event) => {
          const detail = event.detail ?? {};
          record.events.push({ type, state: client.state, reconnect: detail.reconnect, attempt: detail.attempt, error: errorOf(detail.error ?? (type === 'error' ? detail : undefined)) });
          if (type === 'connect' && scram) {
            record.verified.push(record.exchange.scram.verify(detail.properties?.authenticationData));
          }
        });
      }
      if (scram) record.verified.push(record.exchange.scram.verify(client.connack.properties?.authenticationData));
      return { state: client.state, connack: { sessionPresent: client.connack.sessionPresent, method: client.connack.properties?.authenticationMethod } };
    } catch (error) {
      return { error: errorOf(error) };
    }
  },

  /** What the test reads of client `name`. */
  status(name) {
    const { client, calls, events, auths, verified } = this.clients[name];
    return { state: client?.state, calls, events, auths, verified };
  },

  setPassword(name, password) {
    this.clients[name].password = password;
  },

  /**
   * A SCRAM re-authentication with `password` (for this exchange only): `{ reasonCode, method,
   * verified }` or `{ error }`.
   */
  async reauthenticate(name, password) {
    const record = this.clients[name];
    const exchange = (record.exchange = { scram: scramStart(record.user), password });
    try {
      const { reasonCode, properties } = await record.client.reauthenticate(exchange.scram.clientFirst);
      return { reasonCode, method: properties?.authenticationMethod, verified: exchange.scram.verify(properties?.authenticationData) };
    } catch (error) {
      return { error: errorOf(error) };
    }
  },

  async end(name) {
    await this.clients[name].client?.end();
  },

  /**
   * Connects to the test's scripted broker with the method `TEST-ECHO`: each attempt's
   * CONNECT carries `first:<attempt>`, and `onAuth` answers `answer:<what the broker sent>`,
   * or throws while `failAuth` is set. Resolves with `{ state, connack }` or `{ error }`.
   */
  async connectScripted(url, name) {
    const record = { client: null, calls: 0, events: [], auths: [], failAuth: false };
    this.clients[name] = record;
    const text = (bytes) => new TextDecoder().decode(bytes);
    try {
      const client = await MqttClient.connect(url, {
        clientId: `pw-${name}`,
        reconnect: { minDelayMs: 50, maxDelayMs: 100 },
        authenticationMethod: 'TEST-ECHO',
        credentials: () => ({ authenticationData: `first:${++record.calls}` }),
        onAuth: async (data, reasonCode, properties) => {
          record.auths.push({ data: text(data), reasonCode, method: properties?.authenticationMethod });
          if (record.failAuth) throw new Error('no answer today');
          return `answer:${text(data)}`;
        },
      });
      record.client = client;
      for (const type of ['connect', 'close', 'reconnect', 'error']) {
        client.addEventListener(type, (event) => {
          const detail = event.detail ?? {};
          record.events.push({ type, reconnect: detail.reconnect, error: errorOf(detail.error ?? (type === 'error' ? detail : undefined)), data: detail.properties?.authenticationData && text(detail.properties.authenticationData) });
        });
      }
      return { state: client.state, connack: { data: text(client.connack.properties.authenticationData), method: client.connack.properties.authenticationMethod } };
    } catch (error) {
      return { error: errorOf(error) };
    }
  },

  setFailAuth(name, fail) {
    this.clients[name].failAuth = fail;
  },

  /** `reauthenticate(data)` of client `name`: `{ reasonCode, data }` or `{ error }`. */
  async reauthenticateWith(name, data) {
    try {
      const { reasonCode, properties } = await this.clients[name].client.reauthenticate(data);
      return { reasonCode, data: new TextDecoder().decode(properties.authenticationData) };
    } catch (error) {
      return { error: errorOf(error) };
    }
  },
};

window.harness = harness;
window.auth = auth;
document.getElementById('status').textContent = 'ready';
