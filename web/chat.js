// The chat page's logic that needs no DOM: stored conversations, the request body, server-sent
// events, statistics and error wording. app.js wires it to the page; chat.test.mjs tests it
// under node (node --test web/chat.test.mjs).

export const STATE_KEY = 'dsv3.chat.v1';
export const SETTINGS_KEY = 'dsv3.settings.v1';

// ---------------------------------------------------------------------------------------------
// Conversations: {id, title, created, updated, messages: [Message]}, newest first.
// A message is {id, role: 'user'|'assistant', content, reasoning?, stats?, error?, stopped?,
// pending?}. `pending` marks a reply still streaming; a page reloaded mid-reply finds it stopped.

export function newId() {
  return Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
}

export function newConversation(now = Date.now()) {
  return { id: newId(), title: 'New chat', titleSet: false, created: now, updated: now, messages: [] };
}

export function emptyState() {
  return { conversations: [], currentId: null };
}

// Reads the state from `storage` (localStorage or a stand-in); anything unreadable gives an
// empty state rather than a broken page.
export function loadState(storage) {
  let state;
  try {
    state = JSON.parse(storage.getItem(STATE_KEY) || 'null');
  } catch {
    state = null;
  }
  if (!state || !Array.isArray(state.conversations)) return emptyState();
  state.conversations = state.conversations.filter((c) => c && typeof c.id === 'string' && Array.isArray(c.messages));
  for (const c of state.conversations) {
    for (const m of c.messages) {
      if (m.pending) {
        delete m.pending;
        m.stopped = true;
      }
    }
  }
  if (!state.conversations.some((c) => c.id === state.currentId)) state.currentId = state.conversations[0]?.id ?? null;
  return state;
}

// Writes the state; returns null, or a message in plain words when the browser refused.
export function saveState(storage, state) {
  try {
    storage.setItem(STATE_KEY, JSON.stringify(state));
    return null;
  } catch (e) {
    return `The browser refused to store the conversations (${e.name || e.message}): its storage for this ` +
           'site is probably full. Export and delete old conversations.';
  }
}

// A title from the first user message: its first line, at most `max` characters.
export function titleFrom(text, max = 48) {
  const line = String(text).trim().split('\n')[0].replace(/\s+/g, ' ').trim();
  if (!line) return 'New chat';
  return line.length > max ? line.slice(0, max - 1).trimEnd() + '…' : line;
}

export function findConversation(state, id) {
  return state.conversations.find((c) => c.id === id) || null;
}

// Moves conversation `c` to the top of the list (most recently used first).
export function touch(state, c, now = Date.now()) {
  c.updated = now;
  state.conversations = [c, ...state.conversations.filter((x) => x !== c)];
}

export function renameConversation(state, id, title) {
  const c = findConversation(state, id);
  const t = String(title).trim();
  if (!c || !t) return false;
  c.title = t;
  c.titleSet = true;
  return true;
}

// Removes a conversation; the current one becomes the next in the list (or none).
export function deleteConversation(state, id) {
  const i = state.conversations.findIndex((c) => c.id === id);
  if (i < 0) return;
  state.conversations.splice(i, 1);
  if (state.currentId === id) state.currentId = state.conversations[Math.min(i, state.conversations.length - 1)]?.id ?? null;
}

// The JSON a user downloads: the conversation as stored, with the OpenAI-shaped messages.
export function exportConversation(c, settings = {}) {
  return {
    format: 'dsv3-chat-1',
    title: c.title,
    created: new Date(c.created).toISOString(),
    updated: new Date(c.updated).toISOString(),
    system: c.system ?? settings.system ?? '',
    messages: c.messages.map((m) => {
      const out = { role: m.role, content: m.content };
      if (m.reasoning) out.reasoning_content = m.reasoning;
      if (m.stats) out.stats = m.stats;
      if (m.error) out.error = m.error;
      if (m.stopped) out.stopped = true;
      if (m.note) out.note = m.note;
      return out;
    }),
  };
}

