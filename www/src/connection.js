// Connection: owns the MQTT client's lifecycle and the connection state the status bar shows.
//
// States (the status element's data-state): connecting, connected, reconnecting (with a
// countdown to the next attempt), refused (with the broker's or the network's reason) and
// closed. The client reconnects by itself with backoff; this module only follows its events
// and words them (`statusText`).
//
// Each `connect` makes a new client and drops the old one. Connecting is asynchronous, so a
// generation number tells a stale attempt (one overtaken by a newer Connect or a Disconnect)
// from the current one, and the state events of a dropped client are ignored. Messages do not
// pass here: every client's messages reach the page as the ingest worker's batches
// (worker-client.js), so those still in flight from a dropped client are counted too, as they
// did arrive. Nothing here touches the DOM: changes are
// announced through `onChange`, and drawn in the next frame. A connection that ends for good
// with an error (a refused or failed connect, a close the client does not retry) is also
// reported through `onFailed`, which is how the sign-in form learns of a refusal.

import { describeError } from './errors.js';

/** The client's own reconnect backoff: first retry soon, never waiting more than 10 s. */
const RECONNECT = { minDelayMs: 500, maxDelayMs: 10_000 };

/** The client's codes for a broker that refused the connection (it does not retry those). */
const REFUSALS = new Set(['CONNECTION_REFUSED', 'BAD_CREDENTIALS', 'NOT_AUTHORIZED']);

export class Connection {
  /**
   * @param {object} hooks
   * @param {() => Promise<{connect(url: string, options: object): Promise<object>}>} hooks.loadClient
   *   resolves to what makes clients (the ingest worker's `clientClass`; a fake in tests)
   * @param {() => void} hooks.onChange the state, its detail or the last error changed
   * @param {() => void} hooks.onConnected a new client is connected (send it every subscription)
   * @param {() => void} hooks.onReconnected the client reconnected by itself
   * @param {() => void} hooks.onDisconnect the current client is being dropped
   * @param {(error: object) => void} [hooks.onFailed] the connection ended for good with `error`
   * @param {(url: string) => string | null} [hooks.urlProblem] why the page may not connect to
   *   `url` (refused before any attempt), or null
   */
  constructor({ loadClient, onChange, onConnected, onReconnected, onDisconnect, onFailed = () => {}, urlProblem = () => null }) {
    this.loadClient = loadClient;
    this.onChange = onChange;
    this.onConnected = onConnected;
    this.onReconnected = onReconnected;
    this.onDisconnect = onDisconnect;
    this.onFailed = onFailed;
    this.urlProblem = urlProblem;
    /** The connected client, or null. */
    this.client = null;
    /** The settings of the latest `connect`. */
    this.settings = null;
    this.state = 'closed';
    /** The broker URL while connecting, the reason when refused or closed. */
    this.stateDetail = '';
    /** When the client's next attempt is due (performance.now() time). */
    this.reconnectAt = 0;
    this.reconnectAttempt = 0;
    this.lastError = '';
    this.generation = 0;
    /** The cluster node the gateway's CONNACK named (5.0, a node of a cluster), or ''. */
    this.node = '';
  }

