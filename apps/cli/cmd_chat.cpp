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
#include "apps/cli/prompt_input.h"
#include "apps/cli/reply_stream.h"
#include "base/error.h"
#include "io/generation_config.h"
#include "tokenizer/utf8.h"
#include "runtime/engine.h"
#include "tokenizer/chat_template.h"

namespace dsv3::cli {

namespace {


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
  TemplateFlags tmpl;
  std::string ctx_full = "ask";  // ask | drop-oldest
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

// The conversation so far (system prompt apart) and what the template needs besides it.
struct ChatState {
  std::string system;
  std::vector<Json> history;
  Json variables;
  Json messages() const {
    Json m = Json::array();
    if (!system.empty()) m.push_back({{"role", "system"}, {"content", system}});
    for (const auto& h : history) m.push_back(h);
    return m;
  }
};

void run_chat(const ChatArgs& a) {
  require_utf8(a.system, "--system");
  const Json variables = template_variables(a.tmpl);
  std::optional<Conversation> start;
  if (!a.tmpl.messages_file.empty()) start = read_conversation_file(a.tmpl.messages_file);
  const std::string dir = resolve_model_dir(a.gen.model);
  GenerationFlags gen = a.gen;
  const GenerationConfig gc = GenerationConfig::load(dir);
  apply_generation_config(gen, gc);
  SamplingParams sampling = resolve_sampling(gen);
  const Tokenizer tok = with_context(dir, [&] { return load_tokenizer(dir); });
  const ChatTemplate tmpl = make_chat_template(tok, a.tmpl, variables.contains("tools"));
  // The MTP layer is bound (mapped, prefetched) only for speculation.
  Runner r = load_runner(dir, gen.threads, gen.quiet, gen.fp8_head, {.mtp = !gen.speculative.method.empty()});
  share_seed(r, sampling.seed);
  // Under mpirun, rank 0 reads the lines and every rank steps; Ctrl-C ends the job (mpirun),
  // it does not stop a reply (the ranks would disagree about where the reply stopped).
  const bool parallel = r.comm->size() > 1;
  const ModelConfig& config = r.ckpt->config;
  check_tokenizer_fits(tok, config, dir);
  const int64_t ctx = resolve_ctx_size(gen.ctx_size, config);
  const std::vector<int32_t> stop_ids = end_ids(tok, config, gen.ignore_eos, gc);
  LineReader reader;
  if (!gen.quiet) {
    std::fprintf(stderr, "dsv3 chat: %s (%s)\n", dir.c_str(),
                 config_summary(config, r.ckpt->checkpoint.total_bytes()).c_str());
    if (has_random_weights(dir))
      std::fprintf(stderr,
                   "  NOTE: this model's weights are RANDOM (made by dsv3 init), so its replies are gibberish.\n"
                   "        Real use: dsv3 chat --model /path/to/DeepSeek-V3\n");
    std::fprintf(stderr,
                 "  sampling: temperature %g, top-p %g, top-k %d, min-p %g, seed %llu; at most %lld new tokens%s%s\n"
                 "  context: %lld tokens; when full: %s\n"
                 "  /exit, /clear, /system TEXT, /stats, /help; Ctrl-C stops a reply, Ctrl-D exits\n",
                 double(sampling.temperature), double(sampling.top_p), sampling.top_k, double(sampling.min_p),
                 (unsigned long long)sampling.seed, (long long)gen.max_new_tokens,
                 gen.defaults_from.empty() ? "" : "; defaults from ", gen.defaults_from.c_str(), (long long)ctx,
                 a.ctx_full == "ask" ? "say so (/clear starts again)" : "drop the oldest turns");
  }

  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  if (!parallel) sigaction(SIGINT, &sa, nullptr);  // no SA_RESTART: nothing blocks while generating

  std::ofstream echo;
  if (!a.echo_prompt.empty()) {
    echo.open(a.echo_prompt, std::ios::binary | std::ios::trunc);
    if (!echo) fail("--echo-prompt: cannot create '{}'", a.echo_prompt);
  }
  EngineOptions eo;
  apply_cache_flags(gen, *r.model, eo);
  Engine engine(*r.model, eo);
  Session session(engine.pool());  // the conversation's cache lives in the engine's pool
  ChatState conv{.system = a.system, .history = {}, .variables = variables};
  if (start) {
    for (const auto& m : start->messages) conv.history.push_back(m);
    for (const auto& [k, v] : start->variables.items()) conv.variables[k] = v;
  }
  GenerationStats last{};
  bool have_stats = false;
  uint64_t turn = 0;

  // Encodes the conversation; when it leaves no room for a reply, drops the oldest turns
  // (--ctx-full drop-oldest) or gives up. Returns the prompt, or nothing (the caller has said why).
  auto fitting_prompt = [&]() -> std::optional<std::vector<int32_t>> {
    size_t dropped = 0;
    while (true) {
      const std::string prompt = tmpl.render(conv.messages(), /*add_generation_prompt=*/true, conv.variables);
      std::vector<int32_t> ids = tok.encode(prompt, /*add_special=*/false);
      if (int64_t(ids.size()) < ctx) {
        if (dropped)
          std::printf("(dropped the oldest %zu message(s) to fit the context of %lld tokens)\n", dropped, (long long)ctx);
        if (echo.is_open()) {
          echo << Json{{"prompt", prompt}}.dump() << "\n";
          echo.flush();
        }
        return ids;
      }
      // The oldest turn: the first message and everything up to the next user message.
      size_t n = 1;
      while (n < conv.history.size() && conv.history[n].value("role", "") != "user") ++n;
      if (a.ctx_full != "drop-oldest" || n >= conv.history.size()) {
        std::printf("(the conversation is full: %zu tokens with your message, and the context holds %lld; /clear "
                    "starts a new one, the system prompt stays%s)\n",
                    ids.size(), (long long)ctx,
                    a.ctx_full == "drop-oldest" ? "; your message alone does not fit"
                                                : "; --ctx-full drop-oldest drops old turns instead");
        return std::nullopt;
      }
      conv.history.erase(conv.history.begin(), conv.history.begin() + ptrdiff_t(n));
      dropped += n;
    }
  };

  // Generates the assistant's reply to the conversation, streaming it.
  auto reply = [&]() {
    const auto prompt = fitting_prompt();
    if (!prompt) {
      conv.history.pop_back();  // the user's message: it did not fit
      std::fflush(stdout);
      return;
    }
    const int64_t room = ctx - int64_t(prompt->size());
    std::vector<GenerationRequest> req{{.prompt = *prompt,
                                        .sampling = sampling,
                                        .max_new_tokens = std::min(gen.max_new_tokens, room),
                                        .stop_ids = stop_ids,
                                        .session = &session}};
    req[0].sampling.seed = sampling.seed + turn++;  // each turn differs; the whole chat is reproducible
    ReplyStream stream(tok, gen.stop);
    g_interrupt = false;
    g_generating = true;
    const auto result = engine.generate(req, [&](size_t, int32_t id) {
      const std::string piece = stream.push(id);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return !stream.stopped();
    }, parallel ? nullptr : &g_interrupt);
    g_generating = false;
    const std::string tail = stream.finish();
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    if (result[0].finish == FinishReason::Cancelled) std::printf(" [stopped]");
    if (result[0].finish == FinishReason::Length && int64_t(result[0].tokens.size()) >= room)
      std::printf(" [context full: /clear starts a new conversation]");
    std::printf("\n");
    std::fflush(stdout);
    conv.history.push_back({{"role", "assistant"}, {"content", stream.text()}});
    if (echo.is_open()) {
      echo << Json{{"reply", stream.text()}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      echo.flush();
    }
    last = engine.last_stats();
    have_stats = true;
  };

  // A conversation from --messages that ends with the user's turn is answered first.
  if (!conv.history.empty() && conv.history.back().value("role", "") == "user") reply();
  while (true) {
    const auto line = share_line(r, r.comm->rank() == 0 ? reader.read(">>> ") : std::nullopt);
    if (!line) {
      if (reader.interactive()) std::printf("\n");
      break;
    }
    const std::string& text = *line;
    if (text.empty()) continue;
    // A line that is not UTF-8 is refused with the reason; the conversation goes on.
    if (const size_t bad = find_invalid_utf8(text); bad != std::string::npos) {
      std::printf("(not sent: the line is not valid UTF-8: byte 0x%02X at byte %zu)\n",
                  static_cast<unsigned char>(text[bad]), bad + 1);
      std::fflush(stdout);
      continue;
    }
    if (text[0] == '/') {
      const size_t sp = text.find(' ');
      const std::string cmd = text.substr(0, sp), arg = sp == std::string::npos ? "" : text.substr(sp + 1);
      if (cmd == "/exit" || cmd == "/quit") break;
      if (cmd == "/clear") {
        conv.history.clear();
        std::printf("(conversation cleared)\n");
      } else if (cmd == "/system") {
        conv.system = arg;
        std::printf(conv.system.empty() ? "(system prompt removed)\n" : "(system prompt set)\n");
      } else if (cmd == "/stats") {
        if (!have_stats)
          std::printf("(no reply yet)\n");
        else
          std::printf("prefill: %lld tokens in %.3f s (%.1f tokens/s); decode: %lld tokens in %.3f s (%.1f tokens/s)\n",
                      (long long)last.prefill_tokens, last.prefill_s, last.prefill_tps(), (long long)last.decode_tokens,
                      last.decode_s, last.decode_tps());
        if (have_stats && engine.options().speculative.draft_tokens > 0)
          std::printf("%s\n", speculative_summary(last.speculative, engine.speculation_cost()).c_str());
      } else if (cmd == "/help") {
        print_help();
      } else {
        std::printf("unknown command '%s'; /help lists them\n", cmd.c_str());
      }
      std::fflush(stdout);
      continue;
    }
    conv.history.push_back({{"role", "user"}, {"content", text}});
    reply();
  }
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  auto* sub = app.add_subcommand("chat", "Talk with a model through its chat template (reads a pipe too)");
  add_generation_flags(sub, a->gen);
  sub->add_option("--system", a->system, "System prompt");
  add_template_flags(sub, a->tmpl,
                     "JSON file with a conversation to continue (a list of messages, or {\"messages\": [...], other "
                     "template variables}); when it ends with a user message, the model answers it first");
  sub->add_option("--ctx-full", a->ctx_full,
                  "When the conversation no longer fits the context (--ctx-size): ask (say so; /clear starts again) "
                  "or drop-oldest (drop the oldest turns, with a notice)")
      ->check(CLI::IsMember({"ask", "drop-oldest"}))
      ->capture_default_str();
  sub->add_option("--echo-prompt", a->echo_prompt, "Debug: write each rendered prompt and each reply to FILE as JSON lines")
      ->group("");
  sub->footer(
      "In the chat:\n"
      "  /exit          leave (Ctrl-D too)\n"
      "  /clear         forget the conversation (the system prompt stays)\n"
      "  /system TEXT   set the system prompt (/system alone removes it)\n"
      "  /stats         prefill and decode speed of the last reply\n"
      "  Ctrl-C         stop the current reply\n"
      "A line that is not valid UTF-8 is refused (the conversation goes on). A reply that reaches the end of\n"
      "the context stops there ([context full]).\n"
      "Without a terminal, lines are read from stdin and replies written to stdout, one per line.");
  sub->callback([a] { run_chat(*a); });
}

}  // namespace dsv3::cli
