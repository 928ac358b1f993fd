// SERVER.md §5 item 6 and §0/§1.10/§3.4/§3.6: error statuses and bodies as the openai client maps
// them (400, 401, 404, 413, 429), the queue limit with retry-after and its metric, field
// validation, and CORS preflight for the SDK's headers without the API key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { startServer, OpenAI, assertErrorShape, readSSE, waitFor, sleep } from './helpers.mjs';

const KEY = 'sk-test-secret';
const NAME = 'errmodel';
const CTX = 4096;
let server;
let client;

async function start(ctx) {
  const s = await startServer({
    args: ['--served-model-name', NAME, '--api-key', KEY, '--ctx-size', String(ctx), '--max-body-mb', '1',
           '--max-running', '1', '--max-queue', '1'],
  });
  s.authHeaders = { authorization: `Bearer ${KEY}` };
  return s;
}

before(async () => {
  server = await start(CTX);
  client = server.client({ apiKey: KEY });
});

after(async () => {
  if (server) await server.kill();
});

const AUTH = { authorization: `Bearer ${KEY}` };
const MSG = [{ role: 'user', content: 'Hello there' }];

// Asserts that `promise` rejects with `Cls` and `status`; returns the error.
async function rejectsWith(promise, Cls, status) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof Cls, `expected ${Cls.name}, got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.status, status);
    return e;
  }
  assert.fail(`expected ${Cls.name} (${status}), but the request succeeded`);
}

// Raw request: returns {status, headers, body(parsed JSON)} and checks the error shape for non-2xx.
async function raw(method, p, body, headers = AUTH) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await server.fetch(p, init);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    assert.fail(`${method} ${p}: HTTP ${res.status} body is not JSON: ${JSON.stringify(text.slice(0, 300))}`);
  }
  if (res.status >= 300) {
    assertErrorShape(json, `${method} ${p} (${res.status})`);
    assert.match(res.headers.get('content-type') || '', /application\/json/);
  }
  return { status: res.status, headers: res.headers, body: json };
}

test('over-long prompt → BadRequestError 400 with n_prompt_tokens and n_ctx (never 5xx)', async () => {
  const long = 'lorem ipsum dolor sit amet '.repeat(1200);  // > 4096 tokens
  const e = await rejectsWith(client.chat.completions.create({ model: NAME, messages: [{ role: 'user', content: long }] }),
                              OpenAI.BadRequestError, 400);
  assert.equal(e.code, 'context_length_exceeded');
  assert.ok(Number.isInteger(e.error.n_prompt_tokens) && e.error.n_prompt_tokens > CTX, JSON.stringify(e.error));
  assert.equal(e.error.n_ctx, CTX);
  // llama.cpp puts the two numbers at the top level too; clients read either.
  const r = await raw('POST', '/v1/chat/completions', { model: NAME, messages: [{ role: 'user', content: long }] });
  assert.equal(r.status, 400);
  assert.equal(r.body.n_ctx, CTX);
  assert.equal(r.body.n_prompt_tokens, e.error.n_prompt_tokens);
  assert.match(r.body.error.message, new RegExp(String(CTX)));
  // Prompt fits but prompt + max_tokens does not.
  const e2 = await rejectsWith(client.chat.completions.create({ model: NAME, messages: MSG, max_tokens: CTX }),
                               OpenAI.BadRequestError, 400);
  assert.equal(e2.error.n_ctx, CTX);
  assert.ok(e2.error.n_prompt_tokens > 0 && e2.error.n_prompt_tokens < 50);
  // Completions too.
  const e3 = await rejectsWith(client.completions.create({ model: NAME, prompt: long }), OpenAI.BadRequestError, 400);
  assert.equal(e3.error.n_ctx, CTX);
  const m = await server.metrics();
  assert.ok(m.get('dsv3:request_rejected_total', { reason: 'context_length' }) >= 4);
});

test('unknown model → NotFoundError 404', async () => {
  const e = await rejectsWith(client.chat.completions.create({ model: 'no-such-model', messages: MSG, max_tokens: 1 }),
                              OpenAI.NotFoundError, 404);
  assert.match(e.message, /no-such-model/);
  await rejectsWith(client.completions.create({ model: 'no-such-model', prompt: 'x', max_tokens: 1 }),
                    OpenAI.NotFoundError, 404);
});

test('unknown request fields are answered and named in the log, on both endpoints', async () => {
  const c = await client.chat.completions.create({ model: NAME, messages: MSG, max_tokens: 1, zz_chat_field: 1 });
  assert.equal(c.choices.length, 1);
  const t = await client.completions.create({ model: NAME, prompt: 'x', max_tokens: 1, zz_completion_field: true });
  assert.equal(t.choices.length, 1);
  await waitFor(() => /ignoring unknown request field\(s\): zz_completion_field/.test(server.stderr),
                { timeoutMs: 5000, what: 'the note on /v1/completions' });
  assert.match(server.stderr, /ignoring unknown request field\(s\): zz_chat_field/);
});

test('API key: wrong or missing → AuthenticationError 401; /health without a key works', async () => {
  const bad = server.client({ apiKey: 'sk-wrong' });
  await rejectsWith(bad.chat.completions.create({ model: NAME, messages: MSG, max_tokens: 1 }), OpenAI.AuthenticationError, 401);
  await rejectsWith(bad.models.list(), OpenAI.AuthenticationError, 401);
  const none = await raw('POST', '/v1/chat/completions', { model: NAME, messages: MSG, max_tokens: 1 }, {});
  assert.equal(none.status, 401);
  const wrongScheme = await raw('GET', '/v1/models', undefined, { authorization: `Basic ${KEY}` });
  assert.equal(wrongScheme.status, 401);
  assert.equal(wrongScheme.headers.get('www-authenticate'), 'Bearer');
  // The scheme's case does not matter (RFC 9110); the key's does.
  assert.equal((await raw('GET', '/v1/models', undefined, { authorization: `bearer ${KEY}` })).status, 200);
  assert.equal((await raw('GET', '/v1/models', undefined, { authorization: `BEARER ${KEY}` })).status, 200);
  assert.equal((await raw('GET', '/v1/models', undefined, { authorization: `Bearer ${KEY.toUpperCase()}` })).status, 401);
  assert.equal((await raw('GET', '/v1/models', undefined, { authorization: 'Bearer' })).status, 401);
  for (const p of ['/health', '/v1/health']) {
    const h = await server.fetch(p);
    assert.equal(h.status, 200, `${p} without a key`);
  }
  // With the key everything works.
  const ok = await client.chat.completions.create({ model: NAME, messages: MSG, max_tokens: 2, temperature: 0 });
  assert.equal(ok.choices.length, 1);
});

test('invalid field types and values → 400 naming the field', async () => {
  const cases = [
    [{ model: NAME, messages: MSG, temperature: 'hot' }, 'temperature'],
    [{ model: NAME }, 'messages'],
    [{ model: NAME, messages: 'hi' }, 'messages'],
    [{ model: NAME, messages: [] }, 'messages'],
    [{ model: NAME, messages: MSG, n: 0 }, 'n'],
    [{ model: NAME, messages: MSG, max_tokens: 0 }, 'max_tokens'],
    [{ model: NAME, messages: MSG, max_tokens: 'ten' }, 'max_tokens'],
    [{ model: NAME, messages: MSG, top_p: 0 }, 'top_p'],
    [{ model: NAME, messages: MSG, temperature: 3 }, 'temperature'],
    [{ model: NAME, messages: MSG, stop: 5 }, 'stop'],
    [{ model: NAME, messages: MSG, stream: 'yes' }, 'stream'],
    [{ model: NAME, messages: MSG, seed: 'abc' }, 'seed'],
    [{ model: NAME, messages: MSG, logit_bias: { abc: 1 } }, 'logit_bias'],
    [{ model: NAME, messages: MSG, tools: {} }, 'tools'],
    [{ model: NAME, messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
    [{ model: NAME, messages: [{ role: 'user' }] }, 'messages[0].content'],
  ];
  for (const [body, field] of cases) {
    const r = await raw('POST', '/v1/chat/completions', body);
    assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${JSON.stringify(r.body)}`);
    const param = r.body.error.param ?? '';
    assert.ok(param === field || param.startsWith(`${field}.`) || param.startsWith(`${field}[`),
              `param for ${JSON.stringify(body)} should name '${field}': ${JSON.stringify(r.body)}`);
    assert.ok(r.body.error.message.includes(field), `message should name '${field}': ${JSON.stringify(r.body)}`);
  }
  // Through the client: BadRequestError with .param.
  const e = await rejectsWith(client.chat.completions.create({ model: NAME, messages: MSG, temperature: 'hot' }),
                              OpenAI.BadRequestError, 400);
  assert.equal(e.param, 'temperature');
  // Completions: prompt missing, wrong type.
  for (const [body, field] of [[{ model: NAME }, 'prompt'], [{ model: NAME, prompt: 5 }, 'prompt'],
                               [{ model: NAME, prompt: 'x', max_tokens: -1 }, 'max_tokens']]) {
    const r = await raw('POST', '/v1/completions', body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.body.error.param, field, JSON.stringify(r.body));
  }
  // Not JSON, not an object.
  for (const body of ['{"model": ', '[1,2]', '']) {
    const r = await raw('POST', '/v1/chat/completions', body);
    assert.equal(r.status, 400, `body ${JSON.stringify(body)}`);
  }
  // Unknown fields are ignored, not rejected.
  const ok = await raw('POST', '/v1/chat/completions', { model: NAME, messages: MSG, max_tokens: 1, some_future_field: { a: 1 } });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
});

