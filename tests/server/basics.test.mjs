// SERVER.md §5 items 1-4 and §1, §3.5: models.list, chat non-stream vs stream vs include_usage,
// the stream() helper, n:3 over raw SSE, seeds, stop strings, /v1/completions, tokenize /
// detokenize / apply-template, /health and /metrics — against one server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, streamRaw, chatTexts, runBin, waitFor, MODEL, OpenAI } from './helpers.mjs';

const NAME = 'test-model';
const CTX = 1024;
let server;
let client;

before(async () => {
  server = await startServer({ args: ['--served-model-name', NAME, '--ctx-size', String(CTX)] });
  client = server.client();
});

after(async () => {
  if (server) await server.kill();
});

const MESSAGES = [{ role: 'user', content: 'Tell me a short story about a dragon who learns to paint.' }];
const BASE = { model: NAME, messages: MESSAGES, temperature: 0, seed: 1234, max_tokens: 24 };

async function collect(stream) {
  const chunks = [];
  for await (const ch of stream) chunks.push(ch);
  return chunks;
}

// Checks the chunks of one streamed chat completion; returns the text per choice.
function checkChatChunks(chunks, { n = 1, includeUsage = false } = {}) {
  assert.ok(chunks.length > 0, 'no chunks');
  const id = chunks[0].id;
  const finishes = new Map();
  const roleAt = new Map();
  const body = includeUsage ? chunks.slice(0, -1) : chunks;
  body.forEach((ch, k) => {
    assert.equal(ch.object, 'chat.completion.chunk');
    assert.equal(ch.id, id, 'every chunk has the same id');
    assert.equal(ch.model, NAME);
    assert.equal(typeof ch.created, 'number');
    assert.ok(Array.isArray(ch.choices) && ch.choices.length > 0, `chunk ${k} has no choices: ${JSON.stringify(ch)}`);
    if (includeUsage) assert.equal(ch.usage, null, `chunk ${k} must carry usage: null while include_usage is on`);
    for (const c of ch.choices) {
      assert.ok(Number.isInteger(c.index) && c.index >= 0 && c.index < n, `bad index ${c.index}`);
      assert.ok(!finishes.has(c.index), `choice ${c.index} got a chunk after its finish_reason`);
      if (c.delta.role !== undefined) {
        assert.equal(c.delta.role, 'assistant');
        assert.ok(!roleAt.has(c.index), `role sent twice for choice ${c.index}`);
        roleAt.set(c.index, k);
      }
      if (c.finish_reason !== null && c.finish_reason !== undefined) finishes.set(c.index, c.finish_reason);
    }
  });
  for (let i = 0; i < n; i++) {
    assert.ok(finishes.has(i), `choice ${i} has no finish_reason`);
    assert.ok(roleAt.has(i), `choice ${i} has no role`);
  }
  // The role comes in the first chunk of each choice.
  for (let i = 0; i < n; i++) {
    const first = body.findIndex((ch) => ch.choices.some((c) => c.index === i));
    assert.equal(roleAt.get(i), first, `role of choice ${i} is not in its first chunk`);
  }
  if (includeUsage) {
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, [], 'the usage chunk has choices: []');
    assert.equal(last.id, id);
    assert.ok(last.usage, 'the last chunk carries usage');
  }
  return { texts: chatTexts(body), finishes };
}

function checkUsage(u, what) {
  assert.ok(u, `${what}: no usage`);
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens'])
    assert.ok(Number.isInteger(u[k]) && u[k] >= 0, `${what}: usage.${k} = ${u[k]}`);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, `${what}: total_tokens`);
  assert.ok(u.prompt_tokens_details && Number.isInteger(u.prompt_tokens_details.cached_tokens),
            `${what}: usage.prompt_tokens_details.cached_tokens missing: ${JSON.stringify(u)}`);
  assert.ok(u.prompt_tokens_details.cached_tokens >= 0 && u.prompt_tokens_details.cached_tokens <= u.prompt_tokens);
}

