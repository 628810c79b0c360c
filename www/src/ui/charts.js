// ChartManager: the plot area. Several uPlot charts, each showing a chosen set of series; the
// series' points live in their SeriesBuffers (model/ring-buffer.js) and reach uPlot as
// subarrays, without copies.
//
// Invariants:
// - Charts use uPlot's mode 2 (each series has its own x values), because series from different
//   topics arrive at different times and aligning them would cost a copy per frame.
// - `update(now)` is called from the page's one requestAnimationFrame callback; a chart redraws
//   only when one of its series got points since its last draw, or when its time window slides
//   (at most every `SLIDE_MS`). So a 10k msgs/s stream costs one redraw per chart per frame, and
//   an idle page costs nothing.
// - The time window (last N seconds, or all) selects points by binary search, so drawing cost
//   follows what is visible, not what is held.
// - Paused charts keep their x range and skip redraws; points are still recorded, so resuming
//   shows everything that arrived meanwhile.
// - A new series goes to the chart that already shows its topic (the fields of one JSON
//   document belong together), else to a new chart while there are fewer than `AUTO_CHARTS`,
//   else to the last chart. People move series between charts (or hide them) in the series
//   table.

import uPlot from 'uplot';
import { h, formatValue } from './dom.js';
import { seriesColor, themeColors } from './theme.js';

