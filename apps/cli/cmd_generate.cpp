// dsv3 generate: complete a prompt or a file of prompts (one per line), all of them together
// as one batch through the batched forward step; each finishes on its own EOS, stop string or
// token limit.
#include <cstdio>
#include <fstream>

#include <fmt/format.h>

#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "apps/cli/generation_flags.h"
#include "apps/cli/prompt_input.h"
#include "apps/cli/reply_stream.h"
#include "base/error.h"
#include "io/generation_config.h"
#include "io/json_input.h"
#include "runtime/engine.h"
#include "tokenizer/chat_template.h"

namespace dsv3::cli {

namespace {

struct GenerateArgs {
  GenerationFlags gen;
  TemplateFlags tmpl;
  std::vector<std::string> prompts;  // --prompt (repeatable)
  std::string input_file, prompts_jsonl;
  std::string system;
  bool raw = false, jsonl = false;
  int64_t max_step_tokens = 2048;
};

// One prompt: text (fed through the template as a user message, or as it is with --raw) or a
// conversation; `where` names its source in messages ("prompts.txt:3", "--prompt 2").
struct Prompt {
  std::string where;
  std::optional<std::string> text;
  Conversation conversation;
};

std::vector<Prompt> read_prompt_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--input-file: cannot open '{}'", path);
  std::vector<Prompt> prompts;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, n);
    require_utf8(line, where);
    prompts.push_back({.where = where, .text = line});
  }
  if (prompts.empty()) fail("--input-file: '{}' has no prompts (expected one per line)", path);
  return prompts;
}

// JSONL: per line a JSON string (a prompt, newlines and all), a list of messages, or an object
// {"messages": [...], other template variables}.
std::vector<Prompt> read_prompts_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--prompts-jsonl: cannot open '{}'", path);
  std::vector<Prompt> prompts;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path, n);
    const Json j = parse_user_json(line, where);
    if (j.is_string()) {
      prompts.push_back({.where = where, .text = j.get<std::string>()});
    } else if (j.is_array() || j.is_object()) {
      prompts.push_back({.where = where, .conversation = parse_conversation(j, where)});
    } else {
      fail("{}: expected a JSON string (a prompt), a list of messages or an object with 'messages', got {}", where,
           j.type_name());
    }
  }
  if (prompts.empty()) fail("--prompts-jsonl: '{}' has no prompts (one JSON value per line)", path);
  return prompts;
}

std::vector<Prompt> collect_prompts(const GenerateArgs& a) {
  const int sources = int(!a.prompts.empty()) + int(!a.input_file.empty()) + int(!a.prompts_jsonl.empty()) +
                      int(!a.tmpl.messages_file.empty());
  if (sources != 1)
    fail("generate: give one of --prompt TEXT, --input-file FILE, --prompts-jsonl FILE or --messages FILE");
  if (!a.input_file.empty()) return read_prompt_lines(a.input_file);
  if (!a.prompts_jsonl.empty()) return read_prompts_jsonl(a.prompts_jsonl);
  if (!a.tmpl.messages_file.empty())
    return {{.where = a.tmpl.messages_file, .conversation = read_conversation_file(a.tmpl.messages_file)}};
  std::vector<Prompt> prompts;
  for (size_t i = 0; i < a.prompts.size(); ++i) {
    const std::string where = a.prompts.size() == 1 ? "--prompt" : fmt::format("--prompt {}", i + 1);
    require_utf8(a.prompts[i], where);
    prompts.push_back({.where = where, .text = a.prompts[i]});
  }
  return prompts;
}

