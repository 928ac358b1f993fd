// dsv3 init: write a random-weight checkpoint in the Hugging Face layout (tests, benchmarks,
// the default model).
#include <cstdio>

#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "base/error.h"
#include "io/json_file.h"
#include "weights/presets.h"
#include "weights/random_checkpoint.h"

namespace dsv3::cli {

namespace {
struct InitOptions {
  std::string preset, config, out, dtype = "fp8";
  uint64_t seed = 0;
  int shards = 1, threads = 0;
  bool quiet = false;
};

void run_init(const InitOptions& o) {
  if (o.preset.empty() == o.config.empty()) fail("init: give exactly one of --preset NAME or --config CONFIG.json");
  nlohmann::ordered_json config;
  if (!o.preset.empty()) {
    config = preset_config(o.preset);
  } else {
    config = nlohmann::ordered_json::parse(read_json_file(o.config).dump());
  }
  ThreadPool pool(o.threads > 0 ? o.threads : default_threads());
  RandomCheckpointOptions opts{.out_dir = o.out, .fp8 = o.dtype == "fp8", .seed = o.seed, .shards = o.shards,
                               .pool = &pool};
  if (!o.quiet)
    opts.progress = [](uint64_t done, uint64_t total) {
      std::fprintf(stderr, "\rinit: %.1f / %.1f MB", double(done) / 1e6, double(total) / 1e6);
    };
  const uint64_t bytes = write_random_checkpoint(config, opts);
  // chat and generate warn about checkpoints carrying this file (cast and quantize copy it).
  write_text_file(o.out + "/RANDOM_WEIGHTS",
                  "This checkpoint was made by `dsv3 init`: its weights are random and its output is meaningless.\n"
                  "For real use, run dsv3 with --model /path/to/DeepSeek-V3 (a Hugging Face checkpoint).\n");
  if (!o.quiet) std::fprintf(stderr, "\ninit: wrote %s (%.1f MB of tensors)\n", o.out.c_str(), double(bytes) / 1e6);
}
}  // namespace

void add_init_command(CLI::App& app) {
  auto o = std::make_shared<InitOptions>();
  auto* sub = app.add_subcommand("init", "Write a random-weight checkpoint in the Hugging Face layout");
  std::string presets;
  for (const auto& n : preset_names()) presets += (presets.empty() ? "" : ", ") + n;
  sub->add_option("--preset", o->preset, "Built-in shape: " + presets);
  sub->add_option("--config", o->config, "A Hugging Face config.json to take the shape from");
  sub->add_option("--out", o->out, "Output directory (created)")->required();
  sub->add_option("--dtype", o->dtype,
                  "fp8: linear weights F8_E4M3 with F32 128x128 block scales (scale = amax/448), as DeepSeek ships "
                  "them; bf16: everything BF16")
      ->check(CLI::IsMember({"fp8", "bf16"}))
      ->capture_default_str();
  sub->add_option("--seed", o->seed, "Random seed (same seed, same bytes)")->capture_default_str();
  sub->add_option("--shards", o->shards, "Number of safetensors shards")->check(CLI::Range(1, 100000))->capture_default_str();
  sub->add_option("--threads", o->threads, "Worker threads (default: all cores)")->check(CLI::Range(0, 1024));
  sub->add_flag("--quiet", o->quiet, "No progress output");
  sub->callback([o] { run_init(*o); });
}

}  // namespace dsv3::cli
