// Unit tests of the chat page's DOM-free logic (node --test web/chat.test.mjs; CTest web_unit).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as chat from './chat.js';

class MemoryStorage {
  constructor(full = false) {
    this.map = new Map();
    this.full = full;
  }
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) {
    if (this.full) {
      const e = new Error('quota');
      e.name = 'QuotaExceededError';
      throw e;
    }
    this.map.set(k, String(v));
  }
}

test('state round-trips through storage; a reply streaming at reload comes back stopped', () => {
  const st = new MemoryStorage();
  const state = chat.emptyState();
  const c = chat.newConversation(1000);
  c.messages.push({ id: 'u', role: 'user', content: 'hi' }, { id: 'a', role: 'assistant', content: 'hel', pending: true });
  state.conversations.push(c);
  state.currentId = c.id;
  assert.equal(chat.saveState(st, state), null);
  const back = chat.loadState(st);
  assert.equal(back.currentId, c.id);
  assert.equal(back.conversations[0].messages[1].content, 'hel');
  assert.equal(back.conversations[0].messages[1].pending, undefined);
  assert.equal(back.conversations[0].messages[1].stopped, true);
});

test('unreadable or missing storage gives an empty state; a dangling currentId falls back to the first', () => {
  const st = new MemoryStorage();
  assert.deepEqual(chat.loadState(st), chat.emptyState());
  st.setItem(chat.STATE_KEY, '{not json');
  assert.deepEqual(chat.loadState(st), chat.emptyState());
  st.setItem(chat.STATE_KEY, JSON.stringify({ conversations: [{ id: 'x', messages: [] }, { bad: 1 }], currentId: 'gone' }));
  const s = chat.loadState(st);
  assert.equal(s.conversations.length, 1);
  assert.equal(s.currentId, 'x');
});

test('a full storage is reported in plain words', () => {
  const msg = chat.saveState(new MemoryStorage(true), chat.emptyState());
  assert.match(msg, /storage .* full/);
  assert.match(msg, /QuotaExceededError/);
});

test('titles come from the first line of the first message, shortened', () => {
  assert.equal(chat.titleFrom('  Hello   world \nsecond line'), 'Hello world');
  assert.equal(chat.titleFrom(''), 'New chat');
  const t = chat.titleFrom('x'.repeat(100), 10);
  assert.equal(t.length, 10);
  assert.ok(t.endsWith('…'));
});

test('rename, delete (the next conversation becomes current), touch moves to the top', () => {
  const state = chat.emptyState();
  const [a, b, c] = [chat.newConversation(1), chat.newConversation(2), chat.newConversation(3)];
  state.conversations.push(a, b, c);
  state.currentId = b.id;
  assert.equal(chat.renameConversation(state, b.id, '  New name '), true);
  assert.equal(b.title, 'New name');
  assert.equal(chat.renameConversation(state, b.id, '   '), false);
  chat.touch(state, c, 10);
  assert.deepEqual(state.conversations.map((x) => x.id), [c.id, a.id, b.id]);
  chat.deleteConversation(state, b.id);
  assert.equal(state.currentId, a.id);
  chat.deleteConversation(state, a.id);
  assert.equal(state.currentId, c.id);
  chat.deleteConversation(state, c.id);
  assert.equal(state.currentId, null);
});

test('export holds the messages in OpenAI shape with reasoning and stats', () => {
  const c = chat.newConversation(Date.UTC(2026, 0, 1));
  c.title = 'Sky: why blue?';
  c.system = 'Be brief.';
  c.messages.push({ id: '1', role: 'user', content: 'Why?' },
                  { id: '2', role: 'assistant', content: 'Rayleigh.', reasoning: 'Think.', stats: { completion_tokens: 3 } });
  const e = chat.exportConversation(c);
  assert.equal(e.system, 'Be brief.');
  assert.equal(e.created, '2026-01-01T00:00:00.000Z');
  assert.deepEqual(e.messages[1], { role: 'assistant', content: 'Rayleigh.', reasoning_content: 'Think.', stats: { completion_tokens: 3 } });
  assert.equal(chat.exportFileName(c), 'dsv3-sky-why-blue.json');
});

test('number settings: empty is the server default, out of range or not a number is an error', () => {
  const f = { name: 'Top-p', min: 0, max: 1 };
  assert.deepEqual(chat.parseNumberField(' ', f), { value: null });
  assert.deepEqual(chat.parseNumberField('0.9', f), { value: 0.9 });
  assert.match(chat.parseNumberField('1.5', f).error, /Top-p must be a number from 0 to 1/);
  assert.match(chat.parseNumberField('abc', f).error, /Top-p/);
  assert.match(chat.parseNumberField('2.5', { name: 'Max tokens', min: 1, max: 100, integer: true }).error, /whole number/);
  assert.equal(chat.shortNumber(0.6000000238418579), '0.6');
  assert.equal(chat.shortNumber(1), '1');
});

test('request: system prompt first, failed replies left out, sampling only when set', () => {
  const messages = [
    { role: 'user', content: 'a' },
    { role: 'assistant', content: '', error: 'busy' },
    { role: 'user', content: 'b' },
    { role: 'assistant', content: 'c', reasoning: 'r' },
    { role: 'user', content: 'd' },
  ];
  const body = chat.buildRequest(messages, { ...chat.defaultSettings(), system: 'S', temperature: 0, max_tokens: 5 }, 'm');
  assert.deepEqual(body.messages, [
    { role: 'system', content: 'S' }, { role: 'user', content: 'a' }, { role: 'user', content: 'b' },
    { role: 'assistant', content: 'c' }, { role: 'user', content: 'd' },
  ]);
  assert.equal(body.model, 'm');
  assert.equal(body.temperature, 0);
  assert.equal(body.max_tokens, 5);
  assert.equal('top_p' in body, false);
  assert.deepEqual(body.stream_options, { include_usage: true });
  assert.equal('chat_template_kwargs' in body, false);
  assert.equal(chat.buildRequest([], chat.defaultSettings(), null).messages.length, 0);
  assert.deepEqual(chat.buildRequest([], { ...chat.defaultSettings(), thinking: true }).chat_template_kwargs, { thinking: true });
});

