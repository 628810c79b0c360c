// ChartManager: the plot area. Several uPlot charts, each showing a chosen set of series; the
// series' points live in their SeriesBuffers (model/ring-buffer.js) and reach uPlot through one
// Decimator per chart and series (model/decimate.js): at most about 4 points per pixel column,
// kept up to date at a cost that follows the new points.
//
// Invariants:
// - Charts use uPlot's mode 2 (each series has its own x values), because series from different
//   topics arrive at different times and aligning them would cost a copy per frame.
// - `update(now)` is called from the page's one requestAnimationFrame callback; a chart redraws
//   only when one of its series got points since its last draw, or when its time window slides
//   (at most every `SLIDE_MS`), and charts take turns under a busy stream (ui/redraw.js). So a
//   10k msgs/s stream costs at most 30 redraws per chart per second, and an idle page nothing.
// - The time window (last N seconds, or all) selects points by binary search, and the Decimator
//   reduces them to the plot's width, so drawing cost follows pixels, not the points held.
// - Paused charts keep their x range and skip redraws; points are still recorded, so resuming
//   shows everything that arrived meanwhile.
// - A new series goes where an applied layout (a shared link) names it, else to the chart that
//   already shows a series of its group (model/layout.js: by field, the same field name from any
//   topic; by topic, the fields of one topic), else to a new chart while there are fewer than
//   `AUTO_CHARTS`, else to the last chart. Switching the grouping re-groups every shown series.
//   People move series between charts (or hide them) in the series table.
// - A chart whose series' magnitudes fall into two groups far apart gets a second y-axis on the
//   right (model/axes.js). The split is checked every `AXIS_CHECK_MS`, not per frame, and the
//   uPlot instance is rebuilt only when it changes.
// - A chart's title says what it shows: its series' group keys (a field name, or a topic).

import uPlot from 'uplot';
import { h, formatValue } from './dom.js';
import { seriesColor, themeColors } from './theme.js';
import { groupKey, seriesKey, LAYOUT_VERSION } from '../model/layout.js';
import { splitAxes, RIGHT } from '../model/axes.js';
import { Decimator } from '../model/decimate.js';
import { chartsToDraw } from './redraw.js';
import { chartCsv, chartPng, downloadBlob, exportFilename } from './export.js';

const AUTO_CHARTS = 8;
const SLIDE_MS = 250;
const AXIS_CHECK_MS = 400;
/**
 * How often the legend's latest values change: a number rewritten 60 times a second cannot be
 * read, and each rewrite costs the page a layout.
 */
const LEGEND_MS = 250;
/** Narrowest time range shown, in seconds. */
const MIN_SPAN_SECONDS = 10;
const CHART_HEIGHT = 220;
/** Group keys named in a title before it says how many more there are. */
const TITLE_KEYS = 3;

export class ChartManager {
  /**
   * @param {HTMLElement} container where charts go
   * @param {import('../model/series-store.js').SeriesStore} store
   */
  constructor(container, store) {
    this.container = container;
    this.store = store;
    /** @type {Chart[]} */
    this.charts = [];
    this.nextChartId = 1;
    /** How new series are grouped: 'field' or 'topic' (see model/layout.js). */
    this.mode = 'field';
    /** Seconds of history shown; 0 shows everything held. */
    this.windowSeconds = 60;
    this.paused = false;
    /** The right edge of windowed charts, in Unix seconds; frozen while paused. */
    this.now = Date.now() / 1000;
    /**
     * Where an applied layout puts series that have not arrived yet: seriesKey -> Chart, or null
     * for hidden. An entry is used once, by the series' first placement.
     * @type {Map<string, Chart|null>}
     */
    this.planned = new Map();
    /** Called when charts or assignments change (the series table re-renders). */
    this.onLayoutChange = () => {};
    new ResizeObserver(() => this.resize()).observe(container);
  }

  /** Puts a new series where the applied layout names it, else on the default chart. */
  place(series) {
    const key = seriesKey(series.topic, series.field);
    const planned = this.planned.get(key);
    this.planned.delete(key);
    // null: hidden by the layout. A planned chart someone removed meanwhile no longer counts.
    if (planned !== null) {
      const chart = planned !== undefined && this.charts.includes(planned) ? planned : this.defaultChart(series);
      chart.add(series.id);
    }
    this.onLayoutChange();
  }