const AUTO_CHARTS = 6;
const SLIDE_MS = 250;
/** Narrowest time range shown, in seconds. */
const MIN_SPAN_SECONDS = 10;
const CHART_HEIGHT = 220;

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
    /** Seconds of history shown; 0 shows everything held. */
    this.windowSeconds = 60;
    this.paused = false;
    /** The right edge of windowed charts, in Unix seconds; frozen while paused. */
    this.now = Date.now() / 1000;
    /** Called when charts or assignments change (the series table re-renders). */
    this.onLayoutChange = () => {};
    new ResizeObserver(() => this.resize()).observe(container);
  }

  /** Puts a new series on the default chart. */
  place(series) {
    let chart = this.charts.find((c) => c.series().some((s) => s.topic === series.topic));
    if (chart === undefined) chart = this.charts.length < AUTO_CHARTS ? this.addChart() : this.charts.at(-1);
    chart.add(series.id);
    this.onLayoutChange();
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

  setWindow(seconds) {
    this.windowSeconds = seconds;
    for (const chart of this.charts) chart.dirty = true;
  }

  setPaused(paused) {
    this.paused = paused;
    for (const chart of this.charts) chart.dirty = true;
  }

  /** Rebuilds every chart (the colour scheme changed). */
  restyle() {
    for (const chart of this.charts) chart.rebuild();
  }

  /** Forgets all charts (the series were cleared). */
  clear() {
    for (const chart of this.charts) chart.destroy();
    this.charts = [];
    this.onLayoutChange();
  }

  resize() {
    for (const chart of this.charts) chart.resize();
  }

  /** Redraws the charts that need it; `nowMs` is the frame's performance.now(). */
  update(nowMs) {
    if (this.paused) return;
    this.now = (performance.timeOrigin + nowMs) / 1000;
    for (const chart of this.charts) chart.update(nowMs);
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

/** One chart: a uPlot instance over some series, with a header and a legend. */
class Chart {
  constructor(manager, id) {
    this.manager = manager;
    this.id = id;
    this.seriesIds = [];
    /** Each shown series' point total at the last draw. */
    this.drawnTotals = [];
    this.lastDraw = -Infinity;
    this.dirty = true;
    this.plot = null;
    this.title = h('span', { className: 'chart-title', textContent: `Chart ${id}` });
    this.legend = h('div', { className: 'chart-legend' });
    this.canvasHolder = h('div', { className: 'chart-plot' });
    this.empty = h('div', { className: 'chart-empty', textContent: 'No series on this chart: pick some in the series table.' });
    const remove = h('button', {
      type: 'button',
      className: 'icon-button',
      textContent: '✕',
      title: 'Remove this chart (its series become hidden)',
      'aria-label': `remove chart ${id}`,
      on: { click: () => manager.removeChart(this) },
    });
    this.element = h('div', { className: 'chart', 'data-chart': id }, [
      h('div', { className: 'chart-head' }, [this.title, remove]),
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
    this.rebuild();
  }

  series() {
    return this.seriesIds.map((id) => this.manager.store.byId(id)).filter(Boolean);
  }

  /** (Re)creates the uPlot instance for the current series and colours. */
  rebuild() {
    this.plot?.destroy();
    this.plot = null;
    const series = this.series();
    this.element.dataset.series = String(series.length);
    this.empty.hidden = series.length > 0;
    this.canvasHolder.hidden = series.length === 0;
    this.legend.replaceChildren(
      ...series.map((s) => {
        const value = h('b', { className: 'legend-value' });
        const entry = h('span', { 'data-series': s.id, title: s.name }, [h('i', { style: `background:${seriesColor(s.id)}` }), s.name, value]);
        entry.valueElement = value;
        return entry;
      }),
    );
    this.drawnTotals = series.map(() => -1);
    this.dirty = true;
    if (series.length === 0) return;
    const theme = themeColors();
    const axis = { stroke: theme.muted, grid: { stroke: theme.grid, width: 1 }, ticks: { stroke: theme.grid, width: 1 } };
    const options = {
      mode: 2,
      width: Math.max(200, this.element.clientWidth - 10 || this.manager.container.clientWidth - 10 || 600),
      height: window.innerWidth < 640 ? 180 : CHART_HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false, setScale: false }, points: { show: false } },
      scales: {
        x: { time: true, range: (_u, min, max) => this.manager.xRange(min, max) },
        y: { auto: true },
      },
      axes: [axis, { ...axis, size: 56 }],
      series: [
        {},
        ...series.map((s) => ({
          label: s.name,
          stroke: seriesColor(s.id),
          width: 1.5,
          paths: uPlot.paths.linear(),
          points: { show: false },
          facets: [
            { scale: 'x', auto: true, sorted: 1 },
            { scale: 'y', auto: true },
          ],
        })),
      ],
    };
    this.plot = new uPlot(options, this.data(), this.canvasHolder);
  }

  /** The points to draw: each series' window, as views into its buffer. */
  data() {
    const since = this.manager.windowSeconds > 0 ? this.manager.now - this.manager.windowSeconds : -Infinity;
    return [null, ...this.series().map((s) => {
      const { times, values } = s.buffer.view(since);
      return [times, values];
    })];
  }

  update(nowMs) {
    if (this.plot === null) return;
    const series = this.series();
    let changed = this.dirty;
    for (let i = 0; i < series.length; i++) {
      if (series[i].buffer.total !== this.drawnTotals[i]) changed = true;
    }
    const sliding = this.manager.windowSeconds > 0 && nowMs - this.lastDraw >= SLIDE_MS;
    if (!changed && !sliding) return;
    this.plot.setData(this.data());
    this.lastDraw = nowMs;
    this.dirty = false;
    const entries = this.legend.children;
    for (let i = 0; i < series.length; i++) {
      const buffer = series[i].buffer;
      this.drawnTotals[i] = buffer.total;
      if (changed && entries[i] !== undefined && buffer.length > 0) {
        const { values } = buffer.view();
        entries[i].valueElement.textContent = formatValue(values[values.length - 1]);
      }
    }
  }

  resize() {
    if (this.plot === null) return;
    const width = Math.max(200, this.element.clientWidth - 10);
    const height = window.innerWidth < 640 ? 180 : CHART_HEIGHT;
    if (width !== this.plot.width || height !== this.plot.height) this.plot.setSize({ width, height });
  }

  destroy() {
    this.plot?.destroy();
    this.plot = null;
    this.element.remove();
  }
}
