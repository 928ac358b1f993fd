// The chat page: wires chat.js (state, requests, wording), markdown.js (safe rendering) and
// messages.js (how a message looks) to the DOM of index.html. It talks only to the server that served it, by relative URLs:
// GET v1/models (model id, context size, sampling defaults) and POST v1/chat/completions
// (streamed, with usage).
import * as chat from './chat.js';
import { loadMarkdown } from './markdown.js';
import { button, fillAssistant, messageNode } from './messages.js';

const $ = (id) => document.getElementById(id);
const els = {
  conversations: $('conversations'), newChat: $('new-chat'), theme: $('theme'), settingsOpen: $('settings-open'),
  sidebarToggle: $('sidebar-toggle'), title: $('title'), titleEdit: $('title-edit'), rename: $('rename'),
  export: $('export'), delete: $('delete'), server: $('server'), messages: $('messages'), empty: $('empty'),
  notice: $('notice'), composer: $('composer'), input: $('input'), send: $('send'), stop: $('stop'),
  settings: $('settings'), setSystem: $('set-system'), setTemperature: $('set-temperature'), setTopP: $('set-top-p'),
  setMaxTokens: $('set-max-tokens'), setThinking: $('set-thinking'), setApiKey: $('set-api-key'), settingsError: $('settings-error'),
  settingsReset: $('settings-reset'), exportAll: $('export-all'), import: $('import'), importFile: $('import-file'),
};

let state = chat.loadState(localStorage);
let settings = chat.loadSettings(localStorage);
let server = { model: null, ctx: null, defaults: null };
// The reply being streamed (one at a time): {convId, msg, controller}.
let active = null;

// ------------------------------------------------------------------------------------------------
// Persistence

let saveTimer = null;
function save() {
  clearTimeout(saveTimer);
  saveTimer = null;
  const err = chat.saveState(localStorage, state);
  if (err) showNotice(err);
}
// While a reply streams, at most one write every half second (each write stores every conversation).
function saveSoon() {
  if (!saveTimer) saveTimer = setTimeout(save, 500);
}
function saveSettings() {
  localStorage.setItem(chat.SETTINGS_KEY, JSON.stringify(settings));
}

function current() {
  return chat.findConversation(state, state.currentId);
}

// ------------------------------------------------------------------------------------------------
// Rendering

// One line above the input: a problem, or with `kind` 'info' news; 'busy' marks the notice that
// a finished reply takes away.
let noticeKind = '';
function showNotice(text, kind = '') {
  els.notice.textContent = text;
  els.notice.hidden = !text;
  els.notice.dataset.kind = kind;
  noticeKind = kind;
}

function renderSidebar() {
  els.conversations.replaceChildren();
  for (const c of state.conversations) {
    const li = document.createElement('li');
    li.className = 'conv' + (c.id === state.currentId ? ' current' : '');
    li.dataset.id = c.id;
    const b = document.createElement('button');
    b.className = 'conv-open';
    b.textContent = c.title;
    b.title = c.title;
    b.addEventListener('click', () => switchTo(c.id));
    li.append(b);
    if (active && active.convId === c.id) li.classList.add('busy');
    els.conversations.append(li);
  }
}

function renderHeader() {
  const c = current();
  els.title.textContent = c ? c.title : 'New chat';
  for (const b of [els.rename, els.export, els.delete]) b.disabled = !c;
  document.title = c ? `${c.title} · dsv3 chat` : 'dsv3 chat';
}

