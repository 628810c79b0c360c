// The dashboard's charts end to end: grouping by field and by topic, the second y-axis, CSV and
// PNG export from a chart's header, and the "Copy link" layout restored in a fresh page. A real
// gateway, Debian's Chromium and paho-mqtt publishers over TCP, as in dashboard.test.mjs:
//   cargo xtask dist && cargo build -p gateway && node --test tests/browser/dashboard/charts.test.mjs
//
// Every test fails on console errors or uncaught exceptions in the page. The tests run in order
// and build on each other's state (the published rooms, the grouping).

import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway, openBrowser, openDashboard, publish, snapshot, waitForSnapshot, screenshot, screenshotDir } from './harness.mjs';

/** Room sensors publishing {"temp", "hum", "env": {"co2"}}; one topic needs quoting in CSV. */
const ROOMS = ['home/kitchen', 'home/hall', 'home/lab "b",2'];
/** A plain-number temperature: grouped by field with the rooms' `temp` (its topic's last level). */
const ATTIC = 'home/attic/temp';
const FIELDS = ['temp', 'hum', 'env.co2'];
const POINTS = 300;

let gateway;
let browser;
let context;
let page;
let errors;
let scratch;
/** What the publishers sent: `topic<TAB>payload` lines, in order. */
let published = [];

before(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'charts-test-'));
  gateway = await startGateway();
  ({ browser, context, page, errors } = await openBrowser());
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: gateway.url });
});

