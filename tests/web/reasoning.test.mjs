// The chat page with a model whose chat template opens <think> (DeepSeek-R1's way): the reply
// streams into the reasoning block, open while the model thinks. The model is models/default's
// weights with R1's <think>/</think> tokens (as tests/server/reasoning.test.mjs makes it) and R1's
// sampling defaults in generation_config.json, which the Settings dialog must show.
// The model never writes </think> (it never saw one), so the whole reply is reasoning and the answer stays empty.
// Screenshots: build/web-artifacts/reasoning-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  startServer, makeModelDir, addThinkTokens, defaultChatTemplate, launchBrowser, openPage, loadChat, shot, setSettings, sendMessage,
  waitReplyDone, chatRequests,
} from './browser.mjs';

let server;
let browser;
let page;
let dir;

// R1's tokenizer: <think>/</think> as added tokens (tests/server/helpers.mjs addThinkTokens).
function r1ModelDir() {
  const template = defaultChatTemplate().replace(
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}",
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}");
  assert.notEqual(template, defaultChatTemplate(), 'the generation prompt was not found in the default template');
  const m = makeModelDir('web-r1', { chatTemplate: template });
  addThinkTokens(m.dir);
  fs.writeFileSync(path.join(m.dir, 'generation_config.json'), JSON.stringify({ temperature: 0.6, top_p: 0.95 }));
  return m;
}

before(async () => {
  dir = r1ModelDir();
  server = await startServer({ model: dir.dir, args: ['--reasoning-parser', 'deepseek_r1'] });
  browser = await launchBrowser();
  page = await openPage(browser, server);
});
after(async () => {
  await browser?.close();
  if (server) await server.stop();
  dir?.cleanup();
});

test('Settings show the model\'s own sampling defaults (generation_config.json)', async () => {
  await loadChat(page, server);
  await page.click('#settings-open');
  assert.equal(await page.getAttribute('#set-temperature', 'placeholder'), 'server default 0.6');
  assert.equal(await page.getAttribute('#set-top-p', 'placeholder'), 'server default 0.95');
  await page.click('#settings-close');
});

test('a template that opens <think>: the reply streams into an open reasoning block', async () => {
  // Enough tokens that the reply is still streaming when the screenshot is taken (the default
  // model writes thousands of tokens a second).
  await setSettings(page, { 'Max tokens': '3000', Temperature: '0' });
  await sendMessage(page, 'Why is the sky blue?');
  await page.waitForFunction(() => document.querySelector('.msg.assistant.pending details.reasoning .md')?.textContent.length > 10);
  const a = page.locator('.msg.assistant').last();
  assert.equal(await a.locator('details.reasoning summary').textContent(), 'Thinking…');
  assert.equal(await a.locator('details.reasoning').getAttribute('open'), '');
  await shot(page, 'reasoning-01-thinking');
  const done = await waitReplyDone(page);
  assert.ok(done.reasoning.trim().length > 0, 'no reasoning shown');
  assert.equal(done.text.trim(), '', 'the model never closed </think>: no answer text');
  assert.match(done.stats, /^3000 tokens · .* · max tokens reached$/);
  assert.match(await a.locator('details.reasoning summary').textContent(), /^Reasoning \(\d+\.\d s\)$/);
  assert.equal(await a.locator('details.reasoning').getAttribute('open'), '', 'no answer came: the reasoning stays open');
  await shot(page, 'reasoning-02-done');
  await a.locator('details.reasoning summary').click();
  assert.equal(await a.locator('details.reasoning').getAttribute('open'), null);
  await shot(page, 'reasoning-03-folded');
  // Reloaded, the reply keeps its reasoning.
  await page.reload();
  await loadChat(page, server);
  assert.equal((await page.locator('.msg.assistant details.reasoning .md').textContent()).trim(), done.reasoning.trim());
  assert.deepEqual(page.offHost, []);
  assert.deepEqual(page.errors, []);
});

test('the Thinking switch sends chat_template_kwargs.thinking (V3.1\'s hybrid template reads it)', async () => {
  assert.equal('chat_template_kwargs' in chatRequests(page).at(-1).json, false);
  await page.click('#settings-open');
  await page.getByLabel('Thinking', { exact: true }).check();
  await shot(page, 'reasoning-04-settings');
  await page.click('#settings-close');
  await setSettings(page, { 'Max tokens': '5' });
  await sendMessage(page, 'And why is it red at sunset?');
  await waitReplyDone(page);
  assert.deepEqual(chatRequests(page).at(-1).json.chat_template_kwargs, { thinking: true });
});
