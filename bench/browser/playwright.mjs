// Opens the benchmark page through Playwright, for `cargo xtask bench --instrumented` only: the
// DevTools session Playwright attaches to every page gets an event per WebSocket frame, and the
// instrumented figures show what that costs. The real figures come from a plain Chromium.
// Usage: node bench/browser/playwright.mjs URL (CHROMIUM, CHROMIUM_FLAGS from the xtask).
// Runs until killed (SIGTERM closes the browser).

import { chromium } from "playwright-core";

const url = process.argv[2];
const flags = (process.env.CHROMIUM_FLAGS ?? "").split(" ").filter(Boolean);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: flags,
});
const page = await browser.newPage();
page.on("console", (message) => console.log(`page: ${message.text()}`));
await page.goto(url);
process.on("SIGTERM", async () => {
  await browser.close();
  process.exit(0);
});
