// Starts the throttled worker and collects what it reports, for the Playwright test.
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
const reports = [];
worker.onmessage = (event) => reports.push(event.data);
worker.onerror = (event) => reports.push({ type: 'worker-error', message: event.message });
window.workerHarness = {
  start(options) {
    worker.postMessage(options);
  },
  reports() {
    return reports;
  },
};
