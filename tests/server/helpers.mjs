// Shared helpers for the end-to-end tests of `dsv3 serve` (node --test tests/server/*.test.mjs).
//
// startServer() runs `$DSV3_BIN serve --model M --port 0 --threads 1 [flags]`, waits for the line
// `dsv3 serve: http://HOST:PORT/v1 (...)` on stdout (printed once the server can answer) and
// returns a handle with an `openai` client factory, raw HTTP helpers (SSE, /metrics) and stop(),
// which sends SIGTERM and asserts a clean exit (status 0 within 6 s).
//
// Environment: DSV3_BIN (default build/dsv3), DSV3_SERVE_MODEL (default models/default, made by
// scripts/setup.sh). Both are resolved against the repository root.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

// The openai package is installed by scripts/setup.sh (npm ci in tests/server); say so when missing.
let OpenAI;
try {
  ({ default: OpenAI } = await import('openai'));
} catch (e) {
  throw new Error(`tests/server/node_modules/openai is missing or broken (${e.message}); ` +
                  'run scripts/setup.sh, or: (cd tests/server && npm ci)');
}

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.resolve(ROOT, process.env.DSV3_BIN || 'build/dsv3');
export const MODEL = path.resolve(ROOT, process.env.DSV3_SERVE_MODEL || 'models/default');

export { OpenAI };

const live = new Set();  // servers not yet stopped: killed if the test process exits early
process.on('exit', () => {
  for (const s of live) {
    try { s.proc.kill('SIGKILL'); } catch { /* gone */ }
  }
});

export function checkPrerequisites() {
  assert.ok(fs.existsSync(BIN), `${BIN} is missing: build it (scripts/setup.sh or cmake --build build)`);
  assert.ok(fs.existsSync(path.join(MODEL, 'config.json')) && fs.existsSync(path.join(MODEL, 'tokenizer.json')),
            `${MODEL} is missing: run scripts/setup.sh (it makes models/default)`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Starts a server; `args` are extra flags. Rejects (with the log) when it exits or stays silent.
export async function startServer({ args = [], model = MODEL, threads = 1, startTimeoutMs = 90_000 } = {}) {
  checkPrerequisites();
  const argv = ['serve', '--model', model, '--port', '0', '--threads', String(threads), ...args];
  const proc = spawn(BIN, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { stderr += d; });
  proc.stdout.setEncoding('utf8');
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const server = {
    proc,
    pid: proc.pid,
    argv,
    exited,
    exitStatus: null,
    get stderr() { return stderr; },
    get stdout() { return stdout; },
  };
  exited.then((st) => { server.exitStatus = st; server.exitTime = Date.now(); live.delete(server); });
  live.add(server);
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`dsv3 serve did not print its URL within ${startTimeoutMs} ms\nstderr:\n${stderr}`));
    }, startTimeoutMs);
    proc.stdout.on('data', (d) => {
      stdout += d;
      const m = /dsv3 serve: (http:\/\/[^\s]+\/v1) /.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`dsv3 serve exited (code ${code}, signal ${signal}) before printing its URL\n` +
                       `argv: ${argv.join(' ')}\nstderr:\n${stderr}`));
    });
  });
  server.baseURL = url;                        // http://127.0.0.1:PORT/v1
  server.origin = url.replace(/\/v1$/, '');    // http://127.0.0.1:PORT
  server.client = (opts = {}) => new OpenAI({ baseURL: url, apiKey: 'none', maxRetries: 0, timeout: 120_000, ...opts });
  server.fetch = (p, init = {}) => fetch(server.origin + p, init);
  server.post = (p, body, headers = {}, init = {}) =>
    fetch(server.origin + p, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
      ...init,
    });
  server.authHeaders = {};  // sent with metrics() (a test with --api-key sets it)
  server.metrics = async () => {
    const res = await server.fetch('/metrics', { headers: server.authHeaders });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`/metrics: HTTP ${res.status}: ${text}`);
    return parseMetrics(text);
  };
  server.rssKiB = () => rssKiB(proc.pid);
  // SIGTERM, then the process must exit 0 within `withinMs`; returns the elapsed ms.
  server.stop = async (withinMs = 6000) => {
    if (server.exitStatus) {
      assert.fail(`server had already exited: ${JSON.stringify(server.exitStatus)}\nstderr:\n${stderr}`);
    }
    const t0 = Date.now();
    proc.kill('SIGTERM');
    const st = await Promise.race([exited, sleep(withinMs).then(() => null)]);
    if (!st) {
      proc.kill('SIGKILL');
      await exited;
      assert.fail(`dsv3 serve did not exit within ${withinMs} ms of SIGTERM\nstderr tail:\n${stderr.slice(-3000)}`);
    }
    assert.deepEqual(st, { code: 0, signal: null }, `exit status after SIGTERM\nstderr tail:\n${stderr.slice(-3000)}`);
    return Date.now() - t0;
  };
  // For after(): stop without asserting if a test already stopped or failed.
  server.kill = async () => {
    if (server.exitStatus) return;
    proc.kill('SIGKILL');
    await exited;
  };
  return server;
}

