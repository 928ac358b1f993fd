#include "serve/request.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "serve/api_error.h"

namespace dsv3::serve {

namespace {

const char* type_name(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "boolean";
    case Json::value_t::string: return "string";
    case Json::value_t::array: return "array";
    case Json::value_t::object: return "object";
    case Json::value_t::number_float: return "number";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "integer";
    default: return "value";
  }
}

[[noreturn]] void wrong_type(const std::string& field, const char* expected, const Json& v) {
  bad_field(field, std::string("must be ") + expected + ", got " + type_name(v));
}

// Typed getters: absent or null leaves `out` as it is.
bool get_number(const Json& body, const char* field, float& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return false;
  if (!it->is_number()) wrong_type(field, "a number", *it);
  const double v = it->get<double>();
  if (!std::isfinite(v)) bad_field(field, "must be finite");
  out = float(v);
  return true;
}

bool get_int(const Json& body, const char* field, int64_t& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return false;
  if (it->is_number_float()) {
    const double v = it->get<double>();
    if (v != std::floor(v) || std::fabs(v) > 9e15) wrong_type(field, "an integer", *it);
    out = int64_t(v);
    return true;
  }
  if (it->is_number_unsigned()) {
    if (it->get<uint64_t>() > uint64_t(INT64_MAX)) bad_field(field, "is too large");
    out = int64_t(it->get<uint64_t>());
    return true;
  }
  if (!it->is_number_integer()) wrong_type(field, "an integer", *it);
  out = it->get<int64_t>();
  return true;
}

bool get_bool(const Json& body, const char* field, bool& out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return false;
  if (!it->is_boolean()) wrong_type(field, "a boolean", *it);
  out = it->get<bool>();
  return true;
}

// `path`: the field's full name for errors (messages[0].content[1].text), when it is not `field`.
bool get_string(const Json& body, const char* field, std::string& out, const std::string& path = "") {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return false;
  if (!it->is_string()) wrong_type(path.empty() ? field : path, "a string", *it);
  out = it->get<std::string>();
  return true;
}

void check_range(const std::string& field, double v, double lo, double hi) {
  if (v < lo || v > hi) bad_field(field, fmt::format("must be in [{}, {}], got {}", lo, hi, v));
}

// Fields both endpoints know.
const std::set<std::string> kCommonFields = {
    "model", "max_tokens", "n", "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stream",
    "stream_options", "presence_penalty", "frequency_penalty", "repetition_penalty", "logit_bias", "ignore_eos",
    "stop_token_ids", "min_tokens", "skip_special_tokens", "logprobs", "user", "priority", "request_id",
    "include_stop_str_in_output", "cache_salt", "spaces_between_special_tokens"};

GenerationOptions parse_common(const Json& body, const SamplingDefaults& d, bool chat) {
  GenerationOptions g;
  get_string(body, "model", g.model);
  g.sampling.temperature = d.temperature;
  g.sampling.top_p = d.top_p;
  g.sampling.top_k = d.top_k;
  g.sampling.min_p = d.min_p;
  if (get_string(body, "cache_salt", g.cache_salt) && g.cache_salt.empty())
    bad_field("cache_salt", "must be a non-empty string when given");
  int64_t i64 = 0;
  if (get_int(body, "max_tokens", i64)) {
    if (i64 < 1) bad_field("max_tokens", fmt::format("must be at least 1, got {}", i64));
    g.max_tokens = i64;
  }
  if (chat && get_int(body, "max_completion_tokens", i64)) {
    if (i64 < 1) bad_field("max_completion_tokens", fmt::format("must be at least 1, got {}", i64));
    g.max_tokens = i64;
  }
  if (get_int(body, "n", i64)) {
    if (i64 < 1 || i64 > 128) bad_field("n", fmt::format("must be in [1, 128], got {}", i64));
    g.n = int(i64);
  }
  if (get_number(body, "temperature", g.sampling.temperature)) check_range("temperature", g.sampling.temperature, 0, 2);
  if (get_number(body, "top_p", g.sampling.top_p)) {
    if (!(g.sampling.top_p > 0 && g.sampling.top_p <= 1)) bad_field("top_p", fmt::format("must be in (0, 1], got {}", g.sampling.top_p));
  }
  if (get_int(body, "top_k", i64)) {
    // vLLM takes -1 (and 0) as "off".
    if (i64 < -1 || i64 > (int64_t(1) << 30)) bad_field("top_k", fmt::format("must be -1, 0 (off) or positive, got {}", i64));
    g.sampling.top_k = i64 <= 0 ? 0 : int32_t(i64);
  }
  if (get_number(body, "min_p", g.sampling.min_p)) {
    if (!(g.sampling.min_p >= 0 && g.sampling.min_p < 1)) bad_field("min_p", fmt::format("must be in [0, 1), got {}", g.sampling.min_p));
  }
  if (get_int(body, "seed", i64)) {
    g.sampling.seed = uint64_t(i64);
    g.seed_given = true;
  }
  if (get_number(body, "presence_penalty", g.penalties.presence_penalty))
    check_range("presence_penalty", g.penalties.presence_penalty, -2, 2);
  if (get_number(body, "frequency_penalty", g.penalties.frequency_penalty))
    check_range("frequency_penalty", g.penalties.frequency_penalty, -2, 2);
  if (get_number(body, "repetition_penalty", g.penalties.repetition_penalty)) {
    if (!(g.penalties.repetition_penalty > 0) || g.penalties.repetition_penalty > 10)
      bad_field("repetition_penalty", fmt::format("must be in (0, 10], got {}", g.penalties.repetition_penalty));
  }
  if (auto it = body.find("logit_bias"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) wrong_type("logit_bias", "an object of token id -> bias", *it);
    for (const auto& [k, v] : it->items()) {
      const std::string field = "logit_bias." + k;
      if (k.empty() || k.size() > 9 || k.find_first_not_of("0123456789") != std::string::npos)
        bad_field(field, "key must be a token id");
      if (!v.is_number()) wrong_type(field, "a number", v);
      const double b = v.get<double>();
      check_range(field, b, -100, 100);
      g.logit_bias.push_back({int32_t(std::stol(k)), float(b)});
    }
  }
  if (auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      g.stop.push_back(it->get<std::string>());
    } else if (it->is_array()) {
      for (const auto& s : *it) {
        if (!s.is_string()) wrong_type("stop", "a string or a list of strings", *it);
        g.stop.push_back(s.get<std::string>());
      }
    } else {
      wrong_type("stop", "a string or a list of strings", *it);
    }
    for (const auto& s : g.stop)
      if (s.empty()) bad_field("stop", "must not contain an empty string");
  }
  if (auto it = body.find("stop_token_ids"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) wrong_type("stop_token_ids", "a list of token ids", *it);
    for (const auto& v : *it) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
        bad_field("stop_token_ids", "must be a list of non-negative token ids");
      g.stop_token_ids.push_back(int32_t(v.get<int64_t>()));
    }
  }
  get_bool(body, "include_stop_str_in_output", g.include_stop_str_in_output);
  get_bool(body, "ignore_eos", g.ignore_eos);
  if (get_int(body, "min_tokens", i64)) {
    if (i64 < 0) bad_field("min_tokens", fmt::format("must be >= 0, got {}", i64));
    g.min_tokens = i64;
  }
  if (g.max_tokens > 0 && g.min_tokens > g.max_tokens)
    bad_field("min_tokens", fmt::format("({}) must not exceed max_tokens ({})", g.min_tokens, g.max_tokens));
  get_bool(body, "skip_special_tokens", g.skip_special_tokens);
  get_bool(body, "stream", g.stream);
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) wrong_type("stream_options", "an object", *it);
    get_bool(*it, "include_usage", g.include_usage);
  }
  return g;
}

