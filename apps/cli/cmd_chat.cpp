// dsv3 chat: an interactive conversation through the model's chat template, streamed as it is
// generated. Reads a terminal through libedit, or plain lines from a pipe.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>

#include <fmt/format.h>

#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "apps/cli/generation_flags.h"
#include "apps/cli/line_reader.h"
#include "apps/cli/progress.h"
#include "apps/cli/reply_stream.h"
#include "base/error.h"
#include "runtime/engine.h"
#include "tokenizer/chat_template.h"

namespace dsv3::cli {

namespace {

using Json = nlohmann::ordered_json;

// A signal handler can only reach static storage: this flag is the one piece of global state,
// set by Ctrl-C while a reply is generated and polled by the engine between steps.
std::atomic<bool> g_interrupt{false};
std::atomic<bool> g_generating{false};

void on_sigint(int) {
  if (g_generating.load()) {
    g_interrupt.store(true);
  } else {
    const char nl = '\n';
    (void)!write(STDOUT_FILENO, &nl, 1);
    _exit(130);
  }
}

struct ChatArgs {
  GenerationFlags gen;
  std::string system;
  std::string echo_prompt;  // debug: write {"prompt": ...} and {"reply": ...} JSON lines here
};

void print_help() {
  std::printf(
      "  /exit          leave (Ctrl-D too)\n"
      "  /clear         forget the conversation (the system prompt stays)\n"
      "  /system TEXT   set the system prompt (/system alone removes it)\n"
      "  /stats         prefill and decode speed of the last reply\n"
      "  Ctrl-C         stop the current reply\n");
}

std::string config_summary(const ModelConfig& c, uint64_t bytes) {
  return fmt::format("{}, {} layers, hidden {}, {} routed experts (top {}), vocabulary {}; {}", c.model_type,
                     c.num_hidden_layers, c.hidden_size, c.n_routed_experts, c.num_experts_per_tok, c.vocab_size,
                     format_bytes(bytes));
}

void run_chat(const ChatArgs& a) {
  const std::string dir = resolve_model_dir(a.gen.model);
  SamplingParams sampling = resolve_sampling(a.gen);
  const Tokenizer tok = with_context(dir, [&] { return load_tokenizer(dir); });
  const ChatTemplate tmpl = with_context(dir + "/tokenizer_config.json", [&] { return ChatTemplate::from_config(tok.config()); });
  Runner r = load_runner(dir, a.gen.threads, a.gen.quiet, a.gen.fp8_head);
  const ModelConfig& config = r.ckpt->config;
  if (tok.vocab_size() > config.vocab_size)
    fail("'{}': the tokenizer has {} ids but the model's vocabulary is {}; they do not belong together", dir,
         tok.vocab_size(), config.vocab_size);
  const std::vector<int32_t> stop_ids = end_ids(tok, config, a.gen.ignore_eos);
  LineReader reader;
  if (!a.gen.quiet) {
    std::fprintf(stderr, "dsv3 chat: %s (%s)\n", dir.c_str(),
                 config_summary(config, r.ckpt->checkpoint.total_bytes()).c_str());
    if (has_random_weights(dir))
      std::fprintf(stderr,
                   "  NOTE: this model's weights are RANDOM (made by dsv3 init), so its replies are gibberish.\n"
                   "        Real use: dsv3 chat --model /path/to/DeepSeek-V3\n");
    std::fprintf(stderr,
                 "  sampling: temperature %g, top-p %g, top-k %d, min-p %g, seed %llu; at most %lld new tokens\n"
                 "  /exit, /clear, /system TEXT, /stats, /help; Ctrl-C stops a reply, Ctrl-D exits\n",
                 double(sampling.temperature), double(sampling.top_p), sampling.top_k, double(sampling.min_p),
                 (unsigned long long)sampling.seed, (long long)a.gen.max_new_tokens);
  }

  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);  // no SA_RESTART: nothing blocks while generating

