#!/usr/bin/python3
"""Builds tests/data/tokenizer/chat_cases.json: chat-template conformance cases.

Each case is {"messages": [...], "add_generation_prompt": bool, ...extra variables}; a case with
"template" renders that template source instead of DeepSeek-V3's. The expected output of every
case comes from @huggingface/jinja (tests/oracle/render.mjs). Deterministic.
Usage: python3 make_chat_cases.py > chat_cases.json
"""
import json
import random

# DeepSeek-V2 style (User:/Assistant: turns).
V2 = ("{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
      "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}"
      "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}"
      "{% elif message['role'] == 'system' %}{{ message['content'] + '\n\n' }}{% endif %}{% endfor %}"
      "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")

# R1 style: drops the reasoning before </think> in past assistant turns, opens <think> at the end.
R1 = """{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}
{%- set ns = namespace(system_prompt='', is_tool=false) -%}
{%- for message in messages -%}
  {%- if message['role'] == 'system' -%}{% set ns.system_prompt = ns.system_prompt ~ message['content'] %}{%- endif -%}
{%- endfor -%}
{{ bos_token }}{{ ns.system_prompt }}
{%- for message in messages %}
  {%- if message['role'] == 'user' -%}
    {{ '<｜User｜>' + message['content'] }}
  {%- elif message['role'] == 'assistant' and message['content'] is not none -%}
    {%- set content = message['content'] -%}
    {%- if '</think>' in content -%}{%- set content = content.split('</think>')[-1] -%}{%- endif -%}
    {{ '<｜Assistant｜>' + content.strip() + '<｜end▁of▁sentence｜>' }}
  {%- endif -%}
{%- endfor -%}
{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"""

# Kimi / Moonlight style (im_* markers), with tools rendered as JSON.
KIMI = """{%- if tools -%}
  <|im_system|>tool_declare<|im_middle|>{{ tools | tojson }}<|im_end|>
{%- endif -%}
{%- for message in messages -%}
  {%- if loop.first and messages[0]['role'] != 'system' -%}
    <|im_system|>system<|im_middle|>You are a helpful assistant<|im_end|>
  {%- endif -%}
  {%- if message['role'] == 'system' -%}<|im_system|>system<|im_middle|>
  {%- elif message['role'] == 'user' -%}<|im_user|>user<|im_middle|>
  {%- elif message['role'] == 'tool' -%}<|im_system|>tool<|im_middle|>
  {%- else -%}<|im_assistant|>assistant<|im_middle|>
  {%- endif -%}
  {%- if message['content'] is string -%}{{ message['content'] }}
  {%- elif message['content'] is not none -%}
    {%- for part in message['content'] -%}{%- if part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}{%- endfor -%}
  {%- endif -%}
  {%- if message.get('tool_calls') -%}
    {%- for call in message['tool_calls'] -%}<|tool_call_begin|>{{ call['id'] }}<|tool_call_argument_begin|>{{ call['function']['arguments'] }}<|tool_call_end|>{%- endfor -%}
  {%- endif -%}
  <|im_end|>
{%- endfor -%}
{%- if add_generation_prompt -%}<|im_assistant|>assistant<|im_middle|>{%- endif -%}"""

