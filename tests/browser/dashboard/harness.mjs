// Shared fixtures of the dashboard's browser tests: a gateway on free ports, headless Chromium
// (Debian's, through playwright-core), a paced paho-mqtt publisher over TCP, console-error
// collection, and the page's debug hook (`window.__dashboard`).
//
// Environment: GATEWAY_BIN (default target/debug/gateway, which must embed www/dist: the
// xtask step builds both), PAHO_PYTHON (default target/venv/paho2/bin/python), CHROMIUM
// (default /usr/bin/chromium). Screenshots go to target/browser/dashboard/.

import { spawn, execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

export const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
export const screenshotDir = join(root, 'target/browser/dashboard');
const gatewayBin = process.env.GATEWAY_BIN ?? join(root, 'target/debug/gateway');
const python = process.env.PAHO_PYTHON ?? join(root, 'target/venv/paho2/bin/python');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * Starts the gateway; `ports` pins the listeners (for a restart on the same addresses).
 * `args` are extra flags; with `--mqtts`/`--https` among them it also waits for those listeners
 * and returns their ports (`mqttsPort`, `httpsPort`, `httpsUrl`).
 * Resolves once the `listening` lines were printed.
 */
export async function startGateway({ dataDir, tcpPort = 0, httpPort = 0, args = [] } = {}) {
  dataDir ??= mkdtempSync(join(tmpdir(), 'dashboard-test-'));
  const wanted = ['mqtt', 'http', ...['mqtts', 'https'].filter((kind) => args.includes(`--${kind}`))];
  const child = spawn(gatewayBin, ['--tcp', `127.0.0.1:${tcpPort}`, '--http', `127.0.0.1:${httpPort}`, '--data-dir', dataDir, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn,gateway=info' },
  });
  const output = [];
  const addresses = {};
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${output.join('\n')}`)), 15_000);
    child.on('exit', (code) => reject(new Error(`gateway exited with ${code}:\n${output.join('\n')}`)));
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        output.push(line);
        if (output.length > 2000) output.shift();
        const match = line.match(/listening (mqtts?|https?) (\S+)/);
        if (match) addresses[match[1]] = match[2];
        if (wanted.every((kind) => addresses[kind])) {
          clearTimeout(timer);
          resolve();
        }
      });
    }
  });
  await ready;
  const port = (address) => Number(address.slice(address.lastIndexOf(':') + 1));
  return {
    child,
    dataDir,
    output,
    mqttPort: port(addresses.mqtt),
    httpPort: port(addresses.http),
    url: `http://${addresses.http}`,
    mqttsPort: addresses.mqtts ? port(addresses.mqtts) : undefined,
    httpsPort: addresses.https ? port(addresses.https) : undefined,
    httpsUrl: addresses.https ? `https://${addresses.https}` : undefined,
    /** SIGTERM, then waits for a clean exit. */
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      const code = await Promise.race([exited, sleep(8000).then(() => 'timeout')]);
      if (code === 'timeout') {
        child.kill('SIGKILL');
        throw new Error('gateway did not stop within 8 s of SIGTERM');
      }
      return code;
    },
    cleanup() {
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Adds `user` to the password file `file` with `gateway passwd`, which reads the password from
 * the first line of standard input when that is not a terminal.
 */
export function addPasswordUser(file, user, password) {
  execFileSync(gatewayBin, ['passwd', file, user], { input: `${password}\n`, timeout: 30_000, stdio: ['pipe', 'pipe', 'pipe'] });
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Launches Chromium (with `args` added to CHROMIUM_ARGS) and opens a page that records console
 * errors and uncaught exceptions. `deviceScaleFactor` below 1 fits a larger page into a smaller
 * picture.
 */
export async function openBrowser({ width = 1280, height = 900, colorScheme = 'light', args = [], deviceScaleFactor = 1 } = {}) {
  const browser = await chromium.launch({ executablePath: chromiumPath, args: [...CHROMIUM_ARGS, ...args] });
  const context = await browser.newContext({ viewport: { width, height }, colorScheme, deviceScaleFactor });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`uncaught: ${error.message}`));
  return { browser, context, page, errors };
}

/** The page's debug snapshot (see www/src/debug-hook.js). */
export function snapshot(page) {
  return page.evaluate(() => window.__dashboard.snapshot());
}

/** Polls `check(snapshot)` until it returns true; fails with the last snapshot after `timeoutMs`. */
export async function waitForSnapshot(page, check, { timeoutMs = 15_000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await snapshot(page);
    if (check(last)) return last;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}; last snapshot: ${JSON.stringify(last, null, 1).slice(0, 3000)}`);
}

/** Opens the dashboard at `path` and waits until it is connected with its subscriptions active. */
export async function openDashboard(page, gateway, path = '/') {
  await page.goto(`${gateway.url}${path}`);
  await waitForSnapshot(page, (s) => s.state === 'connected' && s.subscriptions.every((sub) => sub.status === 'active'), {
    what: 'the dashboard to connect and subscribe',
  });
}

/**
 * Runs publisher.py; resolves with its output once it exits 0. With `username` and `password`
 * it signs in (the password goes through the environment, not the command line). `topic` may be
 * an array: `count` messages then go to each (`rate` counts them all). With `record` (a file
 * path) the publisher writes each message it sent there, `topic<TAB>payload` per line.
 */
export function publish(gateway, { topic, count, rate, kind = 'json', username, password, retain = false, record }) {
  const topics = [topic].flat().flatMap((name) => ['--topic', name]);
  const args = [join(root, 'tests/browser/dashboard/publisher.py'), '--port', String(gateway.mqttPort), ...topics, '--count', String(count), '--rate', String(rate), '--kind', kind];
  if (username !== undefined) args.push('--username', username);
  if (retain) args.push('--retain');
  if (record !== undefined) args.push('--record', record);
  const env = password === undefined ? process.env : { ...process.env, PUBLISHER_PASSWORD: password };
  return new Promise((resolve, reject) => {
    execFile(
      python,
      args,
      { timeout: 60_000, env },
      (error, stdout, stderr) => (error ? reject(new Error(`publisher failed: ${error.message}\n${stderr}`)) : resolve(stdout.trim())),
    );
  });
}

/** Saves a screenshot under target/browser/dashboard/ and returns its path. */
export async function screenshot(page, name, options = {}) {
  mkdirSync(screenshotDir, { recursive: true });
  const path = join(screenshotDir, `${name}.png`);
  await page.screenshot({ path, ...options });
  return path;
}