function isNearBottom() {
  const m = els.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function scrollToBottom() {
  els.messages.scrollTop = els.messages.scrollHeight;
}

function renderMessages() {
  const c = current();
  const nodes = [];
  if (c) {
    const lastAssistant = [...c.messages].reverse().find((m) => m.role === 'assistant');
    for (const m of c.messages) nodes.push(messageNode(m, m === lastAssistant, messageActions));
  }
  els.empty.hidden = nodes.length > 0;
  els.messages.replaceChildren(els.empty, ...nodes);
  scrollToBottom();
}

function renderAll() {
  renderSidebar();
  renderHeader();
  renderMessages();
  renderComposer();
}

function renderComposer() {
  els.send.hidden = !!active;
  els.stop.hidden = !active;
}

// Redraws one message if its conversation is on screen (streaming updates, once per frame).
const frameQueued = new Set();
function updateMessageSoon(convId, m) {
  if (convId !== state.currentId) return;
  if (frameQueued.has(m)) return;
  frameQueued.add(m);
  requestAnimationFrame(() => {
    frameQueued.delete(m);
    const art = els.messages.querySelector(`article[data-id="${m.id}"]`);
    if (!art) return;
    const stick = isNearBottom();
    fillAssistant(art, m, true, messageActions);
    if (stick) scrollToBottom();
  });
}

// ------------------------------------------------------------------------------------------------
// Conversations

function switchTo(id) {
  state.currentId = id;
  save();
  showNotice('');
  renderAll();
  document.body.classList.remove('sidebar-open');
}

function newChat() {
  const c = current();
  // An empty conversation is reused rather than piling up.
  if (c && c.messages.length === 0) {
    els.input.focus();
    return;
  }
  const n = chat.newConversation();
  state.conversations.unshift(n);
  state.currentId = n.id;
  save();
  renderAll();
  els.input.focus();
}

function startRename() {
  const c = current();
  if (!c) return;
  els.title.hidden = true;
  els.titleEdit.hidden = false;
  els.titleEdit.value = c.title;
  els.titleEdit.focus();
  els.titleEdit.select();
}

function endRename(commit) {
  if (els.titleEdit.hidden) return;
  const c = current();
  if (commit && c && chat.renameConversation(state, c.id, els.titleEdit.value)) save();
  els.titleEdit.hidden = true;
  els.title.hidden = false;
  renderSidebar();
  renderHeader();
}

function deleteCurrent() {
  const c = current();
  if (!c) return;
  if (!confirm(`Delete the conversation "${c.title}"? This cannot be undone.`)) return;
  if (active && active.convId === c.id) stop();
  chat.deleteConversation(state, c.id);
  save();
  renderAll();
}

function download(name, obj) {
  const blob = new Blob([JSON.stringify(obj, null, 2) + '\n'], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

function exportCurrent() {
  const c = current();
  if (c) download(chat.exportFileName(c), chat.exportConversation(c, settings));
}

function exportAll() {
  download('dsv3-conversations.json', {
    format: 'dsv3-chat-list-1',
    conversations: state.conversations.map((c) => chat.exportConversation(c, settings)),
  });
}

// Adds the conversations of an exported file, the first one shown.
async function importFile(file) {
  let added;
  try {
    added = chat.importConversations(await file.text());
  } catch (e) {
    els.settings.close();
    showNotice(`Could not import ${file.name}: ${e.message}.`);
    return;
  }
  state.conversations.unshift(...added);
  if (added.length) state.currentId = added[0].id;
  save();
  els.settings.close();
  renderAll();
  showNotice(`Imported ${added.length} conversation${added.length === 1 ? '' : 's'} from ${file.name}.`, 'info');
}

// ------------------------------------------------------------------------------------------------
// Sending and streaming

function busy() {
  if (active) showNotice('A reply is still coming: wait for it, or stop it (Stop or Esc).', 'busy');
  return !!active;
}

function send() {
  if (busy()) return;
  const text = els.input.value;
  if (!text.trim()) return;
  let c = current();
  if (!c) {
    c = chat.newConversation();
    state.conversations.unshift(c);
    state.currentId = c.id;
  }
  c.messages.push({ id: chat.newId(), role: 'user', content: text });
  if (!c.titleSet && c.messages.filter((m) => m.role === 'user').length === 1) c.title = chat.titleFrom(text);
  els.input.value = '';
  autosize();
  generate(c);
}

// Asks for a reply to conversation `c` as it stands.
async function generate(c) {
  const reply = { id: chat.newId(), role: 'assistant', content: '', pending: true };
  const history = c.messages.slice();
  c.messages.push(reply);
  c.system = settings.system;
  chat.touch(state, c);
  save();
  showNotice('');
  const controller = new AbortController();
  active = { convId: c.id, msg: reply, controller };
  renderAll();

  const body = chat.buildRequest(history, settings, server.model);
  const headers = { 'content-type': 'application/json' };
  if (settings.apiKey) headers.authorization = `Bearer ${settings.apiKey}`;
  const t0 = performance.now();
  let tFirst;
  let tLast;
  let counted = 0;
  let tContent;
  try {
    const res = await fetch('v1/chat/completions', {
      method: 'POST', headers, body: JSON.stringify(body), signal: controller.signal,
    });
    if (!res.ok) {
      let parsed = null;
      try { parsed = await res.json(); } catch { /* not JSON */ }
      reply.error = chat.describeError(res.status, parsed, res.headers.get('retry-after'), body);
    } else {
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      const sse = new chat.SSEParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const data of sse.feed(decoder.decode(value, { stream: true }))) {
          if (data === '[DONE]') continue;
          let chunk;
          try { chunk = JSON.parse(data); } catch { continue; }
          const n = chat.applyChunk(reply, chunk);
          if (n) {
            const now = performance.now();
            tFirst ??= now;
            tLast = now;
            counted += n;
            if (reply.content) tContent ??= now;
          }
        }
        updateMessageSoon(c.id, reply);
        saveSoon();
      }
    }
  } catch (e) {
    if (e.name === 'AbortError') reply.stopped = true;
    else if (counted) reply.error = `The connection to the server broke during the reply (${e.message}).`;
    else reply.error = `Cannot reach the server (${e.message}). Is dsv3 serve still running?`;
  }
  if (counted || reply.usage) reply.stats = chat.makeStats({ t0, tFirst, tLast, counted, usage: reply.usage });
  // How long the model thought: from its first token to its answer's first (or its last token).
  if (reply.reasoning && tFirst !== undefined) reply.reasoning_s = ((tContent ?? tLast) - tFirst) / 1000;
  delete reply.usage;
  delete reply.pending;
  if (reply.finish_reason === 'length' && !reply.stopped) reply.note = 'max tokens reached';
  delete reply.finish_reason;
  active = null;
  if (noticeKind === 'busy') showNotice('');
  save();
  renderSidebar();
  renderComposer();
  if (state.currentId === c.id) {
    // Redrawn with its buttons; the view stays where the user scrolled it.
    const top = els.messages.scrollTop;
    const stick = isNearBottom();
    renderMessages();
    if (!stick) els.messages.scrollTop = top;
  }
}

// Aborting the fetch closes the connection; the server notices at its next step and frees the
// request's place in the batch and its cache.
function stop() {
  if (active) active.controller.abort();
}

function regenerate(m) {
  const c = current();
  if (!c || busy()) return;
  const i = c.messages.indexOf(m);
  if (i < 0) return;
  c.messages.splice(i);
  generate(c);
}

function startEdit(m, art) {
  if (busy()) return;
  const c = current();
  const ta = document.createElement('textarea');
  ta.className = 'edit';
  ta.value = m.content;
  ta.rows = Math.min(12, m.content.split('\n').length + 1);
  const go = () => {
    const text = ta.value;
    if (!text.trim() || active) return;
    const i = c.messages.indexOf(m);
    if (i < 0) return;
    m.content = text;
    c.messages.splice(i + 1);
    if (!c.titleSet && i === c.messages.findIndex((x) => x.role === 'user')) c.title = chat.titleFrom(text);
    generate(c);
  };
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      go();
    } else if (e.key === 'Escape') {
      e.stopPropagation();
      renderMessages();
    }
  });
  const actions = document.createElement('div');
  actions.className = 'actions';
  actions.append(button('Send', 'Replace the message and ask again (later messages are dropped)', go, 'primary'),
                 button('Cancel', 'Keep the message as it was', () => renderMessages()));
  art.replaceChildren(ta, actions);
  ta.focus();
}

