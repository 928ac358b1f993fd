// SERVER.md §5 item 8, §2.3: reasoning output. Model directories in a temp dir share models/default's
// weights, with R1's <think>/</think> tokens (models/default's own, or for DeepSeek-V3's tokenizer ids
// 128798/128799, which R1 gives them in place of V3's placeholders) and another chat template:
//   - R1 style: the generation prompt ends with <think>\n, --reasoning-parser deepseek_r1;
//   - V3.1 style: `thinking` template kwarg picks <think> or </think>, --reasoning-parser deepseek_v3.
// The model never writes </think> unless logit_bias makes it (it never saw one); the raw text the parser
// splits comes from /v1/completions on the same token ids (no parsing there).
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startServer, makeModelDir, addThinkTokens, defaultChatTemplate, streamRaw, chatTexts } from './helpers.mjs';

const THINK = '<think>';
// logit_bias values tried on </think>: a random model needs a few; a trained one, which never saw
// </think>, up to twenty.
const BIASES = [1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 6, 7, ...Array.from({ length: 27 }, (_, i) => 7.5 + i * 0.5)];
const END = '</think>';

// R1's tokenizer: <think>/</think> as added tokens (see addThinkTokens).
function thinkModelDir(name, chatTemplate) {
  const m = makeModelDir(name, { chatTemplate });
  return { ...m, ...addThinkTokens(m.dir) };
}

// Raw model output for a chat request: completions on the rendered prompt's ids, no parsing.
async function rawOutput(server, messages, kwargs, extra) {
  const rendered = await (await server.post('/apply-template', { messages, chat_template_kwargs: kwargs })).json();
  const tk = await (await server.post('/tokenize', { prompt: rendered.prompt, add_special_tokens: false })).json();
  const r = await (await server.post('/v1/completions', { prompt: tk.tokens, temperature: 0, skip_special_tokens: false, ...extra })).json();
  assert.ok(r.choices, JSON.stringify(r));
  return { prompt: rendered.prompt, text: r.choices[0].text, finish: r.choices[0].finish_reason };
}

// Streams a chat request over raw SSE; returns concatenated reasoning/content and the finish reason.
async function streamed(server, body) {
  const { events } = await streamRaw(server, '/v1/chat/completions', body);
  assert.equal(events[events.length - 1], '[DONE]');
  const chunks = events.slice(0, -1);
  for (const ch of chunks) assert.ok(!ch.error, JSON.stringify(ch));
  const finish = chunks.flatMap((c) => c.choices).find((c) => c.finish_reason)?.finish_reason;
  const sawReasoning = chunks.some((c) => c.choices.some((x) => typeof x.delta.reasoning_content === 'string' && x.delta.reasoning_content.length));
  const sawContent = chunks.some((c) => c.choices.some((x) => typeof x.delta.content === 'string' && x.delta.content.length));
  return { reasoning: chatTexts(chunks, 'reasoning_content')[0], content: chatTexts(chunks, 'content')[0], finish, sawReasoning, sawContent };
}

