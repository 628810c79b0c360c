// The ingest worker's entry point (a module Worker, started by worker-client.js): client-wasm's
// MqttClient, loaded once on the first connect, driven by IngestCore (core.js).

import init, { MqttClient } from 'client-wasm';
import { IngestCore } from './core.js';

let loading = null;

const core = new IngestCore({
  loadClient: () => (loading ??= init().then(() => MqttClient)),
  post: (message, transfer) => self.postMessage(message, transfer ?? []),
});

self.onmessage = (event) => core.handle(event.data);
