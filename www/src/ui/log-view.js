// LogView: the message log on screen, virtualised. Only the rows in view exist in the DOM (a
// fixed pool, reused), placed over a spacer as tall as all rows, so 100k messages scroll as
// smoothly as 10.
//
// Invariants:
// - Rows have a fixed height (`ROW_HEIGHT` px, matching .log-row in style.css); row i is at
//   i * ROW_HEIGHT, row 0 being the newest message.
// - When scrolled away from the top, the rows being read stay put as new messages arrive: the
//   scroll position moves down by the rows added above. At the top, new messages show at once.
// - `update()` does DOM work only when the log changed or the view scrolled, and never more
//   than the pool's size, whatever the log holds.

import { h, formatCount, formatTime } from './dom.js';
import { formatPayload, previewPayload } from '../model/payload.js';

export const ROW_HEIGHT = 26;

export class LogView {
  /**
   * @param {HTMLElement} scroller the scrolling box
   * @param {HTMLElement} detail where the selected message is shown in full
   * @param {import('../model/message-log.js').MessageLog} log
   */
  constructor(scroller, detail, log) {
    this.scroller = scroller;
    this.detail = detail;
    this.log = log;
    this.format = 'text';
    this.spacer = h('div', { className: 'spacer' });
    this.rowsElement = h('div', { className: 'rows', role: 'listbox', 'aria-label': 'messages' });
    this.emptyElement = h('div', { className: 'log-empty', textContent: 'No messages yet. Subscribe to a topic filter to see messages here.' });
    scroller.append(this.spacer, this.rowsElement, this.emptyElement);
    /** @type {HTMLElement[]} */
    this.pool = [];
    this.renderedVersion = -1;
    this.renderedTop = -1;
    this.renderedFormat = '';
    /** The seq shown in row 0 at the last update, to keep the view anchored. */
    this.topSeq = 0;
    this.selectedSeq = 0;
    scroller.addEventListener('scroll', () => this.update(true), { passive: true });
    this.rowsElement.addEventListener('click', (event) => {
      const row = event.target.closest('.log-row');
      if (row && row.dataset.seq) this.select(Number(row.dataset.seq));
    });
  }

  setFormat(format) {
    this.format = format;
    this.update(true);
    this.showDetail();
  }

  /**
   * Shows only the entries matching `text`, from the top: the old scroll position and anchor
   * belong to the old list. The caller asks for a frame.
   */
  setFilter(text) {
    this.log.setFilter(text);
    this.scroller.scrollTop = 0;
    this.topSeq = 0;
  }

  select(seq) {
    this.selectedSeq = seq;
    this.update(true);
    this.showDetail();
  }

  /** Re-renders the rows in view if anything changed (or `force`). */
  update(force = false) {
    const log = this.log;
    const size = log.size();
    const newest = log.row(0);
    const newestSeq = newest === undefined ? 0 : newest.seq;
    if (!force && log.version === this.renderedVersion) return;

    // Keep the rows being read in place when new ones arrive above them.
    if (this.scroller.scrollTop > 0 && this.topSeq !== 0 && newestSeq !== this.topSeq) {
      const added = this.rowsAbove(this.topSeq);
      if (added > 0) this.scroller.scrollTop += added * ROW_HEIGHT;
    }
    this.topSeq = newestSeq;
    this.spacer.style.height = `${size * ROW_HEIGHT}px`;
    this.emptyElement.hidden = size > 0;

    const viewHeight = this.scroller.clientHeight || 400;
    const first = Math.min(Math.floor(this.scroller.scrollTop / ROW_HEIGHT), Math.max(0, size - 1));
    const count = Math.min(Math.ceil(viewHeight / ROW_HEIGHT) + 2, Math.max(0, size - first));
    while (this.pool.length < count) this.pool.push(this.makeRow());
    this.rowsElement.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    for (let i = 0; i < this.pool.length; i++) {
      const element = this.pool[i];
      if (i >= count) {
        if (element.parentNode) element.remove();
        continue;
      }
      if (!element.parentNode) this.rowsElement.append(element);
      this.fillRow(element, log.row(first + i));
    }
    this.renderedVersion = log.version;
    this.renderedTop = first;
    this.renderedFormat = this.format;
  }

  /** Rows newer than the entry `seq` (how far row 0 moved since it was the newest). */
  rowsAbove(seq) {
    const log = this.log;
    if (log.filter === '') return Math.max(0, log.lastSeq - seq);
    let low = log.matchStart;
    let high = log.matches.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (log.matches[middle] <= seq) low = middle + 1;
      else high = middle;
    }
    return log.matches.length - low;
  }

  makeRow() {
    return h('div', { className: 'log-row', role: 'option' }, [
      h('span', { className: 'time' }),
      h('span', { className: 'topic' }),
      h('span', { className: 'flags' }),
      h('span', { className: 'payload' }),
    ]);
  }

  fillRow(element, entry) {
    if (entry === undefined) return;
    const seq = String(entry.seq);
    if (element.dataset.seq === seq && element.dataset.format === this.format) {
      element.setAttribute('aria-selected', String(entry.seq === this.selectedSeq));
      return;
    }
    element.dataset.seq = seq;
    element.dataset.format = this.format;
    element.setAttribute('aria-selected', String(entry.seq === this.selectedSeq));
    const [time, topic, flags, payload] = element.children;
    time.textContent = formatTime(entry.time);
    topic.textContent = entry.topic;
    topic.title = entry.topic;
    flags.textContent = `Q${entry.qos}${entry.retain ? ' R' : ''}`;
    payload.textContent = previewPayload(entry.payload, this.format);
  }

  /** Shows the selected message in full in the detail pane. */
  showDetail() {
    const entry = this.log.bySeq(this.selectedSeq);
    if (entry === undefined) {
      this.detail.hidden = true;
      return;
    }
    const { text, format } = formatPayload(entry.payload, this.format);
    const meta = [
      ['topic', entry.topic],
      ['time', formatTime(entry.time)],
      ['QoS', String(entry.qos)],
      ['retained', entry.retain ? 'yes' : 'no'],
      ['size', `${formatCount(entry.payload.length)} B`],
      ['shown as', format],
    ];
    const properties = describeProperties(entry.properties);
    if (properties) meta.push(['properties', properties]);
    this.detail.replaceChildren(
      h('div', { className: 'meta' }, meta.map(([name, value]) => h('span', {}, [`${name} `, h('b', { textContent: value })]))),
      h('pre', { textContent: text }),
    );
    this.detail.hidden = false;
  }
}

/** MQTT 5 properties as one line of `name=value`, skipping empty ones. */
function describeProperties(properties) {
  if (properties === null || typeof properties !== 'object') return '';
  const parts = [];
  for (const [name, value] of Object.entries(properties)) {
    if (value === undefined || value === null) continue;
    if (Array.isArray(value) && value.length === 0) continue;
    const shown = value instanceof Uint8Array ? `${value.length} B` : typeof value === 'object' ? JSON.stringify(value) : String(value);
    parts.push(`${name}=${shown}`);
  }
  return parts.join(', ');
}
