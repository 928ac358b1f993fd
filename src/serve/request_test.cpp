// Request bodies: typed fields, 400s naming the field, and hostile bytes never escaping as
// anything but ApiError (a bounded mutation fuzz that runs under ASan/UBSan in scripts/test.sh;
// tests/fuzz/fuzz_request.cpp is the libFuzzer target over the same entry points).
#include "serve/request.h"

#include <gtest/gtest.h>

#include <random>

#include "serve/api_error.h"

namespace dsv3::serve {
namespace {

Json j(const char* s) { return Json::parse(s); }

// The 400 a body raises, or "" when it parses.
std::string error_of(const std::function<void()>& fn, std::string* param = nullptr) {
  try {
    fn();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    if (param) *param = e.param;
    return e.what();
  }
  return "";
}

TEST(ChatRequest, ReadsEveryFieldThatChangesTheOutput) {
  const Json body = j(R"({
    "model": "m", "messages": [
      {"role": "developer", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": null, "reasoning_content": "r",
       "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "42"}],
    "max_completion_tokens": 7, "n": 2, "temperature": 0.5, "top_p": 0.9, "top_k": 5, "min_p": 0.1,
    "seed": 11, "stop": ["x", "yy"], "presence_penalty": 0.5, "frequency_penalty": -0.5,
    "repetition_penalty": 1.2, "logit_bias": {"17": -100}, "ignore_eos": true, "min_tokens": 2,
    "stop_token_ids": [3], "logprobs": true, "top_logprobs": 3, "stream": true,
    "stream_options": {"include_usage": true}, "tools": [{"type": "function", "function": {"name": "f"}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "chat_template_kwargs": {"thinking": true}, "include_stop_str_in_output": true, "brand_new_field": 1})");
  std::vector<std::string> unknown;
  const ChatRequest r = parse_chat_request(body, {}, &unknown);
  EXPECT_EQ(r.gen.model, "m");
  EXPECT_EQ(r.gen.max_tokens, 7);
  EXPECT_EQ(r.gen.n, 2);
  EXPECT_FLOAT_EQ(r.gen.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.gen.sampling.top_p, 0.9f);
  EXPECT_EQ(r.gen.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(r.gen.sampling.min_p, 0.1f);
  EXPECT_TRUE(r.gen.seed_given);
  EXPECT_EQ(r.gen.sampling.seed, 11u);
  EXPECT_EQ(r.gen.stop, (std::vector<std::string>{"x", "yy"}));
  EXPECT_FLOAT_EQ(r.gen.penalties.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.gen.penalties.frequency_penalty, -0.5f);
  EXPECT_FLOAT_EQ(r.gen.penalties.repetition_penalty, 1.2f);
  ASSERT_EQ(r.gen.logit_bias.size(), 1u);
  EXPECT_EQ(r.gen.logit_bias[0].first, 17);
  EXPECT_TRUE(r.gen.ignore_eos);
  EXPECT_EQ(r.gen.min_tokens, 2);
  EXPECT_EQ(r.gen.stop_token_ids, std::vector<int32_t>{3});
  EXPECT_TRUE(r.gen.logprobs);
  EXPECT_EQ(r.gen.top_logprobs, 3);
  EXPECT_TRUE(r.gen.stream && r.gen.include_usage && r.gen.include_stop_str_in_output);
  EXPECT_EQ(r.tool_choice, ToolChoice::Named);
  EXPECT_EQ(r.tool_choice_name, "f");
  EXPECT_EQ(r.chat_template_kwargs["thinking"], true);
  EXPECT_EQ(unknown, std::vector<std::string>{"brand_new_field"});
  // Normalised messages: developer -> system, text parts joined; object arguments stay objects
  // (transformers hands them to the template as they are).
  EXPECT_EQ(r.messages[0]["role"], "system");
  EXPECT_EQ(r.messages[1]["content"], "ab");
  EXPECT_EQ(r.messages[2]["tool_calls"][0]["function"]["arguments"], Json::parse(R"({"x": 1})"));
  EXPECT_EQ(r.messages[2]["reasoning_content"], "r");
}

TEST(ChatRequest, DefaultsComeFromTheModelThenOpenAI) {
  const ChatRequest r = parse_chat_request(j(R"({"messages":[{"role":"user","content":"hi"}]})"),
                                           {.temperature = 0.6f, .top_p = 0.95f}, nullptr);
  EXPECT_FLOAT_EQ(r.gen.sampling.temperature, 0.6f);
  EXPECT_FLOAT_EQ(r.gen.sampling.top_p, 0.95f);
  EXPECT_EQ(r.gen.max_tokens, -1);  // chat: bounded by the context only
  EXPECT_EQ(r.gen.n, 1);
  EXPECT_FALSE(r.gen.seed_given);
}

TEST(ChatRequest, BadFieldsAre400sNamingTheField) {
  const struct {
    const char* body;
    const char* param;
    const char* says;
  } cases[] = {
      {R"({"messages":[{"role":"user","content":"hi"}],"temperature":"hot"})", "temperature", "must be a number, got string"},
      {R"({"messages":[{"role":"user","content":"hi"}],"temperature":3})", "temperature", "must be in [0, 2]"},
      {R"({"messages":[{"role":"user","content":"hi"}],"n":0})", "n", "must be in [1, 128]"},
      {R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":-5})", "max_tokens", "at least 1, got -5"},
      {R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":1.5})", "max_tokens", "must be an integer"},
      {R"({"messages":[{"role":"user","content":"hi"}],"top_p":0})", "top_p", "(0, 1]"},
      {R"({"messages":[{"role":"user","content":"hi"}],"stop":[1]})", "stop", "a string or a list of strings"},
      {R"({"messages":[{"role":"user","content":"hi"}],"logit_bias":{"x":1}})", "logit_bias.x", "key must be a token id"},
      {R"({"messages":[{"role":"user","content":"hi"}],"top_logprobs":3})", "top_logprobs", "needs 'logprobs': true"},
      {R"({"messages":[{"role":"user","content":"hi"}],"tool_choice":"required"})", "tool_choice", "needs 'tools'"},
      {R"({"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}})", "response_format",
       "not supported yet"},
      {R"({"messages":[]})", "messages", "must not be empty"},
      {R"({"prompt":"x"})", "messages", "is required"},
      {R"({"messages":[{"role":"wizard","content":"hi"}]})", "messages[0].role", "must be one of"},
      {R"({"messages":[{"role":"user"}]})", "messages[0].content", "is required for role user"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", "messages[0].content[0].type",
       "accepts only text parts"},
      {R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"min_tokens":10})", "min_tokens",
       "must not exceed max_tokens"},
      {R"({"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":5}}]})",
       "tools[0].function.name", "must be a non-empty string"},
      {R"({"messages":[{"role":"user","content":"hi"}],"parallel_tool_calls":"x"})", "parallel_tool_calls",
       "must be a boolean"},
      {R"({"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"nope"}}})",
       "tool_choice.function.name", "'nope' is not the name of any of the 'tools'"},
      {R"({"messages":[{"role":"user","content":[{"type":"text","text":5}]}]})", "messages[0].content[0].text",
       "must be a string"},
      {R"({"messages":[{"role":5,"content":"hi"}]})", "messages[0].role", "must be a string"},
      {R"({"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null}]})", "messages[1].content",
       "is required for role assistant unless it has tool_calls"},
      {R"({"messages":[{"role":"assistant","content":null,"tool_calls":[{"function":{"name":"f","arguments":5}}]}]})",
       "messages[0].tool_calls[0].function.arguments", "must be a JSON string or object"},
  };
  for (const auto& c : cases) {
    std::string param;
    const std::string msg = error_of([&] { parse_chat_request(j(c.body), {}, nullptr); }, &param);
    EXPECT_EQ(param, c.param) << c.body;
    EXPECT_NE(msg.find(c.says), std::string::npos) << c.body << " -> " << msg;
  }
}

