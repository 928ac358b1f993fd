// Shared helpers for the headless-browser tests of the chat page (node --test tests/web/*.test.mjs).
//
// The server side comes from tests/server/helpers.mjs (startServer: `dsv3 serve --port 0`, URL from
// stdout). The browser is the system's Chromium (Debian's `chromium`, installed by scripts/test.sh)
// driven through playwright-core, which downloads no browser of its own.
//
// Environment: DSV3_CHROMIUM (default /usr/bin/chromium, else `chromium` on PATH),
// DSV3_WEB_ARTIFACTS (screenshots; default build/web-artifacts), plus tests/server's DSV3_BIN and
// DSV3_SERVE_MODEL.
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { ROOT, startServer as startServerBase } from '../server/helpers.mjs';

export * from '../server/helpers.mjs';

// tests/server's startServer with a small KV-cache pool: the default pool (sized from the
// model's context and free memory, touched at start) would cost every test server seconds and a
// GiB here, and these tests hold a few short conversations.
export function startServer({ args = [], ...rest } = {}) {
  return startServerBase({ args: ['--kv-cache-mb', '64', ...args], ...rest });
}

let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  throw new Error(`tests/web/node_modules/playwright-core is missing or broken (${e.message}); ` +
                  'run scripts/setup.sh, or: (cd tests/web && npm ci)');
}

export const ARTIFACTS = path.resolve(ROOT, process.env.DSV3_WEB_ARTIFACTS || 'build/web-artifacts');

function chromiumPath() {
  if (process.env.DSV3_CHROMIUM) return process.env.DSV3_CHROMIUM;
  if (fs.existsSync('/usr/bin/chromium')) return '/usr/bin/chromium';
  const w = spawnSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' });
  const found = w.stdout.trim();
  assert.ok(found, 'no Chromium: install Debian\'s `chromium` (scripts/test.sh does) or set DSV3_CHROMIUM');
  return found;
}

export async function launchBrowser() {
  // Chromium's sandbox refuses to start as root (CI containers run as root).
  const args = process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [];
  return chromium.launch({ executablePath: chromiumPath(), headless: true, args });
}

// A page in a fresh context (its own localStorage) that records every request and every script
// error. `page.offHost` lists requests to anything but the server's host; `page.errors` the
// uncaught exceptions and console errors (favicon-style 404s included, so none is expected).
export async function openPage(browser, server, { colorScheme = 'light', viewport = { width: 1200, height: 800 } } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, acceptDownloads: true });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.origin });
  const page = await context.newPage();
  page.requests = [];
  page.offHost = [];
  page.errors = [];
  const host = new URL(server.origin).hostname;
  page.on('request', (r) => {
    const u = new URL(r.url());
    page.requests.push({ method: r.method(), url: r.url(), body: r.postData() });
    // blob: (the JSON export) and data: never leave the browser.
    if (u.protocol === 'blob:' || u.protocol === 'data:') return;
    if (u.hostname !== host) page.offHost.push(r.url());
  });
  page.on('pageerror', (e) => page.errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(`console: ${m.text()}`);
  });
  return page;
}

// Loads the page and waits until it has rendered and learned the model's name.
export async function loadChat(page, server) {
  await page.goto(server.origin + '/');
  await page.waitForSelector('body[data-ready="1"]', { timeout: 15_000 });
  await page.waitForFunction(() => /context \d+/.test(document.getElementById('server').textContent), null, { timeout: 15_000 });
}

export async function shot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

// Chat requests the page sent, with their parsed bodies.
export function chatRequests(page) {
  return page.requests.filter((r) => r.method === 'POST' && r.url.endsWith('/v1/chat/completions'))
    .map((r) => ({ ...r, json: JSON.parse(r.body) }));
}

// Fills the Settings dialog's fields (label text → value) and closes it.
export async function setSettings(page, fields) {
  await page.click('#settings-open');
  for (const [label, value] of Object.entries(fields)) await page.getByLabel(label, { exact: true }).fill(String(value));
  await page.click('#settings-close');
}

export async function sendMessage(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

// Waits for the last reply to finish (no message pending) and returns its text and stats line.
export async function waitReplyDone(page, timeout = 60_000) {
  await page.waitForFunction(() => document.querySelector('.msg.assistant:last-of-type') &&
                                   !document.querySelector('.msg.assistant.pending'), null, { timeout });
  return page.evaluate(() => {
    const a = [...document.querySelectorAll('.msg.assistant')].at(-1);
    return {
      text: a.querySelector('.body').textContent,
      stats: a.querySelector('.meta .stats').textContent,
      error: a.querySelector('.error')?.textContent ?? null,
      reasoning: a.querySelector('details.reasoning .md')?.textContent ?? null,
    };
  });
}
