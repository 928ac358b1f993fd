// dsv3 generate: complete a prompt or a file of prompts (one per line), all of them together
// as one batch through the batched forward step; each finishes on its own EOS, stop string or
// token limit.
#include <cstdio>
#include <fstream>

#include <fmt/format.h>

#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "apps/cli/generation_flags.h"
#include "apps/cli/reply_stream.h"
#include "base/error.h"
#include "runtime/engine.h"
#include "tokenizer/chat_template.h"

namespace dsv3::cli {

namespace {

using Json = nlohmann::ordered_json;

struct GenerateArgs {
  GenerationFlags gen;
  std::vector<std::string> prompts;  // --prompt (repeatable)
  std::string input_file;
  std::string system;
  bool raw = false, jsonl = false;
  int64_t max_step_tokens = 2048;
};

std::vector<std::string> read_prompts(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--input-file: cannot open '{}'", path);
  std::vector<std::string> prompts;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) prompts.push_back(line);
  }
  if (prompts.empty()) fail("--input-file: '{}' has no prompts (expected one per line)", path);
  return prompts;
}

void run_generate(const GenerateArgs& a) {
  if (a.prompts.empty() == a.input_file.empty()) fail("generate: give --prompt TEXT or --input-file FILE (one of them)");
  const std::vector<std::string> prompts = a.input_file.empty() ? a.prompts : read_prompts(a.input_file);
  if (a.raw && !a.system.empty()) fail("generate: --system needs the chat template; it cannot go with --raw");
  const std::string dir = resolve_model_dir(a.gen.model);
  const SamplingParams sampling = resolve_sampling(a.gen);
  const Tokenizer tok = with_context(dir, [&] { return load_tokenizer(dir); });
  std::optional<ChatTemplate> tmpl;
  if (!a.raw)
    tmpl.emplace(with_context(dir + "/tokenizer_config.json", [&] { return ChatTemplate::from_config(tok.config()); }));
  Runner r = load_runner(dir, a.gen.threads, a.gen.quiet, a.gen.fp8_head);
  if (!a.gen.quiet && has_random_weights(dir))
    std::fprintf(stderr, "dsv3 generate: NOTE: '%s' has RANDOM weights (made by dsv3 init); its output is gibberish. "
                         "Real use: --model /path/to/DeepSeek-V3\n", dir.c_str());
  const std::vector<int32_t> stop_ids = end_ids(tok, r.ckpt->config, a.gen.ignore_eos);

  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts) {
    std::vector<int32_t> ids;
    if (a.raw) {
      ids = tok.encode(p, /*add_special=*/true);
    } else {
      Json messages = Json::array();
      if (!a.system.empty()) messages.push_back({{"role", "system"}, {"content", a.system}});
      messages.push_back({{"role", "user"}, {"content", p}});
      ids = tok.encode(tmpl->render(messages, /*add_generation_prompt=*/true), /*add_special=*/false);
    }
    if (ids.empty()) fail("generate: prompt '{}' encodes to no tokens", p);
    // Every prompt uses the same seed, so its output does not depend on the rest of the batch.
    requests.push_back({.prompt = std::move(ids), .sampling = sampling, .max_new_tokens = a.gen.max_new_tokens,
                        .stop_ids = stop_ids});
  }
  std::vector<ReplyStream> replies;
  for (size_t i = 0; i < requests.size(); ++i) replies.emplace_back(tok, a.gen.stop);
  Engine engine(*r.model, {.max_step_tokens = a.max_step_tokens});
  const auto results = engine.generate(requests, [&](size_t i, int32_t id) {
    replies[i].push(id);
    return !replies[i].stopped();
  });

  for (size_t i = 0; i < results.size(); ++i) {
    replies[i].finish();
    const std::string& completion = replies[i].text();
    const FinishReason finish = replies[i].stopped() ? FinishReason::Stop : results[i].finish;
    std::string out;
    if (a.jsonl) {
      out = Json{{"prompt", prompts[i]},
                 {"completion", completion},
                 {"finish_reason", finish_reason_name(finish)},
                 {"prompt_tokens", requests[i].prompt.size()},
                 {"completion_tokens", results[i].tokens.size()},
                 {"seed", sampling.seed},
                 {"tokens", results[i].tokens}}
                .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
            "\n";
    } else {
      out = fmt::format("Prompt: {}\nCompletion: {}\n\n", prompts[i], completion);
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  std::fflush(stdout);
  if (!a.gen.quiet) {
    const GenerationStats& s = engine.last_stats();
    std::fprintf(stderr, "generate: %zu prompt(s); prefill %lld tokens, %.1f tokens/s; decode %lld tokens, %.1f tokens/s\n",
                 prompts.size(), (long long)s.prefill_tokens, s.prefill_tps(), (long long)s.decode_tokens,
                 s.decode_tps());
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* sub = app.add_subcommand("generate", "Complete prompts, all in one batch (chat template applied unless --raw)");
  add_generation_flags(sub, a->gen);
  sub->add_option("--prompt", a->prompts, "A prompt (repeatable)");
  sub->add_option("--input-file", a->input_file, "File of prompts, one per line (blank lines skipped)");
  sub->add_option("--system", a->system, "System prompt for every prompt");
  sub->add_flag("--raw", a->raw, "Feed the prompt text as it is (BOS + text), without the chat template");
  sub->add_flag("--jsonl", a->jsonl,
                "One JSON object per prompt: prompt, completion, finish_reason, prompt_tokens, completion_tokens, "
                "seed, tokens");
  sub->add_option("--max-step-tokens", a->max_step_tokens, "Most tokens in one forward step (prompt chunks + decodes)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  sub->footer(
      "Output: a 'Prompt: ...' / 'Completion: ...' block per prompt, in input order, or with --jsonl one JSON\n"
      "object per line. Every prompt uses the same seed, so a prompt's output does not depend on the others.");
  sub->callback([a] { run_generate(*a); });
}

}  // namespace dsv3::cli