// Prometheus text → [{name, labels:{}, value}], with get(name, labels) summing matching samples.
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`bad metrics line: ${line}`);
    const labels = {};
    if (m[3]) for (const lm of m[3].matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    samples.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return {
    text,
    samples,
    has: (name) => samples.some((s) => s.name === name),
    get(name, want = {}) {
      const hit = samples.filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v));
      if (!hit.length) throw new Error(`metric ${name} ${JSON.stringify(want)} not found in:\n${text}`);
      return hit.reduce((a, s) => a + s.value, 0);
    },
  };
}

export function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}

// Reads a fetch Response body as SSE: returns {events: [parsed JSON or '[DONE]'], raw, comments}.
// `onEvent(ev, index)` may return true to stop reading (the caller then aborts).
export async function readSSE(res, onEvent = () => false) {
  const reader = res.body.getReader();
  const dec = new TextDecoder('utf-8');
  let buf = '';
  let raw = '';
  const events = [];
  const comments = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const s = dec.decode(value, { stream: true });
    buf += s;
    raw += s;
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, k);
      buf = buf.slice(k + 2);
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) comments.push(line);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
        else if (line.startsWith('data:')) data.push(line.slice(5));
        else if (line.length) throw new Error(`unexpected SSE line: ${JSON.stringify(line)}`);
      }
      if (!data.length) continue;
      const payload = data.join('\n');
      const ev = payload === '[DONE]' ? '[DONE]' : JSON.parse(payload);
      events.push(ev);
      if (onEvent(ev, events.length - 1)) {
        await reader.cancel().catch(() => {});
        return { events, raw, comments, rest: buf, stopped: true };
      }
    }
  }
  raw += dec.decode();
  return { events, raw, comments, rest: buf, stopped: false };
}

// POSTs `body` with stream:true and returns the parsed SSE (asserts 200 + text/event-stream).
export async function streamRaw(server, p, body, headers = {}) {
  const res = await server.post(p, { ...body, stream: true }, headers);
  if (res.status !== 200) throw new Error(`${p}: HTTP ${res.status}: ${await res.text()}`);
  assert.match(res.headers.get('content-type') || '', /^text\/event-stream/);
  return readSSE(res);
}

// Concatenated chat deltas per choice index from a list of chunks.
export function chatTexts(chunks, field = 'content') {
  const out = [];
  for (const ch of chunks) {
    if (ch === '[DONE]') continue;
    for (const c of ch.choices || []) {
      const v = c.delta?.[field];
      if (typeof v === 'string') out[c.index] = (out[c.index] ?? '') + v;
      else out[c.index] ??= '';
    }
  }
  return out;
}

