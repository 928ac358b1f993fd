// SERVER.md §5 item 9, §3.3: a client that goes away frees its slot at once — streaming
// (AbortController through the openai client and through raw fetch) and non-streaming (the
// connection dropped while the server is still generating).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, OpenAI, readSSE, waitFor } from './helpers.mjs';

let server;
let client;

before(async () => {
  server = await startServer({ args: ['--ctx-size', '8192'] });
  client = server.client();
});

after(async () => {
  if (server) await server.kill();
});

const LONG = { model: 'default', messages: [{ role: 'user', content: 'Count to ten thousand.' }], max_tokens: 4000, ignore_eos: true };

async function idleWithin(ms, what) {
  return waitFor(async () => {
    const m = await server.metrics();
    const running = m.get('dsv3:num_requests_running');
    const waiting = m.get('dsv3:num_requests_waiting');
    const cache = m.has('dsv3:kv_cache_tokens') ? m.get('dsv3:kv_cache_tokens') : 0;
    return running === 0 && waiting === 0 && cache === 0 ? true : { running, waiting, cache };
  }, { timeoutMs: ms, everyMs: 20, what });
}

test('abort a long stream (openai client + AbortController) after 10 chunks → running back to 0 within 1 s', async () => {
  const m0 = await server.metrics();
  const aborts0 = m0.get('dsv3:request_success_total', { finished_reason: 'abort' });
  const controller = new AbortController();
  const stream = await client.chat.completions.create({ ...LONG, stream: true }, { signal: controller.signal });
  let chunks = 0;
  let caught;
  try {
    for await (const ch of stream) {
      assert.ok(ch.choices.length <= 1);
      if (++chunks === 10) {
        const m = await server.metrics();
        assert.equal(m.get('dsv3:num_requests_running'), 1, 'the stream is running');
        assert.ok(m.get('dsv3:kv_cache_usage_perc') > 0, 'the running stream holds cache');
        controller.abort();
      }
    }
  } catch (e) {
    caught = e;
  }
  // The SDK ends the iteration quietly on abort (or throws APIUserAbortError); either way it stops at once.
  assert.ok(caught === undefined || caught instanceof OpenAI.APIUserAbortError, `unexpected error: ${caught}`);
  assert.ok(controller.signal.aborted && chunks <= 11, `the stream went on after the abort (${chunks} chunks)`);
  const ms = await idleWithin(1000, 'running count back to 0 after the stream was aborted');
  const m1 = await server.metrics();
  assert.equal(m1.get('dsv3:kv_cache_usage_perc'), 0, 'cache freed');
  assert.equal(m1.get('dsv3:request_success_total', { finished_reason: 'abort' }) - aborts0, 1, 'counted as abort');
  assert.ok(m1.get('dsv3:generation_tokens_total') - m0.get('dsv3:generation_tokens_total') < 1000,
            'generation stopped long before max_tokens');
  console.log(`# stream abort: idle ${ms} ms after abort`);
});

test('abort a raw fetch stream after 10 events → running back to 0 within 1 s', async () => {
  const controller = new AbortController();
  const res = await server.post('/v1/chat/completions', { ...LONG, stream: true }, {}, { signal: controller.signal });
  assert.equal(res.status, 200);
  const { events, stopped } = await readSSE(res, (_, i) => i + 1 >= 10);
  assert.ok(stopped && events.length === 10);
  controller.abort();
  await idleWithin(1000, 'running count back to 0 after the raw stream was cancelled');
});

test('non-streaming request whose connection is dropped → running back to 0 within 1 s', async () => {
  const m0 = await server.metrics();
  const gen0 = m0.get('dsv3:generation_tokens_total');
  const controller = new AbortController();
  // Longer than LONG (as much as the 8192-token context holds): the default model writes ~6,000
  // tokens a second here, so 4,000 would be half done by the time the connection drops.
  const longer = { ...LONG, max_tokens: 8000 };
  const pending = server.post('/v1/chat/completions', longer, {}, { signal: controller.signal }).then(
    (r) => assert.fail(`the request finished (HTTP ${r.status}) instead of being dropped`),
    (e) => assert.equal(e.name, 'AbortError'));
  await waitFor(async () => (await server.metrics()).get('dsv3:num_requests_running') === 1,
                { timeoutMs: 5000, what: 'non-stream request running' });
  await new Promise((r) => setTimeout(r, 100));
  controller.abort();
  await pending;
  const ms = await idleWithin(1000, 'running count back to 0 after the non-stream connection closed');
  const m1 = await server.metrics();
  const generated = m1.get('dsv3:generation_tokens_total') - gen0;
  assert.ok(generated < longer.max_tokens / 3, `generation stopped long before max_tokens (${generated} tokens)`);
  console.log(`# non-stream drop: idle ${ms} ms after abort`);
});

test('several aborted streams at once, then the server still answers', async () => {
  const controllers = [];
  const all = [];
  for (let i = 0; i < 4; i++) {
    const c = new AbortController();
    controllers.push(c);
    all.push(client.chat.completions.create({ ...LONG, stream: true, messages: [{ role: 'user', content: `stream ${i}` }] },
                                            { signal: c.signal })
      .then(async (s) => {
        let k = 0;
        for await (const _ of s) if (++k === 5) c.abort();
        assert.ok(k <= 6, `stream ${i} went on after the abort`);
      })
      .catch((e) => assert.ok(e instanceof OpenAI.APIUserAbortError, String(e))));
  }
  await Promise.all(all);
  await idleWithin(1000, 'idle after four aborts');
  const r = await client.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
  assert.equal(r.choices.length, 1);
});

test('clean shutdown: SIGTERM → exit 0 within 6 s', async () => {
  await server.stop(6000);
});