// The conversations in an exported file (one conversation or a list, as exportConversation and
// the page's "Export all" write them), as new stored conversations; throws an Error in plain
// words when the file is not one.
export function importConversations(text, now = Date.now()) {
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`the file is not JSON (${e.message})`);
  }
  const list = data?.format === 'dsv3-chat-list-1' ? data.conversations : data?.format === 'dsv3-chat-1' ? [data] : null;
  if (!Array.isArray(list)) throw new Error("the file is not a conversation exported by this page (no 'format' dsv3-chat-1 or dsv3-chat-list-1)");
  return list.map((x, i) => {
    if (!x || !Array.isArray(x.messages)) throw new Error(`conversation ${i + 1} has no 'messages' list`);
    const c = newConversation(now);
    c.title = typeof x.title === 'string' && x.title.trim() ? x.title : 'Imported chat';
    c.titleSet = true;
    const created = Date.parse(x.created);
    const updated = Date.parse(x.updated);
    if (Number.isFinite(created)) c.created = created;
    if (Number.isFinite(updated)) c.updated = updated;
    if (typeof x.system === 'string') c.system = x.system;
    c.messages = x.messages.map((m, j) => {
      if (!m || (m.role !== 'user' && m.role !== 'assistant') || typeof (m.content ?? '') !== 'string')
        throw new Error(`conversation ${i + 1}, message ${j + 1}: expected a user or assistant message with text content`);
      const out = { id: newId(), role: m.role, content: m.content ?? '' };
      if (typeof m.reasoning_content === 'string' && m.reasoning_content) out.reasoning = m.reasoning_content;
      if (m.stats && typeof m.stats === 'object') out.stats = m.stats;
      if (typeof m.error === 'string') out.error = m.error;
      if (m.stopped) out.stopped = true;
      if (typeof m.note === 'string') out.note = m.note;
      return out;
    });
    return c;
  });
}

export function exportFileName(c) {
  const slug = titleFrom(c.title, 40).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'chat';
  return `dsv3-${slug}.json`;
}

// ---------------------------------------------------------------------------------------------
// Settings: system prompt, sampling (null = the server's default), API key, theme.

export function defaultSettings() {
  return { system: '', temperature: null, top_p: null, max_tokens: null, thinking: false, apiKey: '', theme: 'auto' };
}

export function loadSettings(storage) {
  let s = null;
  try {
    s = JSON.parse(storage.getItem(SETTINGS_KEY) || 'null');
  } catch {
    s = null;
  }
  return { ...defaultSettings(), ...(s && typeof s === 'object' ? s : {}) };
}

// A settings field typed by the user: '' = the server's default (null); otherwise a number in
// [min, max] (an integer when `integer`), else an error message naming the field.
export function parseNumberField(text, { name, min, max, integer = false }) {
  const t = String(text).trim();
  if (t === '') return { value: null };
  const v = Number(t);
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    const kind = integer ? 'a whole number' : 'a number';
    return { error: `${name} must be ${kind} from ${min} to ${max} (or empty for the server's default)` };
  }
  return { value: v };
}

// Server defaults come as float32 widened to double (0.6000000238418579): show them short.
export function shortNumber(v) {
  return typeof v === 'number' ? String(Number(v.toPrecision(6))) : '';
}

// ---------------------------------------------------------------------------------------------
// The request: the conversation up to (and without) the reply being made.

export function buildRequest(messages, settings, model) {
  const out = [];
  if (settings.system && settings.system.trim()) out.push({ role: 'system', content: settings.system });
  for (const m of messages) {
    // Replies that failed before any text say nothing the model should see again.
    if (m.role === 'assistant' && !m.content) continue;
    // Past reasoning is not sent back: DeepSeek's templates drop it from the history anyway.
    out.push({ role: m.role, content: m.content });
  }
  const body = { messages: out, stream: true, stream_options: { include_usage: true } };
  if (model) body.model = model;
  for (const k of ['temperature', 'top_p', 'max_tokens']) if (typeof settings[k] === 'number') body[k] = settings[k];
  // DeepSeek-V3.1's hybrid template thinks when its `thinking` variable is true; other templates
  // ignore it. Sent only when asked for.
  if (settings.thinking) body.chat_template_kwargs = { thinking: true };
  return body;
}

// ---------------------------------------------------------------------------------------------
// Server-sent events (text/event-stream): feed() takes decoded text as it arrives and returns the
// complete events' data payloads; comment lines (": ping") are skipped.

export class SSEParser {
  constructor() {
    this.buf = '';
  }

  feed(text) {
    this.buf += text.replace(/\r\n?/g, '\n');
    const out = [];
    let k;
    while ((k = this.buf.indexOf('\n\n')) >= 0) {
      const block = this.buf.slice(0, k);
      this.buf = this.buf.slice(k + 2);
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
      }
      if (data.length) out.push(data.join('\n'));
    }
    return out;
  }
}

