// The browser benchmark's page: one or more MQTT clients in one page, subscribed to the same
// topic at QoS 0, each counting the messages delivered to its JS callback.
//
// `cargo xtask bench` serves this directory with client-wasm's package under /pkg/ and MQTT.js's
// browser build at /mqtt.esm.js, opens the page in a headless Chromium that no DevTools session
// is attached to, waits for the page's POST /ready, runs a publisher (`mqtt-bench publish`, over
// TCP) and waits for its POST /result. Query string:
//   broker   the broker's WebSocket URL (ws://127.0.0.1:PORT/mqtt)
//   clients  comma list of: wasm (client-wasm, `onMessages`: one callback per WebSocket frame),
//            wasm-each (client-wasm, `onMessage`: one callback per message), mqttjs (MQTT.js,
//            `client.on("message")`); several share the page's one main thread
//   count    messages each client expects
//   topic    the topic the publisher uses (default bench/browser)
//   latency  1: each payload starts with its send time (microseconds since the Unix epoch,
//            big-endian u64); the page records arrival minus send per message
//   idle     milliseconds without a new message, once some arrived, before giving up (5000)
//   limit    seconds from ready before giving up altogether (120)
//   raw      1: post every latency sample too, in arrival order (latency mode)
//   run      an id echoed back, so that a late post of an earlier page is never mistaken
// Every callback touches each message's payload (its last byte goes into a checksum), so no
// client gets away with skipping work. Times are read with performance.now() once per callback;
// the wall clock shared with the publisher is performance.timeOrigin + performance.now().

const params = new URLSearchParams(location.search);
const broker = params.get("broker");
const clients = (params.get("clients") ?? "wasm").split(",");
const count = Number(params.get("count") ?? 200000);
const topic = params.get("topic") ?? "bench/browser";
const latency = params.get("latency") === "1";
const idleMs = Number(params.get("idle") ?? 5000);
const limitMs = Number(params.get("limit") ?? 120) * 1000;
const raw = params.get("raw") === "1";
const run = params.get("run") ?? "";

const status = document.getElementById("status");
const show = (text) => {
  status.textContent = text;
};

function post(path, body) {
  return fetch(path, { method: "POST", body: JSON.stringify({ run, ...body }) });
}

function fail(error) {
  const message = error?.stack ?? String(error?.reason ?? error?.message ?? error);
  show(`error: ${message}`);
  post("/error", { message });
}
addEventListener("error", (event) => fail(event.error ?? event.message));
addEventListener("unhandledrejection", (event) => fail(event.reason));

/** Microseconds since the Unix epoch, on the clock the publisher reads too. */
const epochUs = (now) => (performance.timeOrigin + now) * 1000;

/** One client's tally. */
class Recorder {
  constructor(name) {
    this.name = name;
    this.received = 0;
    this.callbacks = 0;
    this.largestBatch = 0;
    this.firstBatch = 0;
    this.first = 0;
    this.last = 0;
    this.checksum = 0;
    this.samples = latency ? new Float64Array(count) : null;
  }

  /** Records a callback that delivered `n` messages at `now` (performance.now()). */
  delivered(n, now) {
    if (this.callbacks === 0) {
      this.first = now;
      this.firstBatch = n;
    }
    this.callbacks++;
    this.received += n;
    this.last = now;
    if (n > this.largestBatch) {
      this.largestBatch = n;
    }
  }

  /** Records the latency of the `index`th payload (latency mode). */
  sample(payload, now, index) {
    if (index < count && payload.length >= 8) {
      const high = ((payload[0] << 24) | (payload[1] << 16) | (payload[2] << 8) | payload[3]) >>> 0;
      const low = ((payload[4] << 24) | (payload[5] << 16) | (payload[6] << 8) | payload[7]) >>> 0;
      this.samples[index] = epochUs(now) - (high * 4294967296 + low);
    }
  }

  done() {
    return this.received >= count;
  }

