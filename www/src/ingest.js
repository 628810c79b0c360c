// Ingest: what one incoming message does to the dashboard's models. It is counted (totals,
// rate, each matching subscription), filed in the topic tree and the message log, and, when its
// payload may be a number or JSON, its numbers are appended to their series.
//
// No DOM work happens here: messages can arrive at 10k/s, while the page redraws at most once
// per animation frame (frame-scheduler.js). So a message costs a few map lookups, plus one
// JSON.parse when its payload looks numeric.

import { decodeText } from './model/payload.js';
import { MAX_TEXT } from './model/numeric.js';

/** First byte of a payload that may be a number or JSON (digits, sign, '.', '{', '[', space). */
const NUMERIC_START = new Uint8Array(256);
for (const c of '0123456789+-.{[ \t\r\n') NUMERIC_START[c.charCodeAt(0)] = 1;

/**
 * The function that takes each message from the client.
 *
 * @param {object} models
 * @param {import('./model/traffic.js').Traffic} models.traffic
 * @param {{matching(topic: string): {count: number}[]}} models.subscriptions
 * @param {import('./model/topic-tree.js').TopicTree} models.tree
 * @param {import('./model/message-log.js').MessageLog} models.log
 * @param {import('./model/series-store.js').SeriesStore} models.series
 * @param {() => void} onIngested called after each message (asks for a frame)
 */
export function messageHandler({ traffic, subscriptions, tree, log, series }, onIngested) {
  return (message) => {
    const now = performance.now();
    const time = (performance.timeOrigin + now) / 1000;
    const topic = message.topic;
    const payload = message.payload;
    const qos = message.qos ?? 0;
    const retain = Boolean(message.retain);
    traffic.countReceived(now);
    const matching = subscriptions.matching(topic);
    for (let i = 0; i < matching.length; i++) matching[i].count += 1;
    tree.add(topic, payload, retain, qos, time);
    log.add({ topic, payload, qos, retain, time, properties: message.properties });
    // Checking the first byte first keeps binary and plain-text payloads away from decoding.
    if (payload.length > 0 && payload.length <= MAX_TEXT && NUMERIC_START[payload[0]] === 1) {
      series.ingest(topic, decodeText(payload), time);
    }
    onIngested();
  };
}
