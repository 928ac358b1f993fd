// The chat page against `dsv3 serve` on the default model, used as a person would: settings,
// a streamed reply, stop (the server frees the request), regenerate, edit-and-resend, several
// conversations (new, switch, rename, export, delete), reload, dark theme. No request may leave
// the server's host. Screenshots: build/web-artifacts/chat-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
  startServer, launchBrowser, openPage, loadChat, shot, chatRequests, setSettings, sendMessage, waitReplyDone, waitFor,
} from './browser.mjs';

let server;
let browser;
let page;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  page = await openPage(browser, server);
});
after(async () => {
  await browser?.close();
  if (server) await server.stop();
});

const running = async () => (await server.metrics()).get('dsv3:num_requests_running');
const messageCount = () => page.locator('#messages article.msg').count();

test('the page loads from the server alone, with its Markdown libraries', async () => {
  await loadChat(page, server);
  assert.equal(await page.getAttribute('body', 'data-markdown'), 'on');
  assert.match(await page.textContent('#server'), /^default · context \d+$/);
  const paths = page.requests.map((r) => new URL(r.url).pathname);
  for (const p of ['/', '/web/app.js', '/web/style.css', '/web/vendor/marked.esm.js', '/web/vendor/purify.es.mjs', '/v1/models'])
    assert.ok(paths.includes(p), `${p} not requested: ${paths}`);
  await shot(page, 'chat-01-empty');
  assert.deepEqual(page.offHost, []);
});

test('settings show the server defaults and go into the request', async () => {
  await page.click('#settings-open');
  assert.equal(await page.getAttribute('#set-temperature', 'placeholder'), 'server default 1');
  assert.equal(await page.getAttribute('#set-top-p', 'placeholder'), 'server default 1');
  assert.match(await page.getAttribute('#set-max-tokens', 'placeholder'), /context left \(of \d+\)/);
  await page.fill('#set-system', 'You are terse.');
  await page.fill('#set-temperature', '0');
  await page.fill('#set-max-tokens', 'many');
  assert.match(await page.textContent('#settings-error'), /Max tokens must be a whole number/);
  // Enough tokens that the reply streams for a while even on a fast machine (the trained default
  // model writes ~6,000 tokens a second; 1,500 were over before a CPU-starved page drew 3 frames).
  await page.fill('#set-max-tokens', '8000');
  assert.equal(await page.isHidden('#settings-error'), true);
  await shot(page, 'chat-02-settings');
  await page.click('#settings-close');
});