// Applies one parsed chunk to the reply being built (`reply`: {content, reasoning}); returns the
// number of tokens it carried (the server sends one token per chunk), and records usage and
// mid-stream errors on `reply`.
export function applyChunk(reply, chunk) {
  if (chunk.error) {
    reply.error = `The server stopped the reply: ${chunk.error.message || JSON.stringify(chunk.error)}`;
    return 0;
  }
  if (chunk.usage) reply.usage = chunk.usage;
  let tokens = 0;
  for (const c of chunk.choices || []) {
    if (c.index !== undefined && c.index !== 0) continue;
    const d = c.delta || {};
    if (typeof d.reasoning_content === 'string' && d.reasoning_content) {
      reply.reasoning = (reply.reasoning || '') + d.reasoning_content;
      tokens = 1;
    }
    if (typeof d.content === 'string' && d.content) {
      reply.content = (reply.content || '') + d.content;
      tokens = 1;
    }
    if (c.finish_reason) reply.finish_reason = c.finish_reason;
  }
  return tokens;
}

// ---------------------------------------------------------------------------------------------
// Statistics under a reply.

// t0: request sent; tFirst/tLast: first and last token arrived (ms); counted: tokens seen;
// usage: the server's (absent when stopped). Decode speed counts the tokens after the first over
// the time after the first, so that the prompt's processing does not dilute it; under 0.1 s the
// tokens came in a few network reads and their arrival times say nothing of the speed.
export function makeStats({ t0, tFirst, tLast, counted, usage }) {
  const completion = usage?.completion_tokens ?? counted;
  const s = { completion_tokens: completion };
  if (usage?.prompt_tokens !== undefined) s.prompt_tokens = usage.prompt_tokens;
  if (tFirst !== undefined) s.ttft_s = (tFirst - t0) / 1000;
  if (tFirst !== undefined && tLast - tFirst >= 100 && completion > 1) s.tokens_per_s = (completion - 1) / ((tLast - tFirst) / 1000);
  return s;
}

export function formatStats(s) {
  if (!s) return '';
  const parts = [`${s.completion_tokens} token${s.completion_tokens === 1 ? '' : 's'}`];
  if (s.tokens_per_s !== undefined) parts.push(`${s.tokens_per_s.toFixed(1)} tokens/s`);
  if (s.prompt_tokens !== undefined) parts.push(`prompt ${s.prompt_tokens} tokens`);
  if (s.ttft_s !== undefined) parts.push(`first token after ${s.ttft_s.toFixed(2)} s`);
  return parts.join(' · ');
}

// ---------------------------------------------------------------------------------------------
// Errors in plain words. `body` is the parsed JSON body (or null), `retryAfter` the header's
// value, `sent` the request body (for the max_tokens the user asked for).

export function describeError(status, body, retryAfter, sent = {}) {
  const e = body && typeof body === 'object' ? body.error ?? body : null;
  const said = e && typeof e.message === 'string' ? e.message : '';
  switch (status) {
    case 400:
      if (e && (e.code === 'context_length_exceeded' || e.n_ctx !== undefined)) {
        const want = typeof sent.max_tokens === 'number' ? ` plus the ${sent.max_tokens} tokens of Max tokens` : '';
        return `This conversation is too long for the model: the prompt is ${e.n_prompt_tokens} tokens${want}, ` +
               `and the model's context holds ${e.n_ctx} tokens. Start a new chat, shorten a message (Edit), ` +
               'or lower Max tokens in Settings.';
      }
      return `The server refused the request: ${said || 'bad request'}` + (e?.param ? ` (field '${e.param}'; see Settings)` : '');
    case 401:
      return 'The server wants an API key (it was started with --api-key). Enter it in Settings.';
    case 404:
      return `The server does not know this request: ${said || 'not found'}.`;
    case 413:
      return 'The conversation is larger than the server accepts in one request (--max-body-mb). Start a new chat.';
    case 429: {
      const secs = Number(retryAfter);
      const when = Number.isFinite(secs) && secs > 0 ? `in ${secs} second${secs === 1 ? '' : 's'}` : 'in a moment';
      return `The server is busy: its queue of requests is full. Try again ${when} (Regenerate).`;
    }
    case 503:
      return /loading/i.test(said) ? 'The server is still loading the model. Try again in a few seconds.'
                                   : 'The server is shutting down and takes no new requests.';
    default:
      return `The server answered HTTP ${status}${said ? `: ${said}` : ''}.`;
  }
}
