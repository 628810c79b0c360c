// The README's picture of the dashboard: three rooms' sensors grouped by field (every room's
// temperature on one chart, humidity on another, CO2 on a third), light theme, a 1600x1000
// page (so the three charts fit) at one device pixel per CSS pixel (the charts' 1 px lines
// would fade at less).
//   cargo xtask dist && cargo build -p gateway && node tests/browser/dashboard/readme-screenshot.mjs
// writes docs/dashboard-by-field.png.

import { join } from 'node:path';
import { statSync } from 'node:fs';
import { startGateway, openBrowser, openDashboard, publish, waitForSnapshot, root } from './harness.mjs';

const ROOMS = ['home/kitchen', 'home/hall', 'home/office'];
const POINTS = 400;
const output = join(root, 'docs/dashboard-by-field.png');

const gateway = await startGateway();
const { browser, page, errors } = await openBrowser({ width: 1600, height: 1000, colorScheme: 'light', deviceScaleFactor: 1 });
try {
  await openDashboard(page, gateway, '/?sub=home/%23');
  // 20 s of readings, so the lines fill most of the one-minute window.
  await publish(gateway, { topic: ROOMS, count: POINTS, rate: 60, kind: 'room' });
  await waitForSnapshot(page, (s) => s.series.length === 9 && s.series.every((x) => x.total === POINTS), { what: 'the rooms plotted' });
  // The publish form is folded so that the sidebar shows the subscription and the topics.
  await page.locator('#publish summary').click();
  await page.waitForTimeout(600);
  await page.screenshot({ path: output });
  if (errors.length > 0) throw new Error(`console errors: ${errors.join('\n')}`);
  console.log(`${output}: ${statSync(output).size} bytes`);
} finally {
  await browser.close();
  await gateway.stop();
  gateway.cleanup();
}
