// Tests of bench/serve_bench.mjs: the metric math against numpy's and vllm's definitions, the SSE
// parser on awkward framings, and whole runs against an in-process fake server (node:http) that
// streams chunks with known delays. Run: node --test bench/serve_bench_test.mjs
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import {
  SseParser, arrivalOffsets, calculateMetrics, formatReport, makeRng, mean, parseCli, percentile,
  runBenchmark, std,
} from './serve_bench.mjs';

const close = (a, b, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} vs ${b}`);

describe('statistics', () => {
  test('percentile, mean and std follow numpy (linear interpolation, ddof 0)', () => {
    // np.percentile([1,2,3,4], [50, 99]) = [2.5, 3.97]; np.std([1,2,3,4]) = 1.118033988749895
    close(percentile([4, 1, 3, 2], 50), 2.5);
    close(percentile([1, 2, 3, 4], 99), 3.97);
    close(percentile([7], 99), 7);
    close(std([1, 2, 3, 4]), 1.118033988749895);
    close(mean([1, 2, 3, 4]), 2.5);
    assert.equal(percentile([], 99), 0);  // vllm: np.percentile(xs or 0, p)
    assert.equal(mean([]), 0);
  });

  test('calculateMetrics: TTFT, TPOT, ITL, E2EL, throughput, peak rate and concurrency', () => {
    const outputs = [
      // t=0: first chunk at 0.5 s, then 3 gaps of 0.2 s -> E2EL 1.1 s, 4 tokens, TPOT 0.2 s
      { success: true, startTime: 100.0, ttft: 0.5, itl: [0.2, 0.2, 0.2], latency: 1.1, outputTokens: 4, promptLen: 10 },
      // t=0.6: one token only -> no TPOT
      { success: true, startTime: 100.6, ttft: 0.3, itl: [], latency: 0.3, outputTokens: 1, promptLen: 20 },
      // ends exactly when the third starts: half-open intervals, so not concurrent with it
      { success: true, startTime: 101.0, ttft: 0.1, itl: [0.1], latency: 0.2, outputTokens: 2, promptLen: 30 },
      { success: false, error: 'HTTP 500: boom', startTime: 100.0, ttft: 0, itl: [], latency: 0, outputTokens: 0, promptLen: 40 },
    ];
    const m = calculateMetrics(outputs, 2.0, { percentiles: [50, 99], goodput: { ttft: 400 } });
    assert.equal(m.completed, 3);
    assert.equal(m.failed, 1);
    assert.equal(m.total_input_tokens, 60);
    assert.equal(m.total_output_tokens, 7);
    close(m.request_throughput, 1.5);
    close(m.output_throughput, 3.5);
    close(m.total_token_throughput, 33.5);
    close(m.request_goodput, 1.0);  // ttft 0.3 and 0.1 meet 400 ms
    close(m.ttft.mean, 300);
    close(m.tpot.mean, (200 + 100) / 2, 1e-6);  // (1.1-0.5)/3 and (0.2-0.1)/1
    close(m.itl.mean, (200 * 3 + 100) / 4, 1e-6);
    close(m.e2el.median, 300);
    close(m.e2el.percentiles[1][1], 300 + (1100 - 300) * 0.98, 1e-6);
    // Chunk times from t0 = 100.0: 0.5 0.7 0.9 1.1 | 0.9 | 1.1 1.2 -> bucket 0: 3, bucket 1: 4
    assert.equal(m.max_output_tokens_per_s, 4);
    // [100, 101.1) and [100.6, 100.9) overlap; [101, 101.2) overlaps the first.
    assert.equal(m.max_concurrent_requests, 2);
  });

  test('arrival offsets: inf sends all at once; Poisson is seeded and ends at n/rate', () => {
    assert.deepEqual(arrivalOffsets(3, Infinity, 1, 0), [0, 0, 0]);
    const a = arrivalOffsets(50, 10, 1, 7);
    assert.deepEqual(a, arrivalOffsets(50, 10, 1, 7));
    assert.notDeepEqual(a, arrivalOffsets(50, 10, 1, 8));
    close(a[49], 5.0, 1e-9);
    for (let i = 1; i < a.length; i++) assert.ok(a[i] > a[i - 1]);
    const g = arrivalOffsets(50, 10, 0.5, 7);  // gamma gaps
    close(g[49], 5.0, 1e-9);
    assert.throws(() => arrivalOffsets(3, 0, 1, 0), /request-rate/);
  });

  test('the PRNG is deterministic and in [0, 1)', () => {
    const r1 = makeRng(42), r2 = makeRng(42);
    for (let i = 0; i < 1000; i++) {
      const x = r1();
      assert.equal(x, r2());
      assert.ok(x >= 0 && x < 1);
    }
  });
});

describe('SSE parser', () => {
  test('events split across pieces, CRLF and CR endings, comments, multi-line data', () => {
    const p = new SseParser();
    const got = [];
    const feed = (s) => got.push(...p.push(s));
    feed(': ping\r\n\r\nda');
    feed('ta: {"a":1}\r');
    feed('\n\r\ndata:{"b":2}\n\ndata: x\ndata: y\n\n');
    feed('event: error\ndata: {"e":1}\r\r');
    feed('error: {"message":"lcpp"}\n\n');
    feed('data: [DONE]');  // no blank line before the connection closes
    got.push(...p.end());
    assert.deepEqual(got, [
      { event: 'message', data: '{"a":1}' },
      { event: 'message', data: '{"b":2}' },
      { event: 'message', data: 'x\ny' },
      { event: 'error', data: '{"e":1}' },
      { event: 'error', data: '{"message":"lcpp"}' },
      { event: 'message', data: '[DONE]' },
    ]);
  });
});

describe('command line', () => {
  test('parses the vllm-like flags and rejects bad values', () => {
    const c = parseCli(['--base-url', 'http://h:1', '--input-len', '128', '--request-rate', 'inf',
      '--max-concurrency', '8', '--goodput', 'ttft:500,e2el:9000', '--percentiles', '50,99']);
    assert.equal(c.inputLen, 128);
    assert.equal(c.requestRate, Infinity);
    assert.equal(c.maxConcurrency, 8);
    assert.deepEqual(c.goodput, { ttft: 500, e2el: 9000 });
    assert.deepEqual(c.percentiles, [50, 99]);
    assert.throws(() => parseCli(['--input-len', '0']), /--input-len: expected an integer >= 1, got '0'/);
    assert.throws(() => parseCli(['--endpoint', 'embeddings']), /--endpoint/);
    assert.throws(() => parseCli(['--goodput', 'ttfx:5']), /--goodput/);
  });
});

// ---------------------------------------------------------------- fake server

const TTFT_MS = 120;
const ITL_MS = 40;
const USAGE_DELAY_MS = 150;  // the usage-only chunk comes late: E2EL must not include it

// A toy tokenizer with vLLM's /tokenize shapes: a word of more than 6 letters is two tokens
// (its first three letters, then the rest), so cutting at n tokens can split a word.
function pieces(text) {
  const out = [];
  text.split(' ').filter(Boolean).forEach((w, k) => {
    const sp = k > 0 ? ' ' : '';
    if (w.length > 6) out.push(sp + w.slice(0, 3), w.slice(3));
    else out.push(sp + w);
  });
  return out;
}

function startFakeServer({ tokenize = true } = {}) {
  const vocab = new Map(), byId = [];
  const id = (p) => {
    if (!vocab.has(p)) {
      vocab.set(p, byId.length);
      byId.push(p);
    }
    return vocab.get(p);
  };
  const state = { bodies: [], inFlight: 0, maxInFlight: 0 };
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (b) => (raw += b));
    if (req.socket.doomed) return req.socket.destroy();
    req.on('end', () => {
      const body = raw ? JSON.parse(raw) : null;
      const json = (status, obj) => {
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(obj));
      };
      if (req.method === 'GET' && req.url === '/v1/models') return json(200, { object: 'list', data: [{ id: 'fake-model' }] });
      if (req.url === '/tokenize' && tokenize) {
        const tokens = pieces(body.prompt).map(id);
        return json(200, { tokens, count: tokens.length, max_model_len: 4096 });
      }
      if (req.url === '/detokenize' && tokenize) return json(200, { prompt: body.tokens.map((t) => byId[t]).join('') });
      if (req.url !== '/v1/chat/completions') return json(404, { error: { message: `no route ${req.url}` } });
      state.bodies.push(body);
      if (body.model === 'http-500') return json(500, { error: { message: 'boom', type: 'server_error' } });
      stream(body, res, state);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ server, state, url: `http://127.0.0.1:${server.address().port}` });
  }));
}