test('response_format json_object → 400 (no constraint is applied)', async () => {
  const e = await rejectsWith(client.chat.completions.create({ model: NAME, messages: MSG, response_format: { type: 'json_object' } }),
                              OpenAI.BadRequestError, 400);
  assert.equal(e.param, 'response_format');
  const r = await raw('POST', '/v1/chat/completions', { model: NAME, messages: MSG, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {} } } });
  assert.equal(r.status, 400);
  const text = await raw('POST', '/v1/chat/completions', { model: NAME, messages: MSG, max_tokens: 1, response_format: { type: 'text' } });
  assert.equal(text.status, 200);
});

test('body over --max-body-mb → 413 with a JSON error body', async () => {
  const big = JSON.stringify({ model: NAME, messages: [{ role: 'user', content: 'x'.repeat(1_500_000) }] });
  const r = await raw('POST', '/v1/chat/completions', big);
  assert.equal(r.status, 413);
  // The server still answers afterwards.
  const h = await server.fetch('/health');
  assert.equal(h.status, 200);
});

// cpp-httplib 0.11 bounds a Content-Length only: a chunked body, or what a gzip body unpacks to,
// grew without limit. Small ones of both kinds are still read.
test('chunked and gzip bodies: over --max-body-mb → 413, under it → answered', async () => {
  const chunked = (text) => new ReadableStream({
    start(c) {
      for (let i = 0; i < text.length; i += 65536) c.enqueue(new TextEncoder().encode(text.slice(i, i + 65536)));
      c.close();
    },
  });
  const send = async (body, headers) => {
    const res = await server.fetch('/v1/chat/completions', {
      method: 'POST', body, duplex: 'half', headers: { ...AUTH, 'content-type': 'application/json', ...headers },
    });
    return { status: res.status, json: JSON.parse(await res.text()) };
  };
  const big = JSON.stringify({ model: NAME, messages: [{ role: 'user', content: 'x'.repeat(3_000_000) }], max_tokens: 1 });
  const small = JSON.stringify({ model: NAME, messages: MSG, max_tokens: 1 });
  for (const [what, body, headers] of [
    ['chunked', chunked(big), {}],
    ['gzip', zlib.gzipSync(big), { 'content-encoding': 'gzip' }],
  ]) {
    const r = await send(body, headers);
    assert.equal(r.status, 413, `${what}: ${JSON.stringify(r.json)}`);
    assertErrorShape(r.json);
    assert.equal(r.json.error.code, 'request_too_large', what);
  }
  for (const [what, body, headers] of [
    ['chunked', chunked(small), {}],
    ['gzip', zlib.gzipSync(small), { 'content-encoding': 'gzip' }],
  ]) {
    const r = await send(body, headers);
    assert.equal(r.status, 200, `${what}: ${JSON.stringify(r.json)}`);
    assert.equal(r.json.choices.length, 1, what);
  }
  assert.equal((await server.fetch('/health')).status, 200);
});

