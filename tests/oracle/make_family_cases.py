"""Chat cases for the family's real templates (tests/data/chat_templates/*.jinja and DeepSeek-V3's
own tokenizer_config.json): every template over the same deterministic conversations: system
prompts, multi-turn, tool declarations (floats such as 5.0, unicode, nesting), tool calls with
and without content, arguments as JSON strings and as objects, tool results, reasoning with
</think>, `reasoning_content`, prefix (continuation) messages, content given as a list of text
parts, and V3.1's `thinking` switch on, off and unset.

Each case: {"template": source, "messages": [...], "add_generation_prompt": bool, "bos_token",
"eos_token", "tools"?: [...], "thinking"?: bool}, the format of `dsv3 template --cases`,
tests/oracle/render.mjs and tests/oracle/render_jinja2.py.
Usage: python3 make_family_cases.py TEMPLATE_DIR DEEPSEEK_V3_TOKENIZER_CONFIG > cases.json
"""
import json
import os
import random
import sys

DEEPSEEK_TOKENS = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")
KIMI_TOKENS = ("[BOS]", "[EOS]")  # Kimi-K2's and Moonlight's tokenizer_config.json

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather of a city.\nReturns JSON.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. 北京"},
            "unit": {"type": "string", "enum": ["C", "F"], "default": "C"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "scale", "description": "Multiply a number (\"x\") by a factor",
        "parameters": {"type": "object", "properties": {
            "x": {"type": "number", "default": 5.0}, "factor": {"type": "number", "default": 0.5, "exclusiveMinimum": 0.0},
            "big": {"type": "number", "default": 1e+16}, "tiny": {"type": "number", "default": 1e-05},
            "flags": {"type": "array", "items": {"type": "boolean"}, "default": [True, False, None]}},
            "required": ["x"], "additionalProperties": False}}},
]

SYSTEMS = ["You are a helpful assistant.", "", "你是一个有用的助手。", "Be concise.\nUse markdown.\n"]
USERS = ["Hi there!", "What is 2+2?", "", "  spaces around  ", "Emoji 👨‍👩‍👧 and 🇯🇵",
         "Line1\nLine2\r\nLine3", "Quote \"this\" and 'that' and \\backslash\\", "Tabs\tand {{ braces }} {% tag %}",
         "Ünïcödé — “quotes” …", "<｜User｜> looks like a marker"]
ANSWERS = ["Hello! How can I help?", "4", "", "<think>\nLet me think.\n</think>\n\nThe answer is 42.",
           "<think>a</think>b</think>c", "Sure:\n```c\nfor (;;) {}\n```", "  padded  ", "Bonjour 🌍"]
ARGS = ['{"city": "Paris"}', '{"x": 5.0, "factor": 2}', "{}", '{"城市": "北京", "days": 3}',
        '{"nested": {"a": [1, 2.5, true, null]}}']
ARG_OBJECTS = [{"city": "Paris"}, {"x": 5.0, "factor": 2}, {}, {"城市": "北京", "days": 3},
               {"nested": {"a": [1, 2.5, True, None]}}, {"s": "quote \" backslash \\ newline \n"}]
RESULTS = ['{"temp": 21.0}', "42", "", "结果：晴", "error: timeout"]


def tool_calls(rng, n, objects):
    calls = []
    for k in range(n):
        args = rng.choice(ARG_OBJECTS) if objects else rng.choice(ARGS)
        calls.append({"id": f"call_{k}", "type": "function",
                      "function": {"name": rng.choice(["get_weather", "scale", "查询"]), "arguments": args}})
    return calls


def conversation(rng, objects=False):
    """A random conversation; `objects`: tool-call arguments as JSON objects, not strings."""
    msgs = [{"role": "system", "content": rng.choice(SYSTEMS)} for _ in range(rng.choice([0, 0, 1, 2]))]
    for turn in range(rng.randrange(1, 4)):
        msgs.append({"role": "user", "content": rng.choice(USERS)})
        r = rng.random()
        if r < 0.4:
            n = rng.choice([1, 1, 2, 3])
            content = None if rng.random() < 0.6 else rng.choice(["Let me check.", ""])
            msgs.append({"role": "assistant", "content": content, "tool_calls": tool_calls(rng, n, objects)})
            for k in range(n):
                msgs.append({"role": "tool", "content": rng.choice(RESULTS), "tool_call_id": f"call_{k}"})
            if rng.random() < 0.7:
                msgs.append({"role": "assistant", "content": rng.choice(ANSWERS)})
        elif r < 0.9 or turn == 0:
            m = {"role": "assistant", "content": rng.choice(ANSWERS)}
            if rng.random() < 0.2:
                m["reasoning_content"] = "thinking about it"
            msgs.append(m)
    if rng.random() < 0.5 and msgs[-1]["role"] == "assistant":
        msgs.append({"role": "user", "content": rng.choice(USERS)})
    return msgs


