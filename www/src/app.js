// Dashboard: builds the page from its parts and wires them together. It is the one module that
// knows them all; every part is handed only the elements, models and callbacks it works with.
//
// Data flow: the MQTT client runs in a Web Worker (worker/core.js), which decodes the messages,
// extracts their numbers and hands the page one batch per animation frame (worker-client.js).
// ingest.js files a batch into the models (counts, topic tree, log, series buffers) and asks
// for a frame. All DOM work happens in `draw`, called by the frame scheduler at most once per
// animation frame, with a tick every 250 ms for the slower parts and the clocks (rates, the
// reconnect countdown, sliding chart windows); after each frame the worker may send the next
// batch. So the page's cost per message is a few map lookups and array writes, and its cost
// per frame is bounded by what is on screen.
//
// Where the rest lives: connection.js (the client and the connection states), subscriptions.js
// (the filters, re-sent to each new client), page-url.js (`?sub=` and `?layout=` in the
// address), settings.js (localStorage), signin.js and credentials.js (the sign-in form, the
// credentials and where they are kept), publish.js and retained.js (those two panels),
// controls.js (the other controls), frame-scheduler.js (the drawing loop), debug-hook.js
// (`window.__dashboard`); ui/charts.js (grouping, axes, export, layout) with model/decimate.js
// and ui/redraw.js (what drawing costs), worker/ (the ingest worker).
//
// Signing in: the page first connects with the credentials remembered on this tab, or none.
// When the gateway refuses (bad credentials, or anonymous clients not let in), the sign-in
// form appears; its credentials make a new connection, whose client keeps them for its own
// reconnects. The `?sub=` filters wait as pending meanwhile and are sent once connected.

import { MessageLog } from './model/message-log.js';
import { TopicTree } from './model/topic-tree.js';
import { SeriesStore, DEFAULT_BUDGET } from './model/series-store.js';
import { Traffic } from './model/traffic.js';
import { ChartManager } from './ui/charts.js';
import { LogView } from './ui/log-view.js';
import { TreeView } from './ui/tree-view.js';
import { SubscriptionsView, SeriesTable } from './ui/panels.js';
import { formatCount, formatRate } from './ui/dom.js';
import { onThemeChange } from './ui/theme.js';
import { startIngestWorker } from './worker-client.js';
import { findElements } from './elements.js';
import { loadSettings, saveSettings, brokerUrlProblem } from './settings.js';
import { tabCredentialStore, authorizationHeader, connectCredentials } from './credentials.js';
import { SignIn } from './signin.js';
import { subscriptionFilters, mirrorSubscriptions } from './page-url.js';
import { Subscriptions } from './subscriptions.js';
import { Connection } from './connection.js';
import { batchHandler } from './ingest.js';
import { bindConnectionPanel, bindSubscribeForm, bindPlotToolbar, bindLogToolbar } from './controls.js';
import { bindPublishForm } from './publish.js';
import { bindRetainedPanel } from './retained.js';
import { FrameScheduler } from './frame-scheduler.js';
import { installDebugHook } from './debug-hook.js';

/** Messages the log keeps (the oldest go first). */
const LOG_CAPACITY = 100_000;

