// SERVER.md §5 item 5, §3.8: streamed text never splits a UTF-8 character. A random-weight model
// writes CJK/Cyrillic/emoji through byte-level tokens; some characters span two or three tokens.
// The trained models/default writes ASCII, so logit_bias makes it write 'é' in two tokens
// (forcedSplitExtras). We find a prompt whose greedy reply has such a split character (its tokens'
// `bytes` from chat logprobs), then cut the reply with max_tokens at 1..5 and right before, inside
// and after that character: every delta is free of U+FFFD unless the non-stream text has one too, and the streamed
// concatenation equals the non-stream text for every max_tokens (chat and completions).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, chatTexts, streamRaw } from './helpers.mjs';

let server;

before(async () => {
  server = await startServer({ args: ['--ctx-size', '2048'] });
});

after(async () => {
  if (server) await server.kill();
});

const strict = new TextDecoder('utf-8', { fatal: true });
const valid = (bytes) => { try { strict.decode(new Uint8Array(bytes)); return true; } catch { return false; } };

// Candidate prompts; the first that gives a split character is used (the list is fixed, so the
// choice is deterministic for a given model).
// Story 11 is the one that worked with the random-weight default model; the rest are tried if the
// model changes; forcedSplitExtras, when it applies, goes first.
const CANDIDATES = [11, ...Array.from({ length: 40 }, (_, i) => i).filter((i) => i !== 11)]
  .map((i) => `Story ${i}: ` + '🙂🦀龘'.repeat(i % 4) + ' words ' + i * 7);
const SEARCH_TOKENS = 40;

let found;  // {messages, extra, k, m, text}: tokens k..k+m-1 spell one character, none alone is valid

// Request fields that make a model that never writes a split character write one: a trained model
// whose corpus is ASCII (models/default) answers in ASCII. 'é' is two byte-level tokens there; a
// large logit_bias on both, with a frequency penalty against repeating either, makes the greedy
// reply alternate them, so some token pair spells 'é'. Empty when 'é' is one token.
async function forcedSplitExtras() {
  const ids = (await (await server.post('/tokenize', { prompt: 'é', add_special_tokens: false })).json()).tokens;
  if (ids.length < 2) return [];
  return [{ logit_bias: Object.fromEntries(ids.map((id) => [id, 30])), frequency_penalty: 2 }];
}

async function findSplit() {
  const tries = (await forcedSplitExtras()).map((extra) => ({ content: CANDIDATES[0], extra }));
  for (const content of CANDIDATES) tries.push({ content, extra: {} });
  for (const { content, extra } of tries) {
    const messages = [{ role: 'user', content }];
    const r = await (await server.post('/v1/chat/completions',
      { messages, temperature: 0, max_tokens: SEARCH_TOKENS, logprobs: true, ignore_eos: true, ...extra })).json();
    assert.ok(r.choices, JSON.stringify(r));
    const toks = r.choices[0].logprobs.content;
    for (let k = 0; k < toks.length; k++) {
      if (valid(toks[k].bytes)) continue;
      let bytes = [...toks[k].bytes];
      for (let m = 2; k + m <= toks.length && m <= 4; m++) {
        bytes = bytes.concat(toks[k + m - 1].bytes);
        if (valid(bytes) && new TextDecoder().decode(new Uint8Array(bytes)).length <= 2) {
          return { messages, extra, k, m, text: r.choices[0].message.content, char: new TextDecoder().decode(new Uint8Array(bytes)) };
        }
      }
    }
  }
  return null;
}

async function chatPair(messages, maxTokens, extra = found?.extra ?? {}) {
  const body = { messages, temperature: 0, max_tokens: maxTokens, ignore_eos: true, ...extra };
  const full = await (await server.post('/v1/chat/completions', body)).json();
  const { events } = await streamRaw(server, '/v1/chat/completions', body);
  const chunks = events.filter((e) => e !== '[DONE]');
  const deltas = chunks.flatMap((c) => c.choices.map((x) => x.delta.content ?? ''));
  return { text: full.choices[0].message.content, streamed: chatTexts(chunks)[0], deltas };
}

