// How one message looks: a user's as plain text with an Edit button; an assistant's as its
// reasoning block, its Markdown (code blocks with a Copy button), an error, and a line of
// statistics with Copy and Regenerate. app.js decides when to draw and what the buttons do.
import * as chat from './chat.js';
import { renderMarkdown } from './markdown.js';

export function button(label, title, onClick, cls = '') {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.title = title;
  if (cls) b.className = cls;
  b.addEventListener('click', onClick);
  return b;
}

// `on`: {edit(m, article), regenerate(m)}, what the message's buttons do.
export function messageNode(m, isLastAssistant, on) {
  const art = document.createElement('article');
  art.className = `msg ${m.role}`;
  art.dataset.id = m.id;
  if (m.role === 'user') {
    const body = document.createElement('div');
    body.className = 'body';
    body.textContent = m.content;
    const actions = document.createElement('div');
    actions.className = 'actions';
    actions.append(button('Edit', 'Edit this message and send it again', () => on.edit(m, art)));
    art.append(body, actions);
    return art;
  }
  fillAssistant(art, m, isLastAssistant, on);
  return art;
}

// (Re)draws an assistant message in place: reasoning block, Markdown body, error, statistics.
export function fillAssistant(art, m, isLastAssistant, on) {
  const wasOpen = art.querySelector('details.reasoning')?.open;
  const userToggled = art.dataset.reasoningToggled === '1';
  art.replaceChildren();
  art.classList.toggle('pending', !!m.pending);
  if (m.reasoning) {
    const det = document.createElement('details');
    det.className = 'reasoning';
    // Open while the model thinks (or when it never answered), closed once the answer starts,
    // unless the user chose.
    det.open = userToggled ? !!wasOpen : !m.content;
    const sum = document.createElement('summary');
    sum.textContent = m.pending && !m.content ? 'Thinking…'
      : m.reasoning_s !== undefined ? `Reasoning (${m.reasoning_s.toFixed(1)} s)` : 'Reasoning';
    const body = document.createElement('div');
    body.className = 'md';
    body.innerHTML = renderMarkdown(m.reasoning);
    det.append(sum, body);
    sum.addEventListener('click', () => { art.dataset.reasoningToggled = '1'; });
    art.append(det);
  }
  const body = document.createElement('div');
  body.className = 'body md';
  if (m.content) body.innerHTML = renderMarkdown(m.content);
  else if (m.pending && !m.reasoning) body.innerHTML = '<p class="waiting">…</p>';
  addCodeButtons(body);
  art.append(body);
  if (m.error) {
    const err = document.createElement('div');
    err.className = 'error';
    err.textContent = m.error;
    art.append(err);
  }
  const meta = document.createElement('div');
  meta.className = 'meta';
  const stats = document.createElement('span');
  stats.className = 'stats';
  stats.textContent = [chat.formatStats(m.stats), m.stopped && 'stopped', m.note].filter(Boolean).join(' · ');
  meta.append(stats);
  if (!m.pending) {
    const actions = document.createElement('span');
    actions.className = 'actions';
    if (m.content) actions.append(button('Copy', 'Copy the reply as Markdown', (e) => copyText(m.content, e.target)));
    if (isLastAssistant) actions.append(button('Regenerate', 'Ask for this reply again', () => on.regenerate(m)));
    meta.append(actions);
  }
  art.append(meta);
}

// A header with the language and a Copy button on every code block.
function addCodeButtons(root) {
  for (const pre of root.querySelectorAll('pre')) {
    const code = pre.querySelector('code');
    if (!code) continue;
    const lang = /language-([\w+#.-]+)/.exec(code.className)?.[1] || 'code';
    const head = document.createElement('div');
    head.className = 'code-head';
    const name = document.createElement('span');
    name.textContent = lang;
    head.append(name, button('Copy', 'Copy this code', (e) => copyText(code.textContent, e.target), 'copy-code'));
    const wrap = document.createElement('div');
    wrap.className = 'code';
    pre.replaceWith(wrap);
    wrap.append(head, pre);
  }
}

export async function copyText(text, btn) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // The asynchronous clipboard needs a secure context (http://127.0.0.1 is one, a LAN address is
    // not): fall back to a selected textarea.
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.style.position = 'fixed';
    ta.style.opacity = '0';
    document.body.append(ta);
    ta.select();
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
  }
  const old = btn.textContent;
  btn.textContent = ok ? 'Copied' : 'Copy failed';
  setTimeout(() => { btn.textContent = old; }, 1500);
}
