#include "serve/service.h"

#include <cstdio>
#include <exception>
#include <optional>
#include <random>

#include "serve/api_error.h"
#include "serve/choice_output.h"
#include "tokenizer/jinja/value.h"

namespace dsv3::serve {

using Clock = std::chrono::steady_clock;

void EventStream::push(std::string frame) {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    frames_.push_back(std::move(frame));
  }
  cv_.notify_all();
}

void EventStream::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  cv_.notify_all();
}

bool EventStream::pop(std::vector<std::string>& out, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return closed_ || !frames_.empty(); });
  while (!frames_.empty()) {
    out.push_back(std::move(frames_.front()));
    frames_.pop_front();
  }
  return !(closed_ && out.empty());
}

namespace {

std::string sse(const Json& j) {
  return "data: " + j.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n";
}

ApiResponse json_response(const Json& j, int status = 200) {
  ApiResponse r;
  r.status = status;
  r.body = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  return r;
}

const char* finish_name(FinishReason r) {
  switch (r) {
    case FinishReason::Eos:
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "abort";
  }
  return "stop";
}

// Characters (code points) of UTF-8 text: completions' text_offset counts characters, as
// OpenAI and vLLM do.
int64_t utf8_chars(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// One token's logprob entry; `bytes` as OpenAI gives them (the UTF-8 bytes of the token).
Json logprob_entry(const Tokenizer& tok, int32_t id, float logprob) {
  const std::string_view b = tok.token_bytes(id, /*skip_special=*/false);
  Json bytes = Json::array();
  for (unsigned char c : b) bytes.push_back(int(c));
  return {{"token", tok.decode(std::span<const int32_t>(&id, 1), false)}, {"logprob", logprob}, {"bytes", bytes}};
}

Json chat_logprobs(const Tokenizer& tok, const SampledToken& t) {
  Json e = logprob_entry(tok, t.id, t.logprob);
  Json top = Json::array();
  for (const auto& [id, lp] : t.top_logprobs) top.push_back(logprob_entry(tok, id, lp));
  e["top_logprobs"] = top;
  return e;
}

}  // namespace

Service::Service(ServiceOptions opts, Scheduler& scheduler, const Tokenizer& tok, const ChatTemplate& tmpl,
                 std::string template_source, Metrics& metrics)
    : opts_(std::move(opts)),
      scheduler_(scheduler),
      tok_(tok),
      tmpl_(tmpl),
      template_source_(std::move(template_source)),
      metrics_(metrics),
      created_(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                   .count()) {}

std::string Service::new_id(const char* prefix) {
  static constexpr char kHex[] = "0123456789abcdef";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::string id = prefix;
  uint64_t x = rng() ^ (next_id_.fetch_add(1) << 40);
  for (int i = 0; i < 16; ++i, x >>= 4) id += kHex[x & 15];
  return id;
}

ApiResponse Service::handle(const ApiRequest& req) {
  try {
    return route(req);
  } catch (const ApiError& e) {
    ApiResponse r = json_response(error_body(e), e.status);
    if (e.status == 429 || e.status == 503) r.headers.push_back({"retry-after", "1"});
    r.headers.insert(r.headers.end(), e.headers.begin(), e.headers.end());
    return r;
  } catch (const std::exception& e) {
    // Bad input that surfaced below the request parser (a template's raise_exception, a token
    // the tokenizer refuses): still the client's request.
    return json_response(error_body(ApiError(400, e.what())), 400);
  }
}

ApiResponse Service::route(const ApiRequest& req) {
  const std::string& p = req.path;
  if (req.method == "GET" || req.method == "HEAD") {  // HEAD: the GET's status and headers (cpp-httplib drops the body)
    if (p == "/v1/models" || p == "/models") return models();
    // GET /v1/models/{model} (the openai clients' models.retrieve); the id may contain slashes.
    for (const std::string prefix : {"/v1/models/", "/models/"})
      if (p.size() > prefix.size() && p.compare(0, prefix.size(), prefix) == 0) return model(p.substr(prefix.size()));
    if (p == "/health" || p == "/v1/health") {
      // A load balancer takes the server out of rotation once it starts draining (SERVER.md: 503
      // while loading or draining).
      if (draining_.load()) throw ApiError(503, "the server is shutting down", "unavailable_error");
      const SchedulerStats st = scheduler_.stats();
      return json_response({{"status", "ok"},
                            {"kv_cache",
                             {{"blocks_total", st.kv_blocks_total},
                              {"blocks_used", st.kv_blocks_used},
                              {"blocks_cached", st.kv_blocks_cached},
                              {"block_size", st.kv_block_size},
                              {"bytes_per_token", st.kv_bytes_per_token}}}});
    }
    if (p == "/metrics") {
      ApiResponse r;
      r.content_type = "text/plain; version=0.0.4";
      r.body = metrics_.render(scheduler_.stats());
      return r;
    }
  } else if (req.method == "POST") {
    if (p == "/v1/chat/completions" || p == "/chat/completions") return chat(req);
    if (p == "/v1/completions" || p == "/completions") return completions(req);
    if (p == "/tokenize") return tokenize(req);
    if (p == "/detokenize") return detokenize(req);
    if (p == "/apply-template") return apply_template(req);
  }
  for (const char* known : {"/v1/models", "/health", "/metrics", "/v1/chat/completions", "/v1/completions",
                            "/tokenize", "/detokenize", "/apply-template"})
    if (p == known) {
      ApiError e(405, "method " + req.method + " is not allowed on " + p, "invalid_request_error");
      const bool get = p == "/v1/models" || p == "/health" || p == "/metrics";
      e.headers.push_back({"Allow", get ? "GET, HEAD" : "POST"});
      throw e;
    }
  throw ApiError(404, "no route " + req.method + " " + p, "not_found_error");
}

ApiResponse Service::models() const { return json_response({{"object", "list"}, {"data", Json::array({model_card()})}}); }

ApiResponse Service::model(const std::string& id) const {
  check_model(id);
  return json_response(model_card());
}

Json Service::model_card() const {
  Json card = {{"id", opts_.served_model_name}, {"object", "model"},        {"created", created_},
               {"owned_by", "dsv3"},            {"root", opts_.model_root}, {"parent", nullptr},
               {"max_model_len", opts_.ctx_size}, {"permission", Json::array()}};
  // What a request that names no sampling field gets (the chat page shows these as its defaults).
  const SamplingDefaults& d = opts_.defaults;
  card["sampling_defaults"] = {{"temperature", d.temperature}, {"top_p", d.top_p}, {"top_k", d.top_k}, {"min_p", d.min_p}};
  return card;
}

void Service::check_model(const std::string& model) const {
  if (!model.empty() && model != opts_.served_model_name && model != opts_.model_root)
    throw ApiError(404, "The model `" + model + "` does not exist.", "NotFoundError", "model", "model_not_found");
}

void Service::check_admission(int64_t prompt_tokens) const {
  const Scheduler::Admission a =
      draining_.load() ? Scheduler::Admission::Draining : scheduler_.admission(prompt_tokens);
  if (a != Scheduler::Admission::Ok) refuse(a);
}

void Service::note_unknown_fields(const std::vector<std::string>& unknown) const {
  if (unknown.empty() || !opts_.log_requests) return;
  std::string names;
  for (const auto& u : unknown) names += (names.empty() ? "" : ", ") + u;
  std::fprintf(stderr, "dsv3 serve: note: ignoring unknown request field(s): %s\n", names.c_str());
}

void Service::refuse(Scheduler::Admission why) const {
  if (why == Scheduler::Admission::QueueFull) {
    metrics_.request_rejected("queue_full");
    throw ApiError(429, "the server is busy: the request queue is full; retry later", "rate_limit_error", "",
                   "queue_full");
  }
  metrics_.request_rejected("draining");
  throw ApiError(503, "the server is shutting down", "unavailable_error");
}

int64_t Service::fit_context(int64_t n_prompt, int64_t max_tokens, const char* field) const {
  const int64_t ctx = opts_.ctx_size;
  if (n_prompt >= ctx || (max_tokens > 0 && n_prompt + max_tokens > ctx)) {
    metrics_.request_rejected("context_length");
    std::string msg =
        max_tokens > 0
            ? fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens ({} in "
                          "the prompt, {} for the completion via '{}'). Please reduce the prompt or '{}'.",
                          ctx, n_prompt + max_tokens, n_prompt, max_tokens, field, field)
            : fmt::format("This model's maximum context length is {} tokens and your prompt has {} tokens; at least "
                          "one output token must fit. Please reduce the prompt.",
                          ctx, n_prompt);
    ApiError e(400, msg, "invalid_request_error", "messages", "context_length_exceeded");
    e.extra = {{"n_prompt_tokens", n_prompt}, {"n_ctx", ctx}};
    throw e;
  }
  return max_tokens > 0 ? max_tokens : ctx - n_prompt;
}

namespace {
// The messages with every tool call's object `arguments` replaced by its JSON text as the
// template's tojson writes it (json.dumps: {"city": "Paris"}); unchanged messages give nullopt.
std::optional<Json> arguments_as_text(const Json& messages) {
  Json out = messages;
  bool changed = false;
  for (auto& m : out) {
    auto tc = m.find("tool_calls");
    if (tc == m.end() || !tc->is_array()) continue;
    for (auto& call : *tc) {
      Json& args = call["function"]["arguments"];
      if (args.is_object() || args.is_array()) {
        args = jinja::to_json(jinja::from_json(args), jinja::JsonOptions{});
        changed = true;
      }
    }
  }
  return changed ? std::optional<Json>(std::move(out)) : std::nullopt;
}
}  // namespace

std::string Service::render_chat(const ChatRequest& r) const {
  Json vars = r.chat_template_kwargs;
  if (!r.tools.is_null()) vars["tools"] = r.tools;
  std::string prompt;
  try {
    // Object arguments reach the template as objects, as transformers renders them: a template
    // that writes them with tojson (Kimi-K2's, vLLM's tool templates) prints json.dumps' text.
    prompt = tmpl_.render(r.messages, r.add_generation_prompt, vars);
  } catch (const Error&) {
    // DeepSeek's own templates join `arguments` to a string with +, which jinja2 refuses for a
    // dict (transformers fails there). Rather than refuse the request, render the arguments as
    // the JSON text a client would have sent; if that fails too, the first error stands.
    const std::optional<Json> as_text = arguments_as_text(r.messages);
    if (!as_text) throw;
    const std::exception_ptr first = std::current_exception();
    try {
      prompt = tmpl_.render(*as_text, r.add_generation_prompt, vars);
    } catch (const Error&) {
      std::rethrow_exception(first);
    }
  }
  if (r.continue_final_message) {
    // The template closes the last assistant message (with EOS): cut right after its content,
    // so that the model continues it (vLLM's continue_final_message).
    const Json& last = r.messages.back()["content"];
    const std::string content = last.is_string() ? last.get<std::string>() : "";
    const size_t at = content.empty() ? std::string::npos : prompt.rfind(content);
    if (at == std::string::npos)
      throw ApiError(400, "continue_final_message: the chat template does not render the last message's content",
                     "invalid_request_error", "continue_final_message");
    prompt.resize(at + content.size());
  }
  return prompt;
}

// The state of one chat/completions request, shared by the handler thread and the scheduler's
// callbacks. All choices of all prompts (completions may have several prompts) report here.
namespace {
struct Call {
  bool chat = true;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;
  std::string id, model;
  int64_t created = 0;
  ToolChoice tool_choice = ToolChoice::Auto;
  std::shared_ptr<EventStream> events = std::make_shared<EventStream>();
  Metrics* metrics = nullptr;
  const Tokenizer* tok = nullptr;
  const std::atomic<bool>* draining = nullptr;  // the service's: cancellations then mean shutdown