def fixed_conversations():
    """Hand-written situations that random ones may miss."""
    u = {"role": "user", "content": "Hi"}
    return [
        [u],
        [{"role": "system", "content": "S1"}, {"role": "system", "content": "S2"}, u],
        [{"role": "system", "content": "Only a system prompt"}],
        [u, {"role": "assistant", "content": "<think>draft</think>final"}],
        # V3.1's prefix completion: the last assistant message is continued.
        [u, {"role": "assistant", "content": "The answer is", "prefix": True}],
        [u, {"role": "assistant", "content": "<think>partial", "prefix": True}],
        # Tool round trip, then a final answer and a new question.
        [u, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
         {"role": "tool", "content": "18", "tool_call_id": "c1"}, {"role": "tool", "content": "25", "tool_call_id": "c2"},
         {"role": "assistant", "content": "Paris 18, Rome 25."}, {"role": "user", "content": "Thanks"}],
        # Ends on a tool result (the template decides about the generation prompt).
        [u, {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "scale", "arguments": {"x": 5.0}}}]},
         {"role": "tool", "content": "10.0", "tool_call_id": "c1"}],
        # Content as a list of text parts (Kimi's templates take it; DeepSeek's fail on str + list).
        [{"role": "user", "content": [{"type": "text", "text": "part one, "}, {"type": "text", "text": "part two"}]}],
        # Names (Kimi-K2 0905 prints message.name).
        [{"role": "user", "content": "Hi", "name": "alice"}, {"role": "assistant", "content": "Hello alice", "name": "bot"}],
        # Content null on a user message: templates concatenating fail, others print None.
        [{"role": "user", "content": None}],
        [],
    ]


def main():
    template_dir, v3_config = sys.argv[1], sys.argv[2]
    cfg = json.load(open(v3_config, encoding="utf-8"))
    templates = [("deepseek-v3", cfg["chat_template"], DEEPSEEK_TOKENS)]
    for name in sorted(os.listdir(template_dir)):
        if name.endswith(".jinja"):
            tokens = KIMI_TOKENS if name.startswith(("kimi", "moonlight")) else DEEPSEEK_TOKENS
            templates.append((name[:-6], open(os.path.join(template_dir, name), encoding="utf-8").read(), tokens))
    # Broken copies: the first syntax error in the source is the one to report (a tag missing
    # its '%' on line 18, then an unterminated string on a later line), and a bad tag alone.
    k2 = next(source for name, source, _ in templates if name == "kimi-k2-0905")
    lines = k2.split("\n")
    assert lines[17].strip() == "{% endif %}"
    lines[17] = lines[17].replace("{% endif %}", "{% endif }")
    lines[24] += "{{ 'unterminated }}"
    templates.append(("broken-first-error", "\n".join(lines), KIMI_TOKENS))
    templates.append(("broken-tag", k2.replace("{%- endfor -%}\n{%- if add_generation_prompt",
                                               "{%- endfor -}\n{%- if add_generation_prompt"), KIMI_TOKENS))
    rng = random.Random(18)
    convs = fixed_conversations()
    convs += [conversation(rng) for _ in range(40)]
    convs += [conversation(rng, objects=True) for _ in range(12)]
    cases = []
    for name, source, (bos, eos) in templates:
        for i, msgs in enumerate(convs):
            for gen in (False, True):
                case = {"template": source, "messages": msgs, "add_generation_prompt": gen,
                        "bos_token": bos, "eos_token": eos}
                if i % 3 == 1:
                    case["tools"] = TOOLS
                if "v3.1" in name or "v31" in name:
                    if i % 4 == 1:
                        case["thinking"] = True
                    elif i % 4 == 2:
                        case["thinking"] = False
                cases.append(case)
    json.dump(cases, sys.stdout, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