test('SSE: events split across reads, CRLF, comments and [DONE]', () => {
  const p = new chat.SSEParser();
  const text = ': ping\n\ndata: {"a":1}\n\ndata: {"b":\r\n\r\ndata: [DONE]\n\n';
  const out = [];
  for (let i = 0; i < text.length; i += 3) out.push(...p.feed(text.slice(i, i + 3)));
  assert.deepEqual(out, ['{"a":1}', '{"b":', '[DONE]']);
});

test('chunks: content and reasoning accumulate, usage and errors are kept', () => {
  const r = { content: '' };
  assert.equal(chat.applyChunk(r, { choices: [{ index: 0, delta: { role: 'assistant', reasoning_content: 'hm' } }] }), 1);
  assert.equal(chat.applyChunk(r, { choices: [{ index: 0, delta: { content: 'Hi' } }] }), 1);
  assert.equal(chat.applyChunk(r, { choices: [{ index: 0, delta: { content: '!' }, finish_reason: 'stop' }] }), 1);
  assert.equal(chat.applyChunk(r, { choices: [{ index: 1, delta: { content: 'other choice' } }] }), 0);
  assert.equal(chat.applyChunk(r, { choices: [], usage: { prompt_tokens: 4, completion_tokens: 3 } }), 0);
  assert.deepEqual(r, { content: 'Hi!', reasoning: 'hm', finish_reason: 'stop', usage: { prompt_tokens: 4, completion_tokens: 3 } });
  chat.applyChunk(r, { error: { message: 'boom', type: 'server_error' } });
  assert.equal(r.error, 'The server stopped the reply: boom');
});

test('stats: the server\'s counts when it sent usage, decode speed after the first token', () => {
  const s = chat.makeStats({ t0: 0, tFirst: 500, tLast: 2500, counted: 21, usage: { prompt_tokens: 7, completion_tokens: 21 } });
  assert.deepEqual(s, { completion_tokens: 21, prompt_tokens: 7, ttft_s: 0.5, tokens_per_s: 10 });
  assert.equal(chat.formatStats(s), '21 tokens · 10.0 tokens/s · prompt 7 tokens · first token after 0.50 s');
  // Stopped: no usage chunk; the tokens seen count.
  const t = chat.makeStats({ t0: 0, tFirst: 100, tLast: 100, counted: 1 });
  assert.equal(chat.formatStats(t), '1 token · first token after 0.10 s');
  // Five tokens in 2 ms (one network read): no speed rather than 2000 tokens/s.
  assert.equal(chat.makeStats({ t0: 0, tFirst: 50, tLast: 52, counted: 5 }).tokens_per_s, undefined);
});

test('errors in plain words: context too long names both numbers, 429 the wait', () => {
  const ctx = {
    error: {
      message: "This model's maximum context length is 64 tokens. ...", type: 'invalid_request_error',
      param: 'messages', code: 'context_length_exceeded', n_prompt_tokens: 80, n_ctx: 64,
    },
  };
  const m = chat.describeError(400, ctx, null, {});
  assert.match(m, /prompt is 80 tokens/);
  assert.match(m, /context holds 64 tokens/);
  assert.match(chat.describeError(400, ctx, null, { max_tokens: 10 }), /plus the 10 tokens of Max tokens/);
  assert.match(chat.describeError(429, { error: { message: 'busy' } }, '1'), /busy.*Try again in 1 second /);
  assert.match(chat.describeError(400, { error: { message: "'top_p' must be <= 1", param: 'top_p' } }), /'top_p' must be <= 1 \(field 'top_p'/);
  assert.match(chat.describeError(401, null), /API key/);
  assert.match(chat.describeError(503, { error: { message: 'Loading model' } }), /loading the model/);
  assert.match(chat.describeError(500, null), /HTTP 500/);
});

test('import reads back what export writes, one conversation or a list; anything else is refused in words', () => {
  const c = chat.newConversation(Date.UTC(2026, 0, 2));
  c.title = 'Round trip';
  c.messages.push({ id: '1', role: 'user', content: 'Q' }, { id: '2', role: 'assistant', content: 'A', reasoning: 'R', stopped: true, note: 'n' });
  const one = chat.importConversations(JSON.stringify(chat.exportConversation(c, { system: 'S' })));
  assert.equal(one.length, 1);
  assert.equal(one[0].title, 'Round trip');
  assert.equal(one[0].system, 'S');
  assert.equal(one[0].created, Date.UTC(2026, 0, 2));
  assert.notEqual(one[0].id, c.id);
  assert.deepEqual(one[0].messages.map(({ id, ...m }) => m),
                   [{ role: 'user', content: 'Q' }, { role: 'assistant', content: 'A', reasoning: 'R', stopped: true, note: 'n' }]);
  const list = chat.importConversations(JSON.stringify({ format: 'dsv3-chat-list-1', conversations: [chat.exportConversation(c), chat.exportConversation(c)] }));
  assert.equal(list.length, 2);
  assert.throws(() => chat.importConversations('{oops'), /not JSON/);
  assert.throws(() => chat.importConversations('{"messages": []}'), /not a conversation exported by this page/);
  assert.throws(() => chat.importConversations(JSON.stringify({ format: 'dsv3-chat-1', messages: [{ role: 'system', content: 'x' }] })),
                /conversation 1, message 1: expected a user or assistant message/);
});
