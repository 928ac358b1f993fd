// dsv3 logits: the conformance interface against DeepSeek's reference. Prefill the prompt in
// one step, then greedy single-token decode steps; write the float32 logits rows.
#include <cstdio>

#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "apps/cli/generation_flags.h"
#include "base/error.h"
#include "runtime/greedy.h"

namespace dsv3::cli {

namespace {
struct LogitsOptions {
  std::string model, ids, out, mtp_out, attention = "absorb", kv_cache_dtype = "f32";
  int64_t decode = 0, ctx_size = 0;
  int threads = 0;
  bool fp8_head = false;
};

void run_logits(const LogitsOptions& o) {
  const auto prompt = parse_ids(o.ids, "--ids");
  Runner r = load_runner(o.model, o.threads, /*quiet=*/false, o.fp8_head, {.mtp = !o.mtp_out.empty()});
  const int64_t V = r.ckpt->config.vocab_size;
  for (auto id : prompt)
    if (id >= V) fail("--ids: token id {} is out of range; the vocabulary has {} ids (0..{})", id, V, V - 1);
  const int64_t ctx = resolve_ctx_size(o.ctx_size, r.ckpt->config);
  if (int64_t(prompt.size()) + o.decode > ctx)
    fail("logits: {} prompt ids and --decode {} need {} positions; the context holds {} (--ctx-size; the model's "
         "max_position_embeddings is {})",
         prompt.size(), o.decode, int64_t(prompt.size()) + o.decode, ctx, r.ckpt->config.max_position_embeddings);
  GreedyOptions g{.decode_steps = o.decode, .absorbed = o.attention == "absorb", .mtp = !o.mtp_out.empty()};
  g.cache_dtype = cache_dtype_from_flag(o.kv_cache_dtype);
  const GreedyRun run = run_greedy(*r.model, prompt, g);
  if (!is_root(r)) return;  // every rank holds the same logits; rank 0 writes them
  write_f32_file(o.out, run.logits);
  if (!o.mtp_out.empty()) write_f32_file(o.mtp_out, run.mtp_logits);
  std::string toks;
  for (auto t : run.tokens) toks += (toks.empty() ? "" : ",") + std::to_string(t);
  std::fprintf(stderr, "greedy tokens: %s\n", toks.c_str());
}
}  // namespace

void add_logits_command(CLI::App& app) {
  auto o = std::make_shared<LogitsOptions>();
  auto* sub = app.add_subcommand("logits", "Prefill a prompt, decode greedily, write the logits of every step");
  sub->add_option("--model", o->model, "Checkpoint directory (Hugging Face layout)")->required();
  sub->add_option("--ids", o->ids, "Prompt token ids, comma-separated (e.g. 0,17,345)")->required();
  sub->add_option("--decode", o->decode, "Greedy decode steps after the prefill")->default_val(0)->check(
      CLI::Range(int64_t(0), int64_t(1) << 20));
  sub->add_option("--out", o->out,
                  "Output file: float32 little-endian rows [decode+1, vocab_size]; row 0 = logits at the last "
                  "prompt position, row k = after feeding the argmax of row k-1")
      ->required();
  sub->add_option("--attention", o->attention, "MLA implementation: absorb (latent cache, default) or naive")
      ->check(CLI::IsMember({"absorb", "naive"}));
  sub->add_option("--mtp-out", o->mtp_out,
                  "Also write the MTP module's logits for prompt positions 0..L-2 ([L-1, vocab_size])");
  sub->add_option("--ctx-size", o->ctx_size, kCtxSizeHelp)->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  sub->add_option("--threads", o->threads, "Worker threads (default: all cores)")->check(CLI::Range(0, 1024));
  sub->add_flag("--fp8-head", o->fp8_head, kFp8HeadHelp);
  sub->add_option("--kv-cache-dtype", o->kv_cache_dtype, kKvCacheDtypeHelp)
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  sub->callback([o] { run_logits(*o); });
}

}  // namespace dsv3::cli
