// Issue 19: chat templates come inside downloaded checkpoints and their variables from the
// network. Each hostile template below must fail with an Error naming the limit (or the fault),
// the line and the column, quickly and without crashing.
#include <gtest/gtest.h>

#include <time.h>

#include <chrono>

#include "base/error.h"
#include "io/json_file.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja/value.h"

namespace dsv3 {
namespace {

using nlohmann::ordered_json;

// The issue asks for a refusal within 5 s; sanitizer builds run several times slower.
#if defined(__SANITIZE_ADDRESS__)
constexpr double kSeconds = 25.0;
#else
constexpr double kSeconds = 5.0;
#endif

// Default limits, except a time limit that a slow (sanitizer) build cannot reach first.
jinja::RenderLimits untimed() {
  jinja::RenderLimits l;
  l.max_seconds = 120;
  return l;
}

std::string render(const std::string& src, const ordered_json& messages = ordered_json::array(),
                   const jinja::RenderLimits& limits = {}) {
  return ChatTemplate(src, "<s>", "</s>", limits).render(messages, false);
}

// This thread's CPU seconds: a loaded machine does not inflate them as it does the wall clock.
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Rendering must throw Error containing every fragment, within a few seconds of CPU time.
void expect_error(const std::string& src, std::initializer_list<std::string> fragments,
                  const ordered_json& messages = ordered_json::array(), const jinja::RenderLimits& limits = {}) {
  const double cpu0 = thread_cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  try {
    render(src, messages, limits);
    ADD_FAILURE() << "no error; wanted " << *fragments.begin();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("chat template line "), std::string::npos) << msg;
    EXPECT_NE(msg.find(", column "), std::string::npos) << msg;
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << msg;
  }
  EXPECT_LT(thread_cpu_seconds() - cpu0, kSeconds);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10 * kSeconds);
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(HostileTemplate, MacroThatCallsItself) {
  expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(0) }}", {"line 1", "max_depth = 400"});
}

TEST(HostileTemplate, DeepNestingIsRefusedWhileParsing) {
  expect_error("{{ " + repeat("(", 100000) + "1" + repeat(")", 100000) + " }}", {"max_nesting = 100"});
  expect_error(repeat("{% if true %}", 100000) + "x" + repeat("{% endif %}", 100000), {"max_nesting = 100"});
  expect_error("{{ " + repeat("[", 100000) + repeat("]", 100000) + " }}", {"max_nesting = 100"});
  expect_error("{{ " + repeat("not ", 100000) + "1 }}", {"max_nesting = 100"});
  expect_error("{{ " + repeat("-", 100000) + "1 }}", {"max_nesting = 100"});
  // Chains build trees as deep as they are long.
  expect_error("{{ 1" + repeat(" + 1", 100000) + " }}", {"max_nesting = 100"});
  expect_error("{{ x" + repeat(".y", 100000) + " }}", {"max_nesting = 100"});
  expect_error("{{ x" + repeat(" | trim", 100000) + " }}", {"max_nesting = 100"});
  expect_error("{{ f" + repeat("()", 100000) + " }}", {"max_nesting = 100"});
  expect_error("{{ 1" + repeat(" if x else 1", 100000) + " }}", {"max_nesting = 100"});
  // A chain of 50 is fine.
  EXPECT_EQ(render("{{ 0" + repeat(" + 1", 50) + " }}"), "50");
}

TEST(HostileTemplate, NamespaceHoldingItself) {
  // Printing follows the cycle to the nesting bound; the cycle itself is broken when the render ends
  // (LeakSanitizer checks that under ASan).
  expect_error("{% set ns = namespace(a=1) %}{% set ns.self = ns %}{{ ns | tojson }}", {"line 1, column", "hold itself"});
  expect_error("{% set ns = namespace() %}{% set ns.l = [1, [ns]] %}{{ ns }}", {"line 1, column", "hold itself"});
  expect_error("{% set ns = namespace() %}{% set ns.l = [1, [ns]] %}{{ 'x' ~ ns.l }}", {"hold itself"});
  EXPECT_EQ(render("{% set ns = namespace() %}{% set ns.self = ns %}{{ ns.self.self.self is defined }}"), "True");
}

TEST(HostileTemplate, DeepMessagesEvenWhenUnread) {
  const std::string deep = "[{\"role\": \"user\", \"content\": " + repeat("[", 100000) + repeat("]", 100000) + "}]";
  try {
    parse_ordered_json(deep, "messages.json");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deeper than 256"), std::string::npos) << e.what();
  }
  // Values built in code, past the printing bound: refused when the template variables are made.
  ordered_json v = ordered_json::array();
  for (int i = 0; i < 600; ++i) v = ordered_json::array({v});
  try {
    render("hello", v);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deeper than 512"), std::string::npos) << e.what();
  }
}