// Message content: a string, null, or a list of {"type":"text","text":...} parts (joined).
Json normalise_content(const Json& content, const std::string& field) {
  if (content.is_null() || content.is_string()) return content;
  if (!content.is_array()) wrong_type(field, "a string, null or a list of content parts", content);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& part = content[i];
    const std::string pf = field + "[" + std::to_string(i) + "]";
    if (!part.is_object()) wrong_type(pf, "an object", part);
    std::string type;
    if (!get_string(part, "type", type, pf + ".type")) bad_field(pf + ".type", "is required");
    if (type != "text")
      throw ApiError(400, "'" + pf + ".type' is '" + type + "'; this server accepts only text parts",
                     "invalid_request_error", pf + ".type");
    std::string t;
    if (!get_string(part, "text", t, pf + ".text")) bad_field(pf + ".text", "is required");
    text += t;
  }
  return text;
}

Json normalise_messages(const Json& body) {
  auto it = body.find("messages");
  if (it == body.end()) bad_field("messages", "is required");
  if (!it->is_array()) wrong_type("messages", "a list", *it);
  if (it->empty()) bad_field("messages", "must not be empty");
  Json out = Json::array();
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& m = (*it)[i];
    const std::string f = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) wrong_type(f, "an object", m);
    std::string role;
    if (!get_string(m, "role", role, f + ".role")) bad_field(f + ".role", "is required");
    if (role != "system" && role != "user" && role != "assistant" && role != "tool" && role != "developer")
      bad_field(f + ".role", "must be one of system, user, assistant, tool, developer; got '" + role + "'");
    Json msg = m;  // keep other keys (name, tool_call_id, ...) for the template
    if (role == "developer") msg["role"] = "system";
    msg["content"] = normalise_content(m.contains("content") ? m["content"] : Json(), f + ".content");
    if (role != "assistant" && msg["content"].is_null()) bad_field(f + ".content", "is required for role " + role);
    for (const char* key : {"reasoning_content", "reasoning"})
      if (auto r = m.find(key); r != m.end() && !r->is_null() && !r->is_string())
        wrong_type(f + "." + key, "a string", *r);
    if (auto tc = m.find("tool_calls"); tc != m.end() && !tc->is_null()) {
      if (!tc->is_array()) wrong_type(f + ".tool_calls", "a list", *tc);
      Json calls = Json::array();
      for (size_t k = 0; k < tc->size(); ++k) {
        const Json& c = (*tc)[k];
        const std::string cf = f + ".tool_calls[" + std::to_string(k) + "]";
        if (!c.is_object()) wrong_type(cf, "an object", c);
        auto fn = c.find("function");
        if (fn == c.end() || !fn->is_object()) bad_field(cf + ".function", "must be an object");
        std::string name;
        if (!get_string(*fn, "name", name, cf + ".function.name")) bad_field(cf + ".function.name", "is required");
        Json call = c;
        if (!call.contains("type")) call["type"] = "function";
        // A JSON string (OpenAI's clients) or an object (other callers) reaches the template as
        // it came, as transformers hands it over; Service::render_chat falls back to the JSON
        // text for templates that join it to a string.
        auto args = fn->find("arguments");
        if (args == fn->end() || args->is_null())
          call["function"]["arguments"] = "{}";
        else if (!args->is_string() && !args->is_object() && !args->is_array())
          wrong_type(cf + ".function.arguments", "a JSON string or object", *args);
        calls.push_back(call);
      }
      msg["tool_calls"] = calls;
    }
    // OpenAI: an assistant message's content "is required unless tool_calls is specified" (the
    // templates concatenate it, and failed with an error about the template's own text).
    if (role == "assistant" && msg["content"].is_null() && (!msg.contains("tool_calls") || msg["tool_calls"].empty()))
      bad_field(f + ".content", "is required for role assistant unless it has tool_calls");
    out.push_back(msg);
  }
  return out;
}

