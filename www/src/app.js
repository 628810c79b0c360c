// Dashboard: owns the page's state and the MQTT connection, and ties the models to the views.
//
// Data flow: the client's messages go through `handleMessage`, which only updates models
// (counters, topic tree, log, series buffers) and asks for a frame. All DOM work happens in
// `frame()`, at most once per requestAnimationFrame, plus a 250 ms tick for clocks (rates, the
// reconnect countdown, sliding chart windows). So the cost per message is a few map lookups and,
// for numeric payloads, one JSON.parse; the cost per frame is bounded by what is on screen.
//
// Connection states shown (the status element's data-state): connecting, connected,
// reconnecting (with a countdown to the next attempt), refused (with the broker's or the
// network's reason) and closed. Subscriptions live here, not in the client: they are re-sent
// when a new client is made (Connect), and the client itself restores them after a reconnect.
//
// The subscriptions are mirrored in the page's URL (`?sub=filter&sub=...`), and subscribed on
// load, so a view can be bookmarked or shared.

import { MessageLog } from './model/message-log.js';
import { TopicTree } from './model/topic-tree.js';
import { SeriesStore, DEFAULT_BUDGET } from './model/series-store.js';
import { Traffic } from './model/traffic.js';
import { filterProblem } from './model/topic-filter.js';
import { ChartManager } from './ui/charts.js';
import { LogView } from './ui/log-view.js';
import { TreeView } from './ui/tree-view.js';
import { SubscriptionsView, SeriesTable } from './ui/panels.js';
import { formatCount, formatRate } from './ui/dom.js';
import { onThemeChange } from './ui/theme.js';
import { loadMqttClient } from './mqtt.js';
import { loadSettings, saveSettings, settingsFromForm } from './settings.js';
import { subscriptionFilters, mirrorSubscriptions } from './page-url.js';
import { findElements } from './elements.js';
import { Subscriptions } from './subscriptions.js';
import { Connection } from './connection.js';
import { messageHandler } from './ingest.js';
import { bindPublishForm } from './publish.js';
import { bindRetainedPanel } from './retained.js';

const TICK_MS = 250;
/** Frame work durations kept for the debug hook. */
const FRAME_SAMPLES = 1024;

export class Dashboard {
  constructor() {
    const el = (this.elements = findElements());
    this.log = new MessageLog(100_000);
    this.tree = new TopicTree();
    this.series = new SeriesStore({ budget: DEFAULT_BUDGET });
    this.traffic = new Traffic();
    this.framePending = false;
    this.lastTick = 0;
    this.frameWork = new Float64Array(FRAME_SAMPLES);
    this.frames = 0;

    this.charts = new ChartManager(el.charts, this.series);
    this.series.onSeries = (series) => this.charts.place(series);
    this.seriesTable = new SeriesTable(el.seriesList, el.seriesCount, this.series, this.charts);
    this.charts.onLayoutChange = () => (this.layoutChanged = true);
    this.logView = new LogView(el.logList, el.logDetail, this.log);
    this.treeView = new TreeView(el.topicTree, this.tree, (topic) => {
      el.logFilter.value = topic;
      this.setLogFilter(topic);
    });
    this.subscriptionsView = new SubscriptionsView(el.subscriptionList, (filter) => this.subscriptions.unsubscribe(filter));
    this.subscriptions = new Subscriptions({
      client: () => this.connection.client,
      onChange: () => this.subscriptionsView.render(this.subscriptions.list),
      onFiltersChange: mirrorSubscriptions,
      onError: (text) => (el.subscribeError.textContent = text),
    });
    this.connection = new Connection({
      loadClient: loadMqttClient,
      onMessage: messageHandler(
        { traffic: this.traffic, subscriptions: this.subscriptions, tree: this.tree, log: this.log, series: this.series },
        () => this.requestFrame(),
      ),
      onChange: () => this.requestFrame(),
      onConnected: () => this.subscriptions.sendAll(),
      // The client restores its subscriptions itself; mark them active again.
      onReconnected: () => this.subscriptions.resendPending(),
      onDisconnect: () => this.subscriptions.markPending(),
    });

    this.settings = loadSettings();
    this.bindControls();
    onThemeChange(() => this.charts.restyle());
    setInterval(() => this.requestFrame(), TICK_MS);
    this.installDebugHook();
  }

  /** Subscribes to the URL's `sub` filters and connects. */
  start() {
    for (const filter of subscriptionFilters(location.search)) this.subscriptions.add(filter, 0);
    this.subscriptionsView.render(this.subscriptions.list);
    this.connection.connect(this.settings);
  }

  // ---- controls ----

