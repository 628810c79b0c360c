// The page's plain controls, each bound to a few narrow actions: the connection panel (its
// toggle, the form filled from the settings and read back on Connect, Disconnect), the
// subscribe form, the plot toolbar (window, budget, pause, grouping, "Copy link") and the log
// toolbar. Controls with behaviour of their own live in their own modules (publish.js,
// retained.js).

import { filterProblem } from './model/topic-filter.js';
import { settingsFromForm } from './settings.js';
import { layoutFromSearch, layoutLink } from './page-url.js';

/** How long typing in the log filter must pause before the log is filtered again (ms). */
const FILTER_DELAY_MS = 150;

/**
 * @param {{toggle: HTMLElement, form: HTMLFormElement, disconnect: HTMLElement}} elements
 * @param {object} settings shown in the form (their keys are the fields' names)
 * @param {{onConnect(settings: object): void, onDisconnect(): void}} actions
 */
export function bindConnectionPanel({ toggle, form, disconnect }, settings, { onConnect, onDisconnect }) {
  for (const [name, value] of Object.entries(settings)) {
    if (form.elements[name]) form.elements[name].value = String(value);
  }
  toggle.addEventListener('click', () => {
    form.hidden = !form.hidden;
    toggle.setAttribute('aria-expanded', String(!form.hidden));
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    onConnect(settingsFromForm(form.elements));
  });
  disconnect.addEventListener('click', () => onDisconnect());
}

/**
 * Checks the filter before subscribing, so a typo is explained at once instead of coming back
 * as a refusal from the broker.
 * @param {{form: HTMLFormElement, error: HTMLElement}} elements
 * @param {(filter: string, qos: number) => void} onSubscribe
 */
export function bindSubscribeForm({ form, error }, onSubscribe) {
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const fields = form.elements;
    const filter = fields.filter.value.trim();
    const problem = filterProblem(filter);
    error.textContent = problem ?? '';
    if (problem !== null) return;
    onSubscribe(filter, Number(fields.qos.value));
    fields.filter.value = '';
  });
}

/**
 * Binds the plot toolbar to the chart manager, which owns the state it shows (window, paused,
 * grouping). Returns `restore(search)`, which applies the layout of a `?layout=` address (if a
 * valid one) and shows it in the toolbar.
 * @param {{windowSelect: HTMLSelectElement, budget: HTMLInputElement, pause: HTMLElement, add: HTMLElement, grouping: HTMLSelectElement, copyLink: HTMLElement, linkBox: HTMLElement, link: HTMLInputElement, linkStatus: HTMLElement}} elements
 * @param {{charts: import('./ui/charts.js').ChartManager, series: import('./model/series-store.js').SeriesStore}} plots
 * @returns {{restore(search: string): void}}
 */
export function bindPlotToolbar({ windowSelect, budget, pause, add, grouping, copyLink, linkBox, link, linkStatus }, { charts, series }) {
  const show = () => {
    const seconds = String(charts.windowSeconds);
    // A window from a link that the menu does not offer gets an entry of its own.
    if (![...windowSelect.options].some((option) => option.value === seconds)) windowSelect.append(new Option(`last ${seconds} s`, seconds));
    windowSelect.value = seconds;
    grouping.value = charts.mode;
    pause.setAttribute('aria-pressed', String(charts.paused));
    pause.textContent = charts.paused ? 'Resume' : 'Pause';
  };
  windowSelect.addEventListener('change', () => charts.setWindow(Number(windowSelect.value)));
  budget.value = String(series.budget);
  budget.addEventListener('change', () => {
    const value = Math.round(Number(budget.value));
    if (Number.isFinite(value) && value >= 10) {
      series.setBudget(value);
      // The window's points are chosen again under the new budget.
      charts.setWindow(charts.windowSeconds);
    } else {
      budget.value = String(series.budget);
    }
  });
  pause.addEventListener('click', () => {
    charts.setPaused(!charts.paused);
    show();
  });
  add.addEventListener('click', () => charts.addChart());
  grouping.addEventListener('change', () => charts.setMode(grouping.value));
  copyLink.addEventListener('click', () => {
    const url = layoutLink(location, charts.layout());
    link.value = url;
    linkBox.hidden = false;
    link.focus();
    link.select();
    linkStatus.textContent = 'Copy the link above.';
    // The clipboard may be unavailable (an insecure origin) or refused; the field is there anyway.
    navigator.clipboard?.writeText(url).then(
      () => (linkStatus.textContent = 'Link copied to the clipboard.'),
      () => {},
    );
  });
  show();
  return {
    restore(search) {
      const layout = layoutFromSearch(search);
      if (layout === null) return;
      charts.applyLayout(layout);
      show();
    },
  };
}

/**
 * @param {{filter: HTMLInputElement, format: HTMLSelectElement, pause: HTMLElement, clear: HTMLElement}} elements
 * @param {object} logging
 * @param {import('./model/message-log.js').MessageLog} logging.log
 * @param {import('./ui/log-view.js').LogView} logging.logView
 * @param {(text: string) => void} logging.onFilter the filter text settled
 * @param {() => void} logging.onChange the log changed (asks for a frame)
 */
export function bindLogToolbar({ filter, format, pause, clear }, { log, logView, onFilter, onChange }) {
  // Filtering scans the whole log, so it waits for a pause in typing.
  let filterTimer = 0;
  filter.addEventListener('input', () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => onFilter(filter.value), FILTER_DELAY_MS);
  });
  format.addEventListener('change', () => logView.setFormat(format.value));
  pause.addEventListener('click', () => {
    log.setPaused(!log.paused);
    pause.setAttribute('aria-pressed', String(log.paused));
    pause.textContent = log.paused ? 'Resume' : 'Pause';
    onChange();
  });
  clear.addEventListener('click', () => {
    log.clear();
    logView.select(0);
    onChange();
  });
}