  std::mutex mu;  // guards everything below (callbacks of one request run on one thread; the
                  // handler reads the result after done)
  std::condition_variable cv;
  struct ChoiceState {
    std::unique_ptr<ChoiceOutput> out;
    std::string echo;  // completions: the prompt text shown before the completion
    bool role_sent = false;
    int64_t tokens = 0;
    std::optional<FinishReason> finish;
    std::string finish_reason;
    Json logprobs = Json::array();  // chat: content entries; completions: legacy pieces
    std::vector<std::string> lp_tokens;
    std::vector<float> lp_values;
    std::vector<Json> lp_top;
    std::vector<int64_t> lp_offsets;
    int64_t text_offset = 0;
    Clock::time_point last_token;
  };
  std::vector<ChoiceState> choices;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // of prompt_tokens, held by cached blocks (not prefilled)
  int64_t n_open = 0;
  bool error = false;
  Clock::time_point arrived = Clock::now();
  bool first_token_seen = false;

  Json chunk_base() const {
    return {{"id", id}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
            {"model", model}};
  }

  Json usage() const {
    int64_t completion = 0;
    for (const auto& c : choices) completion += c.tokens;
    return {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion},
            {"total_tokens", prompt_tokens + completion},
            {"prompt_tokens_details", {{"cached_tokens", cached_tokens}}}};
  }

