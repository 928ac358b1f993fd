// dsv3 serve: the model behind an OpenAI-compatible HTTP API (src/serve) with continuous
// batching (runtime/scheduler.h). Listens first, answering 503 while the weights load, prints
// the URL once it can answer, and on SIGINT/SIGTERM stops accepting, lets in-flight requests
// finish for up to ~4 s, cancels the rest and exits 0.
//
// Under `mpirun -np N` rank 0 does all of that; the other ranks load their part of the weights,
// hold a KV cache pool of the same size and run every step rank 0's scheduler decides
// (runtime/step_mirror.h) until rank 0 stops.
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "apps/cli/generation_flags.h"
#include "apps/cli/speculative_flags.h"
#include "parallel/mpi_comm.h"
#include "apps/cli/progress.h"
#include "apps/cli/serve_http.h"
#include "apps/cli/web_assets.h"
#include "base/error.h"
#include "runtime/scheduler.h"
#include "runtime/step_mirror.h"
#include "serve/metrics.h"
#include "serve/output_parser.h"
#include "serve/service.h"
#include "tokenizer/chat_template.h"

namespace dsv3::cli {

namespace {

struct ServeArgs {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string served_model_name;
  std::string api_key;
  int threads = 0;
  int64_t max_running = 8;
  int64_t max_queue = 64;
  int64_t max_queued_tokens = 1 << 20;
  int64_t max_step_tokens = 2048;
  double prefill_step_ratio = 1.0;
  int64_t ctx_size = 0;
  std::string tool_call_parser = "auto";
  std::string reasoning_parser = "auto";
  bool fp8_head = false;
  int64_t max_body_mb = 32;
  bool quiet = false;
  int64_t kv_cache_mb = 0;  // 0: sized from the memory left after the weights
  std::string kv_cache_dtype = "f32";
  int64_t block_size = 64;
  bool no_prefix_caching = false;
  bool no_web = false;
  SpeculativeFlags speculative;
};

// Bytes of memory the system can still give (MemAvailable), or 0 when unknown.
uint64_t available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

// A signal handler can reach only static storage: the write end of the pipe that wakes the main
// thread (the self-pipe pattern; any thread may take the signal, including library threads
// started before run_serve, so blocking signals per thread would not be enough).
int g_signal_pipe = -1;

void on_signal(int sig) {
  const unsigned char c = static_cast<unsigned char>(sig);
  (void)!write(g_signal_pipe, &c, 1);
}

// Waits up to `timeout_ms` (-1: forever) for a signal; returns its number or 0.
int wait_signal(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  while (true) {
    const int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    unsigned char c = 0;
    return read(fd, &c, 1) == 1 ? int(c) : 0;
  }
}

// The KV cache pool: --kv-cache-mb, else room for --max-running full contexts, capped at half
// the memory left after the weights. The context is capped to what the pool holds. Under mpirun
// every rank holds the whole (replicated) latent cache: all take the smallest rank's pool.
struct KvPlan {
  CacheLayout layout;
  int64_t n_blocks = 0;
  int64_t ctx = 0;
};

KvPlan plan_kv_cache(const ServeArgs& a, Runner& r) {
  const ModelConfig& config = r.ckpt->config;
  KvPlan p;
  p.layout = r.model->cache_layout(a.block_size, cache_dtype_from_flag(a.kv_cache_dtype));
  const int64_t block_bytes = p.layout.block_bytes();
  p.ctx = a.ctx_size > 0 ? a.ctx_size : config.max_position_embeddings;
  if (a.ctx_size > config.max_position_embeddings)
    fail("--ctx-size {} is larger than the model's max_position_embeddings {}", a.ctx_size,
         config.max_position_embeddings);
  uint64_t budget = uint64_t(a.kv_cache_mb) << 20;
  if (a.kv_cache_mb == 0) {
    budget = uint64_t(a.max_running) * uint64_t(p.ctx + a.block_size) * uint64_t(p.layout.token_bytes());
    // MemAvailable counts the mapped weights' page cache as reclaimable: leave them out, so
    // that the pool never pushes the weights out of memory.
    const uint64_t avail = available_memory(), weights = r.ckpt->checkpoint.total_bytes();
    if (avail > 0) budget = std::min(budget, avail > weights ? (avail - weights) / 2 : 0);
  }
  p.n_blocks = int64_t(budget / uint64_t(block_bytes));
  if (r.comm->size() > 1) {
    // Rank 0's steps name blocks, positions and head formats: every rank must have been given the
    // same flags for them (a launch with a ':'-separated command per rank can differ).
    const int64_t mine[4] = {a.block_size, p.ctx, a.kv_cache_dtype == "bf16" ? 1 : 0, a.fp8_head ? 1 : 0};
    std::vector<int64_t> flags(size_t(4 * r.comm->size()));
    r.comm->all_gather(mine, sizeof mine, flags.data());
    const char* names[4] = {"--block-size", "--ctx-size", "--kv-cache-dtype", "--fp8-head"};
    for (int rank = 1; rank < r.comm->size(); ++rank)
      for (int k = 0; k < 4; ++k)
        if (flags[size_t(4 * rank + k)] != flags[size_t(k)])
          fail("serve under mpirun: rank {} was given a different {} from rank 0's (every rank needs the same "
               "{}; give all ranks the same serve flags)",
               rank, names[k], names[k]);
    std::vector<int64_t> all(size_t(r.comm->size()));
    r.comm->all_gather(&p.n_blocks, sizeof p.n_blocks, all.data());
    p.n_blocks = *std::min_element(all.begin(), all.end());
  }
  if (p.n_blocks < 2)
    fail("--kv-cache-mb {}: the KV cache pool needs at least 2 blocks of {} positions ({} each)",
         a.kv_cache_mb > 0 ? std::to_string(a.kv_cache_mb) : "(default, from free memory)", a.block_size,
         format_bytes(uint64_t(block_bytes)));
  if (p.n_blocks * a.block_size - 1 < p.ctx) {
    if (a.ctx_size > 0)
      fail("--ctx-size {} does not fit the KV cache pool ({} positions; raise --kv-cache-mb)", a.ctx_size,
           p.n_blocks * a.block_size);
    p.ctx = p.n_blocks * a.block_size - 1;
  }
  return p;
}

// A rank other than 0 under mpirun: its part of the weights, a pool like rank 0's, then rank
// 0's steps until it stops. Signals keep their default action: mpirun ends the job when it is
// interrupted, and rank 0 stops the others when it alone is.
void run_serve_follower(const ServeArgs& a, const std::string& dir) {
  Runner r = load_runner(dir, a.threads, a.quiet, a.fp8_head);
  const KvPlan kv = plan_kv_cache(a, r);
  auto pool = std::make_shared<BlockPool>(kv.layout, kv.n_blocks);
  follow_steps(*r.model, pool, /*absorbed=*/true);
}

void run_serve(const ServeArgs& a) {
  const int world = launcher_world_size();
  if (world > 1 && !a.speculative.method.empty())
    fail("serve: --speculative {} is not available under mpirun ({} ranks): its drafting steps are not mirrored to "
         "the other ranks; serve without --speculative, or as one process",
         a.speculative.method, world);
  const std::string dir = resolve_model_dir(a.model);
  const Tokenizer tok = with_context(dir, [&] { return load_tokenizer(dir); });
  const std::string template_source =
      with_context(dir + "/tokenizer_config.json", [&] { return tok.config().chat_template(); });
  const ChatTemplate tmpl =
      with_context(dir + "/tokenizer_config.json", [&] { return ChatTemplate::from_config(tok.config()); });

  // Output parsers: explicit flags are checked against the tokenizer now; auto picks from the
  // chat template.
  const auto tools_flag = serve::parse_tool_call_parser(a.tool_call_parser);
  const serve::ReasoningParserChoice reasoning_flag = serve::parse_reasoning_parser(a.reasoning_parser);
  const serve::ParserSelection detected = serve::detect_parsers(template_source, tok);
  const serve::ToolCallFormat tools = tools_flag ? *tools_flag : detected.tools;
  const serve::ReasoningParserChoice reasoning =
      reasoning_flag == serve::ReasoningParserChoice::Auto ? detected.reasoning : reasoning_flag;
  serve::check_parser_tokens(tok, tools_flag ? tools : serve::ToolCallFormat::None,
                             reasoning_flag == serve::ReasoningParserChoice::Auto ? serve::ReasoningParserChoice::None
                                                                                   : reasoning);

  // Every rank checks the tokenizer and flags above (they fail alike); only rank 0 listens.
  if (launcher_rank() != 0) return run_serve_follower(a, dir);

  // Each of the HTTP worker threads would otherwise get a malloc arena of its own as load
  // spreads over them (glibc makes up to 8 per core): the process then grows for minutes under
  // steady traffic (seen: +22% RSS in a 60 s soak beside other work). Four arenas are plenty for
  // request parsing and responses; the model's steps do not allocate.
  mallopt(M_ARENA_MAX, 4);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) fail("serve: cannot create a pipe: {}", std::strerror(errno));
  g_signal_pipe = fds[1];
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::string name = a.served_model_name;
  if (name.empty()) name = std::filesystem::path(dir).lexically_normal().filename().string();
  if (name.empty() || name == ".") name = "dsv3";