export class Dashboard {
  constructor() {
    const el = (this.elements = findElements());

    // Models: plain data, no DOM.
    this.log = new MessageLog(LOG_CAPACITY);
    this.tree = new TopicTree();
    this.series = new SeriesStore({ budget: DEFAULT_BUDGET });
    this.traffic = new Traffic();

    this.scheduler = new FrameScheduler((now, tick) => this.draw(now, tick));
    const requestFrame = () => this.scheduler.request();

    // Views.
    this.charts = new ChartManager(el.charts, this.series);
    this.series.onSeries = (series) => this.charts.place(series);
    this.seriesTable = new SeriesTable(el.seriesList, el.seriesCount, this.series, this.charts);
    // The series table is rebuilt in the next frame, once however many series arrived.
    this.layoutChanged = false;
    this.charts.onLayoutChange = () => (this.layoutChanged = true);
    this.logView = new LogView(el.logList, el.logDetail, this.log);
    const setLogFilter = (text) => {
      this.logView.setFilter(text);
      requestFrame();
    };
    this.treeView = new TreeView(el.topicTree, this.tree, (topic) => {
      el.logFilter.value = topic;
      setLogFilter(topic);
    });
    this.subscriptionsView = new SubscriptionsView(el.subscriptionList, (filter) => this.subscriptions.unsubscribe(filter));

    // Subscriptions and the connection, which follow each other.
    this.subscriptions = new Subscriptions({
      client: () => this.connection.client,
      onChange: () => this.subscriptionsView.render(this.subscriptions.list),
      onFiltersChange: mirrorSubscriptions,
      onError: (text) => (el.subscribeError.textContent = text),
    });
    this.ingest = startIngestWorker(
      batchHandler({ traffic: this.traffic, subscriptions: this.subscriptions, tree: this.tree, log: this.log, series: this.series }, requestFrame),
    );
    this.connection = new Connection({
      loadClient: async () => this.ingest.clientClass,
      onChange: requestFrame,
      onConnected: () => {
        this.signIn.connected();
        this.subscriptions.sendAll();
        this.retainedPanel.refresh();
      },
      // The client restores its subscriptions itself; mark them active again.
      onReconnected: () => this.subscriptions.resendPending(),
      onDisconnect: () => this.subscriptions.markPending(),
      onFailed: (error) => this.signIn.failed(error),
      urlProblem: (url) => brokerUrlProblem(url, location),
    });

    // Controls.
    this.settings = loadSettings();
    this.signIn = new SignIn(
      { form: el.signInForm, message: el.signInMessage, open: el.signInOpen, signOut: el.signOut, account: el.accountUser },
      {
        store: tabCredentialStore(),
        protocolVersion: () => this.settings.protocolVersion,
        onSignIn: () => this.connect(),
        onSignOut: () => {
          this.connection.disconnect();
          this.retainedPanel.reset();
        },
      },
    );
    bindConnectionPanel({ toggle: el.connectionToggle, form: el.connectionForm, disconnect: el.disconnect }, this.settings, {
      onConnect: (settings) => {
        this.settings = settings;
        saveSettings(settings);
        this.connect();
      },
      onDisconnect: () => this.connection.disconnect(),
    });
    bindSubscribeForm({ form: el.subscribeForm, error: el.subscribeError }, (filter, qos) => this.subscriptions.subscribe(filter, qos));
    this.plotToolbar = bindPlotToolbar(
      {
        windowSelect: el.plotWindow,
        budget: el.plotBudget,
        pause: el.plotPause,
        add: el.plotAdd,
        grouping: el.plotGrouping,
        copyLink: el.plotCopyLink,
        linkBox: el.plotLinkBox,
        link: el.plotLink,
        linkStatus: el.plotLinkStatus,
      },
      { charts: this.charts, series: this.series },
    );
    bindLogToolbar(
      { filter: el.logFilter, format: el.logFormat, pause: el.logPause, clear: el.logClear },
      { log: this.log, logView: this.logView, onFilter: setLogFilter, onChange: requestFrame },
    );
    const client = () => this.connection.client;
    const onSent = () => this.traffic.countSent(performance.now());
    bindPublishForm(el.publishForm, el.publishResult, { client, onSent, onDone: requestFrame });
    this.retainedPanel = bindRetainedPanel(
      { details: el.retained, form: el.retainedForm, status: el.retainedStatus, list: el.retainedList },
      { tree: this.tree, client, authorization: () => authorizationHeader(this.signIn.credentials), onSent, onDone: requestFrame },
    );

    onThemeChange(() => this.charts.restyle());
    this.scheduler.start();
    installDebugHook(
      {
        connection: this.connection,
        traffic: this.traffic,
        log: this.log,
        tree: this.tree,
        subscriptions: this.subscriptions,
        series: this.series,
        charts: this.charts,
        signIn: this.signIn,
      },
      this.scheduler,
      this.ingest,
    );
  }

  /** Subscribes to the address's `sub` filters, lays the charts out by its `layout`, and connects. */
  start() {
    for (const filter of subscriptionFilters(location.search)) this.subscriptions.add(filter, 0);
    this.subscriptionsView.render(this.subscriptions.list);
    this.plotToolbar.restore(location.search);
    this.connect();
  }

  /** Connects with the settings and the signed-in credentials (none: anonymously). */
  connect() {
    this.connection.connect({ ...this.settings, ...connectCredentials(this.signIn.credentials) });
  }

  /**
   * One frame: charts and the log every frame (each skips work when nothing changed); texts,
   * counts and the topic tree on ticks only, since they change faster than anyone reads them.
   */
  draw(now, tick) {
    const el = this.elements;
    if (this.layoutChanged) {
      this.layoutChanged = false;
      this.seriesTable.render();
      el.plotsEmpty.hidden = this.series.list.length > 0;
    }
    this.charts.update(now);
    this.logView.update();
    this.ingest.frameDrawn();
    if (!tick) return;
    el.status.dataset.state = this.connection.state;
    const text = this.connection.statusText(now);
    el.statusText.textContent = text;
    el.statusText.title = text;
    el.rateIn.textContent = formatRate(this.traffic.rateIn.rate(now));
    el.rateOut.textContent = formatRate(this.traffic.rateOut.rate(now));
    el.countIn.textContent = formatCount(this.traffic.received);
    el.topicCount.textContent = this.tree.topics ? `(${formatCount(this.tree.topics)})` : '';
    el.logCount.textContent = this.log.paused
      ? `(paused, ${formatCount(this.log.missed)} not logged)`
      : `(${formatCount(this.log.size())}${this.log.filter ? ' matching' : ''})`;
    this.treeView.update();
    this.subscriptionsView.updateCounts();
    this.seriesTable.updateCounts();
  }
}