  // A whole (non-streamed) response.
  Json response(const char* object, Json choices) const {
    return {{"id", id}, {"object", object}, {"created", created}, {"model", model}, {"choices", std::move(choices)},
            {"usage", usage()}};
  }

  // The delta object of a chat chunk.
  Json chat_delta(ChoiceState& c, const OutputDelta& d) {
    Json delta = Json::object();
    if (!c.role_sent) {
      delta["role"] = "assistant";
      c.role_sent = true;
    }
    if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
    if (!d.content.empty() || (delta.contains("role") && d.tool_calls.empty() && d.reasoning.empty()))
      delta["content"] = d.content;
    if (!d.tool_calls.empty()) {
      Json calls = Json::array();
      for (const auto& tc : d.tool_calls) {
        Json call = {{"index", tc.index}};
        if (!tc.id.empty()) {
          call["id"] = tc.id;
          call["type"] = "function";
          call["function"] = {{"name", tc.name}, {"arguments", tc.arguments}};
        } else {
          call["function"] = {{"arguments", tc.arguments}};
        }
        calls.push_back(call);
      }
      delta["tool_calls"] = calls;
    }
    return delta;
  }

  // Scheduler thread: one token of choice i.
  bool on_token(int i, const SampledToken& t) {
    std::lock_guard lock(mu);
    ChoiceState& c = choices[size_t(i)];
    const auto now = Clock::now();
    if (!first_token_seen) {
      first_token_seen = true;
      metrics->observe_ttft(seconds(arrived, now));
    } else if (c.tokens > 0) {
      metrics->observe_itl(seconds(c.last_token, now));
    }
    c.last_token = now;
    ++c.tokens;
    const OutputDelta d = c.out->push(t.id);
    Json lp;
    if (logprobs) {
      if (chat) {
        lp = chat_logprobs(*tok, t);
        c.logprobs.push_back(lp);
      } else {
        const std::string piece = tok->decode(std::span<const int32_t>(&t.id, 1), false);
        Json top = Json::object();
        for (const auto& [id, v] : t.top_logprobs) top[tok->decode(std::span<const int32_t>(&id, 1), false)] = v;
        c.lp_tokens.push_back(piece);
        c.lp_values.push_back(t.logprob);
        c.lp_top.push_back(top);
        c.lp_offsets.push_back(c.text_offset);
        c.text_offset += utf8_chars(piece);
      }
    }
    if (stream) {
      if (chat) {
        if (!d.empty() || !c.role_sent || logprobs) {
          Json ch = chunk_base();
          Json choice = {{"index", i}, {"delta", chat_delta(c, d)}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
          if (logprobs) choice["logprobs"] = {{"content", Json::array({lp})}};
          ch["choices"] = Json::array({choice});
          if (include_usage) ch["usage"] = nullptr;
          events->push(sse(ch));
        }
      } else {
        std::string text = d.content;
        if (!c.role_sent) {
          text = c.echo + text;
          c.role_sent = true;
        }
        if (!text.empty() || logprobs) {
          Json ch = chunk_base();
          Json choice = {{"index", i}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
          if (logprobs)
            choice["logprobs"] = {{"tokens", {c.lp_tokens.back()}},
                                  {"token_logprobs", {c.lp_values.back()}},
                                  {"top_logprobs", {c.lp_top.back()}},
                                  {"text_offset", {c.lp_offsets.back()}}};
          ch["choices"] = Json::array({choice});
          if (include_usage) ch["usage"] = nullptr;
          events->push(sse(ch));
        }
      }
    }
    return !c.out->stopped();
  }

  // Scheduler thread: choice i ended.
  void on_finish(int i, FinishReason r) {
    std::lock_guard lock(mu);
    ChoiceState& c = choices[size_t(i)];
    c.finish = r;
    const OutputDelta d = c.out->finish();
    if (r == FinishReason::Cancelled) {
      c.finish_reason = "abort";
    } else if (r == FinishReason::Length) {
      // Cut by max_tokens or the context, even inside a tool call: "length" tells the client the
      // calls may be incomplete (OpenAI's table).
      c.finish_reason = "length";
    } else if (!c.out->tool_calls().empty() && chat) {
      // OpenAI's table: a named tool_choice finishes with "stop", auto/required with "tool_calls".
      c.finish_reason = tool_choice == ToolChoice::Named ? "stop" : "tool_calls";
    } else {
      c.finish_reason = c.out->stopped() ? "stop" : finish_name(r);
    }
    if (stream && r != FinishReason::Cancelled) {
      Json ch = chunk_base();
      Json choice;
      if (chat) {
        choice = {{"index", i}, {"delta", chat_delta(c, d)}, {"logprobs", nullptr}, {"finish_reason", c.finish_reason}};
      } else {
        std::string text = d.content;
        if (!c.role_sent) {
          text = c.echo + text;
          c.role_sent = true;
        }
        choice = {{"index", i}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", c.finish_reason}};
      }
      ch["choices"] = Json::array({choice});
      if (include_usage) ch["usage"] = nullptr;
      events->push(sse(ch));
    }
    if (r == FinishReason::Cancelled && stream && draining && draining->load() && !error) {
      error = true;
      events->push(sse(Json{{"error", {{"message", "the server is shutting down; the request was stopped"},
                                       {"type", "unavailable_error"},
                                       {"param", nullptr},
                                       {"code", 503}}}}));
    }
    if (--n_open == 0) {
      int64_t completion = 0;
      for (const auto& s : choices) completion += s.tokens;
      std::string reason = c.finish_reason;
      metrics->observe_e2e(seconds(arrived, Clock::now()));
      metrics->request_finished(reason, prompt_tokens, completion);
      if (stream) {
        if (include_usage && !error) {
          Json ch = chunk_base();
          ch["choices"] = Json::array();
          ch["usage"] = usage();
          events->push(sse(ch));
        }
        events->push("data: [DONE]\n\n");
      }
      events->close();
      cv.notify_all();
    }
  }
};

RequestCallbacks callbacks_for(const std::shared_ptr<Call>& call, int choice_offset,
                               const std::function<bool()>& disconnected) {
  RequestCallbacks cb;
  cb.on_token = [call, choice_offset](int i, const SampledToken& t) { return call->on_token(choice_offset + i, t); };
  cb.on_finish = [call, choice_offset](int i, FinishReason r) { call->on_finish(choice_offset + i, r); };
  cb.on_admitted = [call](int64_t cached) {
    call->metrics->observe_queue_time(seconds(call->arrived, Clock::now()));
    std::lock_guard lock(call->mu);
    call->cached_tokens += cached;
  };
  cb.disconnected = [call, disconnected] { return call->events->abandoned() || (disconnected && disconnected()); };
  return cb;
}

std::shared_ptr<Call> new_call(bool chat, const GenerationOptions& g, std::string id, const std::string& model,
                               Metrics* metrics, const std::atomic<bool>* draining, const Tokenizer* tok) {
  auto call = std::make_shared<Call>();
  call->chat = chat;
  call->stream = g.stream;
  call->include_usage = g.include_usage;
  call->logprobs = g.logprobs;
  call->id = std::move(id);
  call->model = model;
  call->created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  call->metrics = metrics;
  call->draining = draining;
  call->tok = tok;
  return call;
}

// The scheduler's request for one prompt of an API request.
ScheduledRequest scheduled(const GenerationOptions& g, std::vector<int32_t> prompt, int64_t max_new, uint64_t seed,
                           const std::vector<int32_t>& eos_ids) {
  ScheduledRequest sr;
  sr.prompt = std::move(prompt);
  sr.n = g.n;
  sr.sampling = g.sampling;
  sr.sampling.seed = seed;
  sr.penalties = g.penalties;
  sr.logit_bias = g.logit_bias;
  sr.max_new_tokens = max_new;
  sr.min_new_tokens = g.min_tokens;
  sr.stop_ids = g.stop_token_ids;
  if (!g.ignore_eos) sr.stop_ids.insert(sr.stop_ids.end(), eos_ids.begin(), eos_ids.end());
  sr.top_logprobs = g.logprobs ? g.top_logprobs : -1;
  sr.cache_salt = g.cache_salt;
  return sr;
}

uint64_t request_seed(const GenerationOptions& g) {
  return g.seed_given ? g.sampling.seed : std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32);
}

ApiResponse event_stream(const std::shared_ptr<EventStream>& events) {
  ApiResponse resp;
  resp.content_type = "text/event-stream";
  resp.headers.push_back({"Cache-Control", "no-cache"});
  resp.headers.push_back({"X-Accel-Buffering", "no"});
  resp.stream = events;
  return resp;
}

// Waits for a non-streaming request to finish; a choice stopped by shutdown makes it a 503.
void wait_done(Call& call) {
  std::vector<std::string> sink;
  while (call.events->pop(sink, std::chrono::milliseconds(200))) sink.clear();
  std::lock_guard lock(call.mu);
  for (const auto& c : call.choices)
    if (c.finish_reason == "abort")
      throw ApiError(503, "the request was stopped (server shutting down)", "unavailable_error");
}

}  // namespace

ApiResponse Service::chat(const ApiRequest& hr) {
  const Json body = parse_body(hr.body);
  std::vector<std::string> unknown;
  ChatRequest r = parse_chat_request(body, opts_.defaults, &unknown);
  check_model(r.gen.model);
  check_admission(0);
  note_unknown_fields(unknown);
  const std::string prompt_text = render_chat(r);
  std::vector<int32_t> ids = tok_.encode(prompt_text, /*add_special=*/false);
  if (ids.empty()) throw ApiError(400, "the rendered prompt is empty", "invalid_request_error", "messages");
  const int64_t max_new = fit_context(int64_t(ids.size()), r.gen.max_tokens,
                                      body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens");

  auto call = new_call(true, r.gen, new_id("chatcmpl-"), opts_.served_model_name, &metrics_, &draining_, &tok_);
  call->tool_choice = r.tool_choice;
  call->prompt_tokens = int64_t(ids.size());

  OutputParserOptions po;
  po.skip_special_tokens = r.gen.skip_special_tokens;
  if (!r.tools.is_null() && r.tool_choice != ToolChoice::None) {
    po.tools = opts_.tool_format;
    for (const auto& t : r.tools) po.tool_names.push_back(t["function"].value("name", ""));
  }
  po.reasoning = opts_.reasoning == ReasoningParserChoice::Auto
                     ? ReasoningFormat::None
                     : reasoning_for_request(opts_.reasoning, nlohmann::json(r.chat_template_kwargs));
  po.call_id_prefix = "call_" + call->id.substr(9, 8) + "_";
  call->choices.resize(size_t(r.gen.n));
  for (auto& c : call->choices) c.out = std::make_unique<ChoiceOutput>(tok_, po, r.gen.stop, r.gen.include_stop_str_in_output);
  call->n_open = r.gen.n;

  ScheduledRequest sr = scheduled(r.gen, std::move(ids), max_new, request_seed(r.gen), opts_.eos_ids);
  for (const auto& [t, b] : sr.logit_bias)
    if (t >= tok_.vocab_size()) bad_field("logit_bias", fmt::format("token id {} is out of range", t));
  for (int32_t t : r.gen.stop_token_ids)
    if (t >= tok_.vocab_size())
      bad_field("stop_token_ids", fmt::format("token id {} is out of range (vocabulary of {})", t, tok_.vocab_size()));

  Scheduler::Admission refused = Scheduler::Admission::Ok;
  auto state = scheduler_.submit(std::move(sr), callbacks_for(call, 0, hr.disconnected), &refused);
  if (!state) refuse(refused);
  if (opts_.log_requests)
    std::fprintf(stderr, "dsv3 serve: %s chat: %lld prompt tokens, n=%d, max_tokens=%lld%s\n", call->id.c_str(),
                 (long long)call->prompt_tokens, r.gen.n, (long long)max_new, r.gen.stream ? ", stream" : "");

  if (call->stream) return event_stream(call->events);
  wait_done(*call);
  std::lock_guard lock(call->mu);
  Json choices = Json::array();
  for (size_t i = 0; i < call->choices.size(); ++i) {
    auto& c = call->choices[i];
    Json msg = {{"role", "assistant"}};
    const auto content = c.out->content();
    msg["content"] = content ? Json(*content) : Json();
    if (const auto reasoning = c.out->reasoning()) msg["reasoning_content"] = *reasoning;
    if (!c.out->tool_calls().empty()) {
      Json calls = Json::array();
      for (const auto& tc : c.out->tool_calls())
        calls.push_back({{"id", tc.id}, {"type", "function"}, {"function", {{"name", tc.name}, {"arguments", tc.arguments}}}});
      msg["tool_calls"] = calls;
    }
    Json choice = {{"index", int(i)}, {"message", msg}, {"logprobs", nullptr}, {"finish_reason", c.finish_reason}};
    if (call->logprobs) choice["logprobs"] = {{"content", c.logprobs}};
    choices.push_back(choice);
  }
  return json_response(call->response("chat.completion", std::move(choices)));
}

ApiResponse Service::completions(const ApiRequest& hr) {
  const Json body = parse_body(hr.body);
  std::vector<std::string> unknown;
  CompletionRequest r = parse_completion_request(body, opts_.defaults, &unknown);
  check_model(r.gen.model);
  check_admission(0);
  note_unknown_fields(unknown);
  // Token ids of each prompt: text gets BOS as the tokenizer config says (add_special).
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> echoes;
  for (size_t i = 0; i < r.prompts.size(); ++i) {
    const auto& p = r.prompts[i];
    std::vector<int32_t> ids = p.text ? tok_.encode(*p.text, /*add_special=*/true) : p.ids;
    if (ids.empty()) bad_field("prompt", "encodes to no tokens");
    for (int32_t t : ids)
      if (t >= tok_.vocab_size()) bad_field("prompt", fmt::format("token id {} is out of range (vocabulary of {})", t, tok_.vocab_size()));
    fit_context(int64_t(ids.size()), r.gen.max_tokens, "max_tokens");
    echoes.push_back(r.echo ? (p.text ? *p.text : tok_.decode(ids, r.gen.skip_special_tokens)) : "");
    prompts.push_back(std::move(ids));
  }
  auto call = new_call(false, r.gen, new_id("cmpl-"), opts_.served_model_name, &metrics_, &draining_, &tok_);
  OutputParserOptions po;
  po.skip_special_tokens = r.gen.skip_special_tokens;
  const int n = r.gen.n;
  call->choices.resize(prompts.size() * size_t(n));
  for (size_t i = 0; i < call->choices.size(); ++i) {
    call->choices[i].out = std::make_unique<ChoiceOutput>(tok_, po, r.gen.stop, r.gen.include_stop_str_in_output);
    call->choices[i].echo = echoes[i / size_t(n)];
    call->choices[i].text_offset = utf8_chars(call->choices[i].echo);
  }
  call->n_open = int64_t(call->choices.size());
  for (const auto& p : prompts) call->prompt_tokens += int64_t(p.size());

  std::vector<std::shared_ptr<RequestState>> states;
  const uint64_t seed = request_seed(r.gen);
  for (size_t i = 0; i < prompts.size(); ++i) {
    ScheduledRequest sr = scheduled(r.gen, prompts[i], r.gen.max_tokens, seed, opts_.eos_ids);
    Scheduler::Admission refused = Scheduler::Admission::Ok;
    auto st = scheduler_.submit(std::move(sr), callbacks_for(call, int(i) * n, hr.disconnected), &refused);
    if (!st) {
      for (auto& s : states) s->cancel();
      refuse(refused);
    }
    states.push_back(st);
  }
  if (call->stream) return event_stream(call->events);
  wait_done(*call);
  std::lock_guard lock(call->mu);
  Json choices = Json::array();
  for (size_t i = 0; i < call->choices.size(); ++i) {
    auto& c = call->choices[i];
    Json choice = {{"index", int(i)}, {"text", c.echo + c.out->content().value_or("")}, {"logprobs", nullptr},
                   {"finish_reason", c.finish_reason}};
    if (call->logprobs)
      choice["logprobs"] = {{"tokens", c.lp_tokens}, {"token_logprobs", c.lp_values}, {"top_logprobs", c.lp_top},
                            {"text_offset", c.lp_offsets}};
    choices.push_back(choice);
  }
  return json_response(call->response("text_completion", std::move(choices)));
}

ApiResponse Service::tokenize(const ApiRequest& hr) const {
  const Json body = parse_body(hr.body);
  std::string model;
  if (auto it = body.find("model"); it != body.end() && it->is_string()) check_model(it->get<std::string>());
  bool add_special = true;
  if (auto it = body.find("add_special_tokens"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) bad_field("add_special_tokens", "must be a boolean");
    add_special = it->get<bool>();
  }
  std::vector<int32_t> ids;
  if (auto it = body.find("messages"); it != body.end()) {
    Json chat_body = body;
    ChatRequest r = parse_chat_request(chat_body, opts_.defaults, nullptr);
    ids = tok_.encode(render_chat(r), /*add_special=*/false);
  } else {
    std::string text;
    auto p = body.find("prompt");
    if (p == body.end()) p = body.find("content");  // llama.cpp's field
    if (p == body.end() || !p->is_string()) bad_field("prompt", "must be a string (or give 'messages')");
    ids = tok_.encode(p->get<std::string>(), add_special);
  }
  return json_response({{"tokens", ids}, {"count", ids.size()}, {"max_model_len", opts_.ctx_size}});
}

ApiResponse Service::detokenize(const ApiRequest& hr) const {
  const Json body = parse_body(hr.body);
  if (auto it = body.find("model"); it != body.end() && it->is_string()) check_model(it->get<std::string>());
  auto it = body.find("tokens");
  if (it == body.end() || !it->is_array()) bad_field("tokens", "must be a list of token ids");
  std::vector<int32_t> ids;
  for (const auto& v : *it) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= tok_.vocab_size())
      bad_field("tokens", fmt::format("must hold token ids in [0, {})", tok_.vocab_size()));
    ids.push_back(int32_t(v.get<int64_t>()));
  }
  return json_response({{"prompt", tok_.decode(ids, /*skip_special=*/false)}});
}

ApiResponse Service::apply_template(const ApiRequest& hr) const {
  const Json body = parse_body(hr.body);
  ChatRequest r = parse_chat_request(body, opts_.defaults, nullptr);
  return json_response({{"prompt", render_chat(r)}});
}

}  // namespace dsv3::serve