describe('R1-style template (<think>\\n in the generation prompt), --reasoning-parser deepseek_r1', () => {
  const template = defaultChatTemplate().replace(
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}",
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}");
  let server;
  let dir;
  let endId;
  const messages = [{ role: 'user', content: 'Why is the sky blue?' }];

  before(async () => {
    assert.notEqual(template, defaultChatTemplate(), 'the generation prompt was not found in the default template');
    dir = thinkModelDir('r1', template);
    server = await startServer({ model: dir.dir, args: ['--reasoning-parser', 'deepseek_r1'] });
    const tk = await (await server.post('/tokenize', { prompt: END, add_special_tokens: false })).json();
    assert.deepEqual(tk.tokens, [dir.endId], '</think> is one token');
    endId = tk.tokens[0];
  });
  after(async () => {
    if (server) await server.kill();
    dir?.cleanup();
  });

  test('the rendered prompt ends with <think>\\n', async () => {
    const r = await (await server.post('/apply-template', { messages })).json();
    assert.ok(r.prompt.endsWith('<｜Assistant｜><think>\n'), JSON.stringify(r.prompt));
  });

  test('no </think> in the output (truncated thinking): reasoning_content = all text, content null, finish length', async () => {
    const body = { messages, temperature: 0, max_tokens: 20, logit_bias: { [endId]: -100 } };
    const raw = await rawOutput(server, messages, undefined, { max_tokens: 20, logit_bias: { [endId]: -100 } });
    assert.ok(!raw.text.includes(END));
    const r = await (await server.post('/v1/chat/completions', body)).json();
    const msg = r.choices[0].message;
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(msg.content, null, `content must be null: ${JSON.stringify(msg)}`);
    assert.equal(msg.reasoning_content, raw.text, 'reasoning_content is all the text');
    assert.equal(r.usage.completion_tokens, 20, 'reasoning tokens count as completion tokens');
    const s = await streamed(server, body);
    assert.equal(s.reasoning, msg.reasoning_content, 'streamed reasoning_content == non-stream');
    assert.ok(!s.sawContent, 'no content deltas');
    assert.equal(s.finish, 'length');
  });

  // logit_bias (and frequency_penalty, against repeats) that make the greedy output write </think>
  // once, in the middle. Returns {extra, raw, at} or null.
  async function findSplit(kwargs, maxTokens) {
    for (const fp of [2, 0]) {
      for (const bias of BIASES) {
        const extra = { max_tokens: maxTokens, logit_bias: { [endId]: bias }, frequency_penalty: fp };
        const raw = await rawOutput(server, messages, kwargs, extra);
        const at = raw.text.indexOf(END);
        if (at > 0 && at === raw.text.lastIndexOf(END) && at < raw.text.length - END.length - 1) return { extra, raw, at };
      }
    }
    return null;
  }

  test('</think> in the output: reasoning before it, content after it; stream == non-stream', async () => {
    const found = await findSplit(undefined, 24);
    assert.ok(found, 'no logit_bias puts one </think> in the middle of the greedy output');
    const { extra, raw, at } = found;
    const body = { messages, temperature: 0, ...extra };
    const r = await (await server.post('/v1/chat/completions', body)).json();
    const msg = r.choices[0].message;
    assert.equal(msg.reasoning_content, raw.text.slice(0, at), `reasoning = text before </think> (raw ${JSON.stringify(raw.text)})`);
    assert.equal(msg.content, raw.text.slice(at + END.length), 'content = text after </think>');
    const s = await streamed(server, body);
    assert.equal(s.reasoning, msg.reasoning_content, 'streamed reasoning == non-stream');
    assert.equal(s.content, msg.content, 'streamed content == non-stream');
    assert.equal(s.finish, r.choices[0].finish_reason);
  });

  test('a second </think> after the first stays in the content (everything after the first one is content)', async () => {
    // The greedy output with some bias (and a frequency penalty against writing it back to back)
    // writes </think> twice.
    let found = null;
    search: for (const fp of [0, 1, 2]) {
      for (let bias = 2; bias <= 12; bias += 0.5) {
        const extra = { max_tokens: 24, logit_bias: { [endId]: bias }, frequency_penalty: fp };
        const raw = await rawOutput(server, messages, undefined, extra);
        const at = raw.text.indexOf(END);
        if (at >= 0 && raw.text.indexOf(END, at + END.length) > at + END.length) { found = { extra, raw, at }; break search; }
      }
    }
    assert.ok(found, 'no bias gives two separate </think>');
    const body = { messages, temperature: 0, ...found.extra };
    const r = await (await server.post('/v1/chat/completions', body)).json();
    assert.equal(r.choices[0].message.reasoning_content, found.raw.text.slice(0, found.at));
    const s = await streamed(server, body);
    assert.equal(s.content, r.choices[0].message.content ?? '', 'streamed content == non-stream');
    assert.equal(r.choices[0].message.content, found.raw.text.slice(found.at + END.length),
                 'content = the text after the first </think>, verbatim (vLLM/SGLang partition on the first one)');
  });

  test('clean shutdown', async () => {
    await server.stop(6000);
    server = null;
  });
});

