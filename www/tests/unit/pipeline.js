// The way messages take from the MQTT client to the dashboard's models, for the unit tests, with
// the real parts: the worker's IngestCore (numbers extracted, a batch packed), the batch moved
// as postMessage would (structured clone, buffers transferred) and the page's batchHandler.
// Only the Worker itself and the MQTT client are left out: `handle(message)` plays a client
// delivering one message, `handleAll(messages)` one frame of several.

import { IngestCore } from '../../src/worker/core.js';
import { Batch } from '../../src/worker/batch.js';
import { batchHandler } from '../../src/ingest.js';

export function pipeline(models, onIngested = () => {}) {
  const ingest = batchHandler(models, onIngested);
  const core = new IngestCore({
    loadClient: () => Promise.reject(new Error('no client in unit tests')),
    post: (message, transfer) => {
      if (message.type === 'batch') ingest(new Batch(structuredClone(message.data, { transfer })));
    },
  });
  const handleAll = (messages) => {
    core.receive(messages.map((message) => ({ qos: 0, retain: false, ...message })));
    // The page drew its frame: the next message may come at once.
    core.handle({ type: 'frame' });
  };
  return { core, handleAll, handle: (message) => handleAll([message]) };
}

/** A function that takes one message through the pipeline (the old `messageHandler` shape). */
export function messageHandler(models, onIngested) {
  return pipeline(models, onIngested).handle;
}
