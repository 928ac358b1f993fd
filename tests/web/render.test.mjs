// How the chat page renders replies: Markdown with code blocks and their Copy buttons, and
// hostile text (a <script>, an event attribute, a javascript: link, an image on another host)
// shown as text and never run or fetched. The replies come from a stored conversation
// (localStorage, as after a reload) and from a stream the test plays in place of the server's
// (page.route), which also carries reasoning before the answer.
// Screenshots: build/web-artifacts/render-*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPage, loadChat, shot, sendMessage, waitReplyDone } from './browser.mjs';

let server;
let browser;
let page;

const CODE = 'function greet(name) {\n  return `<b>${name}</b>`; // <script>alert("code")</script>\n}';
const REPLY = [
  '## A heading',
  '',
  'Some **bold** text, `inline code`, and a list:',
  '',
  '- one',
  '- two',
  '',
  '| a | b |',
  '|---|---|',
  '| 1 | 2 |',
  '',
  '```js',
  CODE,
  '```',
  '',
  'Raw HTML is text: <script>window.__pwned = "script"</script> and <img src=x onerror="window.__pwned = \'img\'">',
  '',
  '<div onmouseover="window.__pwned = \'div\'">a block of HTML</div>',
  '',
  '[a javascript link](javascript:window.__pwned=\'link\') and [a real link](https://example.com/page)',
  '',
  '![an image elsewhere](https://example.com/tracker.png)',
].join('\n');

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  page = await openPage(browser, server);
});
after(async () => {
  await browser?.close();
  if (server) await server.stop();
});

async function checkHostileReply(article) {
  const text = await article.locator('.body').textContent();
  assert.ok(text.includes('<script>window.__pwned = "script"</script>'), `the <script> text is not shown: ${text}`);
  assert.ok(text.includes('<img src=x onerror='), 'the <img> text is not shown');
  assert.ok(text.includes('<div onmouseover='), 'the block of HTML is not shown as text');
  const dom = await article.evaluate((el) => ({
    scripts: el.querySelectorAll('script').length,
    images: el.querySelectorAll('img').length,
    handlers: [...el.querySelectorAll('*')].flatMap((n) => [...n.attributes].map((a) => a.name)).filter((n) => n.startsWith('on')),
    jsLinks: [...el.querySelectorAll('a')].filter((a) => /^\s*javascript:/i.test(a.getAttribute('href') || '')).length,
    links: [...el.querySelectorAll('a')].map((a) => [a.textContent, a.getAttribute('href'), a.getAttribute('rel')]),
  }));
  assert.equal(dom.scripts, 0);
  assert.equal(dom.images, 0);
  assert.deepEqual(dom.handlers, []);
  assert.equal(dom.jsLinks, 0, 'a javascript: link survived');
  assert.deepEqual(dom.links.find((l) => l[0] === 'a real link'), ['a real link', 'https://example.com/page', 'noopener noreferrer']);
  assert.ok(dom.links.some((l) => l[0] === '[image: an image elsewhere]'), `the image is not a link: ${JSON.stringify(dom.links)}`);
  // Hover over everything: no handler may fire.
  await article.locator('.body').hover();
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
}

test('a stored reply renders as Markdown; HTML in it is shown, never run', async () => {
  await loadChat(page, server);
  await page.evaluate((reply) => {
    const c = {
      id: 'stored1', title: 'Stored markdown', titleSet: true, created: Date.now(), updated: Date.now(),
      messages: [
        { id: 'u1', role: 'user', content: 'Show me <b>markdown</b>' },
        { id: 'a1', role: 'assistant', content: reply, stats: { completion_tokens: 120, tokens_per_s: 33.3, prompt_tokens: 9, ttft_s: 0.2 } },
      ],
    };
    localStorage.setItem('dsv3.chat.v1', JSON.stringify({ conversations: [c], currentId: c.id }));
  }, REPLY);
  await page.reload();
  await loadChat(page, server);
  const a = page.locator('.msg.assistant').first();
  assert.equal(await a.locator('h2').textContent(), 'A heading');
  assert.equal(await a.locator('strong').textContent(), 'bold');
  assert.equal(await a.locator('li').count(), 2);
  assert.equal(await a.locator('table td').count(), 2);
  assert.equal(await page.locator('.msg.user .body').textContent(), 'Show me <b>markdown</b>', 'user text is plain');
  // The code block: its language, its text exactly, a Copy button that copies it.
  const block = a.locator('.code');
  assert.equal(await block.count(), 1);
  assert.equal(await block.locator('.code-head span').textContent(), 'js');
  assert.equal(await block.locator('pre code').textContent(), CODE + '\n');
  await block.locator('button.copy-code').click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), CODE + '\n');
  assert.equal(await block.locator('button.copy-code').textContent(), 'Copied');
  await checkHostileReply(a);
  await shot(page, 'render-01-markdown');
  assert.deepEqual(page.offHost, [], 'the image or link was fetched');
  assert.deepEqual(page.errors, []);
});

// An SSE body in the server's shape: reasoning tokens, then content tokens, usage, [DONE].
function fakeStream(reasoning, content) {
  const chunk = (delta, extra = {}) => ({ id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1, model: 'default',
                                          choices: [{ index: 0, delta, logprobs: null, finish_reason: null }], ...extra });
  const events = [];
  const pieces = (s) => s.match(/[\s\S]{1,7}/g);
  pieces(reasoning).forEach((t, i) => events.push(chunk(i === 0 ? { role: 'assistant', reasoning_content: t } : { reasoning_content: t })));
  pieces(content).forEach((t) => events.push(chunk({ content: t })));
  events.at(-1).choices[0].finish_reason = 'stop';
  events.push({ id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1, model: 'default', choices: [],
                usage: { prompt_tokens: 11, completion_tokens: events.length, total_tokens: 11 + events.length } });
  return events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('') + 'data: [DONE]\n\n';
}

test('a streamed reply with reasoning: the reasoning folds away once the answer comes', async () => {
  await page.click('#new-chat');
  await page.route('**/v1/chat/completions', (route) => route.fulfill({
    status: 200, headers: { 'content-type': 'text/event-stream' },
    body: fakeStream('The user wants **Markdown**. I will show a code block.', REPLY),
  }));
  await sendMessage(page, 'Markdown please');
  const done = await waitReplyDone(page);
  await page.unroute('**/v1/chat/completions');
  assert.equal(done.error, null);
  assert.equal(done.reasoning.trim(), 'The user wants Markdown. I will show a code block.');
  const a = page.locator('.msg.assistant').last();
  assert.equal(await a.locator('details.reasoning').getAttribute('open'), null, 'reasoning stays open after the answer');
  assert.match(await a.locator('details.reasoning summary').textContent(), /^Reasoning \(\d+\.\d s\)$/);
  assert.match(done.stats, /^\d+ tokens · .*prompt 11 tokens/);
  await checkHostileReply(a);
  await a.locator('details.reasoning summary').click();
  assert.equal(await a.locator('details.reasoning').getAttribute('open'), '');
  await shot(page, 'render-02-reasoning-and-markdown');
  // The theme follows the system's until the user picks one.
  const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(await bg(), 'rgb(255, 255, 255)');
  await page.emulateMedia({ colorScheme: 'dark' });
  assert.equal(await bg(), 'rgb(23, 24, 28)');
  await shot(page, 'render-03-dark');
  assert.deepEqual(page.offHost, []);
  assert.deepEqual(page.errors, []);
});