void run_generate(const GenerateArgs& a) {
  const std::vector<Prompt> prompts = collect_prompts(a);
  if (a.raw) {
    if (!a.system.empty()) fail("generate: --system needs the chat template; it cannot go with --raw");
    if (!a.tmpl.tools_file.empty() || !a.tmpl.template_kwargs.empty() || !a.tmpl.chat_template.empty())
      fail("generate: --tools, --template-kwargs and --chat-template need the chat template; they cannot go with "
           "--raw");
    for (const auto& p : prompts)
      if (!p.text) fail("{}: a conversation needs the chat template; it cannot go with --raw", p.where);
  }
  require_utf8(a.system, "--system");
  const Json variables = template_variables(a.tmpl);
  const std::string dir = resolve_model_dir(a.gen.model);
  GenerationFlags gen = a.gen;
  const GenerationConfig gc = GenerationConfig::load(dir);
  apply_generation_config(gen, gc);
  SamplingParams sampling = resolve_sampling(gen);
  const Tokenizer tok = with_context(dir, [&] { return load_tokenizer(dir); });
  std::optional<ChatTemplate> tmpl;
  if (!a.raw) tmpl.emplace(make_chat_template(tok, a.tmpl, variables.contains("tools")));

  // Render and encode every prompt before the (long) load, so that a bad one fails fast.
  std::vector<std::vector<int32_t>> encoded;
  for (const auto& p : prompts) {
    std::vector<int32_t> ids;
    if (a.raw) {
      std::string warn;
      ids = encode_raw_prompt(tok, *p.text, &warn);
      if (!warn.empty() && !gen.quiet) std::fprintf(stderr, "dsv3 generate: warning: %s: %s\n", p.where.c_str(), warn.c_str());
    } else {
      Json messages = Json::array(), vars = variables;
      if (!a.system.empty()) messages.push_back({{"role", "system"}, {"content", a.system}});
      if (p.text) {
        messages.push_back({{"role", "user"}, {"content", *p.text}});
      } else {
        for (const auto& m : p.conversation.messages) messages.push_back(m);
        for (const auto& [k, v] : p.conversation.variables.items()) vars[k] = v;
      }
      const std::string rendered =
          with_context(p.where, [&] { return tmpl->render(messages, /*add_generation_prompt=*/true, vars); });
      ids = with_context(p.where, [&] { return tok.encode(rendered, /*add_special=*/false); });
    }
    if (ids.empty()) fail("{}: the prompt encodes to no tokens", p.where);
    encoded.push_back(std::move(ids));
  }

  // The MTP layer is bound (mapped, prefetched) only for speculation.
  Runner r = load_runner(dir, gen.threads, gen.quiet, gen.fp8_head, {.mtp = !gen.speculative.method.empty()});
  share_seed(r, sampling.seed);
  if (!gen.quiet && has_random_weights(dir))
    std::fprintf(stderr, "dsv3 generate: NOTE: '%s' has RANDOM weights (made by dsv3 init); its output is gibberish. "
                         "Real use: --model /path/to/DeepSeek-V3\n", dir.c_str());
  if (!gen.quiet && !gen.defaults_from.empty())
    std::fprintf(stderr, "dsv3 generate: sampling defaults from %s (temperature %g, top-p %g, top-k %d, min-p %g)\n",
                 gen.defaults_from.c_str(), double(sampling.temperature), double(sampling.top_p), sampling.top_k,
                 double(sampling.min_p));
  check_tokenizer_fits(tok, r.ckpt->config, dir);
  const int64_t ctx = resolve_ctx_size(gen.ctx_size, r.ckpt->config);
  const std::vector<int32_t> stop_ids = end_ids(tok, r.ckpt->config, gen.ignore_eos, gc);

  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int64_t n = int64_t(encoded[i].size());
    if (n >= ctx)
      fail("{}: the prompt is {} tokens; the context holds {} (--ctx-size; the model's max_position_embeddings is "
           "{}), with room for at least one generated token",
           prompts[i].where, n, ctx, r.ckpt->config.max_position_embeddings);
    // Every prompt uses the same seed, so its output does not depend on the rest of the batch.
    // A reply ends at the context's end with finish reason "length".
    requests.push_back({.prompt = std::move(encoded[i]), .sampling = sampling,
                        .max_new_tokens = std::min(gen.max_new_tokens, ctx - n), .stop_ids = stop_ids});
  }
  std::vector<ReplyStream> replies;
  for (size_t i = 0; i < requests.size(); ++i) replies.emplace_back(tok, gen.stop);
  EngineOptions eo{.max_step_tokens = a.max_step_tokens};
  apply_cache_flags(gen, *r.model, eo);
  Engine engine(*r.model, eo);
  const auto results = engine.generate(requests, [&](size_t i, int32_t id) {
    replies[i].push(id);
    return !replies[i].stopped();
  });

  for (size_t i = 0; i < results.size(); ++i) {
    replies[i].finish();
    const std::string& completion = replies[i].text();
    const FinishReason finish = replies[i].stopped() ? FinishReason::Stop : results[i].finish;
    const Prompt& p = prompts[i];
    std::string out;
    if (a.jsonl) {
      Json line = Json::object();
      if (p.text) line["prompt"] = *p.text;
      else line["messages"] = p.conversation.messages;
      line["completion"] = completion;
      line["finish_reason"] = finish_reason_name(finish);
      line["prompt_tokens"] = requests[i].prompt.size();
      line["completion_tokens"] = results[i].tokens.size();
      line["seed"] = sampling.seed;
      line["tokens"] = results[i].tokens;
      out = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    } else {
      out = fmt::format("Prompt: {}\nCompletion: {}\n\n", p.text ? *p.text : p.where, completion);
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  std::fflush(stdout);
  if (!gen.quiet) {
    const GenerationStats& s = engine.last_stats();
    std::fprintf(stderr, "generate: %zu prompt(s); prefill %lld tokens, %.1f tokens/s; decode %lld tokens, %.1f tokens/s\n",
                 prompts.size(), (long long)s.prefill_tokens, s.prefill_tps(), (long long)s.decode_tokens,
                 s.decode_tps());
    if (engine.options().speculative.draft_tokens > 0)
      std::fprintf(stderr, "generate: %s\n", speculative_summary(s.speculative, engine.speculation_cost()).c_str());
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* sub = app.add_subcommand("generate", "Complete prompts, all in one batch (chat template applied unless --raw)");
  add_generation_flags(sub, a->gen);
  sub->add_option("--prompt", a->prompts, "A prompt (repeatable)");
  sub->add_option("--input-file", a->input_file, "File of prompts, one per line (blank lines skipped)");
  sub->add_option("--prompts-jsonl", a->prompts_jsonl,
                  "File of prompts, one JSON value per line: a string (a prompt; newlines allowed), a list of messages, "
                  "or {\"messages\": [...], other template variables}");
  add_template_flags(sub, a->tmpl,
                     "JSON file with one conversation (a list of messages, or {\"messages\": [...], other template "
                     "variables}); the model writes the next assistant message");
  sub->add_option("--system", a->system, "System prompt for every prompt");
  sub->add_flag("--raw", a->raw,
                "Feed the prompt text as it is (BOS + text), without the chat template; a text that already starts "
                "with BOS gets no second one (with a warning)");
  sub->add_flag("--jsonl", a->jsonl,
                "One JSON object per prompt: prompt (or messages), completion, finish_reason (eos, stop, length), "
                "prompt_tokens, completion_tokens, seed, tokens");
  sub->add_option("--max-step-tokens", a->max_step_tokens, "Most tokens in one forward step (prompt chunks + decodes)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  sub->footer(
      "Output: a 'Prompt: ...' / 'Completion: ...' block per prompt, in input order, or with --jsonl one JSON\n"
      "object per line. Every prompt uses the same seed, so a prompt's output does not depend on the others.\n"
      "A prompt longer than the context (--ctx-size) is an error; a completion ends at the context's end with\n"
      "finish reason length.");
  sub->callback([a] { run_generate(*a); });
}

}  // namespace dsv3::cli