// What the buttons of a drawn message do (messages.js).
const messageActions = { edit: startEdit, regenerate };

// ------------------------------------------------------------------------------------------------
// Server information and settings

async function loadServer() {
  const headers = settings.apiKey ? { authorization: `Bearer ${settings.apiKey}` } : {};
  try {
    const res = await fetch('v1/models', { headers });
    if (res.status === 503) {
      els.server.textContent = 'loading the model…';
      setTimeout(loadServer, 2000);
      return;
    }
    if (!res.ok) {
      let parsed = null;
      try { parsed = await res.json(); } catch { /* not JSON */ }
      els.server.textContent = res.status === 401 ? 'API key needed (Settings)' : `HTTP ${res.status}`;
      if (res.status === 401) showNotice(chat.describeError(401, parsed));
      return;
    }
    const card = (await res.json()).data?.[0] ?? {};
    server = { model: card.id ?? null, ctx: card.max_model_len ?? null, defaults: card.sampling_defaults ?? null };
    els.server.textContent = card.id ? `${card.id}${server.ctx ? ` · context ${server.ctx}` : ''}` : 'connected';
    els.server.title = card.root ? `Model directory: ${card.root}` : '';
    fillSettings();
  } catch (e) {
    els.server.textContent = 'server unreachable';
    setTimeout(loadServer, 3000);
  }
}

const numberFields = () => [
  { el: els.setTemperature, key: 'temperature', name: 'Temperature', min: 0, max: 2 },
  { el: els.setTopP, key: 'top_p', name: 'Top-p', min: 0, max: 1 },
  { el: els.setMaxTokens, key: 'max_tokens', name: 'Max tokens', min: 1, max: 1e9, integer: true },
];