test('1. models.list(): one model named by --served-model-name, with root and max_model_len = --ctx-size', async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  assert.equal(models.length, 1, JSON.stringify(models));
  const m = models[0];
  assert.equal(m.id, NAME);
  assert.equal(m.object, 'model');
  assert.equal(typeof m.created, 'number');
  assert.equal(typeof m.owned_by, 'string');
  assert.equal(typeof m.root, 'string');
  assert.ok(m.root.length > 0);
  assert.equal(fs.realpathSync(m.root), fs.realpathSync(MODEL), 'root is the checkpoint directory');
  assert.equal(m.max_model_len, CTX);
  // The raw list too (vllm bench reads data[0].id and data[0].root).
  const raw = await (await server.fetch('/v1/models')).json();
  assert.equal(raw.object, 'list');
  assert.equal(raw.data.length, 1);
  assert.equal(raw.data[0].id, NAME);
  // models.retrieve (GET /v1/models/{id}): the same card; another id is NotFoundError 404.
  assert.deepEqual(await client.models.retrieve(NAME), m);
  await assert.rejects(client.models.retrieve('no-such-model'), (e) => e instanceof OpenAI.NotFoundError && e.status === 404);
});

test('2. chat: non-stream, stream and stream+include_usage give the same text; usage chunk last; stream() helper', async () => {
  const full = await client.chat.completions.create(BASE);
  assert.equal(full.object, 'chat.completion');
  assert.equal(full.model, NAME);
  assert.match(full.id, /^chatcmpl-/);
  assert.equal(full.choices.length, 1);
  const msg = full.choices[0].message;
  assert.equal(msg.role, 'assistant');
  assert.equal(typeof msg.content, 'string');
  assert.ok(msg.content.length > 0, 'empty reply');
  assert.ok(['stop', 'length'].includes(full.choices[0].finish_reason));
  checkUsage(full.usage, 'non-stream');
  if (full.choices[0].finish_reason === 'length') assert.equal(full.usage.completion_tokens, BASE.max_tokens);

  const plain = await collect(await client.chat.completions.create({ ...BASE, stream: true }));
  const a = checkChatChunks(plain);
  assert.equal(a.texts[0], msg.content, 'stream text == non-stream text');
  assert.equal(a.finishes.get(0), full.choices[0].finish_reason);
  for (const ch of plain) assert.ok(ch.usage === undefined || ch.usage === null, 'no usage without include_usage');

  const withUsage = await collect(await client.chat.completions.create({
    ...BASE, stream: true, stream_options: { include_usage: true },
  }));
  const b = checkChatChunks(withUsage, { includeUsage: true });
  assert.equal(b.texts[0], msg.content, 'stream+usage text == non-stream text');
  const usage = withUsage[withUsage.length - 1].usage;
  checkUsage(usage, 'usage chunk');
  assert.equal(usage.prompt_tokens, full.usage.prompt_tokens);
  assert.equal(usage.completion_tokens, full.usage.completion_tokens);

  // The SDK's helper checks role, finish_reason and the chunk sequence (SERVER.md §0).
  const s = client.chat.completions.stream({ ...BASE, stream_options: { include_usage: true } });
  const final = await s.finalChatCompletion();
  assert.equal(final.choices[0].message.content, msg.content);
  assert.equal(final.choices[0].finish_reason, full.choices[0].finish_reason);
  assert.equal(final.usage?.completion_tokens, full.usage.completion_tokens);
  const text = await client.chat.completions.stream(BASE).finalContent();
  assert.equal(text, msg.content);

  // max_completion_tokens is the same limit as max_tokens.
  const mct = await client.chat.completions.create({ ...BASE, max_tokens: undefined, max_completion_tokens: 5 });
  assert.ok(mct.usage.completion_tokens <= 5);
  assert.ok(msg.content.startsWith(mct.choices[0].message.content) || mct.choices[0].message.content.includes('\uFFFD'),
            'a shorter greedy reply is a prefix of the longer one');
});

