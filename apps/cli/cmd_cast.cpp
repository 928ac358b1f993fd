// dsv3 cast / dsv3 quantize: FP8 <-> BF16 checkpoint conversion, one shard at a time.
#include <cstdio>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "apps/cli/progress.h"
#include "base/error.h"
#include "convert/convert.h"

namespace dsv3::cli {

namespace {
struct ConvertArgs {
  std::string in, out;
  int threads = 0;
  bool quiet = false;
};

using ConvertFn = ConvertReport (*)(const ConvertOptions&);

void run_convert(const std::string& label, ConvertFn fn, const ConvertArgs& a) {
  ThreadPool pool(a.threads > 0 ? a.threads : default_threads());
  ProgressLine line(label, a.quiet, /*delay_s=*/0.5);
  const ConvertReport r = fn({.in_dir = a.in, .out_dir = a.out, .pool = &pool, .progress = [&](const ConvertProgress& p) {
                                line.update(p.bytes_done, p.bytes_total, p.tensors_done, p.tensors_total,
                                            fmt::format("shard {}/{} {}", p.shard + 1, p.n_shards, p.file));
                              }});
  line.finish(fmt::format("wrote {} ({} tensors, {} of data; {} converted{}{})", a.out, r.n_tensors_written,
                          format_bytes(r.bytes_written), r.n_converted, r.copied.empty() ? "" : "; copied ",
                          fmt::to_string(fmt::join(r.copied, ", "))));
  for (const auto& w : r.warnings) std::fprintf(stderr, "dsv3: warning: %s\n", w.c_str());
}

CLI::App* add_convert(CLI::App& app, const std::string& name, const std::string& help, ConvertFn fn) {
  auto a = std::make_shared<ConvertArgs>();
  auto* sub = app.add_subcommand(name, help);
  sub->add_option("--in", a->in, "Input checkpoint directory (Hugging Face layout)")->required();
  sub->add_option("--out", a->out, "Output directory (created; files of the same name are overwritten)")->required();
  sub->add_option("--threads", a->threads, "Worker threads (default: all cores)")->check(CLI::Range(0, 1024));
  sub->add_flag("--quiet", a->quiet, "No progress output");
  sub->callback([a, name, fn] { run_convert(name, fn, *a); });
  return sub;
}
}  // namespace

void add_cast_command(CLI::App& app) {
  add_convert(app, "cast",
              "FP8 checkpoint -> BF16, as DeepSeek's fp8_cast_bf16.py (dequantise in float32, round to nearest "
              "even, drop weight_scale_inv, rewrite the index), plus a config.json without quantization_config "
              "and the tokenizer files",
              &cast_fp8_to_bf16);
}

namespace {
struct QuantizeArgs {
  std::string to = "fp8", targets = "experts";
  int64_t group_size = 32;
  bool keep_fp8 = false;
};
}  // namespace

void add_quantize_command(CLI::App& app) {
  auto q = std::make_shared<QuantizeArgs>();
  auto a = std::make_shared<ConvertArgs>();
  auto* sub = app.add_subcommand(
      "quantize",
      "--to fp8: BF16 checkpoint -> FP8 e4m3 with 128x128 block scales (scale = amax/448), as DeepSeek ships V3, "
      "for models published in BF16 (V2-Lite). --to int4: FP8 or BF16 checkpoint -> compressed-tensors "
      "pack-quantized 4-bit weights as Kimi-K2-Thinking ships them (symmetric, BF16 scale per group, the library's "
      "rounding bit for bit); routed experts only unless --targets all");
  sub->add_option("--in", a->in, "Input checkpoint directory (Hugging Face layout)")->required();
  sub->add_option("--out", a->out, "Output directory (created; files of the same name are overwritten)")->required();
  sub->add_option("--to", q->to, "Target format: fp8 (default) or int4")->check(CLI::IsMember({"fp8", "int4"}));
  sub->add_option("--group-size", q->group_size, "int4: columns per scale (default 32, Kimi-K2-Thinking's); must divide "
                                                 "every packed weight's columns")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  sub->add_option("--targets", q->targets, "int4: experts (default: routed experts, every layer and MTP) or all "
                                           "(every Linear projection except kv_b_proj and the heads)")
      ->check(CLI::IsMember({"experts", "all"}));
  sub->add_flag("--keep-fp8", q->keep_fp8, "int4: weights not packed stay FP8 with their scales (dsv3 reads them; "
                                          "other readers expect BF16 there, as Kimi-K2-Thinking has)");
  sub->add_option("--threads", a->threads, "Worker threads (default: all cores)")->check(CLI::Range(0, 1024));
  sub->add_flag("--quiet", a->quiet, "No progress output");
  sub->callback([a, q, sub] {
    if (q->to == "fp8") {
      if (sub->count("--group-size") || sub->count("--targets") || q->keep_fp8)
        fail("--group-size, --targets and --keep-fp8 apply to --to int4; --to fp8 uses 128x128 blocks on every "
             "projection");
      return run_convert("quantize", &quantize_bf16_to_fp8, *a);
    }
    const PackedOptions p{.bits = 4, .group_size = q->group_size, .all_linear = q->targets == "all", .keep_fp8 = q->keep_fp8};
    ThreadPool pool(a->threads > 0 ? a->threads : default_threads());
    ProgressLine line("quantize", a->quiet, /*delay_s=*/0.5);
    const ConvertReport r = quantize_to_packed(
        {.in_dir = a->in, .out_dir = a->out, .pool = &pool, .progress = [&](const ConvertProgress& pr) {
           line.update(pr.bytes_done, pr.bytes_total, pr.tensors_done, pr.tensors_total,
                       fmt::format("shard {}/{} {}", pr.shard + 1, pr.n_shards, pr.file));
         }},
        p);
    line.finish(fmt::format("wrote {} ({} tensors, {} of data; {} weights packed to int4, group size {})", a->out,
                            r.n_tensors_written, format_bytes(r.bytes_written), r.n_converted, p.group_size));
    for (const auto& w : r.warnings) std::fprintf(stderr, "dsv3: warning: %s\n", w.c_str());
  });
}

}  // namespace dsv3::cli