after(async () => {
  await browser?.close();
  if (gateway) {
    const code = await gateway.stop();
    gateway.cleanup();
    assert.equal(code, 0, 'the gateway exits 0 on SIGTERM');
  }
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

afterEach(() => {
  assert.deepEqual(errors.splice(0), [], 'no console errors');
});

/** Publishes with the harness and keeps what was sent. */
async function publishRecorded(options) {
  const record = join(scratch, `published-${published.length}.tsv`);
  await publish(gateway, { ...options, record });
  published.push(...readFileSync(record, 'utf8').trimEnd().split('\n'));
}

/** The values sent per `topic NUL field`, in order: JSON fields by path, plain numbers under ''. */
function publishedValues() {
  const values = new Map();
  const add = (topic, field, value) => {
    const key = `${topic}\u0000${field}`;
    if (!values.has(key)) values.set(key, []);
    values.get(key).push(value);
  };
  for (const line of published) {
    const [topic, payload] = line.split('\t');
    const parsed = JSON.parse(payload);
    if (typeof parsed === 'number') add(topic, '', parsed);
    else for (const field of FIELDS) add(topic, field, field.split('.').reduce((object, key) => object[key], parsed));
  }
  return values;
}

/** RFC 4180 CSV: quoted fields may hold commas, doubled quotes and line breaks. */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quoted) {
      if (char !== '"') field += char;
      else if (text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else quoted = false;
    } else if (char === '"') quoted = true;
    else if (char === ',') {
      row.push(field);
      field = '';
    } else if (char === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += char;
  }
  assert.equal(field, '', 'the CSV ends with a line break');
  return rows;
}

/** Clicks a chart's export button and returns the download's file name and bytes. */
async function download(chartId, kind) {
  const [file] = await Promise.all([page.waitForEvent('download'), page.click(`.chart[data-chart="${chartId}"] [data-export="${kind}"]`)]);
  return { name: file.suggestedFilename(), bytes: readFileSync(await file.path()) };
}

/** Each chart's series names, sorted, in chart order. */
const chartContents = (state) => state.charts.map((chart) => [...chart.series].sort());

test('by field (the default): each field of every room on one chart, plain numbers by their last level', async () => {
  await openDashboard(page, gateway, '/?sub=home/%23');
  await publishRecorded({ topic: ROOMS, count: POINTS, rate: 200, kind: 'room' });
  await publishRecorded({ topic: ATTIC, count: POINTS, rate: 200, kind: 'number' });
  const state = await waitForSnapshot(page, (s) => s.series.length === 10 && s.series.every((x) => x.total === POINTS), {
    what: `10 series of ${POINTS} points`,
  });
  assert.equal(state.grouping, 'field');
  assert.deepEqual(
    state.charts.map(({ title, series, axes }) => ({ title, series, axes })),
    [
      { title: 'temp', series: [...ROOMS.map((room) => `${room} temp`), ATTIC], axes: ['left', 'left', 'left', 'left'] },
      { title: 'hum', series: ROOMS.map((room) => `${room} hum`), axes: ['left', 'left', 'left'] },
      { title: 'env.co2', series: ROOMS.map((room) => `${room} env.co2`), axes: ['left', 'left', 'left'] },
    ],
  );
  // The page shows the titles and, with one axis per chart, no axis marks.
  assert.deepEqual(await page.locator('.chart-title').allTextContents(), ['temp', 'hum', 'env.co2']);
  assert.equal(await page.locator('.chart-legend [data-axis]').count(), 0);
  await screenshot(page, 'charts-by-field');
});

test('by topic: each room on its own chart, CO2 on a second y-axis', async () => {
  await page.selectOption('#plot-grouping', 'topic');
  const state = await waitForSnapshot(page, (s) => s.grouping === 'topic' && s.charts.length === 4 && s.charts.slice(0, 3).every((c) => c.axes.includes('right')), {
    what: 'four charts by topic, the rooms with a right axis',
  });
  assert.deepEqual(
    state.charts.map(({ title, series, axes }) => ({ title, series, axes })),
    [
      ...ROOMS.map((room) => ({ title: room, series: FIELDS.map((field) => `${room} ${field}`), axes: ['left', 'left', 'right'] })),
      { title: ATTIC, series: [ATTIC], axes: ['left'] },
    ],
  );
  for (const series of state.series) assert.equal(series.chart, state.charts.find((c) => c.series.includes(series.name)).id);
  // The legend and the series table say which axis each series is on.
  const kitchen = page.locator('.chart[data-chart="1"]');
  assert.deepEqual(await kitchen.locator('.chart-legend [data-axis]').evaluateAll((entries) => entries.map((e) => e.dataset.axis)), ['left', 'left', 'right']);
  assert.equal(await kitchen.locator('.chart-legend [data-axis="right"] .legend-axis').textContent(), 'right axis');
  await page.locator('#series-panel summary').click();
  // The table is rendered in the frame after the axes changed.
  await page.locator('#series-list tr[data-series="home/kitchen env.co2"] td.axis', { hasText: 'right' }).waitFor();
  assert.equal(await page.locator('#series-list tr[data-series="home/kitchen temp"] td.axis').textContent(), 'left');
  assert.equal(await page.locator(`#series-list tr[data-series="${ATTIC}"] td.axis`).textContent(), '');
  // Stable: a few axis checks later nothing moved.
  await page.waitForTimeout(1500);
  assert.deepEqual((await snapshot(page)).charts, state.charts);
  await screenshot(page, 'charts-by-topic', { fullPage: true });
});

test("a chart's CSV holds exactly the points published to its series, in time order", async () => {
  const expected = publishedValues();
  // The room whose topic has a comma and quotes (chart 3), then a by-field chart of all rooms.
  for (const [chartId, grouping, series] of [
    [3, 'topic', FIELDS.map((field) => [ROOMS[2], field])],
    [1, 'field', [...ROOMS.map((room) => [room, 'temp']), [ATTIC, '']]],
  ]) {
    if ((await snapshot(page)).grouping !== grouping) {
      await page.selectOption('#plot-grouping', grouping);
      await waitForSnapshot(page, (s) => s.grouping === grouping, { what: `grouping by ${grouping}` });
    }
    const { name, bytes } = await download(chartId, 'csv');
    const title = (await snapshot(page)).charts.find((c) => c.id === chartId).title;
    assert.match(name, new RegExp(`^chart-${title.replace(/[^\w.-]+/g, '_')}-\\d{4}-\\d\\d-\\d\\dT\\d\\d-\\d\\d-\\d\\dZ\\.csv$`));
    const [header, ...rows] = parseCsv(bytes.toString('utf8'));
    assert.deepEqual(header, ['time', 'topic', 'field', 'value']);
    assert.equal(rows.length, series.length * POINTS, 'one row per point of the chart');
    const got = new Map();
    let previous = '';
    for (const [time, topic, field, value] of rows) {
      assert.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(time >= previous, `rows in time order (${time} after ${previous})`);
      previous = time;
      const key = `${topic}\u0000${field}`;
      if (!got.has(key)) got.set(key, []);
      got.get(key).push(Number(value));
    }
    assert.deepEqual(
      [...got.keys()].sort(),
      series.map(([topic, field]) => `${topic}\u0000${field}`).sort(),
    );
    for (const [key, values] of got) assert.deepEqual(values, expected.get(key), `the values of ${key.replace('\u0000', ' ')}`);
  }
});

test("a chart's PNG is a picture of it with its title and legend", async () => {
  const { name, bytes } = await download(1, 'png');
  assert.match(name, /^chart-temp-.*Z\.png$/);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.ok(bytes.length > 10_000, `a real picture (${bytes.length} bytes)`);
  mkdirSync(screenshotDir, { recursive: true });
  writeFileSync(join(screenshotDir, 'charts-export.png'), bytes);
  // Decoded by the page itself (data: images are allowed by its CSP): as wide as the chart's
  // canvas, taller by the title and legend.
  const sizes = await page.evaluate(async (base64) => {
    const image = new Image();
    image.src = `data:image/png;base64,${base64}`;
    await image.decode();
    const canvas = document.querySelector('.chart[data-chart="1"] canvas');
    return { width: image.naturalWidth, height: image.naturalHeight, canvasWidth: canvas.width, canvasHeight: canvas.height };
  }, bytes.toString('base64'));
  assert.equal(sizes.width, sizes.canvasWidth);
  assert.ok(sizes.height > sizes.canvasHeight + 30, `room for the title and legend (${sizes.height} > ${sizes.canvasHeight})`);
});

test('"Copy link" restores subscriptions, charts, grouping, window, hidden series and pause in a fresh page', async () => {
  // By topic, then arranged by hand: the kitchen's CO2 moved to the hall's chart, the hall's
  // humidity hidden; a 10 minute window; paused.
  await page.selectOption('#plot-grouping', 'topic');
  await waitForSnapshot(page, (s) => s.grouping === 'topic' && s.charts.length === 4, { what: 'grouping by topic' });
  await page.selectOption('#plot-window', '600');
  await page.selectOption('#series-list select[aria-label="chart for home/kitchen env.co2"]', '2');
  await page.selectOption('#series-list select[aria-label="chart for home/hall hum"]', 'hidden');
  await page.click('#plot-pause');
  const arranged = await waitForSnapshot(page, (s) => s.plotsPaused && s.charts[1].series.includes('home/kitchen env.co2'), { what: 'the arrangement' });
  assert.equal(arranged.series.find((s) => s.name === 'home/hall hum').chart, null);
  assert.equal(arranged.plotWindow, 600);

  await page.click('#plot-copy-link');
  const link = await page.inputValue('#plot-link');
  const url = new URL(link);
  assert.deepEqual(url.searchParams.getAll('sub'), ['home/#'], 'the subscriptions as they were');
  assert.ok(url.searchParams.get('layout'), 'a layout parameter');
  await page.locator('#plot-link-status', { hasText: 'copied' }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), link);

  const fresh = await openBrowser();
  try {
    await openDashboard(fresh.page, gateway, `${url.pathname}${url.search}`);
    const before = await snapshot(fresh.page);
    assert.deepEqual(
      { grouping: before.grouping, plotWindow: before.plotWindow, plotsPaused: before.plotsPaused, charts: before.charts.length },
      { grouping: 'topic', plotWindow: 600, plotsPaused: true, charts: 4 },
    );
    assert.equal(await fresh.page.locator('#plot-pause').textContent(), 'Resume');
    assert.equal(await fresh.page.inputValue('#plot-window'), '600');
    assert.equal(await fresh.page.inputValue('#plot-grouping'), 'topic');
    await publish(gateway, { topic: ROOMS, count: 5, rate: 200, kind: 'room' });
    await publish(gateway, { topic: ATTIC, count: 5, rate: 200, kind: 'number' });
    const restored = await waitForSnapshot(fresh.page, (s) => s.series.length === 10 && s.series.every((x) => x.total === 5), { what: 'the ten series again' });
    assert.deepEqual(chartContents(restored), chartContents(arranged), 'the same series on the same charts');
    assert.equal(restored.series.find((s) => s.name === 'home/hall hum').chart, null, 'the hidden series stays hidden');
    assert.deepEqual(fresh.errors, [], 'no console errors in the fresh page');

    // A layout that is not one is ignored: the default grouping, no errors.
    await openDashboard(fresh.page, gateway, '/?sub=home/%23&layout=bm90IGpzb24');
    await publish(gateway, { topic: ROOMS, count: 3, rate: 200, kind: 'room' });
    const fallback = await waitForSnapshot(fresh.page, (s) => s.series.length === 9 && s.series.every((x) => x.total === 3), { what: 'the default charts' });
    assert.equal(fallback.grouping, 'field');
    assert.deepEqual(
      fallback.charts.map((c) => c.title),
      ['temp', 'hum', 'env.co2'],
    );
    assert.equal(fallback.plotsPaused, false);
    assert.deepEqual(fresh.errors, [], 'no console errors with a malformed layout');
  } finally {
    await fresh.browser.close();
  }
});