test('3. n:3 streaming over raw SSE: three indices, each finished once, one [DONE]; temperature 0 → same choices', async () => {
  const body = { ...BASE, n: 3, max_tokens: 12 };
  const { events, raw } = await streamRaw(server, '/v1/chat/completions', body);
  assert.ok(raw.endsWith('data: [DONE]\n\n'), 'the stream ends with data: [DONE] and a blank line');
  assert.equal(events.filter((e) => e === '[DONE]').length, 1, 'exactly one [DONE]');
  assert.equal(events[events.length - 1], '[DONE]');
  // Every event is one JSON object per data line, separated by a blank line.
  for (const block of raw.split('\n\n').filter(Boolean)) assert.match(block, /^data: /);
  const chunks = events.slice(0, -1);
  const { texts, finishes } = checkChatChunks(chunks, { n: 3 });
  assert.deepEqual([...finishes.keys()].sort(), [0, 1, 2]);
  assert.equal(texts.length, 3);
  assert.equal(texts[1], texts[0], 'greedy choices are identical');
  assert.equal(texts[2], texts[0], 'greedy choices are identical');

  const full = await client.chat.completions.create(body);
  assert.equal(full.choices.length, 3);
  assert.deepEqual(full.choices.map((c) => c.index), [0, 1, 2]);
  for (const c of full.choices) assert.equal(c.message.content, texts[0], 'non-stream n=3 == stream n=3');
  if (full.choices.every((c) => c.finish_reason === 'length')) assert.equal(full.usage.completion_tokens, 3 * 12);
  const single = await client.chat.completions.create({ ...BASE, max_tokens: 12 });
  assert.equal(single.choices[0].message.content, texts[0], 'n=3 greedy == n=1 greedy');
});

test('3b. seeded sampling: same seed → same text (twice, stream and not); other seed → other text', async () => {
  const body = { model: NAME, messages: MESSAGES, temperature: 1.0, top_p: 1, max_tokens: 16 };
  const a1 = await client.chat.completions.create({ ...body, seed: 42 });
  const a2 = await client.chat.completions.create({ ...body, seed: 42 });
  const b = await client.chat.completions.create({ ...body, seed: 43 });
  assert.equal(a1.choices[0].message.content, a2.choices[0].message.content, 'same seed, same text');
  assert.notEqual(a1.choices[0].message.content, b.choices[0].message.content, 'another seed, another text');
  const streamed = chatTexts(await collect(await client.chat.completions.create({ ...body, seed: 42, stream: true })));
  assert.equal(streamed[0], a1.choices[0].message.content, 'seeded stream == seeded non-stream');
  // n=3 with a seed: reproducible as a whole, and the choices are not all the same.
  const n1 = await client.chat.completions.create({ ...body, seed: 7, n: 3 });
  const n2 = await client.chat.completions.create({ ...body, seed: 7, n: 3 });
  assert.deepEqual(n1.choices.map((c) => c.message.content), n2.choices.map((c) => c.message.content));
  assert.ok(new Set(n1.choices.map((c) => c.message.content)).size > 1, 'n=3 sampled choices all identical');
});

