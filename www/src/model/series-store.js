// SeriesStore: every plotted series, one per topic and numeric field, each in a SeriesBuffer.
//
// `addPoint(topic, field, value, time)` appends one point (the ingest worker extracted the
// numbers, see worker/core.js); `ingest(topic, text, time)` extracts the numeric fields of a
// payload itself (see numeric.js) and adds each. A series is created on its first point and named
// `topic` for plain numbers or `topic field` for JSON fields. Which chart shows a series is the
// chart manager's business: it learns about new series through `onSeries`.
//
// Bounds: at most `maxSeries` series (points for further ones are counted in `droppedPoints`),
// each holding at most `budget` points, so memory is at most about
// maxSeries * budget * 32 bytes (two doubled Float64 arrays), and far less in practice since
// buffers grow only as points arrive.

import { numericFields } from './numeric.js';
import { SeriesBuffer } from './ring-buffer.js';

export const DEFAULT_BUDGET = 100_000;
export const DEFAULT_MAX_SERIES = 200;

export class Series {
  constructor(id, topic, field, budget) {
    this.id = id;
    this.topic = topic;
    this.field = field;
    this.name = field === '' ? topic : `${topic} ${field}`;
    this.buffer = new SeriesBuffer(budget);
  }
}

export class SeriesStore {
  constructor({ budget = DEFAULT_BUDGET, maxSeries = DEFAULT_MAX_SERIES } = {}) {
    this.budget = budget;
    this.maxSeries = maxSeries;
    /** @type {Map<string, Series>} keyed by topic + NUL + field */
    this.byKey = new Map();
    /** @type {Series[]} in creation order */
    this.list = [];
    /** @type {Map<number, Series>} */
    this.ids = new Map();
    this.nextId = 1;
    this.droppedPoints = 0;
    this.version = 0;
    /** Called with each new series. */
    this.onSeries = () => {};
  }

  /** Appends the numbers of one payload; returns how many points were added. */
  ingest(topic, text, time) {
    const fields = numericFields(text);
    for (let i = 0; i < fields.length; i++) this.addPoint(topic, fields[i][0], fields[i][1], time);
    return fields.length;
  }

  /**
   * Appends one point to the series of `topic` and `field` (a path, '' for a plain number),
   * creating the series on its first point while there are fewer than `maxSeries`.
   */
  addPoint(topic, field, value, time) {
    const key = `${topic}\u0000${field}`;
    let series = this.byKey.get(key);
    if (series === undefined) {
      if (this.list.length >= this.maxSeries) {
        this.droppedPoints += 1;
        return;
      }
      series = new Series(this.nextId++, topic, field, this.budget);
      this.byKey.set(key, series);
      this.ids.set(series.id, series);
      this.list.push(series);
      this.onSeries(series);
    }
    series.buffer.push(time, value);
    this.version += 1;
  }

  /** Changes every series' point budget (shrinking keeps the newest points). */
  setBudget(budget) {
    this.budget = budget;
    for (const series of this.list) series.buffer.setBudget(budget);
    this.version += 1;
  }

  byId(id) {
    return this.ids.get(id);
  }

  /** Forgets every series. */
  clear() {
    this.byKey.clear();
    this.ids.clear();
    this.list = [];
    this.droppedPoints = 0;
    this.version += 1;
  }
}

/** A series as CSV: one row per point with the Unix time in seconds and ISO 8601. */
export function seriesCsv(series) {
  const { times, values } = series.buffer.view();
  const rows = [`unix_time,iso_time,${csvField(series.name)}`];
  for (let i = 0; i < times.length; i++) {
    rows.push(`${times[i].toFixed(3)},${new Date(times[i] * 1000).toISOString()},${values[i]}`);
  }
  return `${rows.join('\n')}\n`;
}

function csvField(text) {
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
