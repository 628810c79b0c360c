// `window.__dashboard`: read-only numbers for the browser tests (tests/browser/dashboard) and for
// people poking at the console. The tests depend on every field here, so its shape is an
// interface: add to it freely, rename nothing.

/**
 * The dashboard's state as plain data.
 *
 * @param {object} sources the models to read (connection, traffic, log, tree, subscriptions,
 *   series), the chart manager (which chart shows which series on which axis, the grouping, the
 *   window, whether paused), and the sign-in (whether its form shows and who is signed in; never
 *   a password)
 */
export function debugSnapshot({ connection, traffic, log, tree, subscriptions, series, charts, signIn }) {
  return {
    state: connection.state,
    signInShown: signIn?.shown ?? false,
    signedInAs: signIn?.credentials?.username ?? null,
    stateDetail: connection.stateDetail,
    received: traffic.received,
    sent: traffic.sent,
    logged: log.lastSeq,
    logRows: log.size(),
    topics: tree.topics,
    subscriptions: subscriptions.list.map(({ filter, qos, granted, status, count }) => ({ filter, qos, granted, status, count })),
    series: series.list.map((s) => ({
      name: s.name,
      topic: s.topic,
      field: s.field,
      points: s.buffer.length,
      total: s.buffer.total,
      chart: charts.chartOf(s.id)?.id ?? null,
    })),
    charts: charts.charts.map((c) => ({
      id: c.id,
      title: c.titleText(),
      series: c.series().map((s) => s.name),
      // Parallel to `series`: 'left' or 'right'.
      axes: c.series().map((s) => c.axisName(s.id) || 'left'),
    })),
    grouping: charts.mode,
    plotWindow: charts.windowSeconds,
    plotsPaused: charts.paused,
  };
}

/**
 * Installs the hook: `snapshot()` (see debugSnapshot), `frameWork()`, the frames drawn and
 * how long their work took (see FrameScheduler.work), and `ingest()`, the batches the ingest
 * worker sent and the messages it had to drop (see worker-client.js).
 */
export function installDebugHook(sources, scheduler, ingest) {
  window.__dashboard = {
    snapshot: () => debugSnapshot(sources),
    frameWork: () => scheduler.work(),
    ingest: () => ({ batches: ingest.batches, dropped: ingest.dropped }),
  };
}