void collect_unknown(const Json& body, const std::set<std::string>& extra, std::vector<std::string>* unknown) {
  if (!unknown) return;
  for (const auto& [k, v] : body.items())
    if (!kCommonFields.count(k) && !extra.count(k)) unknown->push_back(k);
}

}  // namespace

SamplingDefaults SamplingDefaults::from_model_dir(const std::string& dir) {
  SamplingDefaults d;
  const auto path = std::filesystem::path(dir) / "generation_config.json";
  std::ifstream in(path);
  if (!in) return d;
  const Json j = Json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return d;
  auto num = [&](const char* k, float& out) {
    if (auto it = j.find(k); it != j.end() && it->is_number()) out = it->get<float>();
  };
  num("temperature", d.temperature);
  num("top_p", d.top_p);
  num("min_p", d.min_p);
  if (auto it = j.find("top_k"); it != j.end() && it->is_number_integer()) d.top_k = std::max(0, it->get<int32_t>());
  // A config with do_sample false means greedy (transformers' GenerationConfig).
  if (auto it = j.find("do_sample"); it != j.end() && it->is_boolean() && !it->get<bool>()) d.temperature = 0;
  return d;
}

Json parse_body(const std::string& body) {
  // nlohmann's parser recurses per nesting level: ~100k nested brackets (a 200 KB body) would
  // overflow the stack. Count the depth first, outside strings.
  constexpr int kMaxDepth = 256;
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth)
        throw ApiError(400, fmt::format("the request body nests JSON deeper than {} levels", kMaxDepth));
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  Json j;
  try {
    j = Json::parse(body);
  } catch (const std::exception& e) {
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, std::string("the request body must be a JSON object, got ") + type_name(j));
  return j;
}