test('unknown route → 404 JSON error; wrong method → 405 JSON error', async () => {
  for (const [m, p] of [['GET', '/v1/nope'], ['POST', '/v1/nope'], ['GET', '/v2/models'], ['POST', '/v1/engines/x/completions']]) {
    const r = await raw(m, p, m === 'POST' ? { a: 1 } : undefined);
    assert.equal(r.status, 404, `${m} ${p}`);
  }
  const r = await raw('GET', '/v1/chat/completions');
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'POST');
  for (const m of ['PUT', 'DELETE', 'PATCH']) {
    const w = await raw(m, '/v1/chat/completions', { a: 1 });
    assert.equal(w.status, 405, m);
    assert.equal(w.headers.get('allow'), 'POST', m);
  }
  const d = await raw('DELETE', '/v1/models');
  assert.equal(d.status, 405);
  assert.equal(d.headers.get('allow'), 'GET, HEAD');
  assert.equal((await raw('PUT', '/v1/nope', { a: 1 })).status, 404);
  // HEAD answers as GET does, without a body.
  for (const p of ['/health', '/v1/models']) {
    const h = await server.fetch(p, { method: 'HEAD', headers: AUTH });
    assert.equal(h.status, 200, `HEAD ${p}`);
    assert.equal(await h.text(), '', `HEAD ${p}`);
  }
});