  bindControls() {
    const el = this.elements;
    const form = el.connectionForm;
    for (const [name, value] of Object.entries(this.settings)) {
      if (form.elements[name]) form.elements[name].value = String(value);
    }
    el.connectionToggle.addEventListener('click', () => {
      form.hidden = !form.hidden;
      el.connectionToggle.setAttribute('aria-expanded', String(!form.hidden));
    });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.settings = settingsFromForm(form.elements);
      saveSettings(this.settings);
      this.connection.connect(this.settings);
    });
    el.disconnect.addEventListener('click', () => this.connection.disconnect());

    el.subscribeForm.addEventListener('submit', (event) => {
      event.preventDefault();
      const fields = event.target.elements;
      const filter = fields.filter.value.trim();
      const problem = filterProblem(filter);
      el.subscribeError.textContent = problem ?? '';
      if (problem !== null) return;
      this.subscriptions.subscribe(filter, Number(fields.qos.value));
      fields.filter.value = '';
    });

    el.plotWindow.addEventListener('change', (event) => this.charts.setWindow(Number(event.target.value)));
    const budget = el.plotBudget;
    budget.value = String(this.series.budget);
    budget.addEventListener('change', () => {
      const value = Math.round(Number(budget.value));
      if (Number.isFinite(value) && value >= 10) {
        this.series.setBudget(value);
        this.charts.setWindow(this.charts.windowSeconds);
      } else {
        budget.value = String(this.series.budget);
      }
    });
    el.plotPause.addEventListener('click', (event) => {
      const paused = !this.charts.paused;
      this.charts.setPaused(paused);
      event.target.setAttribute('aria-pressed', String(paused));
      event.target.textContent = paused ? 'Resume' : 'Pause';
    });
    el.plotAdd.addEventListener('click', () => this.charts.addChart());

    let filterTimer = 0;
    el.logFilter.addEventListener('input', (event) => {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(() => this.setLogFilter(event.target.value), 150);
    });
    el.logFormat.addEventListener('change', (event) => this.logView.setFormat(event.target.value));
    el.logPause.addEventListener('click', (event) => {
      this.log.setPaused(!this.log.paused);
      event.target.setAttribute('aria-pressed', String(this.log.paused));
      event.target.textContent = this.log.paused ? 'Resume' : 'Pause';
      this.requestFrame();
    });
    el.logClear.addEventListener('click', () => {
      this.log.clear();
      this.logView.select(0);
      this.requestFrame();
    });

    const client = () => this.connection.client;
    const onSent = () => this.traffic.countSent(performance.now());
    const onDone = () => this.requestFrame();
    bindPublishForm(el.publishForm, el.publishResult, { client, onSent, onDone });
    bindRetainedPanel(
      { details: el.retained, form: el.retainedForm, status: el.retainedStatus, list: el.retainedList },
      { tree: this.tree, client, onSent, onDone },
    );
  }

  setLogFilter(text) {
    this.log.setFilter(text);
    this.elements.logList.scrollTop = 0;
    this.logView.topSeq = 0;
    this.requestFrame();
  }

  // ---- messages ----

  // ---- drawing ----

  requestFrame() {
    if (this.framePending) return;
    this.framePending = true;
    requestAnimationFrame((timestamp) => this.frame(timestamp));
  }

  frame() {
    this.framePending = false;
    const started = performance.now();
    const el = this.elements;
    if (this.layoutChanged) {
      this.layoutChanged = false;
      this.seriesTable.render();
      el.plotsEmpty.hidden = this.series.list.length > 0;
    }
    this.charts.update(started);
    this.logView.update();
    if (started - this.lastTick >= TICK_MS) {
      this.lastTick = started;
      const status = el.status;
      status.dataset.state = this.connection.state;
      const text = this.connection.statusText(started);
      el.statusText.textContent = text;
      el.statusText.title = text;
      el.rateIn.textContent = formatRate(this.traffic.rateIn.rate(started));
      el.rateOut.textContent = formatRate(this.traffic.rateOut.rate(started));
      el.countIn.textContent = formatCount(this.traffic.received);
      el.topicCount.textContent = this.tree.topics ? `(${formatCount(this.tree.topics)})` : '';
      el.logCount.textContent = this.log.paused
        ? `(paused, ${formatCount(this.log.missed)} not logged)`
        : `(${formatCount(this.log.size())}${this.log.filter ? ' matching' : ''})`;
      this.treeView.update();
      this.subscriptionsView.updateCounts();
      this.seriesTable.updateCounts();
    }
    this.frameWork[this.frames % FRAME_SAMPLES] = performance.now() - started;
    this.frames += 1;
  }

  /** `window.__dashboard`: read-only numbers for tests and for people poking at the console. */
  installDebugHook() {
    window.__dashboard = {
      snapshot: () => ({
        state: this.connection.state,
        stateDetail: this.connection.stateDetail,
        received: this.traffic.received,
        sent: this.traffic.sent,
        logged: this.log.lastSeq,
        logRows: this.log.size(),
        topics: this.tree.topics,
        subscriptions: this.subscriptions.list.map(({ filter, qos, granted, status, count }) => ({ filter, qos, granted, status, count })),
        series: this.series.list.map((s) => ({
          name: s.name,
          topic: s.topic,
          field: s.field,
          points: s.buffer.length,
          total: s.buffer.total,
          chart: this.charts.chartOf(s.id)?.id ?? null,
        })),
        charts: this.charts.charts.map((c) => ({ id: c.id, series: c.series().map((s) => s.name) })),
      }),
      frameWork: () => {
        const count = Math.min(this.frames, FRAME_SAMPLES);
        return { frames: this.frames, recent: Array.from(this.frameWork.subarray(0, count)) };
      },
    };
  }
}