  HttpServer http({.host = a.host,
                   .port = a.port,
                   .api_key = a.api_key,
                   .max_body_bytes = size_t(a.max_body_mb) << 20,
                   .worker_threads = int(std::max<int64_t>(256, a.max_running + a.max_queue + 64)),
                   .serve_web = !a.no_web});
  http.start();
  if (!a.quiet) std::fprintf(stderr, "dsv3 serve: loading %s (answering 503 on port %d meanwhile)\n", dir.c_str(), http.port());

  // The MTP layer is bound (mapped, prefetched) only for speculation.
  Runner r = load_runner(dir, a.threads, a.quiet, a.fp8_head, {.mtp = !a.speculative.method.empty()});
  const ModelConfig& config = r.ckpt->config;
  check_tokenizer_fits(tok, config, dir);

  const KvPlan kv = plan_kv_cache(a, r);
  const CacheLayout& layout = kv.layout;
  const int64_t n_blocks = kv.n_blocks, ctx = kv.ctx;
  auto pool = std::make_shared<BlockPool>(layout, n_blocks);
  // Under mpirun the other ranks run each step too (runtime/step_mirror.h).
  std::unique_ptr<StepSender> sender;
  if (r.comm->size() > 1) sender = std::make_unique<StepSender>(*r.comm, *pool);
  // Destroyed after the scheduler (declared before it): then no step is in flight and the other
  // ranks can be told to stop. Not while an error unwinds (a collective may be half done): the
  // non-zero exit makes mpirun end them.
  struct StopFollowers {
    StepSender* s;
    ~StopFollowers() {
      if (s && std::uncaught_exceptions() == 0) s->stop();
    }
  } stop_followers{sender.get()};
  if (!a.quiet)
    std::fprintf(stderr,
                 "dsv3 serve: KV cache: %s (%lld blocks of %lld positions, %lld positions, %s per position, %s), "
                 "context %lld, prefix caching %s\n",
                 format_bytes(pool->bytes()).c_str(), (long long)n_blocks, (long long)a.block_size,
                 (long long)(n_blocks * a.block_size), format_bytes(uint64_t(layout.token_bytes())).c_str(),
                 a.kv_cache_dtype.c_str(), (long long)ctx, a.no_prefix_caching ? "off" : "on");