  /** Drops the current client, if any, and connects a new one with `settings`. */
  async connect(settings) {
    this.settings = settings;
    await this.disconnect();
    // Read again after the wait: a Connect pressed meanwhile brought newer settings.
    settings = this.settings;
    const generation = ++this.generation;
    const problem = this.urlProblem(settings.url);
    if (problem !== null) {
      this.setState('refused', problem);
      return;
    }
    this.setState('connecting', settings.url);
    let client;
    try {
      const MqttClient = await this.loadClient();
      const options = {
        clientId: settings.clientId,
        protocolVersion: settings.protocolVersion,
        keepalive: settings.keepalive,
        clean: true,
        reconnect: { ...RECONNECT },
      };
      if (settings.username) options.username = settings.username;
      if (settings.password) options.password = settings.password;
      client = await MqttClient.connect(settings.url, options);
    } catch (error) {
      if (generation === this.generation) {
        this.setState('refused', describeError(error));
        this.onFailed(error);
      }
      return;
    }
    if (generation !== this.generation) {
      // Overtaken while connecting: this client is nobody's.
      client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.attach(client);
    this.lastError = '';
    this.node = nodeOf(client.connack);
    this.setState('connected');
    this.onConnected();
  }

  /** Follows `client`'s events; the events of a client since dropped are ignored. */
  attach(client) {
    const mine = () => this.client === client;
    client.addEventListener('connect', (event) => {
      if (!mine()) return;
      // Behind a load balancer, a reconnect may reach another node.
      this.node = nodeOf(event.detail);
      this.lastError = '';
      this.reconnectAttempt = 0;
      this.setState('connected');
      this.onReconnected();
    });
    client.addEventListener('reconnect', (event) => {
      if (!mine()) return;
      const detail = event.detail ?? {};
      this.reconnectAttempt = detail.attempt ?? this.reconnectAttempt + 1;
      this.reconnectAt = performance.now() + (detail.delayMs ?? 0);
      this.setState('reconnecting');
    });
    client.addEventListener('close', (event) => {
      if (!mine()) return;
      // detail: { error?, reconnect }. With reconnect set, a "reconnect" event with the delay
      // follows at once; until then the state already says reconnecting.
      const detail = event.detail ?? {};
      if (detail.error) this.lastError = describeError(detail.error);
      if (detail.reconnect) {
        this.reconnectAt = performance.now();
        this.setState('reconnecting');
      } else if (REFUSALS.has(detail.error?.code)) {
        this.setState('refused', this.lastError);
      } else {
        this.setState('closed', detail.error ? this.lastError : '');
      }
      if (!detail.reconnect && detail.error) this.onFailed(detail.error);
    });
    client.addEventListener('error', (event) => {
      if (!mine()) return;
      this.lastError = describeError(event.detail ?? event.error ?? event);
      this.onChange();
    });
  }

  /** Drops the current client (and any connect under way). */
  async disconnect() {
    const client = this.client;
    this.client = null;
    this.generation += 1;
    this.onDisconnect();
    if (client !== null) {
      this.setState('closed', 'disconnected');
      try {
        await client.end();
      } catch {
        // Ending a client whose connection already dropped has nothing left to do.
      }
    }
  }

  setState(state, detail = '') {
    this.state = state;
    this.stateDetail = detail;
    this.onChange();
  }

  /** The status bar's text at time `now` (performance.now(); the countdown depends on it). */
  statusText(now) {
    switch (this.state) {
      case 'connecting':
        return `connecting to ${this.stateDetail}…`;
      case 'connected': {
        const version = `MQTT ${this.settings.protocolVersion === 5 ? '5.0' : '3.1.1'}`;
        return this.node ? `connected to node ${this.node} (${version})` : `connected (${version})`;
      }
      case 'reconnecting': {
        const seconds = Math.max(0, Math.ceil((this.reconnectAt - now) / 1000));
        const text = seconds > 0 ? `reconnecting in ${seconds} s` : 'reconnecting…';
        const attempt = this.reconnectAttempt > 0 ? ` (attempt ${this.reconnectAttempt})` : '';
        return `${text}${attempt}${this.lastError ? ` · ${this.lastError}` : ''}`;
      }
      case 'refused':
        return `refused: ${this.stateDetail}`;
      default:
        return this.stateDetail ? `not connected: ${this.stateDetail}` : 'not connected';
    }
  }
}

/** The node a CONNACK's User Property `node` names (see the README's "Running a cluster"), or ''. */
function nodeOf(connack) {
  const node = connack?.properties?.userProperties?.node;
  return typeof node === 'string' ? node : '';
}