  std::ofstream echo;
  if (!a.echo_prompt.empty()) {
    echo.open(a.echo_prompt, std::ios::binary | std::ios::trunc);
    if (!echo) fail("--echo-prompt: cannot create '{}'", a.echo_prompt);
  }
  Engine engine(*r.model);
  Session session(*r.model);
  std::string system = a.system;
  std::vector<Json> history;
  GenerationStats last{};
  bool have_stats = false;
  uint64_t turn = 0;
  while (true) {
    const auto line = reader.read(">>> ");
    if (!line) {
      if (reader.interactive()) std::printf("\n");
      break;
    }
    const std::string& text = *line;
    if (text.empty()) continue;
    if (text[0] == '/') {
      const size_t sp = text.find(' ');
      const std::string cmd = text.substr(0, sp), arg = sp == std::string::npos ? "" : text.substr(sp + 1);
      if (cmd == "/exit" || cmd == "/quit") break;
      if (cmd == "/clear") {
        history.clear();
        std::printf("(conversation cleared)\n");
      } else if (cmd == "/system") {
        system = arg;
        std::printf(system.empty() ? "(system prompt removed)\n" : "(system prompt set)\n");
      } else if (cmd == "/stats") {
        if (!have_stats)
          std::printf("(no reply yet)\n");
        else
          std::printf("prefill: %lld tokens in %.3f s (%.1f tokens/s); decode: %lld tokens in %.3f s (%.1f tokens/s)\n",
                      (long long)last.prefill_tokens, last.prefill_s, last.prefill_tps(), (long long)last.decode_tokens,
                      last.decode_s, last.decode_tps());
      } else if (cmd == "/help") {
        print_help();
      } else {
        std::printf("unknown command '%s'; /help lists them\n", cmd.c_str());
      }
      std::fflush(stdout);
      continue;
    }

    history.push_back({{"role", "user"}, {"content", text}});
    Json messages = Json::array();
    if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
    for (const auto& m : history) messages.push_back(m);
    const std::string prompt = tmpl.render(messages, /*add_generation_prompt=*/true);
    if (echo.is_open()) {
      echo << Json{{"prompt", prompt}}.dump() << "\n";
      echo.flush();
    }
    // The template writes the BOS token itself; encode adds no special tokens (as transformers'
    // apply_chat_template).
    std::vector<GenerationRequest> req{{.prompt = tok.encode(prompt, /*add_special=*/false),
                                        .sampling = sampling,
                                        .max_new_tokens = a.gen.max_new_tokens,
                                        .stop_ids = stop_ids,
                                        .session = &session}};
    req[0].sampling.seed = sampling.seed + turn++;  // each turn differs; the whole chat is reproducible
    ReplyStream reply(tok, a.gen.stop);
    g_interrupt = false;
    g_generating = true;
    const auto result = engine.generate(req, [&](size_t, int32_t id) {
      const std::string piece = reply.push(id);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return !reply.stopped();
    }, &g_interrupt);
    g_generating = false;
    const std::string tail = reply.finish();
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    if (result[0].finish == FinishReason::Cancelled) std::printf(" [stopped]");
    std::printf("\n");
    std::fflush(stdout);
    history.push_back({{"role", "assistant"}, {"content", reply.text()}});
    if (echo.is_open()) {
      echo << Json{{"reply", reply.text()}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      echo.flush();
    }
    last = engine.last_stats();
    have_stats = true;
  }
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  auto* sub = app.add_subcommand("chat", "Talk with a model through its chat template (reads a pipe too)");
  add_generation_flags(sub, a->gen);
  sub->add_option("--system", a->system, "System prompt");
  sub->add_option("--echo-prompt", a->echo_prompt, "Debug: write each rendered prompt and each reply to FILE as JSON lines")
      ->group("");
  sub->footer(
      "In the chat:\n"
      "  /exit          leave (Ctrl-D too)\n"
      "  /clear         forget the conversation (the system prompt stays)\n"
      "  /system TEXT   set the system prompt (/system alone removes it)\n"
      "  /stats         prefill and decode speed of the last reply\n"
      "  Ctrl-C         stop the current reply\n"
      "Without a terminal, lines are read from stdin and replies written to stdout, one per line.");
  sub->callback([a] { run_chat(*a); });
}

}  // namespace dsv3::cli