  Scheduler scheduler(*r.model, {.max_running = a.max_running,
                                 .max_queue = a.max_queue,
                                 .max_queued_tokens = a.max_queued_tokens,
                                 .max_step_tokens = a.max_step_tokens,
                                 .ctx_size = ctx,
                                 .itl_prefill_ratio = a.prefill_step_ratio,
                                 .pool = pool,
                                 .prefix_caching = !a.no_prefix_caching,
                                 .prefix_namespace = prefix_namespace(
                                     std::filesystem::weakly_canonical(dir).string() + (a.fp8_head ? "|fp8-head" : ""),
                                     layout.dtype),
                                 .speculative = resolve_speculative(a.speculative, *r.model),
                                 .before_forward = sender ? [&sender](std::span<const StepEntry> e,
                                                                      std::span<SequenceCache* const> c,
                                                                      std::span<const int32_t> rows) {
                                   sender->send(e, c, rows);
                                 } : std::function<void(std::span<const StepEntry>, std::span<SequenceCache* const>,
                                                        std::span<const int32_t>)>()});
  if (!a.quiet && scheduler.options().speculative.draft_tokens > 0)
    std::fprintf(stderr, "dsv3 serve: speculative decoding: MTP, %d draft token(s) per step%s\n",
                 scheduler.options().speculative.draft_tokens,
                 scheduler.options().speculative.adaptive ? " (off for a sequence below break-even)" : "");
  serve::Metrics metrics(name);
  serve::ServiceOptions so;
  so.served_model_name = name;
  so.model_root = dir;
  so.ctx_size = ctx;
  so.tool_format = tools;
  so.reasoning = reasoning;
  so.defaults = serve::SamplingDefaults::from_model_dir(dir);
  so.eos_ids = end_ids(tok, config, /*ignore_eos=*/false);
  so.log_requests = !a.quiet;
  serve::Service service(so, scheduler, tok, tmpl, template_source, metrics);
  http.set_service(&service);
  std::printf("dsv3 serve: http://%s:%d/v1 (model '%s', context %lld, %lld running / %lld queued, tool calls %s, "
              "reasoning %s)\n",
              a.host.c_str(), http.port(), name.c_str(), (long long)ctx, (long long)a.max_running,
              (long long)a.max_queue, serve::to_string(tools), serve::to_string(reasoning));
  if (!a.no_web) std::printf("dsv3 serve: chat page at http://%s:%d/\n", a.host.c_str(), http.port());
  std::fflush(stdout);
  if (!a.quiet && !detected.why.empty()) std::fprintf(stderr, "dsv3 serve: parsers: %s\n", detected.why.c_str());
  if (!a.quiet && !a.no_web && !web_has_markdown())
    std::fprintf(stderr, "dsv3 serve: NOTE: this build's chat page has no Markdown (web/node_modules was missing when "
                 "it was built: run scripts/setup.sh); replies show as plain text\n");
  if (!a.quiet && has_random_weights(dir))
    std::fprintf(stderr, "dsv3 serve: NOTE: '%s' has RANDOM weights (made by dsv3 init); replies are gibberish\n",
                 dir.c_str());