  /** The chart showing the series' group, else a new one while there are few, else the last. */
  defaultChart(series) {
    const group = groupKey(series, this.mode);
    const chart = this.charts.find((c) => c.series().some((s) => groupKey(s, this.mode) === group));
    if (chart !== undefined) return chart;
    return this.charts.length < AUTO_CHARTS ? this.addChart() : this.charts.at(-1);
  }

  addChart() {
    const chart = new Chart(this, this.nextChartId++);
    this.charts.push(chart);
    this.container.append(chart.element);
    this.onLayoutChange();
    return chart;
  }

  removeChart(chart) {
    chart.destroy();
    this.charts = this.charts.filter((c) => c !== chart);
    this.onLayoutChange();
  }

  /** The chart showing a series, if any. */
  chartOf(seriesId) {
    return this.charts.find((chart) => chart.seriesIds.includes(seriesId));
  }

  /** Moves a series to the chart with `chartId`, or hides it when `chartId` is null. */
  move(seriesId, chartId) {
    this.chartOf(seriesId)?.remove(seriesId);
    if (chartId !== null) this.charts.find((chart) => chart.id === chartId)?.add(seriesId);
    this.onLayoutChange();
  }

  /** Groups by 'field' or 'topic' from now on, and re-groups every shown series so. */
  setMode(mode) {
    this.mode = mode;
    const hidden = new Set(this.store.list.filter((s) => this.chartOf(s.id) === undefined).map((s) => s.id));
    this.removeAll();
    for (const series of this.store.list) {
      if (!hidden.has(series.id)) this.place(series);
    }
    this.onLayoutChange();
  }

  setWindow(seconds) {
    this.windowSeconds = seconds;
    for (const chart of this.charts) chart.dirty = true;
  }

  setPaused(paused) {
    this.paused = paused;
    for (const chart of this.charts) chart.dirty = true;
  }

  /**
   * The layout as plain data (see model/layout.js): the grouping, the window, whether paused,
   * each chart's series and the hidden series, named by topic and field.
   */
  layout() {
    const name = (s) => [s.topic, s.field];
    return {
      v: LAYOUT_VERSION,
      mode: this.mode,
      window: this.windowSeconds,
      paused: this.paused,
      charts: this.charts.map((chart) => chart.series().map(name)),
      hidden: this.store.list.filter((s) => this.chartOf(s.id) === undefined).map(name),
    };
  }

  /**
   * Replaces the charts with those of `layout` (a valid one: model/layout.js decodes links to
   * nothing else). Series already here go where it names them at once; the others when they
   * arrive; series it does not name follow the default rule. A paused layout pauses the charts
   * at once, like the Pause button: points are recorded, and shown on Resume.
   */
  applyLayout(layout) {
    this.removeAll();
    this.mode = layout.mode;
    this.windowSeconds = layout.window;
    this.paused = layout.paused;
    for (const names of layout.charts) {
      const chart = this.addChart();
      for (const [topic, field] of names) this.planned.set(seriesKey(topic, field), chart);
    }
    for (const [topic, field] of layout.hidden) this.planned.set(seriesKey(topic, field), null);
    for (const series of this.store.list) this.place(series);
    this.onLayoutChange();
  }

  /** Rebuilds every chart (the colour scheme changed). */
  restyle() {
    for (const chart of this.charts) chart.rebuild();
  }

  /** Forgets all charts (the series were cleared). */
  clear() {
    this.removeAll();
    this.onLayoutChange();
  }

  /** Destroys every chart and forgets any layout still waiting; chart numbers start again at 1. */
  removeAll() {
    for (const chart of this.charts) chart.destroy();
    this.charts = [];
    this.nextChartId = 1;
    this.planned.clear();
  }

  resize() {
    for (const chart of this.charts) chart.resize();
  }

  /**
   * Redraws the charts that need it, taking turns under a busy stream (ui/redraw.js); `nowMs` is
   * the frame's performance.now().
   */
  update(nowMs) {
    if (this.paused) return;
    this.now = (performance.timeOrigin + nowMs) / 1000;
    for (const chart of chartsToDraw(this.charts, nowMs, (c) => c.needsDraw(nowMs))) chart.update(nowMs);
  }

