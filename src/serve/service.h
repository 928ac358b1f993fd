// The OpenAI-compatible API over the scheduler, independent of any HTTP library: the transport
// (apps/cli/serve_http.cpp, cpp-httplib) turns each HTTP request into an ApiRequest, calls
// handle(), and writes the ApiResponse back: a whole body, or a stream of server-sent events
// pulled from an EventStream until it ends.
//
// Endpoints (SERVER.md §1, §3.5): GET /v1/models, POST /v1/chat/completions, POST
// /v1/completions, GET /health, GET /metrics, POST /tokenize, POST /detokenize, POST
// /apply-template. Authentication, CORS and body-size limits are the transport's.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/scheduler.h"
#include "serve/metrics.h"
#include "serve/output_parser.h"
#include "serve/request.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::serve {

// Frames of a streamed response, produced on the scheduler thread, consumed by the transport.
class EventStream {
 public:
  void push(std::string frame);
  void close();
  // Waits up to `timeout` for frames; moves them into `out`. Returns false once closed and empty.
  bool pop(std::vector<std::string>& out, std::chrono::milliseconds timeout);
  // Transport: the client went away (the request is cancelled at the next step boundary).
  void abandon() { abandoned_.store(true); }
  bool abandoned() const { return abandoned_.load(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> frames_;
  bool closed_ = false;
  std::atomic<bool> abandoned_{false};
};

struct ApiRequest {
  std::string method;  // "GET", "POST"
  std::string path;
  std::string body;
  // Polled while the request runs; true when the client closed the connection.
  std::function<bool()> disconnected;
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::shared_ptr<EventStream> stream;  // set: body is empty, frames follow (text/event-stream)
};

struct ServiceOptions {
  std::string served_model_name;
  std::string model_root;  // the checkpoint directory (vLLM's `root`)
  int64_t ctx_size = 0;
  ToolCallFormat tool_format = ToolCallFormat::None;
  ReasoningParserChoice reasoning = ReasoningParserChoice::None;
  SamplingDefaults defaults;
  std::vector<int32_t> eos_ids;  // the tokenizer's EOS and config.json's eos_token_id
  bool log_requests = true;      // one line per request on stderr
};

class Service {
 public:
  // All references outlive the service.
  Service(ServiceOptions opts, Scheduler& scheduler, const Tokenizer& tok, const ChatTemplate& tmpl,
          std::string template_source, Metrics& metrics);

  // Never throws: errors become OpenAI error bodies with their status.
  ApiResponse handle(const ApiRequest& req);

  // Stops admitting (new generation requests get 503) — SIGTERM.
  void drain() { draining_.store(true); }

 private:
  ApiResponse route(const ApiRequest& req);
  ApiResponse models() const;
  ApiResponse chat(const ApiRequest& req);
  ApiResponse completions(const ApiRequest& req);
  ApiResponse tokenize(const ApiRequest& req) const;
  ApiResponse detokenize(const ApiRequest& req) const;
  ApiResponse apply_template(const ApiRequest& req) const;
  ApiResponse model(const std::string& id) const;  // 404 model_not_found for another id
  Json model_card() const;                          // the model object of /v1/models
  void check_model(const std::string& model) const;
  // Throws the 429 / 503 that `admission()` (or draining) calls for.
  void check_admission(int64_t prompt_tokens) const;
  // Throws the 429 (QueueFull) or 503 (Draining) for a refused admission, counting it.
  [[noreturn]] void refuse(Scheduler::Admission why) const;
  // Names the request fields that were ignored on stderr (with request logging on).
  void note_unknown_fields(const std::vector<std::string>& unknown) const;
  std::string render_chat(const ChatRequest& r) const;
  // prompt + max_tokens must fit the context (400 with both numbers otherwise); returns the
  // number of tokens to generate.
  int64_t fit_context(int64_t n_prompt, int64_t max_tokens, const char* field) const;
  std::string new_id(const char* prefix);

  ServiceOptions opts_;
  Scheduler& scheduler_;
  const Tokenizer& tok_;
  const ChatTemplate& tmpl_;
  std::string template_source_;
  Metrics& metrics_;
  std::atomic<bool> draining_{false};
  std::atomic<uint64_t> next_id_{1};
  const int64_t created_;
};

}  // namespace dsv3::serve
