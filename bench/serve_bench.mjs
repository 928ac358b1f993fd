#!/usr/bin/env node
// Load benchmark for any OpenAI-compatible server (dsv3, llama.cpp's llama-server, vLLM, SGLang).
// Reports the figures of `vllm bench serve` with its definitions (vllm/benchmarks/serve.py
// `calculate_metrics`, vllm/benchmarks/lib/endpoint_request_func.py; our ../shared/SERVER.md §4):
//   TTFT  send -> first SSE chunk whose `choices` is non-empty (a role-only delta counts)
//   ITL   gaps between consecutive choice-bearing chunks
//   E2EL  send -> last choice-bearing chunk (the usage-only chunk is not a token)
//   TPOT  (E2EL - TTFT) / (output_tokens - 1), only for requests with output_tokens > 1
// output_tokens comes from `usage.completion_tokens`, else from the count of chunks with text.
// Node 20, built-ins only. Run `node bench/serve_bench.mjs --help`; tests: bench/serve_bench_test.mjs.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

// ---------------------------------------------------------------- seeded randomness

// splitmix32: a 32-bit state advanced by the golden-ratio constant, then mixed by the murmur3
// finalizer. Small, fast, and the same sequence on every machine for a given seed.
export function makeRng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 4294967296;  // [0, 1)
  };
}

// Prompt i depends on (seed, i) only, so prompt 3 is the same text whatever --num-prompts is.
function promptRng(seed, index) {
  const mix = makeRng((seed ^ Math.imul(index + 1, 0x2545f491)) >>> 0);
  mix();
  return makeRng(Math.floor(mix() * 4294967296));
}