  /** The start of the time window, in Unix seconds (-Infinity: everything held). */
  since() {
    return this.windowSeconds > 0 ? this.now - this.windowSeconds : -Infinity;
  }

  /**
   * The x range of every chart: the window ending now (narrowed to the data while the data
   * covers less of it, so a fresh chart is not a line squeezed against the right edge), or all
   * the data.
   */
  xRange(dataMin, dataMax) {
    if (this.windowSeconds > 0) {
      const start = this.now - this.windowSeconds;
      if (dataMin === null || !Number.isFinite(dataMin) || dataMin <= start) return [start, this.now];
      return [Math.min(dataMin, this.now - MIN_SPAN_SECONDS), this.now];
    }
    if (dataMin === null || dataMax === null || !Number.isFinite(dataMin)) return [this.now - 60, this.now];
    return [dataMin, Math.max(dataMax, dataMin + 1)];
  }
}

/** One chart: a uPlot instance over some series, with a header (title, exports) and a legend. */
class Chart {
  constructor(manager, id) {
    this.manager = manager;
    this.id = id;
    this.seriesIds = [];
    /** The y-axis of each shown series (LEFT or RIGHT), parallel to `series()` at the last rebuild. */
    this.axes = [];
    /** The same by series id. */
    this.axisById = new Map();
    /**
     * The axes the next split starts from (model/axes.js' hysteresis): those of the series that
     * had points in view when assigned. A series placed before its first point is not in it, so
     * its first real assignment follows the plain rule.
     */
    this.decidedAxes = new Map();
    /** Each shown series' Decimator (model/decimate.js), by series id. */
    this.decimators = new Map();
    /** Each shown series' point total at the last draw. */
    this.drawnTotals = [];
    /** Each shown series' point total when its legend value was last written. */
    this.legendTotals = [];
    this.lastLegend = -Infinity;
    this.lastDraw = -Infinity;
    this.lastAxisCheck = -Infinity;
    this.dirty = true;
    this.plot = null;
    this.title = h('span', { className: 'chart-title', textContent: `Chart ${id}` });
    this.legend = h('div', { className: 'chart-legend' });
    this.canvasHolder = h('div', { className: 'chart-plot' });
    this.empty = h('div', { className: 'chart-empty', textContent: 'No series on this chart: pick some in the series table.' });
    this.csvButton = h('button', {
      type: 'button',
      className: 'icon-button',
      textContent: 'CSV',
      title: 'Download the points in view as CSV',
      'aria-label': `chart ${id} as CSV`,
      'data-export': 'csv',
      on: { click: () => this.exportCsv() },
    });
    this.pngButton = h('button', {
      type: 'button',
      className: 'icon-button',
      textContent: 'PNG',
      title: 'Download this chart as a PNG image',
      'aria-label': `chart ${id} as PNG`,
      'data-export': 'png',
      on: { click: () => this.exportPng() },
    });
    const remove = h('button', {
      type: 'button',
      className: 'icon-button',
      textContent: '✕',
      title: 'Remove this chart (its series become hidden)',
      'aria-label': `remove chart ${id}`,
      on: { click: () => manager.removeChart(this) },
    });
    this.element = h('div', { className: 'chart', 'data-chart': id }, [
      h('div', { className: 'chart-head' }, [this.title, h('span', { className: 'chart-actions' }, [this.csvButton, this.pngButton, remove])]),
      this.legend,
      this.canvasHolder,
      this.empty,
    ]);
    this.rebuild();
  }

  add(seriesId) {
    if (!this.seriesIds.includes(seriesId)) this.seriesIds.push(seriesId);
    this.rebuild();
  }

  remove(seriesId) {
    this.seriesIds = this.seriesIds.filter((id) => id !== seriesId);
    this.decimators.delete(seriesId);
    this.rebuild();
  }

  series() {
    return this.seriesIds.map((id) => this.manager.store.byId(id)).filter(Boolean);
  }

  /** What the chart shows: its series' group keys (field names or topics), or `Chart N` when empty. */
  titleText() {
    const keys = [...new Set(this.series().map((s) => groupKey(s, this.manager.mode)))];
    if (keys.length === 0) return `Chart ${this.id}`;
    if (keys.length <= TITLE_KEYS) return keys.join(', ');
    return `${keys.slice(0, TITLE_KEYS - 1).join(', ')} and ${keys.length - TITLE_KEYS + 1} more`;
  }