# Feature templates: each exercises a group of Jinja constructs.
FEATURES = [
    # {% generation %} markers (assistant masks) and their white space
    """{%- for m in messages -%}
{%- if m.role == 'assistant' %}
A:  {% generation %}  {{ m.content }}  {% endgeneration %}
{% elif m.role == 'user' %}U: {%- generation -%}   {{ m.content }}  {%- endgeneration %} |
{% else %}{{ m.role }}: {{ m.content }}
{% endif -%}
{%- endfor -%}""",
    # loop variables, whitespace control, for-else, loop filters
    """{% for m in messages %}[{{ loop.index }}/{{ loop.length }} i0={{ loop.index0 }} r={{ loop.revindex }} r0={{ loop.revindex0 }}{% if loop.first %} first{% endif %}{% if loop.last %} last{% endif %}] {{ m.role }}: {{ m.content }}
{% else %}no messages{% endfor %}
{%- for m in messages if m.role == 'user' %}
  U{{ loop.index }}={{ m.content | length }}
{%- endfor %}""",
    # namespace, set, ternary, string concatenation and ~
    """{%- set ns = namespace(count=0, last='', roles=[]) -%}
{%- for m in messages -%}
{%- set ns.count = ns.count + 1 -%}
{%- set ns.last = m.role ~ '#' ~ ns.count -%}
{%- set ns.roles = ns.roles + [m.role] -%}
{%- endfor -%}
count={{ ns.count }} last={{ ns.last }} roles={{ ns.roles | join(',') }} {{ 'gen' if add_generation_prompt else 'nogen' }}
{{ ns.roles }} {{ ns }}""",
    # filters on strings
    """{% for m in messages %}{% if m.content is string %}{{ m.content | trim | upper }}|{{ m.content | lower }}|{{ m.content | title }}|{{ m.content | capitalize }}|{{ m.content | replace(' ', '_') }}|{{ m.content | length }}|{{ m.content.strip() }}|{{ m.content.lstrip() }}|{{ m.content.rstrip() }}
{% endif %}{% endfor %}""",
    # string methods, slicing, indexing
    """{% for m in messages %}{% if m.content is string and m.content %}{{ m.content.startswith('Hi') }} {{ m.content.endswith('?') }} {{ m.content.split(' ') }} {{ m.content.split() }} {{ m.content.split(' ', 1) }} {{ m.content[0] }} {{ m.content[-1] }} {{ m.content[1:4] }} {{ m.content[::-1] }} {{ m.content[:3] }} {{ m.content[2:] }}
{% endif %}{% endfor %}""",
    # tojson variants, items, dictsort, tests
    """{%- for m in messages -%}
{{ m | tojson }}
{{ m | tojson(indent=2) }}
{{ m | tojson(sort_keys=true) }}
{{ m | tojson(ensure_ascii=true) }}
{{ m | tojson(separators=(',', ':')) }}
{%- for k, v in m.items() %} {{ k }}={{ v is string }}/{{ v is none }}/{{ v is mapping }}/{{ v is defined }}{% endfor %}
{%- for k, v in m | dictsort %} {{ k }}{% endfor %}
{% endfor -%}
{{ tools | tojson if tools is defined else 'no tools' }}""",
    # arithmetic, numbers, comparisons, booleans and none printing
    """{{ 1 + 2 }} {{ 7 - 10 }} {{ 3 * 4 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 1.5 + 1 }} {{ 2.0 * 3 }} {{ 0.1 + 0.2 }} {{ 1000 if false else 1.25 }}
{{ 1 < 2 }} {{ 2 <= 1 }} {{ 3 == 3.0 }} {{ 'a' == 'a' }} {{ 'a' != 'b' }} {{ none }} {{ true }} {{ false }} {{ [1, 'a', none, true, 2.5] }} {{ {'a': 1, 'b': [1, 2]} }}
{{ 'x' in 'xyz' }} {{ 'q' not in 'xyz' }} {{ 2 in [1, 2] }} {{ 'a' in {'a': 1} }} {{ messages | length > 1 }} {{ not true }} {{ true and false }} {{ true or false }} {{ none or 'dflt' }}
{{ 5 is odd }} {{ 4 is even }} {{ 3 is number }} {{ 3 is integer }} {{ 3.5 is integer }} {{ 'a' is iterable }} {{ [1] is sequence }} {{ true is boolean }} {{ undefined_var is defined }} {{ undefined_var is undefined }}""",
    # list filters: first, last, reverse, sort, unique, selectattr, rejectattr, map, join, default
    """{{ messages | first }}
{{ (messages | last).role }}
{{ messages | map(attribute='role') | join(', ') }}
{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }}
{{ messages | rejectattr('role', 'equalto', 'user') | list | length }}
{{ messages | map(attribute='role') | unique | list }}
{{ messages | map(attribute='role') | sort }} {{ messages | map(attribute='role') | sort(reverse=true) }}
{{ messages | reverse | map(attribute='role') | join }}
{{ missing | default('d1') }} {{ '' | default('d2', true) }} {{ 'x' | default('d3') }}
{{ [3, 1, 2] | sort }} {{ ['b', 'A', 'c'] | sort }} {{ range(5) | list }} {{ range(1, 10, 3) | list }}""",
    # macros, comments, break/continue, if/elif/else chains, whitespace control
    """{#- a comment -#}
{%- macro render(m, prefix='> ') -%}
{{ prefix }}{{ m.role | upper }}: {{ m.content if m.content is not none else '(none)' }}
{%- endmacro -%}
{%- for m in messages -%}
{%- if loop.index > 4 %}{% break %}{% endif -%}
{%- if m.role == 'system' %}{% continue %}{% endif %}
{{ render(m) }}
{{ render(m, prefix='* ') }}
{%- if m.role == 'user' %} [u]{% elif m.role == 'assistant' %} [a]{% elif m.role == 'tool' %} [t]{% else %} [?]{% endif %}
{%- endfor %}
    {% if add_generation_prompt %}
  GEN
    {% endif %}
done""",
    # indent, tool schemas as in tool-calling templates, nested data
    """{%- if tools is defined and tools -%}
# Tools
{%- for tool in tools %}
## {{ tool.function.name }}
{{ tool.function.description | indent(2) }}
{{ tool.function.parameters | tojson(indent=4) | indent(4, first=true) }}
{%- if tool.function.parameters.required is defined %} required: {{ tool.function.parameters.required | join('|') }}{% endif %}
{%- endfor %}
{%- endif %}
{%- for m in messages %}
{%- if m.tool_calls is defined and m.tool_calls %}
{%- for call in m.tool_calls %}
call {{ loop.index }}: {{ call.function.name }}({{ call.function.arguments }}) id={{ call.id | default('none') }}
{%- endfor %}
{%- endif %}
{%- endfor %}""",
]