// Gamma(shape, scale) by Marsaglia & Tsang (2000), "A simple method for generating gamma variables";
// shape < 1 through Gamma(shape + 1) * U^(1/shape) (same paper, §7).
function sampleGamma(rng, shape, scale) {
  if (shape < 1) return sampleGamma(rng, shape + 1, scale) * Math.pow(1 - rng(), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x, v;
    do {
      // Box-Muller normal
      x = Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - rng();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v * scale;
  }
}

// Send offsets in seconds from the start of the run, one per request. rate = Infinity sends all at
// once. Otherwise gaps are Gamma(burstiness, 1/(rate*burstiness)) — exponential (Poisson arrivals)
// for burstiness 1 — and, as vllm serve.py `get_request` does, rescaled so the last request goes out
// at n/rate: the raw sum drifts 1-2% with the seed, which would move the throughput between seeds.
export function arrivalOffsets(n, rate, burstiness, seed) {
  if (!(rate > 0)) throw new Error(`--request-rate must be > 0 or inf, got ${rate}`);
  if (!(burstiness > 0)) throw new Error(`--burstiness must be > 0, got ${burstiness}`);
  if (rate === Infinity || n === 0) return new Array(n).fill(0);
  const rng = makeRng(seed ^ 0x5bd1e995);
  const offsets = [];
  let t = 0;
  for (let i = 0; i < n; i++) {
    t += burstiness === 1 ? -Math.log(1 - rng()) / rate : sampleGamma(rng, burstiness, 1 / (rate * burstiness));
    offsets.push(t);
  }
  const scale = n / rate / offsets[n - 1];
  return offsets.map((x) => x * scale);
}

// ---------------------------------------------------------------- statistics (numpy semantics)

export function mean(xs) {
  if (xs.length === 0) return 0;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

// Population standard deviation, as np.std (ddof = 0).
export function std(xs) {
  if (xs.length === 0) return 0;
  const m = mean(xs);
  let s = 0;
  for (const x of xs) s += (x - m) * (x - m);
  return Math.sqrt(s / xs.length);
}

// np.percentile's default 'linear' method: rank p/100*(n-1), interpolated between neighbours.
export function percentile(xs, p) {
  if (xs.length === 0) return 0;
  const v = [...xs].sort((a, b) => a - b);
  const r = (p / 100) * (v.length - 1);
  const lo = Math.floor(r);
  const hi = Math.min(lo + 1, v.length - 1);
  return v[lo] + (v[hi] - v[lo]) * (r - lo);
}

function summarize(xs, percentiles) {
  const ms = xs.map((x) => x * 1000);
  return {
    mean: mean(ms),
    median: percentile(ms, 50),
    std: std(ms),
    percentiles: percentiles.map((p) => [p, percentile(ms, p)]),
  };
}

// outputs: one record per request (see runRequest); times in seconds. Mirrors vllm serve.py
// `calculate_metrics`, including its 1-s buckets for the peak output rate (it counts token-bearing
// chunks, i.e. assumes one token per chunk) and the sweep line for peak concurrency.
export function calculateMetrics(outputs, durationS, { percentiles = [99], goodput = null } = {}) {
  const ok = outputs.filter((o) => o.success);
  const failed = outputs.filter((o) => !o.success);
  const ttfts = [], tpots = [], allTpots = [], itls = [], e2els = [];
  let totalInput = 0, totalOutput = 0;
  for (const o of ok) {
    totalInput += o.promptLen;
    totalOutput += o.outputTokens;
    let tpot = 0;
    if (o.outputTokens > 1) {
      tpot = (o.latency - o.ttft) / (o.outputTokens - 1);
      tpots.push(tpot);
    }
    allTpots.push(tpot);  // goodput treats a 1-token answer as TPOT 0 (vllm)
    ttfts.push(o.ttft);
    e2els.push(o.latency);
    for (const g of o.itl) itls.push(g);
  }

  let good = 0;
  if (goodput) {
    ok.forEach((o, i) => {
      const meets = (goodput.ttft === undefined || o.ttft * 1000 <= goodput.ttft) &&
        (goodput.tpot === undefined || allTpots[i] * 1000 <= goodput.tpot) &&
        (goodput.e2el === undefined || o.latency * 1000 <= goodput.e2el);
      if (meets) good++;
    });
  }

  let peakTokensPerS = 0, peakConcurrency = 0;
  if (ok.length > 0) {
    const t0 = ok.reduce((m, o) => Math.min(m, o.startTime), Infinity);
    const tEnd = ok.reduce((m, o) => Math.max(m, o.startTime + o.latency), -Infinity);
    const buckets = new Array(Math.ceil(tEnd - t0) + 1).fill(0);
    for (const o of ok) {
      let t = o.startTime + o.ttft;
      const times = [t];
      for (const g of o.itl) times.push((t += g));
      for (const tt of times) {
        const b = Math.floor(tt - t0);
        if (b >= 0 && b < buckets.length) buckets[b]++;
      }
    }
    peakTokensPerS = buckets.reduce((a, b) => Math.max(a, b), 0);
    // Half-open [start, end): at equal times a departure is counted before an arrival.
    const events = [];
    for (const o of ok) events.push([o.startTime, 1], [o.startTime + o.latency, -1]);
    events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let cur = 0;
    for (const [, d] of events) peakConcurrency = Math.max(peakConcurrency, (cur += d));
  }

  return {
    completed: ok.length,
    failed: failed.length,
    total_input_tokens: totalInput,
    total_output_tokens: totalOutput,
    request_throughput: ok.length / durationS,
    request_goodput: goodput ? good / durationS : null,
    output_throughput: totalOutput / durationS,
    total_token_throughput: (totalInput + totalOutput) / durationS,
    max_output_tokens_per_s: peakTokensPerS,
    max_concurrent_requests: peakConcurrency,
    ttft: summarize(ttfts, percentiles),
    tpot: summarize(tpots, percentiles),
    itl: summarize(itls, percentiles),
    e2el: summarize(e2els, percentiles),
  };
}

// ---------------------------------------------------------------- SSE

// Server-sent events per the WHATWG HTML spec §9.2.6: lines end in CRLF, LF or CR; ':' starts a
// comment (llama.cpp's keep-alive pings); an event's data lines are joined by '\n' and the event is
// dispatched at a blank line. llama.cpp reports a failure mid-stream as a line `error: {json}`,
// which the spec would drop as an unknown field: we keep it as an event of type 'error'.
export class SseParser {
  constructor() {
    this.buffer = '';
    this.data = [];
    this.event = '';
  }

  // Feeds decoded text; returns the events completed by it, each {event, data}.
  push(text) {
    this.buffer += text;
    const events = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const ch = this.buffer[i];
      if (ch !== '\n' && ch !== '\r') continue;
      // A CR at the very end may be the first half of a CRLF: wait for the next piece.
      if (ch === '\r' && i === this.buffer.length - 1) break;
      this.#line(this.buffer.slice(start, i), events);
      if (ch === '\r' && this.buffer[i + 1] === '\n') i++;
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  // End of stream: a last event without its blank line is still delivered (lenient).
  end() {
    const events = [];
    if (this.buffer.length > 0) this.#line(this.buffer.replace(/\r$/, ''), events);
    this.buffer = '';
    this.#line('', events);
    return events;
  }

  #line(line, events) {
    if (line === '') {
      if (this.data.length > 0) events.push({ event: this.event || 'message', data: this.data.join('\n') });
      this.data = [];
      this.event = '';
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'error') {
      this.event = 'error';
      this.data.push(value);
    }
  }
}

// ---------------------------------------------------------------- HTTP

// node:http rather than global fetch: fetch (undici) gives up after 300 s without response headers
// or between body chunks, and a CPU server with a deep queue can be silent that long; its limits
// can't be changed without importing undici itself.
const agents = { 'http:': new http.Agent({ keepAlive: true }), 'https:': new https.Agent({ keepAlive: true }) };

// Connections are kept alive, as vllm's aiohttp session does (no handshake inside TTFT). A request
// reset on a reused connection, before any answer, is sent again once on a new one: llama-server
// closes a connection after each stream without `Connection: close`, and a request that follows
// at once goes out on it before its close is seen (Node's docs, `request.reusedSocket`).
function send(url, { method = 'GET', headers = {}, body = null } = {}) {
  const u = new URL(url);
  const lib = u.protocol === 'https:' ? https : http;
  const payload = body === null ? null : Buffer.from(JSON.stringify(body));
  const h = { ...headers };
  if (payload) {
    h['Content-Type'] = 'application/json';
    h['Content-Length'] = payload.length;
  }
  const attempt = (retry) => new Promise((resolve, reject) => {
    let answered = false;
    const req = lib.request(u, { method, headers: h, agent: agents[u.protocol] }, (res) => {
      answered = true;
      resolve(res);
    });
    req.on('error', (e) => {
      if (!answered && retry && req.reusedSocket && (e.code === 'ECONNRESET' || e.code === 'EPIPE')) resolve(attempt(false));
      else reject(e);
    });
    req.end(payload);
  });
  return attempt(true);
}

function readAll(res) {
  return new Promise((resolve, reject) => {
    const parts = [];
    res.on('data', (b) => parts.push(b));
    res.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    res.on('error', reject);
  });
}

async function getJson(url, opts) {
  const res = await send(url, opts);
  const text = await readAll(res);
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: reported below through the status or the caller's shape check
  }
  return { status: res.statusCode, json, text };
}

function errorMessage(status, text, json) {
  const e = json && json.error;
  const msg = typeof e === 'string' ? e : e && e.message ? e.message : json && json.message ? json.message : text;
  return `HTTP ${status}: ${String(msg).trim().slice(0, 500)}`;
}

function authHeaders(apiKey) {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

export async function firstModel(baseUrl, apiKey) {
  const r = await getJson(`${baseUrl}/v1/models`, { headers: authHeaders(apiKey) });
  if (r.status !== 200) throw new Error(`GET ${baseUrl}/v1/models: ${errorMessage(r.status, r.text, r.json)}`);
  const id = r.json && Array.isArray(r.json.data) && r.json.data[0] && r.json.data[0].id;
  if (!id) throw new Error(`GET ${baseUrl}/v1/models: no model in the answer (${r.text.slice(0, 200)}); pass --model`);
  return id;
}

// ---------------------------------------------------------------- one streamed request

function requestBody(cfg, prompt, model) {
  const common = {
    model,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  };
  if (cfg.ignoreEos) common.ignore_eos = true;
  if (cfg.endpoint === 'completions') {
    return { ...common, prompt, max_tokens: cfg.outputLen, repetition_penalty: 1.0 };
  }
  // max_tokens too: OpenAI and vLLM take both, and llama-server builds before mid-2025 read only
  // max_tokens (n_predict), so without it they generate until the context is full.
  return {
    ...common,
    messages: [{ role: 'user', content: prompt }],
    max_completion_tokens: cfg.outputLen,
    max_tokens: cfg.outputLen,
  };
}

function chunkText(choice) {
  if (!choice) return '';
  if (typeof choice.text === 'string') return choice.text;
  const d = choice.delta || {};
  return (d.content || '') + (d.reasoning_content || '');
}

// One request, streamed. Resolves (never rejects) to a record with times in seconds:
// {success, error, startTime, ttft, itl[], latency, outputTokens, promptLen, serverPromptTokens, text}.
export function runRequest(cfg, prompt, promptLen, model) {
  const out = {
    success: false, error: '', startTime: 0, ttft: 0, itl: [], latency: 0,
    outputTokens: 0, promptLen, serverPromptTokens: null, text: '',
  };
  const path = cfg.endpoint === 'completions' ? '/v1/completions' : '/v1/chat/completions';
  return new Promise((resolve) => {
    let settled = false;
    const finish = (error) => {
      if (settled) return;
      settled = true;
      if (error) {
        out.success = false;
        out.error = error;
      }
      resolve(out);
    };
    const st = performance.now();
    out.startTime = st / 1000;
    send(`${cfg.baseUrl}${path}`, {
      method: 'POST',
      headers: { ...authHeaders(cfg.apiKey), Accept: 'text/event-stream' },
      body: requestBody(cfg, prompt, model),
    }).then((res) => {
      if (res.statusCode < 200 || res.statusCode >= 300) {
        readAll(res).then((text) => {
          let json = null;
          try { json = JSON.parse(text); } catch { /* keep the text */ }
          finish(errorMessage(res.statusCode, text, json));
        }, (e) => finish(`HTTP ${res.statusCode}: ${e.message}`));
        return;
      }
      const isStream = String(res.headers['content-type'] || '').includes('text/event-stream');
      const parser = new SseParser();
      const decoder = new TextDecoder('utf-8');
      let lastChoiceT = 0, nChoiceChunks = 0, nTextChunks = 0, usageTokens = null, plain = '';
      const handle = (ev, t) => {
        if (settled) return;
        if (ev.data === '[DONE]') return;
        let obj;
        try {
          obj = JSON.parse(ev.data);
        } catch {
          return finish(`bad SSE data: ${ev.data.slice(0, 200)}`);
        }
        if (ev.event === 'error' || (obj && obj.error)) {
          const e = obj && obj.error !== undefined ? obj.error : obj;
          return finish(`stream error: ${typeof e === 'string' ? e : e && e.message ? e.message : JSON.stringify(e)}`);
        }
        if (Array.isArray(obj.choices) && obj.choices.length > 0) {
          if (nChoiceChunks === 0) out.ttft = (t - st) / 1000;
          else out.itl.push((t - lastChoiceT) / 1000);
          lastChoiceT = t;
          nChoiceChunks++;
          const text = chunkText(obj.choices[0]);
          if (text) nTextChunks++;
          out.text += text;
        }
        if (obj.usage && typeof obj.usage.completion_tokens === 'number') {
          usageTokens = obj.usage.completion_tokens;
          if (typeof obj.usage.prompt_tokens === 'number') out.serverPromptTokens = obj.usage.prompt_tokens;
        }
      };
      res.on('data', (buf) => {
        const t = performance.now();
        if (!isStream) {
          plain += decoder.decode(buf, { stream: true });
          return;
        }
        for (const ev of parser.push(decoder.decode(buf, { stream: true }))) handle(ev, t);
      });
      res.on('error', (e) => finish(`connection: ${e.message}`));
      res.on('end', () => {
        const t = performance.now();
        if (!isStream) {
          // A server that ignored stream:true: the whole answer is one "chunk".
          plain += decoder.decode();
          handle({ event: 'message', data: plain }, t);
        } else {
          for (const ev of parser.push(decoder.decode())) handle(ev, t);
          for (const ev of parser.end()) handle(ev, t);
        }
        if (settled) return;
        if (nChoiceChunks === 0) return finish('stream ended without a chunk with choices');
        out.latency = (lastChoiceT - st) / 1000;
        out.outputTokens = usageTokens !== null ? usageTokens : nTextChunks;
        out.success = true;
        finish(null);
      });
    }, (e) => finish(`connection: ${e.message}`));
  });
}

// ---------------------------------------------------------------- prompts

// Common English words, most of them one token for BPE vocabularies of GPT-2 descent (DeepSeek's,
// Llama's) when preceded by a space, so a prompt of n words is close to n tokens even without
// /tokenize.
const WORDS = (
  'the of and to in is was for on that with as by at from his her they this which are be had it ' +
  'not or have an were their one all but been has more would there when who will also into can time ' +
  'new first other some only two over after most such these years many may then where about between ' +
  'under made city while during being world part people state before because through both three well ' +
  'early later since each life group school water number work known long house name music war great ' +
  'family year small large country company local high power system north south west east river line ' +
  'road light place found area game team party form story book film field market field point public ' +
  'second order side young government small general change level often never still again against ' +
  'around another several among same land during until without within along based best began built ' +
  'court death held left low main near next night open played range rather real record report result ' +
  'season short show sound stone study take tell thing though thought today town true turn upon used ' +
  'value voice wall week white whole wide wind window winter woman wood word yellow'
).split(' ').filter((w, i, all) => all.indexOf(w) === i);

function randomWords(rng, n) {
  const w = [];
  for (let i = 0; i < n; i++) w.push(WORDS[Math.floor(rng() * WORDS.length)]);
  return w;
}

// The server's own tokenizer through POST /tokenize and /detokenize, in vLLM's shapes
// ({"model","prompt"} -> {"tokens"}; {"model","tokens"} -> {"prompt"}) or, failing that,
// llama.cpp's ({"content"} -> {"tokens"}; {"tokens"} -> {"content"}). Null when neither answers.
export async function probeTokenizer(baseUrl, apiKey, model) {
  const headers = authHeaders(apiKey);
  const probe = 'hello world';
  const shapes = [
    { name: 'vllm', body: (text) => ({ model, prompt: text, add_special_tokens: false }) },
    { name: 'llama.cpp', body: (text) => ({ content: text, add_special: false }) },
  ];
  for (const shape of shapes) {
    let r;
    try {
      r = await getJson(`${baseUrl}/tokenize`, { method: 'POST', headers, body: shape.body(probe) });
    } catch {
      return null;
    }
    const tokens = r.json && r.json.tokens;
    if (r.status === 200 && Array.isArray(tokens) && tokens.length > 0) {
      const tokenize = async (text) => {
        const a = await getJson(`${baseUrl}/tokenize`, { method: 'POST', headers, body: shape.body(text) });
        if (a.status !== 200 || !a.json || !Array.isArray(a.json.tokens)) {
          throw new Error(`POST /tokenize: ${errorMessage(a.status, a.text, a.json)}`);
        }
        return a.json.tokens.map((x) => (typeof x === 'object' ? x.id : x));
      };
      const detokenize = async (ids) => {
        const a = await getJson(`${baseUrl}/detokenize`, { method: 'POST', headers, body: { model, tokens: ids } });
        const text = a.json && (typeof a.json.prompt === 'string' ? a.json.prompt : a.json.content);
        if (a.status !== 200 || typeof text !== 'string') return null;
        return text;
      };
      return { name: shape.name, tokenize, detokenize };
    }
  }
  return null;
}

// Words until the server's count reaches n, then cut to n tokens by detokenizing the first n
// (vllm serve.py `_align_prompts_to_server_tokenizer` does the same) and checking the round trip;
// without /detokenize, the longest word prefix at or under n, topped up with single words.
// Returns {prompt, promptLen, exact}.
async function alignPrompt(tok, rng, n) {
  const words = randomWords(rng, n);
  let ids = await tok.tokenize(words.join(' '));
  for (let i = 0; ids.length < n && i < 20; i++) {
    words.push(...randomWords(rng, Math.ceil((n - ids.length) * 1.2) + 1));
    ids = await tok.tokenize(words.join(' '));
  }
  if (ids.length === n) return { prompt: words.join(' '), promptLen: n, exact: true };
  if (ids.length > n) {
    let take = n;
    for (let attempt = 0; attempt < 6; attempt++) {
      const text = await tok.detokenize(ids.slice(0, take));
      if (text === null) break;
      const got = (await tok.tokenize(text)).length;
      if (got === n) return { prompt: text, promptLen: n, exact: true };
      take += n - got;
      if (take <= 0 || take > ids.length) break;
    }
  }
  // Binary search on the number of words: count(prefix) <= n.
  let lo = 0, hi = words.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if ((await tok.tokenize(words.slice(0, mid).join(' '))).length <= n) lo = mid;
    else hi = mid - 1;
  }
  let text = words.slice(0, lo).join(' ');
  let count = (await tok.tokenize(text)).length;
  for (let i = 0; count < n && i < 4 * WORDS.length; i++) {
    const cand = `${text} ${WORDS[i % WORDS.length]}`;
    const c = (await tok.tokenize(cand)).length;
    if (c <= n) {
      text = cand;
      count = c;
    }
  }
  return { prompt: text, promptLen: count, exact: count === n };
}

async function mapLimited(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export async function buildPrompts(cfg, model, log = () => {}) {
  const tok = cfg.noTokenize ? null : await probeTokenizer(cfg.baseUrl, cfg.apiKey, model);
  const idx = Array.from({ length: cfg.numPrompts }, (_, i) => i);
  if (!tok) {
    log(`no /tokenize on the server: prompts are ${cfg.inputLen} words, about as many tokens (input counts are approximate)`);
    return {
      tokenizer: null,
      prompts: idx.map((i) => ({ prompt: randomWords(promptRng(cfg.seed, i), cfg.inputLen).join(' '), promptLen: cfg.inputLen, exact: false })),
    };
  }
  const prompts = await mapLimited(idx, 8, (i) => alignPrompt(tok, promptRng(cfg.seed, i), cfg.inputLen));
  const inexact = prompts.filter((p) => !p.exact).length;
  if (inexact > 0) log(`${inexact} prompt(s) could not be made exactly ${cfg.inputLen} tokens; their own counts are used`);
  return { tokenizer: tok.name, prompts };
}

// ---------------------------------------------------------------- the run

class Semaphore {
  constructor(n) {
    this.free = n;
    this.waiters = [];
  }
  async acquire() {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise((r) => this.waiters.push(r));
  }
  release() {
    const w = this.waiters.shift();
    if (w) w();
    else this.free++;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// cfg: see DEFAULTS. Returns the result object written by --json (vllm's keys where it has them).
export async function runBenchmark(cfg, log = () => {}) {
  cfg = { ...DEFAULTS, ...cfg };
  cfg.baseUrl = cfg.baseUrl.replace(/\/+$/, '');
  const model = cfg.model || (await firstModel(cfg.baseUrl, cfg.apiKey));
  log(`model: ${model}`);
  const { tokenizer, prompts } = await buildPrompts(cfg, model, log);
  log(`prompts: ${prompts.length} x ${cfg.inputLen} tokens (${tokenizer ? `server tokenizer, ${tokenizer} shape` : 'approximate'})`);

  if (!cfg.skipTestRequest) {
    log('initial test request...');
    const t = await runRequest(cfg, prompts[0].prompt, prompts[0].promptLen, model);
    if (!t.success) throw new Error(`initial test request failed: ${t.error}`);
  }
  const cap = cfg.maxConcurrency > 0 ? cfg.maxConcurrency : Infinity;
  if (cfg.warmup > 0) {
    log(`warming up with ${cfg.warmup} request(s)...`);
    const sem = new Semaphore(cap);
    await Promise.all(Array.from({ length: cfg.warmup }, async () => {
      await sem.acquire();
      try {
        await runRequest(cfg, prompts[0].prompt, prompts[0].promptLen, model);
      } finally {
        sem.release();
      }
    }));
  }

  const offsets = arrivalOffsets(prompts.length, cfg.requestRate, cfg.burstiness, cfg.seed);
  const sem = new Semaphore(cap);
  let done = 0;
  log(`running ${prompts.length} requests, rate ${cfg.requestRate}, max concurrency ${cap === Infinity ? 'none' : cap}`);
  const t0 = performance.now();
  const tasks = [];
  for (let i = 0; i < prompts.length; i++) {
    const wait = t0 + offsets[i] * 1000 - performance.now();
    if (wait > 0) await sleep(wait);
    const arrival = performance.now() / 1000;
    tasks.push((async () => {
      await sem.acquire();
      let o;
      try {
        o = await runRequest(cfg, prompts[i].prompt, prompts[i].promptLen, model);
      } finally {
        sem.release();
      }
      o.queueTime = o.startTime - arrival;
      if (cfg.progress) cfg.progress(++done, prompts.length);
      return o;
    })());
  }
  const outputs = await Promise.all(tasks);
  const durationS = (performance.now() - t0) / 1000;

  const m = calculateMetrics(outputs, durationS, { percentiles: cfg.percentiles, goodput: cfg.goodput });
  const result = {
    date: new Date().toISOString(),
    label: cfg.label || null,
    base_url: cfg.baseUrl,
    endpoint: cfg.endpoint,
    model_id: model,
    input_len: cfg.inputLen,
    output_len: cfg.outputLen,
    num_prompts: cfg.numPrompts,
    request_rate: cfg.requestRate === Infinity ? 'inf' : cfg.requestRate,
    burstiness: cfg.burstiness,
    max_concurrency: cfg.maxConcurrency > 0 ? cfg.maxConcurrency : null,
    seed: cfg.seed,
    ignore_eos: cfg.ignoreEos,
    tokenizer: tokenizer,
    goodput_slo_ms: cfg.goodput,
    duration: durationS,
    completed: m.completed,
    failed: m.failed,
    total_input_tokens: m.total_input_tokens,
    total_output_tokens: m.total_output_tokens,
    request_throughput: m.request_throughput,
    request_goodput: m.request_goodput,
    output_throughput: m.output_throughput,
    total_token_throughput: m.total_token_throughput,
    max_output_tokens_per_s: m.max_output_tokens_per_s,
    max_concurrent_requests: m.max_concurrent_requests,
  };
  for (const k of ['ttft', 'tpot', 'itl', 'e2el']) {
    result[`mean_${k}_ms`] = m[k].mean;
    result[`median_${k}_ms`] = m[k].median;
    result[`std_${k}_ms`] = m[k].std;
    for (const [p, v] of m[k].percentiles) result[`p${p}_${k}_ms`] = v;
  }
  Object.assign(result, {
    input_lens: outputs.map((o) => o.promptLen),
    output_lens: outputs.map((o) => (o.success ? o.outputTokens : 0)),
    server_prompt_tokens: outputs.map((o) => o.serverPromptTokens),
    ttfts: outputs.map((o) => o.ttft),
    itls: outputs.map((o) => o.itl),
    latencies: outputs.map((o) => o.latency),
    start_times: outputs.map((o) => o.startTime - t0 / 1000),
    queue_times: outputs.map((o) => o.queueTime),
    errors: outputs.map((o) => o.error),
  });
  return result;
}

// ---------------------------------------------------------------- report

// Python's '{:<40} {:<10.2f}' and '{s:{c}^{n}}' as vllm prints them (trailing blanks dropped).
const row = (label, value) => `${label.padEnd(40)} ${value}`;
const f2 = (x) => (x === null || x === undefined ? '-' : x.toFixed(2));
function centered(s, fill, n = 50) {
  const pad = Math.max(0, n - s.length);
  const left = Math.floor(pad / 2);
  return fill.repeat(left) + s + fill.repeat(pad - left);
}

export function formatReport(r, percentiles = [99]) {
  const lines = [];
  const errors = r.errors.filter((e) => e);
  if (errors.length > 0) {
    lines.push(`Failed requests (${errors.length}; first 10):`);
    errors.slice(0, 10).forEach((e, i) => lines.push(`Error ${i}: ${e}`));
  }
  lines.push(centered(' Serving Benchmark Result ', '='));
  if (r.label) lines.push(row('Label:', r.label));
  lines.push(row('Successful requests:', r.completed));
  lines.push(row('Failed requests:', r.failed));
  if (r.max_concurrency !== null) lines.push(row('Maximum request concurrency:', r.max_concurrency));
  if (r.request_rate !== 'inf') lines.push(row('Request rate configured (RPS):', f2(r.request_rate)));
  lines.push(row('Benchmark duration (s):', f2(r.duration)));
  lines.push(row(`Total input tokens${r.tokenizer ? '' : ' (approx.)'}:`, r.total_input_tokens));
  lines.push(row('Total generated tokens:', r.total_output_tokens));
  lines.push(row('Request throughput (req/s):', f2(r.request_throughput)));
  if (r.request_goodput !== null) lines.push(row('Request goodput (req/s):', f2(r.request_goodput)));
  lines.push(row('Output token throughput (tok/s):', f2(r.output_throughput)));
  lines.push(row('Peak output token throughput (tok/s):', f2(r.max_output_tokens_per_s)));
  lines.push(row('Peak concurrent requests:', f2(r.max_concurrent_requests)));
  lines.push(row('Total token throughput (tok/s):', f2(r.total_token_throughput)));
  const sections = [
    ['ttft', 'TTFT', 'Time to First Token'],
    ['tpot', 'TPOT', 'Time per Output Token (excl. 1st token)'],
    ['itl', 'ITL', 'Inter-token Latency'],
    ['e2el', 'E2EL', 'End-to-end Latency'],
  ];
  for (const [k, name, header] of sections) {
    lines.push(centered(header, '-'));
    lines.push(row(`Mean ${name} (ms):`, f2(r[`mean_${k}_ms`])));
    lines.push(row(`Median ${name} (ms):`, f2(r[`median_${k}_ms`])));
    lines.push(row(`Std ${name} (ms):`, f2(r[`std_${k}_ms`])));
    for (const p of percentiles) lines.push(row(`P${p} ${name} (ms):`, f2(r[`p${p}_${k}_ms`])));
  }
  lines.push('='.repeat(50));
  return lines.join('\n');
}

// ---------------------------------------------------------------- command line

export const DEFAULTS = {
  baseUrl: 'http://127.0.0.1:8000',
  endpoint: 'chat',
  model: null,
  inputLen: 1024,
  outputLen: 128,
  numPrompts: 100,
  maxConcurrency: 0,
  requestRate: Infinity,
  burstiness: 1,
  seed: 0,
  apiKey: process.env.OPENAI_API_KEY || null,
  warmup: 0,
  skipTestRequest: false,
  ignoreEos: true,
  noTokenize: false,
  percentiles: [99],
  goodput: null,
  label: null,
  json: null,
};

const HELP = `usage: node bench/serve_bench.mjs [options]
  --base-url URL          server root (default ${DEFAULTS.baseUrl})
  --endpoint chat|completions   /v1/chat/completions (default) or /v1/completions
  --model ID              default: the first id of GET /v1/models
  --input-len N           prompt tokens (default ${DEFAULTS.inputLen}; exact when the server has /tokenize)
  --output-len N          max_completion_tokens / max_tokens (default ${DEFAULTS.outputLen})
  --num-prompts N         requests in the measured run (default ${DEFAULTS.numPrompts})
  --max-concurrency N     cap on requests in flight (default: none)
  --request-rate R        requests/s with Poisson arrivals, or inf (default) to send all at once
  --burstiness B          gamma shape of the gaps (default 1 = Poisson)
  --seed N                seed of the prompts and arrivals (default 0)
  --api-key KEY           Bearer token (default $OPENAI_API_KEY)
  --warmup N              requests sent (and not measured) before the run (default 0)
  --skip-test-request     skip vllm's initial one-request check
  --disable-ignore-eos    do not send ignore_eos:true
  --no-tokenize           do not use the server's /tokenize (approximate prompt lengths)
  --percentiles LIST      comma-separated, e.g. 50,90,99 (default 99)
  --goodput SLOS          e.g. ttft:2000,tpot:100,e2el:20000 (ms): request goodput meeting all
  --label TEXT            tag the run (printed and in --json)
  --json FILE             write the full result (vllm's keys + per-request arrays)`;

function parseNumber(name, s, { integer = true, min = 0, allowInf = false } = {}) {
  if (allowInf && /^inf(inity)?$/i.test(s)) return Infinity;
  const x = Number(s);
  if (!Number.isFinite(x) || (integer && !Number.isInteger(x)) || x < min) {
    throw new Error(`--${name}: expected ${integer ? 'an integer' : 'a number'} >= ${min}${allowInf ? ' or inf' : ''}, got '${s}'`);
  }
  return x;
}

export function parseCli(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      'base-url': { type: 'string' }, endpoint: { type: 'string' }, model: { type: 'string' },
      'input-len': { type: 'string' }, 'output-len': { type: 'string' }, 'num-prompts': { type: 'string' },
      'max-concurrency': { type: 'string' }, 'request-rate': { type: 'string' }, burstiness: { type: 'string' },
      seed: { type: 'string' }, 'api-key': { type: 'string' }, warmup: { type: 'string' },
      'skip-test-request': { type: 'boolean' }, 'disable-ignore-eos': { type: 'boolean' },
      'no-tokenize': { type: 'boolean' }, percentiles: { type: 'string' }, goodput: { type: 'string' },
      label: { type: 'string' }, json: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return null;
  const cfg = { ...DEFAULTS };
  if (values['base-url']) cfg.baseUrl = values['base-url'];
  if (values.endpoint) {
    if (!['chat', 'completions'].includes(values.endpoint)) {
      throw new Error(`--endpoint: expected chat or completions, got '${values.endpoint}'`);
    }
    cfg.endpoint = values.endpoint;
  }
  if (values.model) cfg.model = values.model;
  if (values['input-len']) cfg.inputLen = parseNumber('input-len', values['input-len'], { min: 1 });
  if (values['output-len']) cfg.outputLen = parseNumber('output-len', values['output-len'], { min: 1 });
  if (values['num-prompts']) cfg.numPrompts = parseNumber('num-prompts', values['num-prompts'], { min: 1 });
  if (values['max-concurrency']) cfg.maxConcurrency = parseNumber('max-concurrency', values['max-concurrency'], { min: 1 });
  if (values['request-rate']) {
    cfg.requestRate = parseNumber('request-rate', values['request-rate'], { integer: false, min: Number.MIN_VALUE, allowInf: true });
  }
  if (values.burstiness) cfg.burstiness = parseNumber('burstiness', values.burstiness, { integer: false, min: Number.MIN_VALUE });
  if (values.seed) cfg.seed = parseNumber('seed', values.seed);
  if (values['api-key']) cfg.apiKey = values['api-key'];
  if (values.warmup) cfg.warmup = parseNumber('warmup', values.warmup);
  cfg.skipTestRequest = !!values['skip-test-request'];
  cfg.ignoreEos = !values['disable-ignore-eos'];
  cfg.noTokenize = !!values['no-tokenize'];
  if (values.percentiles) {
    cfg.percentiles = values.percentiles.split(',').map((s) => parseNumber('percentiles', s.trim(), { integer: false }));
    if (cfg.percentiles.some((p) => p > 100)) throw new Error(`--percentiles: each must be in [0, 100], got '${values.percentiles}'`);
  }
  if (values.goodput) {
    cfg.goodput = {};
    for (const pair of values.goodput.split(',')) {
      const [k, v] = pair.split(':');
      if (!['ttft', 'tpot', 'e2el'].includes(k) || v === undefined) {
        throw new Error(`--goodput: expected KEY:MS pairs with KEY ttft, tpot or e2el, got '${pair}'`);
      }
      cfg.goodput[k] = parseNumber('goodput', v, { integer: false });
    }
  }
  if (values.label) cfg.label = values.label;
  if (values.json) cfg.json = values.json;
  return cfg;
}

async function main() {
  let cfg;
  try {
    cfg = parseCli(process.argv.slice(2));
  } catch (e) {
    console.error(`serve_bench: ${e.message}\n${HELP}`);
    process.exit(2);
  }
  if (cfg === null) {
    console.log(HELP);
    return;
  }
  const log = (s) => console.error(`[serve_bench] ${s}`);
  if (process.stderr.isTTY) cfg.progress = (i, n) => process.stderr.write(`\r[serve_bench] ${i}/${n} done${i === n ? '\n' : ''}`);
  try {
    const result = await runBenchmark(cfg, log);
    console.log(formatReport(result, cfg.percentiles));
    if (cfg.json) {
      fs.writeFileSync(cfg.json, JSON.stringify(result, null, 1) + '\n');
      log(`wrote ${cfg.json}`);
    }
    process.exitCode = result.completed === 0 ? 1 : 0;
  } catch (e) {
    console.error(`serve_bench: ${e.message}`);
    process.exitCode = 1;
  } finally {
    agents['http:'].destroy();
    agents['https:'].destroy();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1])).href) main();