  /** The axis of a shown series: 'left', 'right', or '' while the chart has one axis. */
  axisName(seriesId) {
    if (!this.axes.includes(RIGHT) || !this.axisById.has(seriesId)) return '';
    return this.axisById.get(seriesId) === RIGHT ? 'right' : 'left';
  }

  /** (Re)creates the uPlot instance for the current series, axes and colours. */
  rebuild() {
    this.plot?.destroy();
    this.plot = null;
    const series = this.series();
    const width = Math.max(200, this.element.clientWidth - 10 || this.manager.container.clientWidth - 10 || 600);
    const data = this.data(series, width);
    ({ axes: this.axes, decided: this.decidedAxes } = this.assignAxes(series));
    this.axisById = new Map(series.map((s, i) => [s.id, this.axes[i]]));
    this.title.textContent = this.titleText();
    this.element.dataset.series = String(series.length);
    this.empty.hidden = series.length > 0;
    this.canvasHolder.hidden = series.length === 0;
    this.csvButton.disabled = series.length === 0;
    this.pngButton.disabled = series.length === 0;
    this.legend.replaceChildren(
      ...series.map((s) => {
        const value = h('b', { className: 'legend-value' });
        const axis = this.axisName(s.id);
        const entry = h('span', { 'data-series': s.id, 'data-axis': axis || null, title: axis ? `${s.name} (${axis} axis)` : s.name }, [
          h('i', { style: `background:${seriesColor(s.id)}` }),
          s.name,
          axis ? h('small', { className: 'legend-axis', textContent: axis === 'right' ? 'right axis' : 'left axis' }) : null,
          value,
        ]);
        entry.valueElement = value;
        return entry;
      }),
    );
    this.drawnTotals = series.map(() => -1);
    this.legendTotals = series.map(() => -1);
    this.dirty = true;
    if (series.length === 0) return;
    const theme = themeColors();
    const axis = { stroke: theme.muted, grid: { stroke: theme.grid, width: 1 }, ticks: { stroke: theme.grid, width: 1 } };
    const twoAxes = this.axes.includes(RIGHT);
    const scales = { x: { time: true, range: (_u, min, max) => this.manager.xRange(min, max) }, y: { auto: true } };
    const axes = [axis, { ...axis, scale: 'y', size: 56 }];
    if (twoAxes) {
      scales.y2 = { auto: true };
      axes.push({ ...axis, scale: 'y2', side: 1, size: 56, grid: { show: false } });
    }
    const options = {
      mode: 2,
      width,
      height: window.innerWidth < 640 ? 180 : CHART_HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false, setScale: false }, points: { show: false } },
      scales,
      axes,
      series: [
        {},
        ...series.map((s, i) => ({
          label: s.name,
          stroke: seriesColor(s.id),
          width: 1,
          paths: uPlot.paths.linear(),
          points: { show: false },
          facets: [
            { scale: 'x', auto: true, sorted: 1 },
            { scale: this.axes[i] === RIGHT ? 'y2' : 'y', auto: true },
          ],
        })),
      ],
    };
    this.plot = new uPlot(options, data, this.canvasHolder);
  }

  /**
   * The axis of each of `series` under the split rule, and those decided by points in view. Each
   * series' magnitude is its largest |value| among the points `data` chose last: the decimated
   * points keep every column's minimum and maximum, so that is the largest in view.
   */
  assignAxes(series) {
    const magnitudes = series.map((s) => {
      const { min, max } = this.decimator(s).range();
      return Math.max(Math.abs(min), Math.abs(max));
    });
    const axes = splitAxes(magnitudes, series.map((s) => this.decidedAxes.get(s.id)));
    const decided = new Map();
    for (let i = 0; i < series.length; i++) {
      if (magnitudes[i] > 0) decided.set(series[i].id, axes[i]);
    }
    return { axes, decided };
  }

  /**
   * The points to draw: per series, its Decimator's points (at most about 4 per column) for the x
   * range the chart shows, from its start up to the newest point, at `columns` pixel columns.
   */
  data(series, columns) {
    const from = this.rangeStart(series);
    return [
      null,
      ...series.map((s) => {
        const { times, values } = this.decimator(s).points(from, Infinity, columns);
        return [times, values];
      }),
    ];
  }

  /** Where the x range starts, as ChartManager.xRange will compute it from the window's points. */
  rangeStart(series) {
    const since = this.manager.since();
    if (since === -Infinity) return -Infinity;
    let first = Infinity;
    for (const s of series) {
      const { times } = s.buffer.view(since);
      if (times.length > 0 && times[0] < first) first = times[0];
    }
    return this.manager.xRange(Number.isFinite(first) ? first : null, null)[0];
  }

  decimator(series) {
    let decimator = this.decimators.get(series.id);
    if (decimator === undefined) {
      decimator = new Decimator(series.buffer);
      this.decimators.set(series.id, decimator);
    }
    return decimator;
  }

  /** Whether the chart shows something new: points arrived, its window slid, or it changed. */
  needsDraw(nowMs) {
    if (this.plot === null) return false;
    if (this.dirty) return true;
    const series = this.series();
    for (let i = 0; i < series.length; i++) {
      if (series[i].buffer.total !== this.drawnTotals[i]) return true;
    }
    return this.manager.windowSeconds > 0 && nowMs - this.lastDraw >= SLIDE_MS;
  }

  /** Draws the chart's current points (ChartManager.update decides when). */
  update(nowMs) {
    if (this.plot === null) return;
    const series = this.series();
    const data = this.data(series, this.plot.width);
    if (nowMs - this.lastAxisCheck >= AXIS_CHECK_MS) {
      this.lastAxisCheck = nowMs;
      const { axes, decided } = this.assignAxes(series);
      this.decidedAxes = decided;
      if (axes.some((axis, i) => axis !== this.axisById.get(series[i].id))) {
        // The new instance draws the same points; the next frame finds the chart dirty again.
        this.rebuild();
        this.manager.onLayoutChange();
        return;
      }
    }
    this.plot.setData(data);
    this.lastDraw = nowMs;
    const legendDue = this.dirty || nowMs - this.lastLegend >= LEGEND_MS;
    this.dirty = false;
    if (legendDue) this.lastLegend = nowMs;
    const entries = this.legend.children;
    for (let i = 0; i < series.length; i++) {
      const buffer = series[i].buffer;
      if (legendDue && buffer.total !== this.legendTotals[i] && entries[i] !== undefined && buffer.length > 0) {
        const { values } = buffer.view();
        entries[i].valueElement.textContent = formatValue(values[values.length - 1]);
        this.legendTotals[i] = buffer.total;
      }
      this.drawnTotals[i] = buffer.total;
    }
  }

  /**
   * The time range in view, in Unix seconds: the plot's x scale; while live, up to whatever
   * arrived since the last draw too, which belongs to the window ending now.
   */
  visibleRange() {
    const { min, max } = this.plot.scales.x;
    return [min, this.manager.paused ? max : Infinity];
  }

  exportCsv() {
    if (this.plot === null) return;
    const [from, to] = this.visibleRange();
    downloadBlob(exportFilename(this.titleText(), 'csv'), new Blob([chartCsv(this.series(), from, to)], { type: 'text/csv' }));
  }

  exportPng() {
    if (this.plot === null) return;
    const canvas = this.plot.ctx.canvas;
    const entries = this.series().map((s) => ({ name: s.name, color: seriesColor(s.id), axis: this.axisName(s.id) }));
    const background = getComputedStyle(document.documentElement).getPropertyValue('--panel').trim();
    chartPng({ title: this.titleText(), entries, canvas, ratio: canvas.width / this.plot.width }, { background, text: themeColors().text })
      .then((blob) => downloadBlob(exportFilename(this.titleText(), 'png'), blob))
      .catch((error) => console.warn(error));
  }

  resize() {
    if (this.plot === null) return;
    const width = Math.max(200, this.element.clientWidth - 10);
    const height = window.innerWidth < 640 ? 180 : CHART_HEIGHT;
    if (width === this.plot.width && height === this.plot.height) return;
    this.plot.setSize({ width, height });
    // The points are chosen again for the new number of columns.
    this.dirty = true;
  }

  destroy() {
    this.plot?.destroy();
    this.plot = null;
    this.decimators.clear();
    this.element.remove();
  }
}