const wait = (ms) => new Promise((r) => setTimeout(r, ms));

async function stream(body, res, state) {
  state.inFlight++;
  state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  const n = body.max_completion_tokens;
  const chunk = (delta) => ({ id: 'x', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: null }], usage: null });
  await wait(TTFT_MS);
  res.write(': keep-alive\r\n\r\n');
  // The first event reaches the client in two writes; it only counts when complete.
  const first = `data: ${JSON.stringify(chunk({ role: 'assistant', content: 'w0' }))}\r\n\r\n`;
  res.write(first.slice(0, 20));
  res.write(first.slice(20));
  for (let i = 1; i < n; i++) {
    await wait(ITL_MS);
    if (body.model === 'stream-error' && i === 2) {
      res.end(`data: ${JSON.stringify({ error: { message: 'mid-stream failure', code: 500 } })}\n\n`);
      state.inFlight--;
      return;
    }
    if (body.model === 'lcpp-error' && i === 2) {
      res.end(`error: ${JSON.stringify({ code: 500, message: 'lcpp failure', type: 'server_error' })}\n\n`);
      state.inFlight--;
      return;
    }
    res.write(`data: ${JSON.stringify(chunk({ content: ` w${i}` }))}\n\n`);
  }
  await wait(USAGE_DELAY_MS);
  if (body.model !== 'no-usage') {
    res.write(`data: ${JSON.stringify({ id: 'x', choices: [], usage: { prompt_tokens: 99, completion_tokens: n, total_tokens: 99 + n } })}\n\n`);
  }
  res.end('data: [DONE]\n\n');
  state.inFlight--;
  // llama-server (cpp-httplib) stops reading a connection after a stream and closes it without
  // saying `Connection: close`: a request sent on it at once is reset unanswered.
  if (body.model === 'close-after-stream') {
    const socket = res.socket;
    socket.doomed = true;
    setTimeout(() => socket.destroy(), 50);
  }
}

