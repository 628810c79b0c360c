// The debug hook's snapshot: the shape the browser tests read.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { debugSnapshot } from '../../src/debug-hook.js';
import { Traffic } from '../../src/model/traffic.js';
import { Subscriptions } from '../../src/subscriptions.js';
import { TopicTree } from '../../src/model/topic-tree.js';
import { MessageLog } from '../../src/model/message-log.js';
import { SeriesStore } from '../../src/model/series-store.js';
import { messageHandler } from './pipeline.js';

test('the snapshot reports state, counts, subscriptions, series and charts', () => {
  const subscriptions = new Subscriptions({ client: () => null, onChange() {}, onFiltersChange() {}, onError() {} });
  const models = { traffic: new Traffic(), subscriptions, tree: new TopicTree(), log: new MessageLog(10), series: new SeriesStore() };
  subscriptions.add('demo/#', 1);
  const handle = messageHandler(models, () => {});
  handle({ topic: 'demo/a', payload: new TextEncoder().encode('{"temp": 1, "hum": 2}') });
  handle({ topic: 'demo/b', payload: new TextEncoder().encode('3') });
  models.traffic.countSent(0);
  // A chart manager showing the first two series, on two axes; the third is hidden.
  const [temp, hum] = models.series.list;
  const chart = { id: 7, seriesIds: [temp.id, hum.id], series: () => [temp, hum], titleText: () => 'demo/a', axisName: (id) => (id === hum.id ? 'right' : 'left') };
  const charts = {
    charts: [chart],
    chartOf: (id) => (chart.seriesIds.includes(id) ? chart : undefined),
    mode: 'topic',
    windowSeconds: 600,
    paused: true,
  };
  const connection = { state: 'connected', stateDetail: '' };

  assert.deepEqual(debugSnapshot({ connection, charts, ...models }), {
    state: 'connected',
    signInShown: false,
    signedInAs: null,
    stateDetail: '',
    received: 2,
    sent: 1,
    logged: 2,
    logRows: 2,
    topics: 2,
    subscriptions: [{ filter: 'demo/#', qos: 1, granted: 1, status: 'pending', count: 2 }],
    series: [
      { name: 'demo/a temp', topic: 'demo/a', field: 'temp', points: 1, total: 1, chart: 7 },
      { name: 'demo/a hum', topic: 'demo/a', field: 'hum', points: 1, total: 1, chart: 7 },
      { name: 'demo/b', topic: 'demo/b', field: '', points: 1, total: 1, chart: null },
    ],
    charts: [{ id: 7, title: 'demo/a', series: ['demo/a temp', 'demo/a hum'], axes: ['left', 'right'] }],
    grouping: 'topic',
    plotWindow: 600,
    plotsPaused: true,
  });
});

test('the snapshot tells whether the sign-in form shows and who is signed in, never a password', () => {
  const subscriptions = new Subscriptions({ client: () => null, onChange() {}, onFiltersChange() {}, onError() {} });
  const models = { traffic: new Traffic(), subscriptions, tree: new TopicTree(), log: new MessageLog(10), series: new SeriesStore() };
  const charts = { charts: [], chartOf: () => undefined };
  const signIn = { shown: false, credentials: { username: 'ann', password: 'hunter2' } };
  const state = debugSnapshot({ connection: { state: 'connected', stateDetail: '' }, charts, signIn, ...models });
  assert.equal(state.signInShown, false);
  assert.equal(state.signedInAs, 'ann');
  assert.equal(JSON.stringify(state).includes('hunter2'), false);
  const signedOut = debugSnapshot({ connection: { state: 'refused', stateDetail: '' }, charts, signIn: { shown: true, credentials: null }, ...models });
  assert.equal(signedOut.signInShown, true);
  assert.equal(signedOut.signedInAs, null);
});