  report() {
    const spanMs = this.last - this.first;
    const result = {
      name: this.name,
      received: this.received,
      callbacks: this.callbacks,
      firstBatch: this.firstBatch,
      largestBatch: this.largestBatch,
      checksum: this.checksum,
      firstUs: epochUs(this.first),
      lastUs: epochUs(this.last),
      // Messages after the first callback over the time after it: the in-page rate, which
      // leaves out whatever came before the first callback.
      spanRate: spanMs > 0 ? ((this.received - this.firstBatch) * 1000) / spanMs : null,
    };
    if (this.samples) {
      const received = this.samples.slice(0, Math.min(this.received, count));
      if (raw) {
        result.samplesUs = Array.from(received, Math.round);
      }
      const samples = received.sort();
      const at = (p) =>
        samples.length === 0
          ? null
          : samples[Math.min(samples.length, Math.max(1, Math.ceil(samples.length * p))) - 1];
      result.latencyUs = {
        min: samples[0] ?? null,
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        p999: at(0.999),
        max: samples[samples.length - 1] ?? null,
      };
    }
    return result;
  }
}

const clientId = (kind) => `bench-${kind}-${Math.random().toString(36).slice(2, 10)}`;

async function startWasm(recorder, each) {
  const { default: init, MqttClient } = await import("/pkg/client_wasm.js");
  await init();
  const client = await MqttClient.connect(broker, {
    clientId: clientId("wasm"),
    protocolVersion: 4,
    reconnect: false,
  });
  if (each) {
    client.onMessage((message) => {
      const now = performance.now();
      const payload = message.payload;
      recorder.checksum += payload[payload.length - 1];
      if (latency) {
        recorder.sample(payload, now, recorder.received);
      }
      recorder.delivered(1, now);
    });
  } else {
    client.onMessages((messages) => {
      const now = performance.now();
      const n = messages.length;
      let checksum = 0;
      for (let index = 0; index < n; index++) {
        const payload = messages[index].payload;
        checksum += payload[payload.length - 1];
        if (latency) {
          recorder.sample(payload, now, recorder.received + index);
        }
      }
      recorder.checksum += checksum;
      recorder.delivered(n, now);
    });
  }
  await client.subscribe(topic, { qos: 0 });
  return client;
}

async function startMqttJs(recorder) {
  const { default: mqtt } = await import("/mqtt.esm.js");
  const client = mqtt.connect(broker, {
    clientId: clientId("mqttjs"),
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  await new Promise((resolve, reject) => {
    client.once("connect", resolve);
    client.once("error", reject);
    client.once("close", () => reject(new Error("MQTT.js: connection closed before CONNACK")));
  });
  client.on("message", (_topic, payload) => {
    const now = performance.now();
    recorder.checksum += payload[payload.length - 1];
    if (latency) {
      recorder.sample(payload, now, recorder.received);
    }
    recorder.delivered(1, now);
  });
  await client.subscribeAsync(topic, { qos: 0 });
  return client;
}

async function main() {
  if (!broker) {
    throw new Error("no broker= in the query string");
  }
  const recorders = clients.map((name) => new Recorder(name));
  show(`connecting ${clients.join(", ")} to ${broker}`);
  // Held until the page ends: a client-wasm object that nothing references is freed by its
  // finalizer, which closes its connection.
  globalThis.benchClients = await Promise.all(
    recorders.map((recorder) => {
      switch (recorder.name) {
        case "wasm":
          return startWasm(recorder, false);
        case "wasm-each":
          return startWasm(recorder, true);
        case "mqttjs":
          return startMqttJs(recorder);
        default:
          throw new Error(`unknown client ${recorder.name}`);
      }
    }),
  );
  const ready = performance.now();
  await post("/ready", { clients });
  show("ready");

  // Done when every client has its messages, or nothing new came for `idle` ms, or at `limit`.
  let lastTotal = 0;
  let lastProgress = ready;
  const reason = await new Promise((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      const total = recorders.reduce((sum, recorder) => sum + recorder.received, 0);
      if (total !== lastTotal) {
        lastTotal = total;
        lastProgress = now;
      }
      let why = null;
      if (recorders.every((recorder) => recorder.done())) {
        why = "complete";
      } else if (total > 0 && now - lastProgress > idleMs) {
        why = "idle";
      } else if (now - ready > limitMs) {
        why = "limit";
      }
      if (why) {
        clearInterval(timer);
        resolve(why);
      }
    }, 100);
  });
  const body = { clients: recorders.map((recorder) => recorder.report()), reason };
  show(`done (${reason})`);
  await post("/result", body);
}

main().catch(fail);