TEST(CompletionRequest, PromptFormsAndDefaults) {
  auto prompts = [](const char* body) { return parse_completion_request(j(body), {}, nullptr); };
  auto r = prompts(R"({"prompt":"hello"})");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(*r.prompts[0].text, "hello");
  EXPECT_EQ(r.gen.max_tokens, 16);  // OpenAI's completions default
  r = prompts(R"({"prompt":["a","b"]})");
  EXPECT_EQ(r.prompts.size(), 2u);
  r = prompts(R"({"prompt":[1,2,3],"logprobs":2,"echo":true})");
  EXPECT_EQ(r.prompts[0].ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(r.gen.top_logprobs, 2);
  EXPECT_TRUE(r.echo);
  r = prompts(R"({"prompt":[[1],[2,3]]})");
  EXPECT_EQ(r.prompts[1].ids, (std::vector<int32_t>{2, 3}));
  std::string param;
  EXPECT_NE(error_of([&] { prompts(R"({"prompt":[-1]})"); }, &param), "");
  EXPECT_EQ(param, "prompt");
  EXPECT_NE(error_of([&] { prompts(R"({"prompt":[]})"); }, &param), "");
  EXPECT_NE(error_of([&] { prompts(R"({"prompt":""})"); }, &param), "");
  EXPECT_NE(error_of([&] { prompts(R"({"prompt":{"a":1}})"); }, &param), "");
  EXPECT_NE(error_of([&] { prompts(R"({"prompt":"x","suffix":"y"})"); }, &param), "");
  EXPECT_EQ(param, "suffix");
  // best_of: equal to n is accepted; more (or a wrong type) is refused, not ignored.
  EXPECT_EQ(prompts(R"({"prompt":"x","n":2,"best_of":2})").gen.n, 2);
  EXPECT_NE(error_of([&] { prompts(R"({"prompt":"x","best_of":3})"); }, &param).find("'best_of' 3 is not supported"),
            std::string::npos);
  EXPECT_EQ(param, "best_of");
  EXPECT_NE(error_of([&] { prompts(R"({"prompt":"x","best_of":"x"})"); }, &param), "");
  EXPECT_EQ(param, "best_of");
}

TEST(ParseBody, RejectsWhatIsNotAJsonObject) {
  for (const char* b : {"", "{", "[1]", "\"s\"", "1e999", "{\"a\":1}x", "\xff\xfe"})
    EXPECT_NE(error_of([&] { parse_body(b); }), "") << b;
  EXPECT_EQ(parse_body(" {\"a\": 1} ")["a"], 1);
  // 100k nested brackets would overflow the recursive parser's stack: refused by depth first.
  const std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_NE(error_of([&] { parse_body(deep); }).find("deeper than"), std::string::npos);
  // Brackets inside strings do not count.
  EXPECT_EQ(parse_body("{\"a\":\"" + std::string(1000, '[') + "\"}")["a"].get<std::string>().size(), 1000u);
}

// Random byte edits of valid bodies: every outcome is a parsed request or an ApiError.
TEST(RequestFuzz, MutatedBodiesNeverEscapeAsOtherExceptions) {
  const std::vector<std::string> seeds = {
      R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stop":["a"],"logit_bias":{"1":2}})",
      R"({"messages":[{"role":"assistant","content":null,"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto"})",
      R"({"prompt":[[1,2],[3]],"n":2,"logprobs":3,"stream":true,"stream_options":{"include_usage":true}})",
      R"({"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"response_format":{"type":"text"},"seed":1e3})",
  };
  const char kAlphabet[] = "{}[]\":,0123456789-.eE truefalsnul\\\xc3\xa9\xff";
  std::mt19937 rng(1234);
  int parsed = 0, refused = 0;
  for (const auto& seed : seeds) {
    for (int iter = 0; iter < 3000; ++iter) {
      std::string b = seed;
      const int edits = 1 + int(rng() % 4);
      for (int e = 0; e < edits && !b.empty(); ++e) {
        const size_t at = rng() % b.size();
        switch (rng() % 3) {
          case 0: b[at] = kAlphabet[rng() % (sizeof(kAlphabet) - 1)]; break;
          case 1: b.erase(at, 1 + rng() % 3); break;
          default: b.insert(at, 1, kAlphabet[rng() % (sizeof(kAlphabet) - 1)]); break;
        }
      }
      try {
        const Json body = parse_body(b);
        if (body.contains("prompt"))
          parse_completion_request(body, {}, nullptr);
        else
          parse_chat_request(body, {}, nullptr);
        ++parsed;
      } catch (const ApiError&) {
        ++refused;
      } catch (const std::exception& e) {
        ADD_FAILURE() << "escaped: " << e.what() << "\nbody: " << b;
      }
    }
  }
  EXPECT_GT(parsed, 100);
  EXPECT_GT(refused, 100);
}

}  // namespace
}  // namespace dsv3::serve
