// Error text for people: turns whatever the MQTT client, the broker or fetch rejected with into
// one short line for the status bar, a refused subscription or a form's result. One function so
// that every place words the same error the same way.

/**
 * A short description of `error`: its message (or its type), plus the MQTT reason code when the
 * message does not already show it.
 */
export function describeError(error) {
  if (error === null || error === undefined) return 'unknown error';
  if (typeof error === 'string') return error;
  const parts = [];
  if (error.message) parts.push(error.message);
  else if (error.type) parts.push(error.type);
  if (error.reasonCode !== undefined && !String(error.message ?? '').includes('0x')) {
    parts.push(`(reason 0x${Number(error.reasonCode).toString(16).padStart(2, '0')})`);
  }
  return parts.join(' ') || String(error);
}
