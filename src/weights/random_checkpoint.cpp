#include "weights/random_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include <fmt/format.h>

#include "base/error.h"
#include "io/json_file.h"
#include "io/model_config.h"
#include "io/safetensors_writer.h"
#include "weights/fp8_block.h"
#include "weights/weight_table.h"

namespace dsv3 {

namespace fs = std::filesystem;

namespace {

// SplitMix64 and Box-Muller: a deterministic stream per tensor, seeded by (seed, source name),
// so the result does not depend on the thread count or the shard layout.
class Normal {
 public:
  Normal(uint64_t seed, const std::string& name) : state_(seed * 0x9E3779B97F4A7C15ull) {
    for (char ch : name) state_ = (state_ ^ uint8_t(ch)) * 0x100000001B3ull;
  }
  float operator()() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (double(next() >> 11) + 1.0) * 0x1.0p-53, u2 = double(next() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1)), t = 2.0 * 3.14159265358979323846 * u2;
    spare_ = float(r * std::sin(t));
    has_spare_ = true;
    return float(r * std::cos(t));
  }

 private:
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
  float spare_ = 0;
  bool has_spare_ = false;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct Planned {
  WeightSpec spec;
  std::string source;  // MTP copies of the embedding and head reuse the main tensor's stream
  bool fp8 = false;
  uint64_t bytes = 0;
};

struct Generated {
  std::vector<uint8_t> data, scale;
};

Generated generate(const Planned& p, uint64_t seed) {
  Normal rng(seed, p.source);
  const int64_t rows = p.spec.shape.size() == 2 ? p.spec.shape[0] : 1, cols = p.spec.shape.back();
  std::vector<float> w(static_cast<size_t>(rows * cols));
  float mean = 0, std = 1;
  switch (p.spec.role) {
    case WeightRole::Norm: mean = 1.0f, std = 0.1f; break;
    case WeightRole::Bias: std = 0.05f; break;
    case WeightRole::Embedding: std = 1.0f; break;
    case WeightRole::Router:
    case WeightRole::Linear: std = float(1.0 / std::sqrt(double(cols))); break;
  }
  for (auto& v : w) v = mean + std * rng();
  Generated g;
  if (p.fp8) {
    Fp8Block q = quantize_fp8_blocks(w, rows, cols);
    g.data = std::move(q.codes);
    g.scale.resize(q.scale_inv.size() * 4);
    std::memcpy(g.scale.data(), q.scale_inv.data(), g.scale.size());
  } else if (p.spec.role == WeightRole::Bias) {
    g.data.resize(w.size() * 4);
    std::memcpy(g.data.data(), w.data(), g.data.size());
  } else {
    g.data.resize(w.size() * 2);
    auto* out = reinterpret_cast<uint16_t*>(g.data.data());
    for (size_t i = 0; i < w.size(); ++i) out[i] = f32_to_bf16(w[i]);
  }
  return g;
}

}  // namespace

uint64_t write_random_checkpoint(const nlohmann::ordered_json& config_in, const RandomCheckpointOptions& opts) {
  nlohmann::ordered_json config = config_in;
  config.erase("quantization_config");
  const ModelConfig c = ModelConfig::from_json(nlohmann::json::parse(config.dump()), "config");
  if (opts.shards < 1) fail("--shards must be at least 1, got {}", opts.shards);

  std::vector<Planned> plan;
  auto add = [&](const WeightSpec& s) {
    Planned p{s, s.name};
    const std::string mtp = layer_prefix(c.num_hidden_layers);
    if (s.name == mtp + "embed_tokens.weight") p.source = "model.embed_tokens.weight";
    if (s.name == mtp + "shared_head.head.weight") p.source = "lm_head.weight";
    const bool head = s.name == "lm_head.weight" || ends_with(s.name, "shared_head.head.weight") ||
                      ends_with(s.name, "eh_proj.weight");
    p.fp8 = opts.fp8 && s.role == WeightRole::Linear && !head;
    int64_t numel = 1;
    for (auto d : s.shape) numel *= d;
    p.bytes = uint64_t(numel) * (p.fp8 ? 1 : s.role == WeightRole::Bias ? 4 : 2);
    plan.push_back(std::move(p));
  };
  for (const auto& s : global_weight_specs(c)) add(s);
  for (int64_t il = 0; il < c.num_hidden_layers + c.num_nextn_predict_layers; ++il)
    for (const auto& s : layer_weight_specs(c, il)) add(s);
  std::sort(plan.begin(), plan.end(), [](const auto& a, const auto& b) { return a.spec.name < b.spec.name; });

  uint64_t total = 0;
  for (const auto& p : plan) total += p.bytes;
  fs::create_directories(opts.out_dir);
  if (opts.fp8)
    config["quantization_config"] = fp8_quantization_config();
  write_text_file((fs::path(opts.out_dir) / "config.json").string(), config.dump(2) + "\n");

  // Contiguous runs of the sorted names, balanced by bytes; a weight and its scale stay together.
  std::map<std::string, std::string> weight_map;
  uint64_t written = 0, total_size = 0;
  size_t next = 0;
  for (int s = 0; s < opts.shards; ++s) {
    const std::string file =
        opts.shards == 1 ? "model.safetensors" : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, opts.shards);
    const uint64_t target = total * uint64_t(s + 1) / uint64_t(opts.shards);
    size_t end = next;
    uint64_t acc = written;
    while (end < plan.size() && (acc < target || s == opts.shards - 1)) acc += plan[end++].bytes;
    std::vector<Generated> gen(end - next);
    auto make = [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) gen[size_t(i)] = generate(plan[next + size_t(i)], opts.seed);
    };
    if (opts.pool)
      opts.pool->parallel_for(int64_t(gen.size()), make);
    else
      make(0, int64_t(gen.size()));
    std::vector<TensorToWrite> tensors;
    for (size_t i = next; i < end; ++i) {
      const Planned& p = plan[i];
      Generated& g = gen[i - next];
      tensors.push_back({p.spec.name, p.fp8 ? DType::F8_E4M3 : p.spec.role == WeightRole::Bias ? DType::F32 : DType::BF16,
                         p.spec.shape, g.data});
      weight_map[p.spec.name] = file;
      if (p.fp8) {
        const int64_t rows = p.spec.shape[0], cols = p.spec.shape[1];
        const std::vector<int64_t> sshape{(rows + kFp8BlockSize - 1) / kFp8BlockSize,
                                          (cols + kFp8BlockSize - 1) / kFp8BlockSize};
        tensors.push_back({p.spec.name + "_scale_inv", DType::F32, sshape, g.scale});
        weight_map[p.spec.name + "_scale_inv"] = file;
      }
      written += p.bytes;
    }
    total_size += write_safetensors((fs::path(opts.out_dir) / file).string(), tensors, {{"format", "pt"}});
    if (opts.progress) opts.progress(written, total);
    next = end;
  }
  nlohmann::ordered_json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  write_text_file((fs::path(opts.out_dir) / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  return total_size;
}

}  // namespace dsv3
