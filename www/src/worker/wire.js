// What crosses between the page and the ingest worker besides batches: requests to the MQTT
// client, their answers, and the client's events. postMessage clones data, and a cloned Error
// keeps only its name and message; the client's errors also carry `code` and `reasonCode`
// (types.d.ts in client-wasm), which the page reads. So errors travel as plain objects marked
// `wireError` and become Errors again on the other side.
//
// Page -> worker: {type: 'call', id, client, method, args} (method: connect, subscribe,
// unsubscribe, publish, end; `client` numbers the page's clients) and {type: 'frame'} (the
// page drew a frame: the next batch may come).
// Worker -> page: {type: 'reply', id, ok, value | error}, {type: 'event', client, event,
// detail} and {type: 'batch', data} (see batch.js).

/** `value` with every Error in it (at any depth of plain objects) made cloneable. */
export function toWire(value) {
  if (value instanceof Error) {
    const error = { wireError: true, name: value.name, message: value.message };
    if (value.code !== undefined) error.code = value.code;
    if (value.reasonCode !== undefined) error.reasonCode = value.reasonCode;
    if (value.cause !== undefined) error.cause = toWire(value.cause);
    return error;
  }
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value;
  if (Array.isArray(value)) return value.map(toWire);
  const plain = {};
  for (const [key, item] of Object.entries(value)) plain[key] = toWire(item);
  return plain;
}

/** The inverse of `toWire`: marked objects become Errors again, with their code and reason. */
export function fromWire(value) {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return value;
  if (value.wireError === true) {
    const error = new Error(value.message);
    error.name = value.name;
    if (value.code !== undefined) error.code = value.code;
    if (value.reasonCode !== undefined) error.reasonCode = value.reasonCode;
    if (value.cause !== undefined) error.cause = fromWire(value.cause);
    return error;
  }
  if (Array.isArray(value)) return value.map(fromWire);
  const plain = {};
  for (const [key, item] of Object.entries(value)) plain[key] = fromWire(item);
  return plain;
}
