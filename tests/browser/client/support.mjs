// What the Playwright tests of the client-wasm package share: a gateway on free ports, the
// scratch application (the packed package installed and bundled by Vite), a static server for
// it, and Chromium. Not a test file itself (node --test runs only `*.test.mjs` here).
//
// Environment: GATEWAY_BIN (default target/debug/gateway), CLIENT_WASM_PKG (default
// client-wasm/pkg, built by `cargo xtask dist`), CHROMIUM (default /usr/bin/chromium).

import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { build } from 'vite';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../../..');
export const gatewayBin = process.env.GATEWAY_BIN ?? join(root, 'target/debug/gateway');
// Absolute: `npm pack client-wasm/pkg` would read a relative path as a GitHub repository.
export const packageDir = resolve(process.env.CLIENT_WASM_PKG ?? join(root, 'client-wasm/pkg'));
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
// `--expose-gc` gives pages `gc()`, for the test of a client the page no longer refers to.
const CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--js-flags=--expose-gc'];

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function waitFor(what, check, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * The gateway on free ports, with `extraArgs` after the listeners and its data directory;
 * resolves once both listeners are announced. `output` keeps its log lines, `pid` its process.
 * With `dataDir`, it starts on that data directory (a gateway before it left there) and leaves
 * it in place when stopped; otherwise on a new one that `stop()` removes.
 */
export async function startGateway(extraArgs = [], { dataDir: given } = {}) {
  const dataDir = given ?? mkdtempSync(join(tmpdir(), 'client-wasm-test-'));
  const child = spawn(gatewayBin, ['--tcp', '127.0.0.1:0', '--http', '127.0.0.1:0', '--data-dir', dataDir, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn,gateway=info' },
  });
  const output = [];
  const addresses = {};
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${output.join('\n')}`)), 15_000);
    child.on('exit', (code) => reject(new Error(`gateway exited with ${code}:\n${output.join('\n')}`)));
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        output.push(line);
        const match = line.match(/listening (mqtt|http) (\S+)/);
        if (match) addresses[match[1]] = match[2];
        if (addresses.mqtt && addresses.http) {
          clearTimeout(timer);
          resolve();
        }
      });
    }
  });
  return {
    pid: child.pid,
    output,
    mqttUrl: `mqtt://${addresses.mqtt}`,
    httpUrl: `http://${addresses.http}`,
    wsUrl: `ws://${addresses.http}/mqtt`,
    httpPort: Number(addresses.http.split(':').pop()),
    dataDir,
    /** Resolves with the exit code (null after a signal) once the process has exited. */
    exited,
    /** Sends `signal` to this gateway (by its process, never by name). */
    kill(signal) {
      child.kill(signal);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        // A stopped (SIGSTOP) process acts on SIGTERM only once continued.
        child.kill('SIGCONT');
        child.kill('SIGTERM');
        await Promise.race([exited, sleep(8_000)]);
      }
      if (!given) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** `gateway passwd FILE USER`, the password on standard input (not a terminal). */
export function setPassword(file, user, password) {
  execFileSync(gatewayBin, ['passwd', file, user], { input: `${password}\n`, stdio: ['pipe', 'ignore', 'pipe'] });
}

/** Packs the package, installs the tarball into a copy of app/, and bundles it with Vite. */
export async function buildScratchApp() {
  assert.ok(existsSync(join(packageDir, 'package.json')), `no package at ${packageDir}: run \`cargo xtask dist\``);
  const work = mkdtempSync(join(tmpdir(), 'client-wasm-app-'));
  const packed = JSON.parse(execFileSync('npm', ['pack', packageDir, '--pack-destination', work, '--json'], { encoding: 'utf8' }));
  const tarball = join(work, packed[0].filename);
  const appDir = join(work, 'app');
  cpSync(join(here, 'app'), appDir, { recursive: true });
  writeFileSync(join(appDir, 'package.json'), JSON.stringify({ name: 'client-wasm-scratch', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--no-package-lock', tarball], { cwd: appDir, stdio: 'inherit' });
  const installed = JSON.parse(readFileSync(join(appDir, 'node_modules/client-wasm/package.json'), 'utf8'));
  assert.equal(installed.type, 'module');
  await build({
    root: appDir,
    logLevel: 'warn',
    configFile: false,
    worker: { format: 'es' },
    build: {
      outDir: join(appDir, 'dist'),
      target: 'es2022',
      rollupOptions: { input: { main: join(appDir, 'index.html'), worker: join(appDir, 'worker.html') } },
    },
  });
  return { work, dist: join(appDir, 'dist'), files: packed[0].files.map((file) => file.path) };
}

const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };

/** A static file server for the bundle on a free loopback port. */
export async function serve(dir) {
  const server = createServer((request, response) => {
    const path = normalize(decodeURIComponent(new URL(request.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    try {
      const body = readFileSync(join(dir, path));
      response.writeHead(200, { 'content-type': MIME[extname(path)] ?? 'application/octet-stream' });
      response.end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((resolve) => server.close(resolve)) };
}

export const launchChromium = () => chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });

/** A new page of `browser` at `path` of `server`, collecting uncaught errors and console errors. */
export async function openPage(browser, server, path) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console error: ${message.text()}`);
  });
  await page.goto(`${server.url}/${path}`);
  return { page, errors };
}