ChatRequest parse_chat_request(const Json& body, const SamplingDefaults& defaults, std::vector<std::string>* unknown) {
  ChatRequest r;
  r.gen = parse_common(body, defaults, /*chat=*/true);
  r.messages = normalise_messages(body);
  if (auto it = body.find("logprobs"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) wrong_type("logprobs", "a boolean", *it);
    r.gen.logprobs = it->get<bool>();
  }
  int64_t tl = 0;
  if (get_int(body, "top_logprobs", tl)) {
    if (tl < 0 || tl > 20) bad_field("top_logprobs", fmt::format("must be in [0, 20], got {}", tl));
    if (!r.gen.logprobs && tl > 0) bad_field("top_logprobs", "needs 'logprobs': true");
    r.gen.top_logprobs = int(tl);
  }
  if (auto it = body.find("response_format"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) wrong_type("response_format", "an object", *it);
    std::string type;
    get_string(*it, "type", type, "response_format.type");
    if (type != "text")
      throw ApiError(400, "'response_format' of type '" + type + "' is not supported yet (only 'text'); no output "
                     "constraint would be applied", "invalid_request_error", "response_format", "not_supported");
  }
  r.tools = Json();
  if (auto it = body.find("tools"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) wrong_type("tools", "a list", *it);
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& t = (*it)[i];
      const std::string f = "tools[" + std::to_string(i) + "]";
      if (!t.is_object()) wrong_type(f, "an object", t);
      auto fn = t.find("function");
      if (fn == t.end() || !fn->is_object()) bad_field(f + ".function", "must be an object");
      auto name = fn->find("name");
      if (name == fn->end() || !name->is_string() || name->get<std::string>().empty())
        bad_field(f + ".function.name", "must be a non-empty string");
    }
    r.tools = *it;
  }
  if (auto it = body.find("tool_choice"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      const auto s = it->get<std::string>();
      if (s == "auto") r.tool_choice = ToolChoice::Auto;
      else if (s == "none") r.tool_choice = ToolChoice::None;
      else if (s == "required") r.tool_choice = ToolChoice::Required;
      else bad_field("tool_choice", "must be 'none', 'auto', 'required' or {\"type\":\"function\",...}; got '" + s + "'");
    } else if (it->is_object()) {
      auto fn = it->find("function");
      if (fn == it->end() || !fn->is_object() || !get_string(*fn, "name", r.tool_choice_name, "tool_choice.function.name"))
        bad_field("tool_choice.function.name", "is required");
      r.tool_choice = ToolChoice::Named;
      // r.tools is parsed above (each has function.name).
      const auto is_chosen = [&](const Json& t) { return t["function"]["name"] == r.tool_choice_name; };
      if (!r.tools.is_null() && std::none_of(r.tools.begin(), r.tools.end(), is_chosen))
        bad_field("tool_choice.function.name", "'" + r.tool_choice_name + "' is not the name of any of the 'tools'");
    } else {
      wrong_type("tool_choice", "a string or an object", *it);
    }
    if (r.tool_choice != ToolChoice::None && r.tool_choice != ToolChoice::Auto && r.tools.is_null())
      bad_field("tool_choice", "needs 'tools'");
  }
  if (auto it = body.find("chat_template_kwargs"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) wrong_type("chat_template_kwargs", "an object", *it);
    r.chat_template_kwargs = *it;
  }
  bool ignored_bool = false;
  get_bool(body, "parallel_tool_calls", ignored_bool);  // accepted; one call or many, as the model writes
  std::string ignored_string;
  get_string(body, "reasoning_effort", ignored_string);  // accepted; DeepSeek models have no effort levels
  get_bool(body, "add_generation_prompt", r.add_generation_prompt);
  get_bool(body, "continue_final_message", r.continue_final_message);
  if (r.continue_final_message) {
    if (r.messages.back()["role"] != "assistant")
      bad_field("continue_final_message", "needs the last message to be from the assistant");
    r.add_generation_prompt = false;
  }
  collect_unknown(body, {"messages", "max_completion_tokens", "top_logprobs", "response_format", "tools",
                         "tool_choice", "parallel_tool_calls", "reasoning_effort", "chat_template_kwargs",
                         "add_generation_prompt", "continue_final_message", "echo", "chat_template",
                         "documents", "functions", "function_call", "metadata", "store", "service_tier"},
                  unknown);
  return r;
}