test('a reply streams in token by token, with its counts and speed under it', async () => {
  // Every change of the reply's text, as the page shows it.
  await page.evaluate(() => {
    window.__states = [];
    new MutationObserver(() => {
      const b = [...document.querySelectorAll('.msg.assistant .body')].at(-1);
      const t = b ? b.textContent : '';
      if (t && t !== '…' && window.__states.at(-1) !== t) window.__states.push(t);
    }).observe(document.getElementById('messages'), { childList: true, subtree: true, characterData: true });
  });
  await sendMessage(page, 'Hello! Who are you?');
  await page.waitForFunction(() => window.__states.length >= 3);
  await shot(page, 'chat-03-streaming');
  const done = await waitReplyDone(page);
  const states = await page.evaluate(() => window.__states);
  assert.ok(states.length >= 4, `only ${states.length} states of the reply were seen: ${JSON.stringify(states)}`);
  assert.ok(states[0].length < states.at(-1).length, 'the text did not grow');
  assert.equal(states.at(-1), done.text);
  assert.equal(done.error, null);
  assert.match(done.stats, /^8000 tokens · [\d.]+ tokens\/s · prompt \d+ tokens · first token after [\d.]+ s · max tokens reached$/);
  const [req] = chatRequests(page);
  assert.deepEqual(req.json.messages, [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hello! Who are you?' }]);
  assert.equal(req.json.temperature, 0);
  assert.equal(req.json.max_tokens, 8000);
  assert.equal('top_p' in req.json, false, 'an unset field must be left to the server');
  assert.deepEqual(req.json.stream_options, { include_usage: true });
  assert.equal(req.json.model, 'default');
  assert.equal(await page.textContent('#title'), 'Hello! Who are you?');
  await shot(page, 'chat-04-reply');
});

test('Stop ends a long reply mid-stream and the server frees the request at once', async () => {
  await setSettings(page, { 'Max tokens': '' });
  await sendMessage(page, 'Tell me a very long story.');
  await page.waitForFunction(() => {
    const b = [...document.querySelectorAll('.msg.assistant .body')].at(-1);
    return b && b.textContent.length > 40 && b.textContent !== '…';
  });
  assert.equal(await running(), 1);
  assert.equal(await page.isVisible('#stop'), true);
  // Enter while a reply comes sends nothing and says why.
  await sendMessage(page, 'one more');
  assert.match(await page.textContent('#notice'), /A reply is still coming: wait for it, or stop it/);
  assert.equal(await page.inputValue('#input'), 'one more');
  await page.fill('#input', '');
  await shot(page, 'chat-05-before-stop');
  await page.click('#stop');
  const ms = await waitFor(async () => (await running()) === 0, { timeoutMs: 3000, what: 'running count 0 after Stop' });
  const done = await waitReplyDone(page);
  assert.match(done.stats, / · stopped$/);
  assert.equal(await page.isVisible('#send'), true);
  assert.equal(await page.isHidden('#notice'), true, 'the "still coming" notice outlived the reply');
  // The request ran without a limit (the context left): only the abort ended it.
  assert.equal('max_tokens' in chatRequests(page).at(-1).json, false);
  await shot(page, 'chat-06-stopped');
  console.log(`running count 0 within ${ms} ms of Stop`);
});

test('Esc stops, Regenerate replaces the last reply', async () => {
  await page.click('.msg.assistant:last-of-type button:has-text("Regenerate")');
  await page.waitForFunction(() => document.querySelector('.msg.assistant.pending .body')?.textContent.length > 20);
  await page.keyboard.press('Escape');
  await waitFor(async () => (await running()) === 0, { timeoutMs: 3000, what: 'running count 0 after Esc' });
  assert.match((await waitReplyDone(page)).stats, /stopped$/);
  assert.equal(await messageCount(), 4);
  await setSettings(page, { 'Max tokens': '12' });
  await page.click('.msg.assistant:last-of-type button:has-text("Regenerate")');
  const done = await waitReplyDone(page);
  assert.match(done.stats, /^12 tokens/);
  assert.equal(await messageCount(), 4);
  const req = chatRequests(page).at(-1).json;
  assert.deepEqual(req.messages.map((m) => m.role), ['system', 'user', 'assistant', 'user']);
});

test('Shift+Enter makes a new line; edit-and-resend drops the later messages', async () => {
  await page.fill('#input', 'line one');
  await page.press('#input', 'Shift+Enter');
  await page.keyboard.type('line two');
  assert.equal(await page.inputValue('#input'), 'line one\nline two');
  await page.fill('#input', '');

  const first = page.locator('.msg.user').first();
  await first.hover();
  await first.locator('button:has-text("Edit")').click();
  await first.locator('textarea.edit').fill('Hello again.');
  await first.locator('textarea.edit').press('Enter');
  await waitReplyDone(page);
  assert.equal(await messageCount(), 2);
  assert.equal(await page.locator('.msg.user .body').first().textContent(), 'Hello again.');
  const req = chatRequests(page).at(-1).json;
  assert.deepEqual(req.messages, [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hello again.' }]);
});

test('conversations: new, switch, rename, export, delete; all kept across reloads', async () => {
  const firstText = await page.locator('.msg.assistant .body').first().textContent();
  await page.click('#new-chat');
  assert.equal(await messageCount(), 0);
  await sendMessage(page, 'A second conversation');
  await waitReplyDone(page);
  assert.equal(await page.locator('#conversations li').count(), 2);

  await page.click('#rename');
  await page.fill('#title-edit', 'Renamed chat');
  await page.press('#title-edit', 'Enter');
  assert.equal(await page.textContent('#title'), 'Renamed chat');
  assert.equal(await page.locator('#conversations li.current').textContent(), 'Renamed chat');

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
  assert.equal(download.suggestedFilename(), 'dsv3-renamed-chat.json');
  const exported = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
  assert.equal(exported.title, 'Renamed chat');
  assert.equal(exported.system, 'You are terse.');
  assert.deepEqual(exported.messages.map((m) => m.role), ['user', 'assistant']);
  assert.equal(exported.messages[0].content, 'A second conversation');
  assert.equal(exported.messages[1].stats.completion_tokens, 12);

  await page.click('#conversations li:has-text("Hello again.") button');
  assert.equal(await page.textContent('#title'), 'Hello again.');
  assert.equal(await page.locator('.msg.assistant .body').first().textContent(), firstText);
  await shot(page, 'chat-07-two-conversations');

  // The exported file imports back as a new conversation, shown; a broken file is refused in words.
  await page.click('#settings-open');
  await page.setInputFiles('#import-file', await download.path());
  await page.waitForFunction(() => !document.getElementById('notice').hidden);
  assert.match(await page.textContent('#notice'), /^Imported 1 conversation from /);
  assert.equal(await page.textContent('#title'), 'Renamed chat');
  assert.equal(await page.locator('#conversations li').count(), 3);
  assert.equal(await page.locator('.msg.user .body').first().textContent(), 'A second conversation');
  assert.match(await page.locator('.msg.assistant .stats').first().textContent(), /^12 tokens .* max tokens reached$/);
  await shot(page, 'chat-08-imported');
  await page.click('#settings-open');
  await page.setInputFiles('#import-file', { name: 'notes.json', mimeType: 'application/json', buffer: Buffer.from('{"a":1}') });
  await page.waitForFunction(() => /Could not/.test(document.getElementById('notice').textContent));
  assert.match(await page.textContent('#notice'), /^Could not import notes\.json: the file is not a conversation exported by this page/);
  page.once('dialog', (d) => d.accept());
  await page.click('#delete');
  assert.equal(await page.locator('#conversations li').count(), 2);
  await page.click('#conversations li:has-text("Hello again.") button');

  await page.reload();
  await loadChat(page, server);
  assert.deepEqual(await page.locator('#conversations li').allTextContents(), ['Renamed chat', 'Hello again.']);
  assert.equal(await page.textContent('#title'), 'Hello again.', 'the conversation on screen before the reload');
  assert.equal(await page.locator('.msg.assistant .body').first().textContent(), firstText);
  assert.match(await page.locator('.msg.assistant .stats').first().textContent(), /^12 tokens/);
  await shot(page, 'chat-09-after-reload');

  // Switching away while a reply streams: it goes on, and is there on coming back.
  await setSettings(page, { 'Max tokens': '' });
  await sendMessage(page, 'Another long one');
  const growing = () => page.evaluate(() => document.querySelector('.msg.assistant.pending .body')?.textContent.length ?? -1);
  await page.waitForFunction(() => document.querySelector('.msg.assistant.pending .body')?.textContent.length > 10);
  await page.click('#conversations li:has-text("Renamed chat") button');
  assert.equal(await page.textContent('#title'), 'Renamed chat');
  assert.equal(await messageCount(), 2);
  assert.equal(await page.locator('#conversations li.busy').textContent(), 'Hello again.');
  await shot(page, 'chat-10-switched-while-streaming');
  await page.click('#conversations li:has-text("Hello again.") button');
  const before = await growing();
  await page.waitForFunction((n) => document.querySelector('.msg.assistant.pending .body')?.textContent.length > n + 20, before);
  await page.keyboard.press('Escape');
  await waitFor(async () => (await running()) === 0, { timeoutMs: 3000, what: 'running count 0' });
  assert.match((await waitReplyDone(page)).stats, /stopped$/);
  await setSettings(page, { 'Max tokens': '12' });

  await page.click('#conversations li:has-text("Renamed chat") button');
  page.once('dialog', (d) => d.accept());
  await page.click('#delete');
  assert.deepEqual(await page.locator('#conversations li').allTextContents(), ['Hello again.']);
  await page.reload();
  await loadChat(page, server);
  assert.deepEqual(await page.locator('#conversations li').allTextContents(), ['Hello again.']);
  assert.equal(await messageCount(), 4);
});

test('dark theme', async () => {
  const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const light = await bg();
  while ((await page.textContent('#theme')) !== '☾ Dark') await page.click('#theme');
  assert.notEqual(await bg(), light);
  await shot(page, 'chat-11-dark');
  await page.reload();
  await loadChat(page, server);
  assert.equal(await page.textContent('#theme'), '☾ Dark', 'the theme is kept');
  assert.deepEqual(page.offHost, [], 'requests to other hosts');
  assert.deepEqual(page.errors, [], 'script errors');
});