// A stop string from the middle of the greedy reply, across token boundaries when possible.
async function pickStop(body) {
  const full = await client.chat.completions.create({ ...body, logprobs: true });
  const text = full.choices[0].message.content;
  const toks = full.choices[0].logprobs.content.map((e) => e.token);
  // Start the stop string one character before a token boundary near the middle (when the tokens
  // spell the text, i.e. no character is split across tokens), 3 characters long.
  let at = Math.floor(text.length / 2);
  if (toks.join('') === text) {
    let pos = 0;
    for (const t of toks) {
      pos += t.length;
      if (pos >= text.length / 2) { at = pos; break; }
    }
  }
  // A repetitive reply (a trained model's greedy output can loop) may have nothing new after the
  // middle: then the first usable place from the start.
  for (const from of [Math.max(1, at - 1), 1]) {
    for (let start = from; start + 3 < text.length; start++) {
      const s = text.slice(start, start + 3);
      if (/\uFFFD/.test(s) || /[\uD800-\uDFFF]/.test(s) || !s.trim()) continue;
      if (text.indexOf(s) !== start) continue;  // first occurrence, so the expected cut is here
      return { text, stop: s, cut: start, finish: full.choices[0].finish_reason };
    }
  }
  assert.fail(`no usable stop string in ${JSON.stringify(text)}`);
}

test('4. stop strings: output ends right before the first match, finish_reason stop, stream == non-stream, no leak', async () => {
  const body = { model: NAME, messages: [{ role: 'user', content: 'Write a long poem about the sea and the wind.' }],
                 temperature: 0, max_tokens: 40 };
  const { text, stop, cut, finish } = await pickStop(body);
  const expected = text.slice(0, cut);
  for (const stopField of [stop, [stop], ['\n\nEND-NEVER', stop, 'ZZZ-NEVER']]) {
    const full = await client.chat.completions.create({ ...body, stop: stopField });
    assert.equal(full.choices[0].message.content, expected, `stop ${JSON.stringify(stopField)} in ${JSON.stringify(text)}`);
    assert.equal(full.choices[0].finish_reason, 'stop');
    assert.ok(full.usage.completion_tokens < 40);

    const chunks = await collect(await client.chat.completions.create({ ...body, stop: stopField, stream: true }));
    const { texts, finishes } = checkChatChunks(chunks);
    assert.equal(finishes.get(0), 'stop');
    assert.equal(texts[0], expected, 'streamed text == non-stream text with a stop string');
    let soFar = '';
    for (const ch of chunks) {
      const d = ch.choices[0]?.delta?.content ?? '';
      soFar += d;
      assert.ok(expected.startsWith(soFar), `leaked text past the stop: ${JSON.stringify(soFar)} vs ${JSON.stringify(expected)}`);
      assert.ok(!d.includes(stop));
    }
  }
  // A stop string that never occurs changes nothing.
  const none = await client.chat.completions.create({ ...body, stop: ['\u0001never\u0002'] });
  assert.equal(none.choices[0].message.content, text);
  assert.equal(none.choices[0].finish_reason, finish);
  // The same through /v1/completions with the rendered prompt as token ids.
  const rendered = await (await server.post('/apply-template', { messages: body.messages })).json();
  const ids = (await (await server.post('/tokenize', { prompt: rendered.prompt, add_special_tokens: false })).json()).tokens;
  const comp = await client.completions.create({ model: NAME, prompt: ids, temperature: 0, max_tokens: 40 });
  assert.equal(comp.choices[0].text, text, 'completions on the rendered prompt == chat');
  const compStop = await client.completions.create({ model: NAME, prompt: ids, temperature: 0, max_tokens: 40, stop });
  assert.equal(compStop.choices[0].text, expected);
  assert.equal(compStop.choices[0].finish_reason, 'stop');
  let streamed = '';
  for await (const ch of await client.completions.create({ model: NAME, prompt: ids, temperature: 0, max_tokens: 40, stop, stream: true })) {
    streamed += ch.choices[0]?.text ?? '';
    assert.ok(expected.startsWith(streamed), `completions stream leaked past the stop: ${JSON.stringify(streamed)}`);
  }
  assert.equal(streamed, expected);
});