describe('V3.1-style template (thinking kwarg), --reasoning-parser deepseek_v3', () => {
  // DeepSeek-V3.1's generation prompt: <｜Assistant｜><think> when thinking, else <｜Assistant｜></think>.
  const template =
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}" +
    "{% if not thinking is defined %}{% set thinking = false %}{% endif %}" +
    "{% set ns = namespace(system_prompt='', is_first_sp=true, is_last_user=false) %}" +
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}" +
    "{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}" +
    "{%- else %}{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- endif %}{%- endif %}{%- endfor %}" +
    "{{ bos_token }}{{ ns.system_prompt }}" +
    "{%- for message in messages %}" +
    "{%- if message['role'] == 'user' %}{%- set ns.is_last_user = true -%}{{'<｜User｜>' + message['content']}}{%- endif %}" +
    "{%- if message['role'] == 'assistant' %}{%- if ns.is_last_user %}{{'<｜Assistant｜></think>'}}{%- endif %}" +
    "{%- set ns.is_last_user = false -%}{%- set content = message['content'] -%}" +
    "{%- if '</think>' in content %}{%- set content = content.split('</think>', 1)[1] -%}{%- endif %}" +
    "{{ content + '<｜end▁of▁sentence｜>' }}{%- endif %}" +
    "{%- endfor -%}" +
    "{%- if add_generation_prompt and ns.is_last_user %}{{'<｜Assistant｜>'}}{%- if not thinking %}{{'</think>'}}{%- else %}{{'<think>'}}{%- endif %}{% endif %}";
  let server;
  let dir;
  let endId;
  const messages = [{ role: 'system', content: 'You are helpful.' }, { role: 'user', content: 'Plan a trip to Rome.' }];

  before(async () => {
    dir = thinkModelDir('v31', template);
    server = await startServer({ model: dir.dir, args: ['--reasoning-parser', 'deepseek_v3'] });
    endId = (await (await server.post('/tokenize', { prompt: END, add_special_tokens: false })).json()).tokens[0];
    assert.equal(endId, dir.endId);
  });
  after(async () => {
    if (server) await server.kill();
    dir?.cleanup();
  });

  test('/apply-template: thinking true → ends <｜Assistant｜><think>; false or absent → <｜Assistant｜></think>', async () => {
    const on = await (await server.post('/apply-template', { messages, chat_template_kwargs: { thinking: true } })).json();
    const off = await (await server.post('/apply-template', { messages, chat_template_kwargs: { thinking: false } })).json();
    const dflt = await (await server.post('/apply-template', { messages })).json();
    assert.ok(on.prompt.endsWith('<｜Assistant｜><think>'), JSON.stringify(on.prompt));
    assert.ok(off.prompt.endsWith('<｜Assistant｜></think>'), JSON.stringify(off.prompt));
    assert.equal(dflt.prompt, off.prompt);
    assert.ok(on.prompt.startsWith('<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Plan a trip to Rome.'));
    // Chat prompt token counts follow the rendered prompts.
    const ton = await (await server.post('/tokenize', { messages, chat_template_kwargs: { thinking: true } })).json();
    const tonText = await (await server.post('/tokenize', { prompt: on.prompt, add_special_tokens: false })).json();
    assert.deepEqual(ton.tokens, tonText.tokens);
  });

  test('thinking true: output parsed as reasoning (content null); thinking false: plain content', async () => {
    const common = { messages, temperature: 0, max_tokens: 16, logit_bias: { [endId]: -100 } };
    const rawOn = await rawOutput(server, messages, { thinking: true }, { max_tokens: 16, logit_bias: { [endId]: -100 } });
    const rawOff = await rawOutput(server, messages, { thinking: false }, { max_tokens: 16, logit_bias: { [endId]: -100 } });

    const on = await (await server.post('/v1/chat/completions', { ...common, chat_template_kwargs: { thinking: true } })).json();
    assert.equal(on.choices[0].message.content, null, JSON.stringify(on.choices[0]));
    assert.equal(on.choices[0].message.reasoning_content, rawOn.text);
    assert.equal(on.usage.prompt_tokens,
      (await (await server.post('/tokenize', { messages, chat_template_kwargs: { thinking: true } })).json()).count);
    const sOn = await streamed(server, { ...common, chat_template_kwargs: { thinking: true } });
    assert.equal(sOn.reasoning, rawOn.text);
    assert.ok(!sOn.sawContent);

    const off = await (await server.post('/v1/chat/completions', { ...common, chat_template_kwargs: { thinking: false } })).json();
    assert.equal(off.choices[0].message.content, rawOff.text);
    assert.ok(off.choices[0].message.reasoning_content === undefined || off.choices[0].message.reasoning_content === null,
              `no reasoning without thinking: ${JSON.stringify(off.choices[0].message)}`);
    const sOff = await streamed(server, { ...common, chat_template_kwargs: { thinking: false } });
    assert.equal(sOff.content, rawOff.text);
    assert.ok(!sOff.sawReasoning);
    // The kwarg absent = thinking off.
    const dflt = await (await server.post('/v1/chat/completions', common)).json();
    assert.equal(dflt.choices[0].message.content, rawOff.text);
    // Different prompts → (with this random model) different greedy text.
    assert.notEqual(rawOn.prompt, rawOff.prompt);
  });

  test('thinking true with </think> in the output: split into reasoning and content, stream == non-stream', async () => {
    let found = null;
    for (const fp of [2, 0]) {
      for (const bias of BIASES) {
        const extra = { max_tokens: 20, logit_bias: { [endId]: bias }, frequency_penalty: fp };
        const raw = await rawOutput(server, messages, { thinking: true }, extra);
        const at = raw.text.indexOf(END);
        if (at > 0 && at === raw.text.lastIndexOf(END) && at < raw.text.length - END.length - 1) { found = { extra, raw, at }; break; }
      }
      if (found) break;
    }
    assert.ok(found, 'no logit_bias puts one </think> in the middle of the greedy output');
    const body = { messages, temperature: 0, ...found.extra, chat_template_kwargs: { thinking: true } };
    const r = await (await server.post('/v1/chat/completions', body)).json();
    assert.equal(r.choices[0].message.reasoning_content, found.raw.text.slice(0, found.at));
    assert.equal(r.choices[0].message.content, found.raw.text.slice(found.at + END.length));
    const s = await streamed(server, body);
    assert.equal(s.reasoning, r.choices[0].message.reasoning_content);
    assert.equal(s.content, r.choices[0].message.content);
    // thinking off: no reasoning parsing at all.
    const offBody = { ...body, chat_template_kwargs: { thinking: false } };
    const rawOff = await rawOutput(server, messages, { thinking: false }, found.extra);
    const off = await (await server.post('/v1/chat/completions', offBody)).json();
    assert.ok(off.choices[0].message.reasoning_content == null);
    assert.equal(off.choices[0].message.content, rawOff.text, 'thinking off: content is the raw text');
  });

  test('clean shutdown', async () => {
    await server.stop(6000);
    server = null;
  });
});

