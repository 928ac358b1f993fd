// dsv3 cast / dsv3 quantize: FP8 <-> BF16 checkpoint conversion, one shard at a time.
#include <cstdio>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "apps/cli/progress.h"
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

void add_quantize_command(CLI::App& app) {
  add_convert(app, "quantize",
              "BF16 checkpoint -> FP8 e4m3 with 128x128 block scales (scale = amax/448), as DeepSeek ships V3; "
              "for models published in BF16 (V2-Lite)",
              &quantize_bf16_to_fp8);
}

}  // namespace dsv3::cli
