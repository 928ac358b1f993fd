// Soak: 16 concurrent clients for a fixed time (DSV3_SOAK_SECONDS, default 60, split into a
// warm-up fifth and the measured rest), each looping over random requests — streaming and not,
// chat and completions, n 1-2, random lengths — and aborting about a third of them at a random
// point. Pass: no error other than the aborts, the server's RSS at the end at most 5% plus the KV
// cache pool's size above its RSS after the warm-up, nothing left running, the server still answers, exit 0 on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, OpenAI, waitFor, sleep } from './helpers.mjs';

const SECONDS = Number(process.env.DSV3_SOAK_SECONDS || 60);
const CLIENTS = 16;

// Small deterministic PRNG (mulberry32) so a failing run can be repeated.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test(`soak: ${CLIENTS} clients with random aborts for ${SECONDS} s; RSS stable; still answers; exit 0`, { timeout: (SECONDS + 90) * 1000 }, async () => {
  const server = await startServer({ args: ['--max-running', '16', '--max-queue', '64', '--ctx-size', '2048'] });
  try {
    const client = server.client({ timeout: 60_000 });
    const stats = { requests: 0, completed: 0, aborted: 0, tokens: 0, errors: [] };
    let stopAt = 0;
    const warmupMs = SECONDS * 1000 / 5;
    const t0 = Date.now();
    stopAt = t0 + SECONDS * 1000;

    async function one(r, id) {
      const chat = r() < 0.75;
      const stream = r() < 0.7;
      const n = r() < 0.15 ? 2 : 1;
      const maxTokens = 4 + Math.floor(r() * 60);
      const abortAfter = r() < 0.35 ? Math.floor(r() * 12) : -1;  // chunks (stream) or ×50 ms (non-stream)
      const words = 3 + Math.floor(r() * 120);
      const text = `client ${id}: ` + Array.from({ length: words }, () => Math.floor(r() * 1000).toString(36)).join(' ');
      const sampling = r() < 0.5 ? { temperature: 0 } : { temperature: 0.8, top_p: 0.9, seed: Math.floor(r() * 1e6) };
      const controller = new AbortController();
      const base = { model: 'default', max_tokens: maxTokens, n, ...sampling, ...(r() < 0.5 ? { ignore_eos: true } : {}) };
      const req = chat ? { ...base, messages: [{ role: 'user', content: text }] } : { ...base, prompt: text };
      const api = chat ? client.chat.completions : client.completions;
      stats.requests++;
      try {
        if (stream) {
          const s = await api.create({ ...req, stream: true, stream_options: { include_usage: true } }, { signal: controller.signal });
          let k = 0;
          const finished = new Set();
          let usage = null;
          for await (const ch of s) {
            if (ch.usage) usage = ch.usage;
            for (const c of ch.choices) if (c.finish_reason) finished.add(c.index);
            if (++k === abortAfter) controller.abort();
          }
          if (controller.signal.aborted) {  // the SDK ends an aborted stream quietly
            stats.aborted++;
            return;
          }
          assert.equal(finished.size, n, 'every choice finished');
          assert.ok(usage, 'usage chunk');
          stats.tokens += usage.completion_tokens;
        } else {
          let timer;
          if (abortAfter >= 0) timer = setTimeout(() => controller.abort(), abortAfter * 50);
          const res = await api.create(req, { signal: controller.signal });
          clearTimeout(timer);
          assert.equal(res.choices.length, n);
          stats.tokens += res.usage.completion_tokens;
        }
        stats.completed++;
      } catch (e) {
        if (e instanceof OpenAI.APIUserAbortError || (controller.signal.aborted && e?.name === 'AbortError')) stats.aborted++;
        else {
          // fetch wraps the socket's error twice (APIConnectionError > TypeError > undici error).
          const causes = [];
          for (let c = e?.cause; c && causes.length < 4; c = c.cause) causes.push(`${c.code ?? c.name ?? ''}: ${c.message ?? c}`);
          stats.errors.push(`${chat ? 'chat' : 'completions'} stream=${stream} n=${n} abortAfter=${abortAfter}: ` +
                            `${e?.status ?? ''} ${e?.message ?? e} [${causes.join(' < ')}]`);
        }
      }
    }

    const workers = Array.from({ length: CLIENTS }, async (_, id) => {
      const r = rng(1000 + id);
      // Think time between requests: the trained models/default answers a short request in tens of
      // milliseconds, and back-to-back clients sent ~30 requests/s, ten times the rate the soak was
      // built for with a random-weight model (at that rate RSS grew ~14% after the warm-up: an
      // open finding). The "UND_ERR_SOCKET: other side closed" seen then, and once in ~3 runs of
      // this soak on 2 loaded cores, was the server closing a new connection whose first request
      // came over 1 s after the connect (cpp-httplib's keep-alive timeout, then 1 s; now 5 s, and
      // shutdown.test.mjs sends a first request 2 s late).
      while (Date.now() < stopAt) {
        await one(r, id);
        await sleep(100 + Math.floor(r() * 400));
      }
    });
    // Warm-up, then the reference RSS.
    await sleep(warmupMs);
    const rssWarm = server.rssKiB();
    await Promise.all(workers);
    await waitFor(async () => {
      const m = await server.metrics();
      return m.get('dsv3:num_requests_running') === 0 && m.get('dsv3:num_requests_waiting') === 0;
    }, { timeoutMs: 2000, what: 'nothing running after the soak' });
    const rssEnd = server.rssKiB();
    const elapsed = (Date.now() - t0) / 1000;
    console.log(`# soak ${elapsed.toFixed(1)} s: ${stats.requests} requests, ${stats.completed} completed, ` +
                `${stats.aborted} aborted, ${stats.tokens} tokens; RSS warm ${rssWarm} KiB, end ${rssEnd} KiB`);
    assert.deepEqual(stats.errors.slice(0, 10), [], `${stats.errors.length} errors`);
    assert.ok(stats.completed > CLIENTS, `too few requests completed: ${stats.completed}`);
    assert.ok(stats.aborted > 0, 'some requests were aborted');
    // A leak shows as growth; memory given back at idle (caches freed) is fine.
    // 5%, plus the KV cache pool: its pages join the RSS as blocks are first used, and the trained
    // default model serves enough requests for prefix caching to reach blocks the warm-up did not.
    const kv = (await (await server.fetch('/health')).json()).kv_cache;
    const slack = 0.05 * rssWarm + (kv.blocks_total * kv.block_size * kv.bytes_per_token) / 1024;
    assert.ok(rssEnd <= rssWarm + slack, `RSS grew by more than ${Math.round(slack)} KiB after the warm-up: ${rssWarm} → ${rssEnd} KiB`);
    const m = await server.metrics();
    assert.equal(m.get('dsv3:kv_cache_usage_perc'), 0);
    // Still answers.
    const r = await client.chat.completions.create({ model: 'default', messages: [{ role: 'user', content: 'still there?' }], max_tokens: 4 });
    assert.equal(r.choices.length, 1);
    await server.stop(6000);
  } finally {
    await server.kill();
  }
});
