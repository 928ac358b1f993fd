"""Oracle: Python's jinja2 configured as Hugging Face transformers configures it for chat
templates, rendering each case and printing one JSON line per case: the rendered string, or
{"error": message, "line": the template line that failed, "first_line": the first line the
failing construct can start on}.

The environment follows transformers' src/transformers/utils/chat_template_utils.py
(_compile_jinja_template and render_jinja_template): an ImmutableSandboxedEnvironment with
trim_blocks and lstrip_blocks, the loopcontrols extension and a `{% generation %}` block tag
(AssistantTracker) that renders its body; the filter `tojson` replaced by json.dumps with
ensure_ascii=False (keys in insertion order, Python's spacing, floats as Python prints them);
the globals raise_exception (a TemplateError) and strftime_now. The template is rendered with
messages, tools (None when absent), documents (None), add_generation_prompt, the special tokens
and the other variables of the case.

Usage: python3 render_jinja2.py TOKENIZER_CONFIG_JSON CASES_JSON > RENDERED_JSONL
CASES_JSON: [{"messages": [...], "add_generation_prompt": bool, "template"?: source, ...}, ...];
a case without "template" renders the config's default template.
"""
import json
import sys
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` renders its body (transformers tracks its span)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def error_line(e):
    """The template line of an error: a syntax error's own, else the innermost template frame of
    the traceback (jinja2 rewrites its frames to the template's lines)."""
    if isinstance(e, jinja2.TemplateSyntaxError):
        return e.lineno
    line, tb = None, e.__traceback__
    while tb:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def tag_start(source, line):
    """The line of the last tag opening ({{ or {%) before `line`: jinja2 names the last line of a
    failing expression that spans lines, so the construct may start on any line from there."""
    start = sum(len(l) + 1 for l in source.split("\n")[: line - 1])
    at = max(source.rfind("{{", 0, start), source.rfind("{%", 0, start))
    return source.count("\n", 0, at) + 1 if at >= 0 else line


def token_text(t):
    return t["content"] if isinstance(t, dict) else t


def main():
    cfg = json.load(open(sys.argv[1], encoding="utf-8"))
    cases = json.load(open(sys.argv[2], encoding="utf-8"))
    default = cfg.get("chat_template")
    if isinstance(default, list):
        default = next(t["template"] for t in default if t["name"] == "default")
    env = environment()
    compiled = {}
    out = []
    for c in cases:
        c = dict(c)
        source = c.pop("template", default)
        variables = {"bos_token": token_text(cfg.get("bos_token")), "eos_token": token_text(cfg.get("eos_token")),
                     "tools": None, "documents": None, "add_generation_prompt": False}
        variables.update(c)
        variables.setdefault("messages", [])
        try:
            if source not in compiled:
                try:
                    compiled[source] = env.from_string(source)
                except jinja2.TemplateSyntaxError as e:
                    compiled[source] = e
            t = compiled[source]
            if isinstance(t, Exception):
                raise t
            rendered = t.render(**variables)
        except Exception as e:  # every failure is a case result, as dsv3's {"error": ...}
            rendered = {"error": f"{type(e).__name__}: {e}"}
            line = error_line(e)
            if line:
                rendered["line"] = line
                rendered["first_line"] = line if isinstance(e, jinja2.TemplateSyntaxError) else tag_start(source, line)
        out.append(json.dumps(rendered, ensure_ascii=False))
    sys.stdout.write("\n".join(out) + ("\n" if out else ""))


if __name__ == "__main__":
    main()