  const int sig = wait_signal(fds[0], -1);
  if (!a.quiet) std::fprintf(stderr, "dsv3 serve: %s: no new requests; finishing the running ones\n", strsignal(sig));
  service.drain();
  scheduler.drain();
  // Up to 2.5 s for running requests to finish (a second signal cuts it short), then the rest
  // are cancelled; HttpServer::stop closes idle keep-alive connections at once: exit within ~5 s.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(2500);
  while (!scheduler.idle() && std::chrono::steady_clock::now() < deadline)
    if (wait_signal(fds[0], 20) != 0) break;
  if (!scheduler.idle()) {
    if (!a.quiet) std::fprintf(stderr, "dsv3 serve: stopping the requests still running\n");
    scheduler.cancel_all();
    const auto hard = std::chrono::steady_clock::now() + std::chrono::milliseconds(1000);
    while (!scheduler.idle() && std::chrono::steady_clock::now() < hard)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  http.stop();
  http.set_service(nullptr);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  g_signal_pipe = -1;
  close(fds[0]);
  close(fds[1]);
  if (!a.quiet) std::fprintf(stderr, "dsv3 serve: stopped\n");
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  auto* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server (chat/completions, streaming, tools, reasoning)");
  sub->add_option("--model", a->model,
                  "Checkpoint directory (Hugging Face layout with tokenizer files). Default: $DSV3_MODEL, else "
                  "models/default");
  sub->add_option("--host", a->host, "Address to listen on")->capture_default_str();
  sub->add_option("--port", a->port, "Port to listen on (0: any free port, printed)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  sub->add_option("--served-model-name", a->served_model_name,
                  "Model id in /v1/models and the 'model' requests must name (default: the directory's name)");
  sub->add_option("--api-key", a->api_key,
                  "Require 'Authorization: Bearer KEY' (401 otherwise; /health, /metrics and CORS preflight exempt)");
  sub->add_option("--threads", a->threads, "Worker threads for the model (default: all cores)")->check(CLI::Range(0, 1024));
  sub->add_option("--max-running", a->max_running, "Most sequences in the running batch (each choice of n counts)")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))
      ->capture_default_str();
  sub->add_option("--max-queue", a->max_queue, "Most requests waiting to run; more get 429 with retry-after")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20))
      ->capture_default_str();
  sub->add_option("--max-queued-tokens", a->max_queued_tokens, "Most prompt tokens waiting to run; more get 429")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40))
      ->capture_default_str();
  sub->add_option("--max-step-tokens", a->max_step_tokens,
                  "Tokens per forward step: every running sequence's decode token, then prompt chunks up to this")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  sub->add_option("--prefill-step-ratio", a->prefill_step_ratio,
                  "While other streams decode, a step carrying prompt tokens lasts at most (1 + R) decode-only steps "
                  "(measured as it runs): bounds their inter-token latency while a long prompt arrives (0 = off: "
                  "prompt chunks of --max-step-tokens)")
      ->check(CLI::Range(0.0, 1000.0))
      ->capture_default_str();
  sub->add_option("--ctx-size", a->ctx_size,
                  "Most tokens per sequence, prompt + output (default: max_position_embeddings, capped to what the "
                  "KV cache pool holds)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  sub->add_option("--kv-cache-mb", a->kv_cache_mb,
                  "KV cache pool size in MiB, allocated once and shared by every sequence (default: room for "
                  "--max-running full contexts, at most half of the memory available besides the weights; printed at "
                  "start). "
                  "Requests wait for blocks; running ones are preempted and recomputed when it runs out")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  sub->add_option("--kv-cache-dtype", a->kv_cache_dtype, kKvCacheDtypeHelp)
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  sub->add_option("--block-size", a->block_size, "Positions per KV cache block (the unit of sharing and of prefix reuse)")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))
      ->capture_default_str();
  sub->add_flag("--no-prefix-caching", a->no_prefix_caching,
                "Do not reuse cached blocks of earlier prompts (every prompt is prefilled in full)");
  sub->add_option("--tool-call-parser", a->tool_call_parser,
                  "auto, deepseek_v3, deepseek_v31, kimi_k2 or none (SGLang's spellings accepted); auto picks from "
                  "the chat template")
      ->capture_default_str();
  sub->add_option("--reasoning-parser", a->reasoning_parser,
                  "auto, deepseek_r1, deepseek_v3 (R1 parsing when chat_template_kwargs.thinking is on) or none; auto "
                  "picks from the chat template")
      ->capture_default_str();
  sub->add_flag("--fp8-head", a->fp8_head, kFp8HeadHelp);
  add_speculative_flags(sub, a->speculative);
  sub->add_option("--max-body-mb", a->max_body_mb, "Largest request body in MiB (413 beyond)")
      ->check(CLI::Range(int64_t(1), int64_t(4096)))
      ->capture_default_str();
  sub->add_flag("--quiet", a->quiet, "No loading progress or request log on stderr");
  sub->add_flag("--no-web", a->no_web,
                "Do not serve the chat page (built into the binary from web/) at / and /web/*: they answer 404");
  sub->footer(
      "Chat page: open http://HOST:PORT/ in a browser (streaming, reasoning, Markdown, conversations kept in\n"
      "the browser); it loads nothing from other hosts. --no-web turns it off.\n"
      "Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions, GET /health (503 while\n"
      "loading), GET /metrics (Prometheus, dsv3: prefix), POST /tokenize, /detokenize, /apply-template.\n"
      "SIGINT/SIGTERM: stop accepting, finish or stop in-flight requests within ~5 s, exit 0.");
  sub->callback([a] { run_serve(*a); });
}

}  // namespace dsv3::cli
