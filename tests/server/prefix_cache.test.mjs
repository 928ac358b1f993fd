// The paged KV cache through the API: shared prefixes (a system prompt, a multi-turn chat, n > 1)
// report usage.prompt_tokens_details.cached_tokens and give, at temperature 0, the same text as a
// server without prefix caching; cache_salt keeps requests apart; a pool far smaller than the
// traffic makes requests wait or be preempted, never fail, with the same outputs; a prompt that
// could never fit the pool is a 400; /health and /metrics report the pool; RSS stays within the
// weights + --kv-cache-mb + 300 MB.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, MODEL } from './helpers.mjs';

const WORDS = 'amber basil cedar dune ember fjord grove heath inlet jade kelp loam marsh'.split(' ');
function words(n, seed) {
  let x = (seed * 2654435761) >>> 0;
  const out = [];
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out.push(WORDS[x % WORDS.length]);
  }
  return out.join(' ');
}
const SYSTEM = `You are a careful assistant. Background: ${words(260, 1)}`;

let cached;  // prefix caching on, 16-token blocks
let cold;    // --no-prefix-caching: the reference outputs
before(async () => {
  [cached, cold] = await Promise.all([
    startServer({ args: ['--block-size', '16', '--kv-cache-mb', '64', '--max-running', '8'] }),
    startServer({ args: ['--block-size', '16', '--kv-cache-mb', '64', '--max-running', '8', '--no-prefix-caching'] }),
  ]);
});
after(async () => {
  await Promise.all([cached?.stop(), cold?.stop()]);
});

const greedy = (messages, extra = {}) => ({ model: 'default', messages, temperature: 0, max_tokens: 10,
                                            ignore_eos: true, ...extra });
const chat = (server, body) => server.client().chat.completions.create(body);

test('a shared system prompt is served from cached blocks, with the cold run\'s text', async () => {
  const ask = (q) => [{ role: 'system', content: SYSTEM }, { role: 'user', content: `Question ${q}: ${words(6, q)}` }];
  const first = await chat(cached, greedy(ask(1)));
  assert.equal(first.usage.prompt_tokens_details.cached_tokens, 0);
  assert.ok(first.usage.prompt_tokens > 250, `prompt of ${first.usage.prompt_tokens} tokens`);
  for (const q of [2, 3]) {
    const hot = await chat(cached, greedy(ask(q)));
    const ref = await chat(cold, greedy(ask(q)));
    assert.equal(ref.usage.prompt_tokens_details.cached_tokens, 0);
    const c = hot.usage.prompt_tokens_details.cached_tokens;
    // Everything up to the user's turn is shared: all of its full blocks are cached.
    assert.ok(c >= 240 && c % 16 === 0 && c < hot.usage.prompt_tokens, `cached_tokens ${c}`);
    assert.equal(hot.choices[0].message.content, ref.choices[0].message.content, `question ${q}`);
    assert.equal(hot.usage.prompt_tokens, ref.usage.prompt_tokens);
  }
  const m = await cached.metrics();
  assert.ok(m.get('dsv3:prefix_cache_hits') >= 480, `hits ${m.get('dsv3:prefix_cache_hits')}`);
  assert.ok(m.get('dsv3:prefix_cache_queries') > m.get('dsv3:prefix_cache_hits'));
  assert.ok(m.get('dsv3:kv_cache_blocks_cached') > 0);
  const health = await (await cached.fetch('/health')).json();
  assert.equal(health.kv_cache.block_size, 16);
  assert.equal(health.kv_cache.blocks_used, 0);
  assert.ok(health.kv_cache.blocks_total > 0 && health.kv_cache.blocks_cached > 0, JSON.stringify(health));
});

test('a multi-turn chat reuses the previous turns, streamed usage included', async () => {
  const turns = [{ role: 'user', content: `Tell me about ${words(120, 7)}` }];
  const r1 = await chat(cached, greedy(turns));
  turns.push({ role: 'assistant', content: r1.choices[0].message.content });
  turns.push({ role: 'user', content: `And ${words(5, 8)}?` });
  let usage;
  let text = '';
  for await (const ch of await chat(cached, greedy(turns, { stream: true, stream_options: { include_usage: true } }))) {
    text += ch.choices[0]?.delta?.content ?? '';
    if (ch.usage) usage = ch.usage;
  }
  assert.ok(usage.prompt_tokens_details.cached_tokens >= 112, JSON.stringify(usage));
  const ref = await chat(cold, greedy(turns));
  assert.equal(text, ref.choices[0].message.content);
});

test('n choices share one prefill; cache_salt separates requests', async () => {
  const msgs = [{ role: 'user', content: `Salted ${words(100, 11)}` }];
  const hot = await chat(cached, greedy(msgs, { n: 3 }));
  const ref = await chat(cold, greedy(msgs, { n: 3 }));
  assert.deepEqual(hot.choices.map((c) => c.message.content), ref.choices.map((c) => c.message.content));
  const salted = await chat(cached, greedy(msgs, { cache_salt: 'tenant-a' }));
  assert.equal(salted.usage.prompt_tokens_details.cached_tokens, 0);
  const again = await chat(cached, greedy(msgs, { cache_salt: 'tenant-a' }));
  assert.ok(again.usage.prompt_tokens_details.cached_tokens >= 96);
  const unsalted = await chat(cached, greedy(msgs));
  assert.ok(unsalted.usage.prompt_tokens_details.cached_tokens >= 96);  // the n=3 request's blocks
  assert.equal(again.choices[0].message.content, ref.choices[0].message.content);
  await assert.rejects(chat(cached, greedy(msgs, { cache_salt: '' })), (e) => e.status === 400 && /cache_salt/.test(e.message));
});

test('a pool much smaller than the traffic: requests wait or are preempted, outputs unchanged, memory bounded', async () => {
  // 1 MiB = 68 blocks of 16 positions here; 16 requests that grow to ~10 blocks each.
  const small = await startServer({ args: ['--block-size', '16', '--kv-cache-mb', '1', '--max-running', '16',
                                           '--max-step-tokens', '512'] });
  try {
    const body = (i) => greedy([{ role: 'user', content: `Request ${i}: ${words(40, 100 + i)}` }], { max_tokens: 100 });
    const [got, want] = await Promise.all([
      Promise.all(Array.from({ length: 16 }, (_, i) => chat(small, body(i)))),
      Promise.all(Array.from({ length: 16 }, (_, i) => chat(cold, body(i)))),
    ]);
    for (let i = 0; i < 16; i++) {
      assert.equal(got[i].choices[0].finish_reason, 'length');
      assert.equal(got[i].choices[0].message.content, want[i].choices[0].message.content, `request ${i}`);
    }
    const m = await small.metrics();
    assert.ok(m.get('dsv3:num_preemptions_total') > 0, 'no preemption happened');
    assert.equal(m.get('dsv3:kv_cache_blocks_used'), 0);
    // A prompt that could never fit the pool (68 blocks x 16 positions) is refused at once.
    await assert.rejects(chat(small, greedy([{ role: 'user', content: words(1400, 3) }])),
                         (e) => e.status === 400 && /KV cache|context/.test(e.message));
    // Memory: weights + pool + 300 MB.
    let weights = 0;
    for (const f of fs.readdirSync(MODEL)) weights += fs.statSync(path.join(MODEL, f)).size;
    const rss = small.rssKiB() * 1024;
    assert.ok(rss <= weights + (1 << 20) + 300 * (1 << 20), `RSS ${rss} > weights ${weights} + 1 MiB + 300 MiB`);
  } finally {
    await small.stop();
  }
});
