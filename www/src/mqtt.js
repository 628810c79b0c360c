// The one place that loads the browser MQTT client (the client-wasm package): its WebAssembly
// module is fetched and instantiated once, on first use.

import init, { MqttClient } from 'client-wasm';

let loading = null;

/** The MqttClient class, once the WebAssembly module is ready. */
export function loadMqttClient() {
  loading ??= init().then(() => MqttClient);
  return loading;
}