// Asserts `body` is the OpenAI error shape {"error":{"message","type","param","code"}}.
export function assertErrorShape(body, what = '') {
  assert.equal(typeof body, 'object', `${what}: error body is not an object: ${JSON.stringify(body)}`);
  assert.ok(body.error && typeof body.error === 'object', `${what}: no error object: ${JSON.stringify(body)}`);
  const e = body.error;
  assert.equal(typeof e.message, 'string', `${what}: error.message: ${JSON.stringify(body)}`);
  assert.ok(e.message.length > 0, `${what}: empty error.message`);
  assert.equal(typeof e.type, 'string', `${what}: error.type: ${JSON.stringify(body)}`);
  assert.ok('param' in e && (e.param === null || typeof e.param === 'string'), `${what}: error.param: ${JSON.stringify(body)}`);
  assert.ok('code' in e && (typeof e.code === 'string' || Number.isInteger(e.code)), `${what}: error.code: ${JSON.stringify(body)}`);
}

// A model directory in a temp dir: models/default's files symlinked, except tokenizer_config.json
// (written with `chatTemplate` and `configPatch` applied) and tokenizer.json (copied, for the test
// to edit). Returns {dir, cleanup}.
export function makeModelDir(name, { chatTemplate, configPatch = {} } = {}) {
  checkPrerequisites();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `dsv3-serve-${name}-`));
  for (const f of fs.readdirSync(MODEL)) {
    if (f === 'tokenizer.json' || f === 'tokenizer_config.json') continue;
    fs.symlinkSync(path.join(MODEL, f), path.join(dir, f));
  }
  const tcfg = JSON.parse(fs.readFileSync(path.join(MODEL, 'tokenizer_config.json'), 'utf8'));
  if (chatTemplate !== undefined) tcfg.chat_template = chatTemplate;
  Object.assign(tcfg, configPatch);
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tcfg, null, 2));
  fs.copyFileSync(path.join(MODEL, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

// Gives a model directory's tokenizer.json R1's <think>/</think> tokens: a tokenizer that has them
// (models/default, trained with DeepSeek-V3's added tokens plus these two) keeps them; DeepSeek-V3's
// gets them where R1 has them, in place of its placeholders 128798/128799 (special: false, as R1).
// Returns their ids.
export function addThinkTokens(dir) {
  const tjPath = path.join(dir, 'tokenizer.json');
  const tj = JSON.parse(fs.readFileSync(tjPath, 'utf8'));
  const have = (c) => tj.added_tokens.find((x) => x.content === c);
  if (have('<think>') && have('</think>')) return { thinkId: have('<think>').id, endId: have('</think>').id };
  for (const [id, content] of [[128798, '<think>'], [128799, '</think>']]) {
    const t = tj.added_tokens.find((x) => x.id === id);
    assert.ok(t, `no added token ${id}`);
    assert.match(t.content, /place▁holder/, `id ${id} is not a free placeholder: ${t.content}`);
    assert.ok(!have(content), `${content} already exists`);
    Object.assign(t, { content, special: false, normalized: true });
  }
  fs.writeFileSync(tjPath, JSON.stringify(tj));
  return { thinkId: 128798, endId: 128799 };
}

// The chat template of models/default (DeepSeek-V3's).
export function defaultChatTemplate() {
  return JSON.parse(fs.readFileSync(path.join(MODEL, 'tokenizer_config.json'), 'utf8')).chat_template;
}

// Waits until `pred()` (async) is true, polling every `everyMs`; returns the elapsed ms or throws.
export async function waitFor(pred, { timeoutMs = 1000, everyMs = 25, what = 'condition' } = {}) {
  const t0 = Date.now();
  let last;
  for (;;) {
    last = await pred();
    if (last === true) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what} not reached within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
    await sleep(everyMs);
  }
}

export function runBin(args) {
  const r = spawnSync(BIN, args, { cwd: ROOT, encoding: 'utf8' });
  return r;
}