test('4b. include_stop_str_in_output: the matched stop string stays in the output (stream and not)', async () => {
  const body = { model: NAME, messages: [{ role: 'user', content: 'Write a long poem about the sea and the wind.' }],
                 temperature: 0, max_tokens: 40 };
  const { stop, text, cut } = await pickStop(body);
  const expected = text.slice(0, cut) + stop;
  const incl = await client.chat.completions.create({ ...body, stop, include_stop_str_in_output: true });
  assert.equal(incl.choices[0].message.content, expected, `include_stop_str_in_output with stop ${JSON.stringify(stop)}`);
  assert.equal(incl.choices[0].finish_reason, 'stop');
  const chunks = await collect(await client.chat.completions.create({ ...body, stop, include_stop_str_in_output: true, stream: true }));
  assert.equal(chatTexts(chunks)[0], expected, 'streamed, include_stop_str_in_output');
});

test('9. /v1/completions: string, list of strings, token ids; n; echo; logprobs; stream == non-stream', async () => {
  const P1 = 'The quick brown fox';
  const P2 = 'Once upon a time in a land far away';
  const common = { model: NAME, temperature: 0, max_tokens: 8 };
  const one = await client.completions.create({ ...common, prompt: P1 });
  assert.equal(one.object, 'text_completion');
  assert.match(one.id, /^cmpl-/);
  assert.equal(one.model, NAME);
  assert.equal(one.choices.length, 1);
  assert.equal(typeof one.choices[0].text, 'string');
  assert.ok(['stop', 'length'].includes(one.choices[0].finish_reason));
  checkUsage(one.usage, 'completions');
  // The default max_tokens is 16 (OpenAI, vLLM).
  const dflt = await client.completions.create({ model: NAME, prompt: P1, temperature: 0, ignore_eos: true });
  assert.equal(dflt.usage.completion_tokens, 16, 'completions default max_tokens = 16');

  // Token ids: the same tokens as the string (BOS included, as the string prompt gets it).
  const tk = await (await server.post('/tokenize', { model: NAME, prompt: P1 })).json();
  assert.equal(one.usage.prompt_tokens, tk.count, 'the string prompt is tokenized as /tokenize does');
  const byIds = await client.completions.create({ ...common, prompt: tk.tokens });
  assert.equal(byIds.choices[0].text, one.choices[0].text, 'token-id prompt == string prompt');
  assert.equal(byIds.usage.prompt_tokens, tk.count);

  // List of strings, with n=2: prompt-major order, greedy choices per prompt equal.
  const two = await client.completions.create({ ...common, prompt: [P1, P2], n: 2 });
  assert.equal(two.choices.length, 4);
  assert.deepEqual(two.choices.map((c) => c.index), [0, 1, 2, 3]);
  const alone2 = await client.completions.create({ ...common, prompt: P2 });
  assert.equal(two.choices[0].text, one.choices[0].text);
  assert.equal(two.choices[1].text, one.choices[0].text);
  assert.equal(two.choices[2].text, alone2.choices[0].text);
  assert.equal(two.choices[3].text, alone2.choices[0].text);
  // List of token-id lists.
  const tk2 = await (await server.post('/tokenize', { model: NAME, prompt: P2 })).json();
  const idLists = await client.completions.create({ ...common, prompt: [tk.tokens, tk2.tokens] });
  assert.deepEqual(idLists.choices.map((c) => c.text), [one.choices[0].text, alone2.choices[0].text]);

  // echo: the prompt text comes first.
  const echo = await client.completions.create({ ...common, prompt: P1, echo: true });
  assert.equal(echo.choices[0].text, P1 + one.choices[0].text);

  // logprobs: one entry per generated token; greedy picks the most likely token.
  const lp = await client.completions.create({ ...common, prompt: P1, logprobs: 3 });
  const L = lp.choices[0].logprobs;
  assert.ok(L, 'logprobs missing');
  assert.equal(L.tokens.length, lp.usage.completion_tokens);
  assert.equal(L.token_logprobs.length, L.tokens.length);
  assert.equal(L.top_logprobs.length, L.tokens.length);
  assert.equal(L.text_offset.length, L.tokens.length);
  for (let i = 0; i < L.tokens.length; i++) {
    assert.ok(L.token_logprobs[i] <= 0, `logprob ${L.token_logprobs[i]}`);
    const top = Object.values(L.top_logprobs[i]);
    assert.ok(top.length >= 1 && top.length <= 3, `top_logprobs[${i}] has ${top.length} entries`);
    assert.ok(Math.abs(Math.max(...top) - L.token_logprobs[i]) < 1e-4, 'greedy token is the most likely one');
    if (i > 0) assert.ok(L.text_offset[i] >= L.text_offset[i - 1]);
  }
  assert.equal(lp.choices[0].text, one.choices[0].text);
  if (!lp.choices[0].text.includes('\uFFFD')) assert.equal(L.tokens.join(''), lp.choices[0].text);

  // Streaming equals non-streaming, also with echo, several prompts and n.
  for (const req of [{ prompt: P1 }, { prompt: [P1, P2], n: 2, echo: true }, { prompt: tk.tokens, max_tokens: 12 }]) {
    const body = { ...common, ...req };
    const full = await client.completions.create(body);
    const texts = [];
    const fins = [];
    for await (const ch of await client.completions.create({ ...body, stream: true })) {
      assert.equal(ch.object, 'text_completion');
      for (const c of ch.choices) {
        texts[c.index] = (texts[c.index] ?? '') + c.text;
        if (c.finish_reason) {
          assert.equal(fins[c.index], undefined, 'finish_reason twice');
          fins[c.index] = c.finish_reason;
        }
      }
    }
    assert.deepEqual(texts, full.choices.map((c) => c.text), `completions stream == non-stream for ${JSON.stringify(req)}`);
    assert.deepEqual(fins, full.choices.map((c) => c.finish_reason));
  }
});

