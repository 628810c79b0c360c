// MQTT.js (npm `mqtt`) as a browser-style client over WebSocket, driven by test_mqttjs.py.
//
// Usage: node client.mjs WS_URL FILTER COUNT [PUBLISH_TOPIC PUBLISH_PAYLOAD]
// Connects with MQTT 5.0 over the `mqtt` subprotocol, subscribes to FILTER at QoS 2, prints
// "subscribed", then one JSON line per message ({topic, payload, qos}) until COUNT messages
// arrived, optionally publishing one message (QoS 1) once subscribed; exits 0, or 1 after 10 s.
import mqtt from "mqtt";

const [url, filter, countText, publishTopic, publishPayload] = process.argv.slice(2);
const expected = Number(countText);
const deadline = setTimeout(() => {
  console.error(`timed out waiting for ${expected} messages`);
  process.exit(1);
}, 10_000);

const client = mqtt.connect(url, {
  protocolVersion: 5,
  clientId: `mqttjs-${process.pid}`,
  reconnectPeriod: 0,
  connectTimeout: 5_000,
});
let received = 0;
client.on("error", (error) => {
  console.error(`error: ${error.message}`);
  process.exit(1);
});
client.on("connect", () => {
  client.subscribe(filter, { qos: 2 }, (error, granted) => {
    if (error || granted.some((g) => g.qos > 2)) {
      console.error(`subscribe failed: ${error?.message ?? JSON.stringify(granted)}`);
      process.exit(1);
    }
    console.log("subscribed");
    if (publishTopic) {
      client.publish(publishTopic, publishPayload, { qos: 1 }, (error) => {
        if (error) {
          console.error(`publish failed: ${error.message}`);
          process.exit(1);
        }
        console.log("published");
        // Only now, with the PUBACK in: ending earlier would race the publish.
        if (expected === 0) finish();
      });
    } else if (expected === 0) {
      finish();
    }
  });
});
client.on("message", (topic, payload, packet) => {
  console.log(JSON.stringify({ topic, payload: payload.toString("utf8"), qos: packet.qos }));
  received += 1;
  if (received >= expected) finish();
});

function finish() {
  clearTimeout(deadline);
  client.end(false, {}, () => process.exit(0));
}