TEST(HostileTemplate, HugeRangeIndentAndDoubling) {
  expect_error("{% for i in range(10**9) %}{% endfor %}", {"range()", "max_items = 100000"});
  expect_error("{% for i in range(-9223372036854775807 - 1, 9223372036854775807) %}{% endfor %}", {"max_items"});
  expect_error("{{ 'a\nb' | indent(10**12) }}", {"indent", "max_string_bytes"});
  expect_error("{{ 'a' | indent(-5) }}", {"indent"});
  expect_error("{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
               {"max_string_bytes = 16777216"});
  expect_error("{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
               {"max_string_bytes"});
  // String repetition (jinja2's str * int) is bounded by the string limit before it allocates.
  expect_error("{{ 'abcdefgh' * 1000000000000 }}", {"max_string_bytes"});
  expect_error("{{ 'abc' * 9223372036854775807 }}", {"string repetition too large"});
  expect_error("{% set ns = namespace(s='abcdefghijklmnop') %}{% for i in range(20) %}{% set ns.s = ns.s.replace('', ns.s) %}{% endfor %}",
               {"max_string_bytes"});
  expect_error("{{ {'a': 1} | tojson(indent=100000) }}", {"indent 100000"});
}

TEST(HostileTemplate, NestedLoops) {
  expect_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
               {"max_steps = 500000"}, ordered_json::array(), untimed());
}

TEST(HostileTemplate, SharedValuesPrintedExponentially) {
  // 2^40 leaves when printed: bounded by the output size, not by time or memory.
  expect_error("{% set ns = namespace(a=[]) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ ns.a }}",
               {"max_string_bytes"});
}

TEST(HostileTemplate, DeepValueBuiltInALoopIsFreedWithoutRecursion) {
  // 300000 nested arrays: freeing them recursively would overflow the stack.
  EXPECT_EQ(render("{% set ns = namespace(a=[]) %}{% for i in range(300) %}{% for j in range(1000) %}{% set ns.a = [ns.a] %}{% endfor %}{% endfor %}ok",
                   ordered_json::array(), untimed()),
            "ok");
  expect_error("{% set ns = namespace(a=[]) %}{% for i in range(1000) %}{% set ns.a = [ns.a] %}{% endfor %}{{ ns.a }}",
               {"deeper than 512"});
}

TEST(HostileTemplate, IntegerOverflowAndDivisionByZero) {
  expect_error("{{ 9223372036854775807 + 1 }}", {"integer overflow in '+'"});
  expect_error("{{ -9223372036854775807 - 2 }}", {"integer overflow in '-'"});
  expect_error("{{ 4294967296 * 4294967296 }}", {"integer overflow in '*'"});
  expect_error("{{ (-9223372036854775807 - 1) % -1 }}", {"INT64_MIN % -1"});
  expect_error("{{ (-9223372036854775807 - 1) // -1 }}", {"integer overflow in '//'"});
  expect_error("{{ -(-9223372036854775807 - 1) }}", {"unary '-'"});
  expect_error("{{ (-9223372036854775807 - 1) | abs }}", {"abs()"});
  expect_error("{{ 2 ** 64 }}", {"integer overflow in '**'"});
  expect_error("{{ 1 // 0 }}", {"division by zero in '//'"});
  expect_error("{{ 1 % 0 }}", {"division by zero in '%'"});
  expect_error("{{ 1 / 0 }}", {"division by zero in '/'"});
  expect_error("{{ 1.5 // 0.0 }}", {"division by zero"});
  expect_error("{{ 1e300 | int }}", {"does not fit in 64 bits"});  // exponent literals, as jinja2 reads them
  expect_error("{{ (10.0 ** 300) | int }}", {"does not fit in 64 bits"});
  // In range, Python's results.
  EXPECT_EQ(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 2 ** 62 }} {{ 3 ** 39 }} {{ 9223372036854775807 }}"),
            "3 -4 4611686018427387904 4052555153018976267 9223372036854775807");
}

TEST(HostileTemplate, IntegerLiteralWiderThan64Bits) {
  try {
    render("\n  {{ 99999999999999999999999 }}");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2, column 6: integer 99999999999999999999999 does not fit in 64 bits"),
              std::string::npos)
        << e.what();
  }
  expect_error("{{ 1" + repeat("0", 400) + ".5 }}", {"out of range"});
}

TEST(HostileTemplate, SlicesWithHugeSteps) {
  EXPECT_EQ(render("{{ 'abc'[::9223372036854775807] }}{{ [1,2,3][::-9223372036854775807] | join }}"), "a3");
  EXPECT_EQ(render("{{ 'abc'[-9223372036854775807:9223372036854775807] }}"), "abc");
}

// Found by fuzz_template: a truncated UTF-8 sequence at the end of a tag ran the lexer's index
// past the end of the source (std::out_of_range, not an Error).
TEST(HostileTemplate, TruncatedUtf8AfterTagOpen) {
  for (const std::string src : {"{% \xad", "{%\xe2\x80", "{{ 'a' }}{%- \xf0", "x\xc3"}) {
    try {
      render(src);
    } catch (const Error&) {
    }
  }
}

TEST(HostileTemplate, TimeLimit) {
  jinja::RenderLimits limits;
  limits.max_seconds = 0.2;
  limits.max_steps = int64_t(1) << 40;
  expect_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", {"max_seconds = 0.2"},
               ordered_json::array(), limits);
}

TEST(HostileTemplate, LimitsCanBeRaised) {
  jinja::RenderLimits limits;
  limits.max_nesting = 300;
  EXPECT_EQ(render("{{ 0" + repeat(" + 1", 200) + " }}", ordered_json::array(), limits), "200");
  limits.max_items = 200000;
  EXPECT_EQ(render("{{ range(150000) | length }}", ordered_json::array(), limits), "150000");
}

}  // namespace
}  // namespace dsv3