test('10. tokenize / detokenize (vLLM shapes) round-trip; /apply-template; /health; /metrics', async () => {
  const text = 'Hello, world! 你好，世界 😀 — déjà vu.';
  const r = await server.post('/tokenize', { model: NAME, prompt: text, add_special_tokens: false });
  assert.equal(r.status, 200);
  const t = await r.json();
  assert.ok(Array.isArray(t.tokens) && t.tokens.every(Number.isInteger));
  assert.equal(t.count, t.tokens.length);
  assert.equal(t.max_model_len, CTX);
  const d = await (await server.post('/detokenize', { model: NAME, tokens: t.tokens })).json();
  assert.equal(d.prompt, text, 'detokenize(tokenize(x)) == x');
  const withBos = await (await server.post('/tokenize', { model: NAME, prompt: text })).json();
  assert.equal(withBos.count, t.count + 1, 'add_special_tokens (default true) adds BOS');
  assert.deepEqual(withBos.tokens.slice(1), t.tokens);

  // /apply-template == `dsv3 template` with a generation prompt; tokenize(messages) == tokenize(rendered).
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is 2+2?' }];
  const at = await server.post('/apply-template', { model: NAME, messages });
  assert.equal(at.status, 200);
  const { prompt } = await at.json();
  assert.equal(typeof prompt, 'string');
  assert.ok(prompt.includes('Be brief.') && prompt.includes('What is 2+2?'));
  assert.ok(prompt.endsWith('<｜Assistant｜>'), `generation prompt: ${JSON.stringify(prompt)}`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsv3-serve-tmpl-'));
  try {
    fs.writeFileSync(path.join(tmp, 'm.json'), JSON.stringify(messages));
    const cliT = runBin(['template', '--model', MODEL, '--add-generation-prompt', '--messages', path.join(tmp, 'm.json')]);
    assert.equal(cliT.status, 0, cliT.stderr);
    assert.equal(prompt, cliT.stdout, '/apply-template == dsv3 template');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const byMsgs = await (await server.post('/tokenize', { model: NAME, messages })).json();
  const byText = await (await server.post('/tokenize', { model: NAME, prompt, add_special_tokens: false })).json();
  assert.deepEqual(byMsgs.tokens, byText.tokens, 'tokenize(messages) == tokenize(rendered prompt)');
  const chat = await client.chat.completions.create({ model: NAME, messages, max_tokens: 1, temperature: 0 });
  assert.equal(chat.usage.prompt_tokens, byMsgs.count, 'chat prompt_tokens == tokenize(messages).count');

  // /health and /v1/health.
  for (const p of ['/health', '/v1/health']) {
    const h = await server.fetch(p);
    assert.equal(h.status, 200, p);
    const body = await h.json();
    assert.equal(body.status, 'ok', p);
    // The KV cache pool: idle, so no block is held by a request.
    assert.equal(body.kv_cache.blocks_used, 0, p);
    assert.ok(body.kv_cache.blocks_total > 0 && body.kv_cache.block_size > 0 && body.kv_cache.bytes_per_token > 0,
              JSON.stringify(body));
  }

  // /metrics: vLLM's names with the dsv3: prefix and a model_name label on every sample.
  const res = await server.fetch('/metrics');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/plain/);
  const m0 = await server.metrics();
  for (const name of ['dsv3:num_requests_running', 'dsv3:num_requests_waiting', 'dsv3:kv_cache_usage_perc',
                      'dsv3:prompt_tokens_total', 'dsv3:generation_tokens_total', 'dsv3:request_success_total',
                      'dsv3:time_to_first_token_seconds_bucket', 'dsv3:time_to_first_token_seconds_count',
                      'dsv3:inter_token_latency_seconds_count', 'dsv3:e2e_request_latency_seconds_count',
                      'dsv3:request_queue_time_seconds_count', 'dsv3:request_rejected_total']) {
    assert.ok(m0.has(name), `/metrics lacks ${name}`);
  }
  for (const s of m0.samples) {
    assert.ok(s.name.startsWith('dsv3:'), `metric without the dsv3: prefix: ${s.name}`);
    assert.equal(s.labels.model_name, NAME, `${s.name} lacks model_name="${NAME}"`);
  }
  assert.equal(m0.get('dsv3:num_requests_running'), 0);
  // Counters move with a request by its usage.
  const req = await client.chat.completions.create({ model: NAME, messages, max_tokens: 7, temperature: 0, ignore_eos: true });
  // The scheduler adds a step's tokens to its counters after the step: allow that step to end.
  let m1;
  await waitFor(async () => {
    m1 = await server.metrics();
    return m1.get('dsv3:generation_tokens_total') - m0.get('dsv3:generation_tokens_total') >= req.usage.completion_tokens;
  }, { timeoutMs: 500, what: 'dsv3:generation_tokens_total counting the request' }).catch(() => {});
  assert.equal(m1.get('dsv3:generation_tokens_total') - m0.get('dsv3:generation_tokens_total'), req.usage.completion_tokens);
  assert.equal(m1.get('dsv3:prompt_tokens_total') - m0.get('dsv3:prompt_tokens_total'), req.usage.prompt_tokens);
  assert.equal(m1.get('dsv3:e2e_request_latency_seconds_count') - m0.get('dsv3:e2e_request_latency_seconds_count'), 1);
  assert.equal(m1.get('dsv3:time_to_first_token_seconds_count') - m0.get('dsv3:time_to_first_token_seconds_count'), 1);
  assert.equal(m1.get('dsv3:request_success_total', { finished_reason: 'length' }) -
               m0.get('dsv3:request_success_total', { finished_reason: 'length' }), 1);
  assert.equal(m1.get('dsv3:inter_token_latency_seconds_count') - m0.get('dsv3:inter_token_latency_seconds_count'),
               req.usage.completion_tokens - 1, 'one inter-token latency per token after the first');
});

test('clean shutdown: SIGTERM → exit 0 within 6 s', async () => {
  await server.stop(6000);
});