function fillSettings() {
  els.setSystem.value = settings.system;
  els.setApiKey.value = settings.apiKey;
  els.setThinking.checked = !!settings.thinking;
  const d = server.defaults || {};
  els.setTemperature.placeholder = d.temperature !== undefined ? `server default ${chat.shortNumber(d.temperature)}` : 'server default';
  els.setTopP.placeholder = d.top_p !== undefined ? `server default ${chat.shortNumber(d.top_p)}` : 'server default';
  els.setMaxTokens.placeholder = server.ctx ? `server default: the context left (of ${server.ctx})` : 'server default: the context left';
  for (const f of numberFields()) f.el.value = settings[f.key] ?? '';
}

// Reads the dialog into the settings (on every keystroke); `final` when it closes: a changed API
// key is then tried at once.
let keyAtOpen = '';
function readSettings(final = false) {
  settings.system = els.setSystem.value;
  settings.apiKey = els.setApiKey.value;
  settings.thinking = els.setThinking.checked;
  const errors = [];
  for (const f of numberFields()) {
    const r = chat.parseNumberField(f.el.value, f);
    f.el.classList.toggle('invalid', !!r.error);
    if (r.error) errors.push(r.error);
    else settings[f.key] = r.value;
  }
  els.settingsError.textContent = errors.join('. ');
  els.settingsError.hidden = !errors.length;
  saveSettings();
  if (final && (settings.apiKey !== keyAtOpen || !server.model)) loadServer();
}

const themes = ['auto', 'light', 'dark'];
const themeNames = { auto: '◐ System', light: '☀ Light', dark: '☾ Dark' };
function applyTheme() {
  if (settings.theme === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = settings.theme;
  els.theme.textContent = themeNames[settings.theme] || themeNames.auto;
}

// ------------------------------------------------------------------------------------------------
// Input

function autosize() {
  els.input.style.height = 'auto';
  els.input.style.height = Math.min(els.input.scrollHeight, window.innerHeight * 0.4) + 'px';
}

function wire() {
  els.composer.addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });
  els.input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  els.input.addEventListener('input', autosize);
  els.stop.addEventListener('click', stop);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && active && !els.settings.open) {
      e.preventDefault();
      stop();
    }
  });
  els.newChat.addEventListener('click', newChat);
  els.rename.addEventListener('click', startRename);
  els.title.addEventListener('click', startRename);
  els.titleEdit.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); endRename(true); }
    if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); endRename(false); }
  });
  els.titleEdit.addEventListener('blur', () => endRename(true));
  els.export.addEventListener('click', exportCurrent);
  els.exportAll.addEventListener('click', exportAll);
  els.import.addEventListener('click', () => els.importFile.click());
  els.importFile.addEventListener('change', () => {
    const f = els.importFile.files[0];
    els.importFile.value = '';
    if (f) importFile(f);
  });
  els.delete.addEventListener('click', deleteCurrent);
  els.sidebarToggle.addEventListener('click', (e) => {
    e.stopPropagation();
    document.body.classList.toggle('sidebar-open');
  });
  // Narrow screens: the sidebar slides over the chat; a click beside it closes it.
  document.querySelector('main').addEventListener('click', () => document.body.classList.remove('sidebar-open'));
  els.theme.addEventListener('click', () => {
    settings.theme = themes[(themes.indexOf(settings.theme) + 1) % themes.length];
    saveSettings();
    applyTheme();
  });
  els.settingsOpen.addEventListener('click', () => {
    document.body.classList.remove('sidebar-open');
    keyAtOpen = settings.apiKey;
    fillSettings();
    els.settings.showModal();
  });
  els.settings.addEventListener('input', () => readSettings());
  els.settings.addEventListener('close', () => readSettings(true));
  els.settingsReset.addEventListener('click', () => {
    for (const f of numberFields()) f.el.value = '';
    readSettings();
  });
  // Another tab changed the conversations: take its version unless this one is streaming.
  window.addEventListener('storage', (e) => {
    if (e.key === chat.STATE_KEY && !active) {
      state = chat.loadState(localStorage);
      renderAll();
    }
  });
}

async function main() {
  applyTheme();
  wire();
  const hasMarkdown = await loadMarkdown();
  document.body.dataset.markdown = hasMarkdown ? 'on' : 'off';
  if (!hasMarkdown) showNotice('This build of dsv3 has no Markdown libraries (web/node_modules was missing): replies show as plain text.');
  renderAll();
  els.input.focus();
  document.body.dataset.ready = '1';
  loadServer();
}

main();
