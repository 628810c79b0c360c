// Ingest: what one batch of messages from the ingest worker (worker/core.js) does to the
// dashboard's models. Each message is counted (totals, rate, each matching subscription), filed
// in the topic tree and the message log; each number the worker extracted from the payloads is
// appended to its series.
//
// No DOM work happens here, and no payload is decoded: the worker did that. A batch comes once
// per animation frame, so at 10k msg/s this is about 170 messages of map lookups and array
// writes per frame; drawing is the frame scheduler's business.

/**
 * The function that takes each batch.
 *
 * @param {object} models
 * @param {import('./model/traffic.js').Traffic} models.traffic
 * @param {{matching(topic: string): {count: number}[]}} models.subscriptions
 * @param {import('./model/topic-tree.js').TopicTree} models.tree
 * @param {import('./model/message-log.js').MessageLog} models.log
 * @param {import('./model/series-store.js').SeriesStore} models.series
 * @param {() => void} onIngested called after each batch (asks for a frame)
 */
export function batchHandler({ traffic, subscriptions, tree, log, series }, onIngested) {
  return (batch) => {
    if (batch.count > 0) {
      traffic.countReceived(performance.now(), batch.count);
      for (let i = 0; i < batch.count; i++) {
        const topic = batch.topic(i);
        const payload = batch.payload(i);
        const qos = batch.qos(i);
        const retain = batch.retain(i);
        const time = batch.time(i);
        const matching = subscriptions.matching(topic);
        for (let m = 0; m < matching.length; m++) matching[m].count += 1;
        tree.add(topic, payload, retain, qos, time);
        log.add({ topic, payload, qos, retain, time, properties: batch.properties(i) });
      }
      for (let p = 0; p < batch.pointCount; p++) {
        const message = batch.pointMessage(p);
        series.addPoint(batch.topic(message), batch.pointField(p), batch.pointValue(p), batch.time(message));
      }
    }
    onIngested();
  };
}
