// SERVER.md §5 item 7 (the parts an end-to-end test can reach with a random-weight model, which
// never writes a tool call by itself; the parsers' chunking fuzz is src/serve/output_parser_test.cpp):
// requests with tools / tool_choice are accepted and answered without an empty tool_calls array,
// the stream() helper finalizes with tools, tool history renders through the chat template with
// arguments given as a JSON string or as an object, and malformed tool input is a 400, never a 500.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, runBin, MODEL, assertErrorShape } from './helpers.mjs';

let server;
let client;

before(async () => {
  server = await startServer();
  client = server.client();
});

after(async () => {
  if (server) await server.kill();
});

const TOOLS = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}];
const MESSAGES = [{ role: 'user', content: 'What is the weather in Paris?' }];

test('the server picked the V3 tool-call parser for the DeepSeek-V3 template', () => {
  assert.match(server.stdout, /tool calls deepseek_v3/, server.stdout);
});

test('tools + tool_choice auto/none/named: 200, no empty tool_calls array, a finish_reason', async () => {
  for (const tool_choice of [undefined, 'auto', 'none', { type: 'function', function: { name: 'get_weather' } }]) {
    const body = { model: 'default', messages: MESSAGES, tools: TOOLS, temperature: 0, max_tokens: 8, ...(tool_choice ? { tool_choice } : {}) };
    const r = await client.chat.completions.create(body);
    const c = r.choices[0];
    assert.ok(c.finish_reason, JSON.stringify(c));
    if (c.message.tool_calls !== undefined && c.message.tool_calls !== null)
      assert.ok(c.message.tool_calls.length > 0, `empty tool_calls array for tool_choice ${JSON.stringify(tool_choice)}`);
    if (!c.message.tool_calls?.length) assert.notEqual(c.finish_reason, 'tool_calls', 'finish_reason tool_calls without calls');
    // The same request streamed, through the SDK's helper (checks role, finish_reason, tool-call deltas).
    const final = await client.chat.completions.stream(body).finalChatCompletion();
    assert.equal(final.choices[0].message.content ?? '', c.message.content ?? '');
    assert.equal(final.choices[0].finish_reason, c.finish_reason);
  }
  // Without tools the reply is the same text (the DeepSeek-V3 template does not render tool definitions).
  const plain = await client.chat.completions.create({ model: 'default', messages: MESSAGES, temperature: 0, max_tokens: 8 });
  const withTools = await client.chat.completions.create({ model: 'default', messages: MESSAGES, tools: TOOLS, temperature: 0, max_tokens: 8 });
  assert.equal(withTools.choices[0].message.content, plain.choices[0].message.content);
});

test('tool history renders through the template: arguments as a JSON string or an object give the same prompt', async () => {
  const history = (args) => [
    ...MESSAGES,
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: args } }] },
    { role: 'tool', tool_call_id: 'call_1', content: '{"temp_c": 21}' },
  ];
  const asString = await (await server.post('/apply-template', { messages: history('{"city": "Paris"}') })).json();
  assert.ok(asString.prompt, JSON.stringify(asString));
  assert.ok(asString.prompt.includes('<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜>'),
            JSON.stringify(asString.prompt));
  assert.ok(asString.prompt.includes('<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>{"temp_c": 21}<｜tool▁output▁end｜>'));
  // An object reaches the template as an object (as transformers passes it); DeepSeek-V3's template
  // joins it to text with +, which jinja2 refuses, so the server renders it as json.dumps' text:
  // the same prompt as the string a Python client sends.
  const asObject = await (await server.post('/apply-template', { messages: history({ city: 'Paris' }) })).json();
  assert.equal(asObject.prompt, asString.prompt, 'an arguments object is rendered as its JSON text');
  const nested = await (await server.post('/apply-template', { messages: history({ n: 2.5, list: [1, true, null], s: 'é' }) })).json();
  assert.ok(nested.prompt?.includes('```json\n{"n": 2.5, "list": [1, true, null], "s": "é"}\n```'), JSON.stringify(nested));
  // The same as `dsv3 template` renders.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsv3-serve-tools-'));
  try {
    fs.writeFileSync(path.join(tmp, 'm.json'), JSON.stringify(history('{"city": "Paris"}')));
    const cli = runBin(['template', '--model', MODEL, '--add-generation-prompt', '--messages', path.join(tmp, 'm.json')]);
    assert.equal(cli.status, 0, cli.stderr);
    assert.equal(asString.prompt, cli.stdout);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  // And a chat request with that history is answered.
  const r = await client.chat.completions.create({ model: 'default', messages: history('{"city": "Paris"}'), tools: TOOLS, max_tokens: 4 });
  assert.equal(r.choices.length, 1);
});

test('malformed tool input → 400 naming the field (never 5xx)', async () => {
  const cases = [
    [{ tools: [{ type: 'function' }] }, 'tools[0].function'],
    [{ tools: [{ type: 'function', function: { description: 'no name' } }] }, 'tools[0].function.name'],
    [{ tool_choice: 'required' }, 'tool_choice'],
    [{ tools: TOOLS, tool_choice: 'sometimes' }, 'tool_choice'],
    [{ tools: TOOLS, tool_choice: { type: 'function' } }, 'tool_choice.function.name'],
    [{ messages: [...MESSAGES, { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'get_weather', arguments: 5 } }] }] },
     'messages[1].tool_calls[0].function.arguments'],
    [{ messages: [...MESSAGES, { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function' }] }] },
     'messages[1].tool_calls[0].function'],
    [{ messages: [...MESSAGES, { role: 'assistant', content: null, tool_calls: 'x' }] }, 'messages[1].tool_calls'],
  ];
  for (const [extra, field] of cases) {
    const res = await server.post('/v1/chat/completions', { model: 'default', messages: MESSAGES, max_tokens: 2, ...extra });
    const body = await res.json();
    assert.equal(res.status, 400, `${JSON.stringify(extra)} → ${res.status} ${JSON.stringify(body)}`);
    assertErrorShape(body, field);
    assert.equal(body.error.param, field, JSON.stringify(body));
  }
  // Malformed JSON in a history call's arguments string: the template renders it as text (DeepSeek's
  // template concatenates the string); either way it is not a server error.
  const res = await server.post('/v1/chat/completions', { model: 'default', max_tokens: 2, messages: [
    ...MESSAGES, { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'get_weather', arguments: '{"city": ' } }] },
    { role: 'tool', tool_call_id: 'c', content: 'x' }] });
  assert.ok(res.status === 200 || res.status === 400, `malformed arguments string → ${res.status}`);
});

test('clean shutdown: SIGTERM → exit 0 within 6 s', async () => {
  await server.stop(6000);
  server = null;
});