describe('against a fake streaming server', () => {
  let fake;
  before(async () => {
    fake = await startFakeServer();
  });
  after(() => fake.server.close());

  const base = () => ({
    baseUrl: fake.url, inputLen: 40, outputLen: 5, numPrompts: 4, maxConcurrency: 2,
    skipTestRequest: true, seed: 3,
  });

  test('timings follow the chunk schedule; prompts are exactly input-len server tokens', async () => {
    fake.state.bodies.length = 0;
    const r = await runBenchmark({ ...base(), percentiles: [99] });
    assert.equal(r.model_id, 'fake-model');
    assert.equal(r.tokenizer, 'vllm');
    assert.equal(r.completed, 4);
    assert.equal(r.failed, 0);
    assert.deepEqual(r.input_lens, [40, 40, 40, 40]);
    assert.deepEqual(r.output_lens, [5, 5, 5, 5]);  // from usage.completion_tokens
    assert.equal(r.total_input_tokens, 160);
    assert.equal(r.total_output_tokens, 20);
    for (const b of fake.state.bodies) {
      assert.equal(pieces(b.messages[0].content).length, 40);
      assert.equal(b.max_completion_tokens, 5);
      assert.equal(b.stream, true);
      assert.deepEqual(b.stream_options, { include_usage: true });
      assert.equal(b.ignore_eos, true);
      assert.equal(b.temperature, 0);
    }
    // Same seed, same prompts; different requests, different prompts.
    const contents = fake.state.bodies.map((b) => b.messages[0].content);
    assert.equal(new Set(contents).size, 4);

    for (let i = 0; i < 4; i++) {
      const ttft = r.ttfts[i], itl = r.itls[i], e2el = r.latencies[i];
      assert.equal(itl.length, 4);
      // E2EL ends at the last token chunk, not at the usage chunk USAGE_DELAY_MS later.
      close(e2el, ttft + itl.reduce((a, b) => a + b, 0), 1e-9);
      // A chunk can't arrive before the server sends it; it can arrive late (a busy machine), so
      // a single gap may be short after a late one: bound gaps from above only.
      assert.ok(ttft * 1000 >= TTFT_MS && ttft * 1000 < TTFT_MS + 250, `ttft ${ttft}`);
      assert.ok(e2el * 1000 >= TTFT_MS + 4 * ITL_MS && e2el * 1000 < TTFT_MS + 4 * ITL_MS + 400, `e2el ${e2el}`);
      for (const g of itl) assert.ok(g * 1000 < ITL_MS + 250, `itl ${g}`);
    }
    const tpots = r.latencies.map((l, i) => (l - r.ttfts[i]) / 4 * 1000);
    close(r.mean_tpot_ms, tpots.reduce((a, b) => a + b) / 4, 1e-6);
    assert.ok(r.median_itl_ms >= ITL_MS / 2 && r.median_itl_ms < ITL_MS + 100, `median itl ${r.median_itl_ms}`);
    assert.ok(r.max_concurrent_requests <= 2);
    assert.equal(fake.state.maxInFlight, 2);
    assert.ok(r.p99_ttft_ms >= r.median_ttft_ms);

    const text = formatReport(r, [99]);
    assert.match(text, /^=+ Serving Benchmark Result =+$/m);
    assert.match(text, /^Successful requests: +4$/m);
    assert.match(text, /^P99 TTFT \(ms\): +\d+\.\d\d$/m);
    assert.match(text, /^-+Time per Output Token \(excl\. 1st token\)-+$/m);
  });

  test('without usage, output tokens are the content chunks', async () => {
    const r = await runBenchmark({ ...base(), model: 'no-usage', numPrompts: 2 });
    assert.deepEqual(r.output_lens, [5, 5]);
    assert.equal(r.failed, 0);
  });

  test('failures are counted with their messages: non-2xx, data error, llama.cpp error line', async () => {
    for (const [model, msg] of [['http-500', /^HTTP 500: boom$/], ['stream-error', /mid-stream failure/], ['lcpp-error', /lcpp failure/]]) {
      const r = await runBenchmark({ ...base(), model, numPrompts: 2 });
      assert.equal(r.completed, 0, model);
      assert.equal(r.failed, 2, model);
      for (const e of r.errors) assert.match(e, msg);
      assert.match(formatReport(r), /^Error 0: /m);
    }
  });

  test('a socket the server closed after a stream is not reused into a failure', async () => {
    const r = await runBenchmark({ ...base(), model: 'close-after-stream', numPrompts: 6, maxConcurrency: 1, outputLen: 2, skipTestRequest: false });
    assert.deepEqual(r.errors, ['', '', '', '', '', '']);
    assert.equal(r.completed, 6);
  });

  test('the initial test request fails the run early with its error', async () => {
    await assert.rejects(runBenchmark({ ...base(), model: 'http-500', skipTestRequest: false }), /initial test request failed: HTTP 500: boom/);
  });

  test('a request rate spaces the sends', async () => {
    const r = await runBenchmark({ ...base(), numPrompts: 3, maxConcurrency: 0, requestRate: 20 });
    assert.equal(r.completed, 3);
    assert.ok(r.start_times[2] >= 0.15 - 0.01, `last send at ${r.start_times[2]}`);  // 3/20 s
  });
});

describe('without /tokenize', () => {
  let fake;
  before(async () => {
    fake = await startFakeServer({ tokenize: false });
  });
  after(() => fake.server.close());

  test('prompts are input-len words and the counts are flagged approximate', async () => {
    const r = await runBenchmark({ baseUrl: fake.url, inputLen: 16, outputLen: 3, numPrompts: 2, skipTestRequest: true });
    assert.equal(r.tokenizer, null);
    assert.deepEqual(r.input_lens, [16, 16]);
    for (const b of fake.state.bodies) assert.equal(b.messages[0].content.split(' ').length, 16);
    assert.match(formatReport(r), /Total input tokens \(approx\.\):/);
  });
});
