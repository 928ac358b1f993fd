// dsv3 info: what a checkpoint is, what it costs, and what in it does not fit its config.
#include <cstdio>

#include <fmt/ranges.h>

#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "base/error.h"
#include "weights/model_weights.h"
#include "weights/weight_table.h"

namespace dsv3::cli {

namespace {

struct ParamCounts {
  uint64_t total = 0, active = 0;
};

uint64_t numel(const WeightSpec& s) {
  uint64_t n = 1;
  for (auto d : s.shape) n *= uint64_t(d);
  return n;
}

// Active parameters: everything but the routed experts, plus num_experts_per_tok of them.
ParamCounts count_params(const ModelConfig& c, int64_t n_layers) {
  ParamCounts p;
  auto add = [&](const std::vector<WeightSpec>& specs) {
    for (const auto& s : specs) {
      const uint64_t n = numel(s);
      p.total += n;
      if (s.name.find(".experts.") == std::string::npos) p.active += n;
    }
  };
  add(global_weight_specs(c));
  for (int64_t il = 0; il < n_layers; ++il) {
    add(layer_weight_specs(c, il));
    if (c.is_moe_layer(il))
      p.active += uint64_t(c.num_experts_per_tok) * 3 * uint64_t(c.hidden_size * c.moe_intermediate_size);
  }
  return p;
}

std::string human(double v, const char* unit) {
  const char* prefixes[] = {"", "K", "M", "G", "T"};
  int i = 0;
  while (v >= 1000 && i < 4) v /= 1000, ++i;
  return fmt::format("{:.2f} {}{}", v, prefixes[i], unit);
}

void run_info(const std::string& dir) {
  const Checkpoint ckpt = Checkpoint::open(dir);
  const ModelConfig c = ModelConfig::from_json(ckpt.config_json(), dir + "/config.json");
  std::vector<std::string> problems;
  const ModelWeights w = bind_weights(ckpt, c, true, &problems);
  std::printf("model:        %s (%s)\n", dir.c_str(), c.model_type.c_str());
  std::printf("shards:       %zu, %s of tensors\n", ckpt.shards().size(), human(double(ckpt.total_bytes()), "B").c_str());
  // Dense vs MoE honours moe_layer_freq (a layer past first_k_dense_replace is MoE only every
  // moe_layer_freq layers), as the weight table does.
  int64_t n_moe = 0;
  for (int64_t il = 0; il < c.num_hidden_layers; ++il) n_moe += c.is_moe_layer(il) ? 1 : 0;
  std::printf("layers:       %lld (%lld dense, %lld MoE)%s\n", (long long)c.num_hidden_layers,
              (long long)(c.num_hidden_layers - n_moe), (long long)n_moe,
              w.mtp ? " + 1 MTP layer" : c.has_mtp() ? " (config has MTP; checkpoint has no MTP layer)" : "");
  std::printf("hidden:       %lld, vocab %lld, heads %lld\n", (long long)c.hidden_size, (long long)c.vocab_size,
              (long long)c.num_attention_heads);
  std::printf("attention:    MLA q_lora_rank %s, kv_lora_rank %lld, qk_nope %lld, qk_rope %lld, v %lld\n",
              c.q_lora_rank > 0 ? std::to_string(c.q_lora_rank).c_str() : "null (q_proj)", (long long)c.kv_lora_rank, (long long)c.qk_nope_head_dim,
              (long long)c.qk_rope_head_dim, (long long)c.v_head_dim);
  std::printf("rope:         theta %g%s\n", c.rope_theta,
              c.rope_scaling ? fmt::format(", YaRN factor {} over {} positions", c.rope_scaling->factor,
                                           c.rope_scaling->original_max_position_embeddings)
                                   .c_str()
                             : "");
  std::printf("context:      %lld positions (max_position_embeddings; --ctx-size of chat, generate, logits and bench "
              "defaults to it)\n",
              (long long)c.max_position_embeddings);
  if (c.n_routed_experts > 0)
    std::printf("moe:          %lld routed (top %lld, %s, %s, %lld groups / top %lld), %lld shared, scale %g\n",
                (long long)c.n_routed_experts, (long long)c.num_experts_per_tok, to_string(c.scoring_func),
                to_string(c.topk_method), (long long)c.n_group, (long long)c.topk_group, (long long)c.n_shared_experts,
                c.routed_scaling_factor);
  const ParamCounts main = count_params(c, c.num_hidden_layers);
  std::printf("parameters:   %s total, %s active per token (main model)\n", human(double(main.total), "").c_str(),
              human(double(main.active), "").c_str());
  if (w.mtp) {
    const auto mtp_specs = layer_weight_specs(c, c.num_hidden_layers);
    uint64_t n = 0;
    for (const auto& s : mtp_specs) n += numel(s);
    std::printf("mtp layer:    %s parameters\n", human(double(n), "").c_str());
  }
  std::printf("bytes:       ");
  for (int t = 0; t < 16; ++t)
    if (w.bytes_by_dtype[t]) std::printf(" %s %s", std::string(dtype_name(DType(t))).c_str(), human(double(w.bytes_by_dtype[t]), "B").c_str());
  std::printf("\n");
  const int64_t cache_layers = c.num_hidden_layers + (w.mtp ? 1 : 0);
  std::printf("kv cache:     %lld bytes per token (%lld layers x (%lld latent + %lld rope) x f32)\n",
              (long long)(cache_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 4), (long long)cache_layers,
              (long long)c.kv_lora_rank, (long long)c.qk_rope_head_dim);
  if (problems.empty()) {
    std::printf("problems:     none (every tensor the config implies is present, with its shape and dtype)\n");
  } else {
    std::printf("problems:     %zu (missing tensors, wrong shapes or dtypes):\n", problems.size());
    for (const auto& p : problems) std::printf("  %s\n", p.c_str());
  }
  if (!c.unread_fields.empty()) std::printf("not read:     %s (config.json fields dsv3 does not know)\n",
                                            fmt::format("{}", fmt::join(c.unread_fields, ", ")).c_str());
  std::printf("extra:        %zu tensor(s)%s\n", w.extra.size(), w.extra.empty() ? "" : ":");
  for (const auto& e : w.extra) std::printf("  %s\n", e.c_str());
  std::fflush(stdout);
  if (!problems.empty()) fail("{}: {} problem(s) in the checkpoint; the model cannot run", dir, problems.size());
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("info", "Describe a checkpoint: architecture, parameters, bytes, KV cache, problems");
  sub->add_option("--model", *dir, "Checkpoint directory (Hugging Face layout)")->required();
  sub->callback([dir] { run_info(*dir); });
}

}  // namespace dsv3::cli