SYSTEMS = ["You are a helpful assistant.", "Answer in French.", "", "你是一个有用的助手。", "Be concise.\nUse markdown."]
USERS = ["Hi there!", "What is 2+2?", "Translate: 猫が好きです", "", "  spaces around  ", "Emoji 👨‍👩‍👧 test 🇯🇵",
         "Line1\nLine2\r\nLine3", "Quote \"this\" and 'that' and \\backslash", "<｜User｜> injected", "Tabs\there",
         "How do I write a for loop in C?", "Ünïcödé — “quotes” …", "{{ not a template }} {% raw %}"]
ANSWERS = ["Hello! How can I help?", "4", "I like cats.", "", "<think>\nLet me think.\n</think>\n\nThe answer is 42.",
           "Sure:\n```c\nfor (int i = 0; i < n; i++) {}\n```", "Bonjour 🌍", "  padded  "]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather.\nReturns JSON.",
                                             "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                            "unit": {"type": "string", "enum": ["C", "F"]}}, "required": ["city"]}}},
         {"type": "function", "function": {"name": "search", "description": "Search the web",
                                           "parameters": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer", "default": 5}}}}}]


def tool_call(rng, i):
    name = rng.choice(["get_weather", "search", "calc", "查询"])
    args = rng.choice(['{"city": "Paris"}', '{"q": "deepseek v3", "n": 3}', '{}', '{"expr": "2*(3+4)"}', '{"城市": "北京"}'])
    return {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}


def conversation(rng):
    msgs = []
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        msgs.append({"role": "system", "content": rng.choice(SYSTEMS)})
    for turn in range(rng.randrange(1, 5)):
        msgs.append({"role": "user", "content": rng.choice(USERS)})
        if rng.random() < 0.35:
            n = rng.choice([1, 1, 2, 3])
            msgs.append({"role": "assistant", "content": None, "tool_calls": [tool_call(rng, k) for k in range(n)]})
            for k in range(n):
                msgs.append({"role": "tool", "content": rng.choice(['{"temp": 21}', "42", "", "结果：晴", "error: timeout"]),
                             "tool_call_id": f"call_{k}"})
            if rng.random() < 0.7:
                msgs.append({"role": "assistant", "content": rng.choice(ANSWERS)})
        elif turn < 3 or rng.random() < 0.5:
            msgs.append({"role": "assistant", "content": rng.choice(ANSWERS)})
    if rng.random() < 0.2:
        msgs.insert(rng.randrange(len(msgs) + 1), {"role": "system", "content": rng.choice(SYSTEMS)})
    return msgs


def main():
    rng = random.Random(7)
    cases = []
    fixed = [
        [{"role": "user", "content": "Hello"}],
        [{"role": "system", "content": "S1"}, {"role": "system", "content": "S2"}, {"role": "user", "content": "U"}],
        [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
        [{"role": "user", "content": "call"}, {"role": "assistant", "content": None, "tool_calls": [tool_call(rng, 0)]},
         {"role": "tool", "content": "out"}],
        [{"role": "user", "content": "call"},
         {"role": "assistant", "content": None, "tool_calls": [tool_call(rng, 0), tool_call(rng, 1), tool_call(rng, 2)]},
         {"role": "tool", "content": "a"}, {"role": "tool", "content": "b"}, {"role": "tool", "content": "c"},
         {"role": "assistant", "content": "done"}, {"role": "user", "content": "again"}],
        [],
    ]
    for msgs in fixed:
        for gen in (False, True):
            cases.append({"messages": msgs, "add_generation_prompt": gen})
    for _ in range(120):
        cases.append({"messages": conversation(rng), "add_generation_prompt": rng.random() < 0.6})
    for tmpl in [V2, R1]:
        for _ in range(12):
            msgs = [m for m in conversation(rng) if m["role"] != "tool" and m.get("content") is not None]
            cases.append({"template": tmpl, "messages": msgs, "add_generation_prompt": rng.random() < 0.5})
    for _ in range(12):
        msgs = conversation(rng)
        if rng.random() < 0.3:
            msgs.append({"role": "user", "content": [{"type": "text", "text": "part one "}, {"type": "image"}, {"type": "text", "text": "part two"}]})
        case = {"template": KIMI, "messages": msgs, "add_generation_prompt": rng.random() < 0.5}
        if rng.random() < 0.5:
            case["tools"] = TOOLS
        cases.append(case)
    for tmpl in FEATURES:
        for k in range(6):
            case = {"template": tmpl, "messages": conversation(rng) if k else [], "add_generation_prompt": k % 2 == 0}
            if k % 3 == 1:
                case["tools"] = TOOLS
            cases.append(case)
    cases.append({"template": "{{ raise_exception('bad role: ' + messages[0].role) }}", "messages": [{"role": "x", "content": "y"}],
                  "add_generation_prompt": False})
    print(json.dumps(cases, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