CompletionRequest parse_completion_request(const Json& body, const SamplingDefaults& defaults,
                                           std::vector<std::string>* unknown) {
  CompletionRequest r;
  r.gen = parse_common(body, defaults, /*chat=*/false);
  if (r.gen.max_tokens < 0) r.gen.max_tokens = 16;  // OpenAI's and vLLM's default for completions
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) bad_field("prompt", "is required");
  auto ids_of = [](const Json& a, const std::string& f) {
    std::vector<int32_t> ids;
    for (const auto& v : a) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
        bad_field(f, "must hold non-negative token ids");
      ids.push_back(int32_t(v.get<int64_t>()));
    }
    if (ids.empty()) bad_field(f, "must not be empty");
    return ids;
  };
  if (it->is_string()) {
    if (it->get<std::string>().empty()) bad_field("prompt", "must not be empty");
    r.prompts.push_back({.text = it->get<std::string>()});
  } else if (it->is_array()) {
    if (it->empty()) bad_field("prompt", "must not be an empty list");
    if ((*it)[0].is_number()) {
      r.prompts.push_back({.ids = ids_of(*it, "prompt")});
    } else {
      for (size_t i = 0; i < it->size(); ++i) {
        const Json& p = (*it)[i];
        const std::string f = "prompt[" + std::to_string(i) + "]";
        if (p.is_string() && !p.get<std::string>().empty())
          r.prompts.push_back({.text = p.get<std::string>()});
        else if (p.is_string())
          bad_field(f, "must not be empty");
        else if (p.is_array())
          r.prompts.push_back({.ids = ids_of(p, f)});
        else
          wrong_type(f, "a string or a list of token ids", p);
      }
    }
  } else {
    wrong_type("prompt", "a string, a list of strings, a list of token ids or a list of such lists", *it);
  }
  if (auto lp = body.find("logprobs"); lp != body.end() && !lp->is_null()) {
    if (lp->is_boolean()) {
      r.gen.logprobs = lp->get<bool>();
    } else {
      int64_t n = 0;
      get_int(body, "logprobs", n);
      if (n < 0 || n > 20) bad_field("logprobs", fmt::format("must be in [0, 20], got {}", n));
      r.gen.logprobs = true;
      r.gen.top_logprobs = int(n);
    }
  }
  // best_of (legacy API: sample best_of, return the n most likely) is not implemented; best_of = n
  // asks for nothing more and is accepted, anything else is refused rather than ignored.
  if (int64_t best_of = 0; get_int(body, "best_of", best_of) && best_of != r.gen.n)
    throw ApiError(400, fmt::format("'best_of' {} is not supported (only best_of = n, here {})", best_of, r.gen.n),
                   "invalid_request_error", "best_of", "not_supported");
  get_bool(body, "echo", r.echo);
  get_string(body, "suffix", r.suffix);
  if (!r.suffix.empty()) throw ApiError(400, "'suffix' is not supported (no fill-in-the-middle)", "invalid_request_error", "suffix", "not_supported");
  collect_unknown(body, {"prompt", "echo", "suffix", "best_of", "add_special_tokens", "response_format"}, unknown);
  return r;
}

}  // namespace dsv3::serve