test('CORS preflight with the SDK headers: 2xx, reflected, POST allowed, no API key needed', async () => {
  const asked = 'authorization, content-type, x-stainless-os, x-stainless-retry-count, x-stainless-lang, x-stainless-timeout';
  const res = await server.fetch('/v1/chat/completions', {
    method: 'OPTIONS',
    headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST', 'access-control-request-headers': asked },
  });
  assert.ok(res.status >= 200 && res.status < 300, `preflight status ${res.status}`);
  const allowOrigin = res.headers.get('access-control-allow-origin');
  assert.ok(allowOrigin === 'http://localhost:5173' || allowOrigin === '*', `allow-origin ${allowOrigin}`);
  const allowHeaders = (res.headers.get('access-control-allow-headers') || '').toLowerCase();
  if (allowHeaders.trim() !== '*') {
    for (const h of asked.split(',').map((s) => s.trim()))
      assert.ok(allowHeaders.split(',').map((s) => s.trim()).includes(h), `${h} not allowed: ${allowHeaders}`);
  }
  assert.match(res.headers.get('access-control-allow-methods') || '', /POST/);
  assert.match(res.headers.get('vary') || '', /origin/i);
  // Also on other routes.
  const models = await server.fetch('/v1/models', {
    method: 'OPTIONS', headers: { origin: 'http://a.example', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
  });
  assert.ok(models.status >= 200 && models.status < 300);
  // The actual request and its 401 carry the CORS header too (a browser could not read the error otherwise).
  const real = await server.fetch('/v1/models', { headers: { origin: 'http://a.example', ...AUTH } });
  assert.equal(real.status, 200);
  assert.ok(['http://a.example', '*'].includes(real.headers.get('access-control-allow-origin')));
  const denied = await server.fetch('/v1/models', { headers: { origin: 'http://a.example' } });
  assert.equal(denied.status, 401);
  assert.ok(['http://a.example', '*'].includes(denied.headers.get('access-control-allow-origin')));
});

// Starts a long streaming request; resolves once its first chunk arrived. Returns {controller, done}.
// The long streams must outlast the queue-full test and its client's retry-after wait; models/default
// writes thousands of tokens a second, so that test runs on a server of its own with a longer context.
const LONG_TOKENS = 120_000;

async function longStream(tag) {
  const controller = new AbortController();
  const res = await server.post('/v1/chat/completions',
    { model: NAME, messages: [{ role: 'user', content: `long ${tag}` }], max_tokens: LONG_TOKENS, ignore_eos: true, stream: true },
    AUTH, { signal: controller.signal });
  assert.equal(res.status, 200, `long stream ${tag}: ${res.status}`);
  const done = readSSE(res).catch((e) => (e.name === 'AbortError' ? 'aborted' : Promise.reject(e)));
  return { controller, done };
}

test('queue full → RateLimitError 429 with retry-after; counted in dsv3:request_rejected_total; client retries honour it', async () => {
  const main = { server, client };
  server = await start(LONG_TOKENS + 1024);
  client = server.client({ apiKey: KEY });
  try {
    await queueFull();
  } finally {
    await server.stop(6000);
    ({ server, client } = main);
  }
});

async function queueFull() {
  const m0 = await server.metrics();
  const rejected0 = m0.get('dsv3:request_rejected_total', { reason: 'queue_full' });
  // --max-running 1 --max-queue 1: one request runs, one waits, the next is refused.
  const a = await longStream('a');
  await waitFor(async () => (await server.metrics()).get('dsv3:num_requests_running') === 1, { timeoutMs: 10_000, what: 'one running' });
  const b = await longStream('b').catch((e) => e);
  const bPending = b instanceof Error ? null : b;
  // b's response headers come once it is accepted into the queue (status 200 then).
  try {
    await waitFor(async () => (await server.metrics()).get('dsv3:num_requests_waiting') === 1, { timeoutMs: 10_000, what: 'one waiting' });
    const e = await rejectsWith(client.chat.completions.create({ model: NAME, messages: MSG, max_tokens: 4 }), OpenAI.RateLimitError, 429);
    const ra = e.headers.get('retry-after');
    assert.ok(ra !== null, 'retry-after header');
    assert.ok(Number(ra) > 0 || !Number.isNaN(Date.parse(ra)), `retry-after ${ra}`);
    assertErrorShape({ error: e.error }, '429');
    const m1 = await server.metrics();
    assert.equal(m1.get('dsv3:request_rejected_total', { reason: 'queue_full' }) - rejected0, 1, 'rejection counted');

    // Raw: the same, with the JSON body.
    const r = await raw('POST', '/v1/chat/completions', { model: NAME, messages: MSG, max_tokens: 4 });
    assert.equal(r.status, 429);
    assert.ok(r.headers.get('retry-after'));
    // Completions are refused the same way.
    const rc = await raw('POST', '/v1/completions', { model: NAME, prompt: 'x', max_tokens: 4 });
    assert.equal(rc.status, 429);

    // With retries the client waits retry-after between attempts, then gives up with RateLimitError.
    const retrying = server.client({ apiKey: KEY, maxRetries: 1 });
    const t0 = Date.now();
    await rejectsWith(retrying.chat.completions.create({ model: NAME, messages: MSG, max_tokens: 4 }), OpenAI.RateLimitError, 429);
    const waited = Date.now() - t0;
    const wantMs = Number(ra) * 1000;
    assert.ok(waited >= wantMs * 0.9, `client retried after ${waited} ms; retry-after was ${ra} s`);
    const m2 = await server.metrics();
    assert.equal(m2.get('dsv3:request_rejected_total', { reason: 'queue_full' }) - rejected0, 5, 'each refusal counted');
  } finally {
    a.controller.abort();
    bPending?.controller.abort();
    await a.done;
    if (bPending) await bPending.done;
  }
  // Freed: the server takes requests again.
  await waitFor(async () => {
    const m = await server.metrics();
    return m.get('dsv3:num_requests_running') === 0 && m.get('dsv3:num_requests_waiting') === 0;
  }, { timeoutMs: 3000, what: 'queue drained after aborts' });
  const ok = await client.chat.completions.create({ model: NAME, messages: MSG, max_tokens: 2 });
  assert.equal(ok.choices.length, 1);
}

test('clean shutdown: SIGTERM → exit 0 within 6 s', async () => {
  await sleep(10);
  await server.stop(6000);
});
