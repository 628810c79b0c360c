// The smaller panels' rendering: subscriptions (with per-filter counts), the series table
// (which series goes on which chart, CSV export) and the list of retained messages (loaded by
// retained.js). Each is given the data it shows and a callback per action, never the
// dashboard itself.

import { h, formatCount, download } from './dom.js';
import { seriesColor } from './theme.js';
import { seriesCsv } from '../model/series-store.js';

/** The subscription list: filter, granted QoS or refusal, message count, remove button. */
export class SubscriptionsView {
  /**
   * @param {HTMLElement} list the `<ul>` to fill
   * @param {(filter: string) => void} onUnsubscribe called when a remove button is clicked
   */
  constructor(list, onUnsubscribe) {
    this.list = list;
    this.onUnsubscribe = onUnsubscribe;
    this.items = new Map();
  }

  /**
   * Rebuilds the list from `subscriptions` (entries were added, removed or acknowledged). The
   * entries are kept, and `updateCounts` reads them again for the counts that change per message.
   */
  render(subscriptions) {
    this.items.clear();
    this.list.replaceChildren(
      ...subscriptions.map((subscription) => {
        const meta = h('span', { className: 'meta' });
        const item = h('li', { 'data-filter': subscription.filter, 'data-status': subscription.status }, [
          h('span', { className: 'filter', textContent: subscription.filter }),
          meta,
          h('button', {
            type: 'button',
            className: 'icon-button',
            textContent: '✕',
            title: `Unsubscribe from ${subscription.filter}`,
            'aria-label': `unsubscribe ${subscription.filter}`,
            on: { click: () => this.onUnsubscribe(subscription.filter) },
          }),
        ]);
        this.items.set(subscription, meta);
        return item;
      }),
    );
    this.updateCounts();
  }

  /** Refreshes the counts and states in place. */
  updateCounts() {
    for (const [subscription, meta] of this.items) {
      let state;
      if (subscription.status === 'refused') state = `refused (${subscription.reason})`;
      else if (subscription.status === 'pending') state = `QoS ${subscription.qos}, pending`;
      else state = `QoS ${subscription.granted}`;
      meta.textContent = `${state} · ${formatCount(subscription.count)}`;
      meta.parentElement.dataset.count = String(subscription.count);
      meta.parentElement.dataset.status = subscription.status;
    }
  }
}

/** The series table: colour, name, points held (of all received), chart choice, y-axis, CSV. */
export class SeriesTable {
  constructor(body, countElement, store, charts) {
    this.body = body;
    this.countElement = countElement;
    this.store = store;
    this.charts = charts;
    this.cells = [];
  }

  render() {
    this.cells = [];
    this.countElement.textContent = this.store.list.length ? `(${this.store.list.length})` : '';
    this.body.replaceChildren(
      ...this.store.list.map((series) => {
        const chart = this.charts.chartOf(series.id);
        const select = h('select', { 'aria-label': `chart for ${series.name}` }, [
          ...this.charts.charts.map((c) => h('option', { value: String(c.id), textContent: chartLabel(c), selected: c === chart })),
          h('option', { value: 'new', textContent: 'new chart' }),
          h('option', { value: 'hidden', textContent: 'hidden', selected: chart === undefined }),
        ]);
        select.addEventListener('change', () => {
          if (select.value === 'hidden') this.charts.move(series.id, null);
          else if (select.value === 'new') this.charts.move(series.id, this.charts.addChart().id);
          else this.charts.move(series.id, Number(select.value));
        });
        const points = h('td', { className: 'num' });
        this.cells.push([series, points]);
        return h('tr', { 'data-series': series.name }, [
          h('td', {}, [h('i', { className: 'swatch', style: `background:${seriesColor(series.id)}` })]),
          h('td', { className: 'name', textContent: series.name }),
          points,
          h('td', {}, [select]),
          h('td', { className: 'axis', textContent: chart?.axisName(series.id) ?? '' }),
          h('td', {}, [
            h('button', {
              type: 'button',
              textContent: 'CSV',
              title: `Download ${series.name} as CSV`,
              on: { click: () => download(`${series.name.replace(/[^\w.-]+/g, '_')}.csv`, seriesCsv(series)) },
            }),
          ]),
        ]);
      }),
    );
    this.updateCounts();
  }

  updateCounts() {
    for (const [series, cell] of this.cells) {
      const { length, total } = series.buffer;
      cell.textContent = length === total ? formatCount(length) : `${formatCount(length)} of ${formatCount(total)}`;
    }
  }
}

/** A chart in the series table's menu: its number, and its title unless that is `Chart N`. */
function chartLabel(chart) {
  const title = chart.titleText();
  return title === `Chart ${chart.id}` ? title : `${chart.id}: ${title}`;
}

/** Renders the retained messages listed by `/api/v1/retained`. */
export function renderRetained(list, messages, onClear) {
  list.replaceChildren(
    ...messages.map((message) =>
      h('li', { 'data-topic': message.topic }, [
        h('span', { className: 'topic', textContent: message.topic }),
        h('span', { className: 'meta', textContent: `QoS ${message.qos} · ${formatCount(message.size)} B` }),
        h('button', {
          type: 'button',
          className: 'icon-button',
          textContent: 'Clear',
          title: `Delete the retained message of ${message.topic} (publishes an empty retained message)`,
          on: { click: () => onClear(message.topic) },
        }),
        h('span', {
          className: 'payload',
          textContent:
            message.encoding === 'base64'
              ? `(binary, base64) ${message.payload}${message.truncated ? '…' : ''}`
              : `${message.payload}${message.truncated ? '…' : ''}`,
        }),
      ]),
    ),
  );
}
