// The chat page when things go wrong, in plain words: an API key is needed (401), the prompt is
// over the context (400 with both numbers), the queue is full (429), the server is gone. And the
// serving side: the page is public with a strict Content-Security-Policy, `--no-web` answers 404.
// Screenshots: build/web-artifacts/errors-*.png.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openPage, loadChat, shot, setSettings, sendMessage, waitReplyDone, waitFor, runBin, readSSE,
} from './browser.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

describe('a server with --api-key and a 64-token context', () => {
  let server;
  let page;
  before(async () => {
    server = await startServer({ args: ['--api-key', 'sesame', '--ctx-size', '64'] });
    page = await openPage(browser, server);
  });
  after(async () => { if (server) await server.stop(); });

  test('the page and its files need no key; the API does', async () => {
    const res = await server.fetch('/');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.match(await res.text(), /<title>dsv3 chat<\/title>/);
    const csp = res.headers.get('content-security-policy');
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /connect-src 'self'(;|$)/);
    const js = await server.fetch('/web/app.js');
    assert.equal(js.status, 200);
    assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal((await server.fetch('/web/missing.js')).status, 404);
    assert.equal((await server.fetch('/v1/models')).status, 401);
  });

  test('without the key the page says so; with it, it chats', async () => {
    await page.goto(server.origin + '/');
    await page.waitForSelector('body[data-ready="1"]');
    await page.waitForFunction(() => document.getElementById('server').textContent === 'API key needed (Settings)');
    assert.match(await page.textContent('#notice'), /wants an API key .* Enter it in Settings/);
    await sendMessage(page, 'Hi');
    assert.match((await waitReplyDone(page)).error, /wants an API key/);
    await shot(page, 'errors-01-api-key');
    await setSettings(page, { 'API key': 'sesame', 'Max tokens': '4' });
    await page.waitForFunction(() => /context 64$/.test(document.getElementById('server').textContent));
    await page.click('.msg.assistant button:has-text("Regenerate")');
    const done = await waitReplyDone(page);
    assert.equal(done.error, null);
    assert.match(done.stats, /^4 tokens/);
  });

  test('a prompt over the context: both numbers, and what to do', async () => {
    await setSettings(page, { 'Max tokens': '' });
    await sendMessage(page, 'Please consider this long message. '.repeat(12));
    const done = await waitReplyDone(page);
    assert.match(done.error, /too long for the model: the prompt is \d+ tokens, and the model's context holds 64 tokens/);
    assert.match(done.error, /Start a new chat/);
    const n = Number(/prompt is (\d+) tokens/.exec(done.error)[1]);
    assert.ok(n > 64, `prompt ${n} tokens`);
    await shot(page, 'errors-02-context');
    assert.deepEqual(page.offHost, []);
  });
});

describe('a server running one request with one waiting', () => {
  let server;
  let page;
  before(async () => {
    server = await startServer({ args: ['--max-running', '1', '--max-queue', '1'] });
    page = await openPage(browser, server);
  });
  after(async () => { await server?.kill(); });

  test('a full queue: busy, try again; then Regenerate works', async () => {
    await loadChat(page, server);
    // One long request runs and one waits: the page's is one too many.
    const blocker = new AbortController();
    const reading = [];
    const counts = async () => {
      const m = await server.metrics();
      return { running: m.get('dsv3:num_requests_running'), waiting: m.get('dsv3:num_requests_waiting') };
    };
    for (const want of [{ running: 1, waiting: 0 }, { running: 1, waiting: 1 }]) {
      // Long enough to still run when the page asks (the default model writes thousands of tokens a
      // second), and within the 64 MiB KV pool of these test servers.
      const res = await server.post('/v1/chat/completions',
                                    { messages: [{ role: 'user', content: 'x' }], stream: true, max_tokens: 30_000, ignore_eos: true },
                                    {}, { signal: blocker.signal });
      assert.equal(res.status, 200, `blocking request ${reading.length + 1}: ${res.status}`);
      reading.push(readSSE(res).catch(() => {}));
      // The first must have left the queue for the running batch before the second comes: the
      // server answers a request once it is queued, and a loaded machine may not have scheduled
      // it yet (the second would then find the one-place queue full).
      await waitFor(async () => {
        const c = await counts();
        return (c.running === want.running && c.waiting === want.waiting) || c;
      }, { timeoutMs: 10_000, what: `${want.running} request running, ${want.waiting} waiting` });
    }
    await sendMessage(page, 'Are you there?');
    const done = await waitReplyDone(page);
    assert.match(done.error, /The server is busy: its queue of requests is full\. Try again in 1 second \(Regenerate\)\./);
    await shot(page, 'errors-03-busy');
    blocker.abort();
    await Promise.all(reading);
    await waitFor(async () => (await server.metrics()).get('dsv3:num_requests_running') === 0, { timeoutMs: 3000 });
    await setSettings(page, { 'Max tokens': '5' });
    await page.click('.msg.assistant button:has-text("Regenerate")');
    const again = await waitReplyDone(page);
    assert.equal(again.error, null);
    assert.match(again.stats, /^5 tokens/);
  });

  test('the server gone: cannot reach it', async () => {
    await server.stop();
    await sendMessage(page, 'Still there?');
    assert.match((await waitReplyDone(page)).error, /Cannot reach the server .* Is dsv3 serve still running\?/);
    await shot(page, 'errors-04-gone');
  });
});

describe('--no-web', () => {
  let server;
  before(async () => { server = await startServer({ args: ['--no-web'] }); });
  after(async () => { if (server) await server.stop(); });

  test('/ and /web/* answer 404, the API still works', async () => {
    for (const p of ['/', '/web/app.js', '/web/vendor/marked.esm.js']) {
      const res = await server.fetch(p);
      assert.equal(res.status, 404, p);
      assert.match((await res.json()).error.message, /no route GET/);
    }
    assert.equal((await server.fetch('/v1/models')).status, 200);
    assert.doesNotMatch(server.stdout, /chat page/);
  });

  test('dsv3 serve --help explains it', () => {
    const r = runBin(['serve', '--help']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout.replace(/\s+/g, ' '), /--no-web Do not serve the chat page/);
  });
});