async function completionPair(prompt, maxTokens, extra = found?.extra ?? {}) {
  const body = { prompt, temperature: 0, max_tokens: maxTokens, ignore_eos: true, ...extra };
  const full = await (await server.post('/v1/completions', body)).json();
  const { events } = await streamRaw(server, '/v1/completions', body);
  const deltas = events.filter((e) => e !== '[DONE]').flatMap((c) => c.choices.map((x) => x.text));
  return { text: full.choices[0].text, streamed: deltas.join(''), deltas };
}

function check(label, { text, streamed, deltas }) {
  assert.equal(streamed, text, `${label}: streamed concatenation != non-stream text`);
  if (!text.includes('\uFFFD')) {
    deltas.forEach((d, i) => assert.ok(!d.includes('\uFFFD'), `${label}: delta ${i} ${JSON.stringify(d)} has U+FFFD; the text has none`));
  }
  // No delta ends in a lone high surrogate (a character split at the JS level).
  for (const d of deltas) assert.ok(!/[\uD800-\uDBFF]$/.test(d) && !/^[\uDC00-\uDFFF]/.test(d), `${label}: surrogate split`);
}

test('a greedy reply with a character split across tokens: stream == non-stream for every cut', async () => {
  found = await findSplit();
  assert.ok(found, 'no candidate prompt gave a character split across tokens; extend CANDIDATES');
  const { messages, k, m, char } = found;
  console.log(`# split character ${JSON.stringify(char)} at tokens ${k}..${k + m - 1} of prompt ${JSON.stringify(messages[0].content)}`);
  // The whole reply holds the character and no U+FFFD where it stands.
  const whole = await chatPair(messages, k + m + 1);
  check(`max_tokens ${k + m + 1}`, whole);
  assert.ok(whole.text.includes(char), `the reply lacks ${JSON.stringify(char)}: ${JSON.stringify(whole.text)}`);

  const cuts = new Set([1, 2, 3, 4, 5]);
  for (let t = Math.max(1, k - 1); t <= k + m + 1; t++) cuts.add(t);
  for (const t of [...cuts].sort((a, b) => a - b)) {
    const r = await chatPair(messages, t);
    check(`chat max_tokens ${t}`, r);
    if (t >= k + m) assert.ok(r.text.includes(char), `max_tokens ${t}: ${JSON.stringify(char)} missing`);
    if (t > k && t < k + m) {
      // Cut inside the character: the held-back bytes never show up as a partial character in a
      // delta, and the text is the prefix before it (plus at most one U+FFFD for the cut bytes).
      const before = k === 0 ? '' : (await chatPair(messages, k)).text;  // max_tokens must be >= 1
      assert.ok(r.text === before || r.text === before + '\uFFFD',
                `max_tokens ${t} cuts ${JSON.stringify(char)}: ${JSON.stringify(r.text)} vs ${JSON.stringify(before)}`);
    }
  }
});

test('completions on the same tokens: stream == non-stream for every cut, incl. echo', async () => {
  assert.ok(found, 'needs the split from the previous test');
  const { messages, k, m } = found;
  const rendered = (await (await server.post('/apply-template', { messages })).json()).prompt;
  const ids = (await (await server.post('/tokenize', { prompt: rendered, add_special_tokens: false })).json()).tokens;
  const ref = await completionPair(ids, k + m + 1);
  const chat = await chatPair(messages, k + m + 1);
  assert.equal(ref.text, chat.text, 'completions on the rendered prompt == chat');
  for (const t of [1, 2, 3, k, k + 1, k + m - 1, k + m]) {
    if (t < 1) continue;
    check(`completions max_tokens ${t}`, await completionPair(ids, t));
  }
});

test('multi-byte prompt echoed and tokenized: CJK and emoji survive /tokenize → /detokenize and echo', async () => {
  const text = '你好世界 🦀🙂 龘 𝄞 naïve';
  const ids = (await (await server.post('/tokenize', { prompt: text, add_special_tokens: false })).json()).tokens;
  assert.ok(ids.length > 8);
  assert.equal((await (await server.post('/detokenize', { tokens: ids })).json()).prompt, text);
  const r = await completionPair(text, 3, {});
  check('string prompt', r);
  const echo = await (await server.post('/v1/completions', { prompt: text, echo: true, max_tokens: 3, temperature: 0 })).json();
  assert.ok(echo.choices[0].text.startsWith(text));
});

test('clean shutdown: SIGTERM → exit 0 within 6 s', async () => {
  await server.stop(6000);
  server = null;
});
