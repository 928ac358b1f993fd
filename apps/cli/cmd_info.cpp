// dsv3 info: what a checkpoint is, what it costs, and what in it does not fit its config.
#include <cstdio>
#include <filesystem>
#include <map>

#include <fmt/ranges.h>

#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "base/error.h"
#include "io/compressed_tensors_config.h"
#include "io/json_file.h"
#include "weights/model_weights.h"
#include "weights/shard.h"
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

// The tensor class a weight belongs to, for the quantisation table.
std::string class_of(const std::string& name, int64_t mtp_layer) {
  if (name.find("layers." + std::to_string(mtp_layer) + ".") != std::string::npos &&
      name.find(".mlp.") == std::string::npos && name.find("self_attn") == std::string::npos &&
      name.find("layernorm") == std::string::npos)
    return "mtp head/proj";
  if (name.find(".mlp.experts.") != std::string::npos) return "routed experts";
  if (name.find(".mlp.shared_experts.") != std::string::npos) return "shared experts";
  if (name.find(".mlp.gate.") != std::string::npos) return "router";
  if (name.find(".mlp.") != std::string::npos) return "dense mlp";
  if (name.find("self_attn.") != std::string::npos && name.find("layernorm") == std::string::npos) return "attention";
  if (name.find("norm") != std::string::npos) return "norms";
  return "embed/head";
}

std::string format_of(const Weight& w) {
  if (w.packed()) return fmt::format("int{} g{}", w.bits, w.group_size);
  return std::string(dtype_name(w.dtype)) + (w.scale_inv ? " 128x128" : "");
}

// class -> format -> bytes; printed as one line per class.
using QuantTable = std::map<std::string, std::map<std::string, uint64_t>>;

void print_quant_table(const QuantTable& t) {
  std::printf("quantization: (bytes per tensor class, scales included)\n");
  for (const auto& [cls, formats] : t) {
    std::string line;
    for (const auto& [f, b] : formats) line += fmt::format("{}{} {}", line.empty() ? "" : ", ", f, human(double(b), "B"));
    std::printf("  %-16s %s\n", cls.c_str(), line.c_str());
  }
}

QuantTable quant_table(const ModelWeights& w, int64_t mtp_layer) {
  QuantTable t;
  auto add = [&](const Weight& x) {
    if (x.present()) t[class_of(x.name, mtp_layer)][format_of(x)] += x.bytes();
  };
  auto add_layer = [&](const LayerWeights& l) {
    const auto& a = l.self_attn;
    for (const Weight* p : {&l.input_layernorm, &l.post_attention_layernorm, &a.q_a_proj, &a.q_a_layernorm, &a.q_b_proj,
                            &a.q_proj, &a.kv_a_proj_with_mqa, &a.kv_a_layernorm, &a.kv_b_proj, &a.o_proj,
                            &l.mlp.gate_proj, &l.mlp.up_proj, &l.mlp.down_proj, &l.moe.gate, &l.moe.e_score_correction_bias})
      add(*p);
    for (const auto& e : l.moe.experts) add(e.gate_proj), add(e.up_proj), add(e.down_proj);
    if (l.moe.shared_experts) add(l.moe.shared_experts->gate_proj), add(l.moe.shared_experts->up_proj), add(l.moe.shared_experts->down_proj);
  };
  add(w.embed_tokens), add(w.norm);
  if (w.lm_head.data != w.embed_tokens.data) add(w.lm_head);
  for (const auto& l : w.layers) add_layer(l);
  if (w.mtp) {
    add_layer(w.mtp->layer);
    for (const Weight* p : {&w.mtp->embed_tokens, &w.mtp->enorm, &w.mtp->hnorm, &w.mtp->eh_proj, &w.mtp->shared_head_norm,
                            &w.mtp->shared_head_head})
      add(*p);
  }
  return t;
}

// A directory with only config.json (the 671B model's, say): the bytes its tensors would take in
// the format its quantization_config gives them, and what one decode token reads (everything but
// the embedding and the MTP layer, with num_experts_per_tok routed experts per MoE layer).
void run_config_only(const std::string& dir) {
  const std::string path = dir + "/config.json";
  const nlohmann::json j = read_json_file(path);
  const ModelConfig c = ModelConfig::from_json(j, path);
  const auto packed = compressed_tensors_config_of(j, path);
  const bool fp8 = j.contains("quantization_config") && j["quantization_config"].value("quant_method", "") == "fp8";
  QuantTable t;
  uint64_t total = 0, per_token = 0;
  auto bytes_of = [&](const WeightSpec& s, std::string& format) -> uint64_t {
    const int64_t rows = s.shape.size() == 2 ? s.shape[0] : 1, cols = s.shape.back();
    const std::string module = s.name.substr(0, s.name.rfind('.'));
    if (s.role == WeightRole::Linear && packed) {
      if (const PackedScheme* q = packed->scheme_for(module, true)) {
        const int64_t gs = q->group_size > 0 ? q->group_size : cols;
        format = fmt::format("int{} g{}", q->num_bits, gs);
        return uint64_t(rows) * uint64_t((cols * q->num_bits + 31) / 32) * 4 + uint64_t(rows) * uint64_t((cols + gs - 1) / gs) * 2;
      }
    }
    const bool is_fp8 = fp8 && s.role == WeightRole::Linear && s.name.find("eh_proj") == std::string::npos &&
                        s.name.find("lm_head") == std::string::npos && s.name.find("shared_head") == std::string::npos;
    if (is_fp8) {
      format = "F8_E4M3 128x128";
      return uint64_t(rows) * uint64_t(cols) + uint64_t((rows + 127) / 128) * uint64_t((cols + 127) / 128) * 4;
    }
    format = s.role == WeightRole::Bias ? "F32" : "BF16";
    return uint64_t(rows) * uint64_t(cols) * (s.role == WeightRole::Bias ? 4 : 2);
  };
  auto add = [&](const std::vector<WeightSpec>& specs, bool main_model) {
    for (const auto& s : specs) {
      std::string format;
      const uint64_t b = bytes_of(s, format);
      t[class_of(s.name, c.num_hidden_layers)][format] += b;
      total += b;
      if (!main_model || s.role == WeightRole::Embedding) continue;
      const auto e = s.name.find(".mlp.experts.");
      if (e == std::string::npos)
        per_token += b;
      else if (std::stoll(s.name.substr(e + 13)) < c.num_experts_per_tok)  // top_k experts' worth
        per_token += b;
    }
  };
  add(global_weight_specs(c), true);
  for (int64_t il = 0; il < c.num_hidden_layers; ++il) add(layer_weight_specs(c, il), true);
  if (c.has_mtp()) add(layer_weight_specs(c, c.num_hidden_layers), false);
  std::printf("model:        %s (%s), config only: bytes as its quantization_config stores them\n", dir.c_str(),
              c.model_type.c_str());
  print_quant_table(t);
  std::printf("total:        %s of weights%s\n", human(double(total), "B").c_str(), c.has_mtp() ? " (MTP layer included)" : "");
  std::printf("per token:    %s read by one decode token (all but the embedding and MTP; %lld routed experts per MoE "
              "layer)\n",
              human(double(per_token), "B").c_str(), (long long)c.num_experts_per_tok);
}

void print_world_plan(const ModelWeights& w, const ModelConfig& c, int world);

void run_info(const std::string& dir, int world) {
  namespace fs = std::filesystem;
  if (fs::is_directory(dir) && fs::exists(fs::path(dir) / "config.json") &&
      !fs::exists(fs::path(dir) / "model.safetensors.index.json") && !fs::exists(fs::path(dir) / "model.safetensors"))
    return run_config_only(dir);
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
  print_quant_table(quant_table(w, c.num_hidden_layers));
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
  if (world > 1 && problems.empty()) print_world_plan(w, c, world);
  std::fflush(stdout);
  if (!problems.empty()) fail("{}: {} problem(s) in the checkpoint; the model cannot run", dir, problems.size());
}

std::string range_str(Range r) { return fmt::format("{}..{} ({})", r.begin, r.end - 1, r.count()); }

// The per-rank memory plan of `mpirun -np world` (weights/shard_plan.h), from shapes alone.
void print_world_plan(const ModelWeights& w, const ModelConfig& c, int world) {
  const uint64_t one = held_weight_bytes(w);
  std::printf("world size:   %d ranks (mpirun -np %d): weights each rank holds in memory\n", world, world);
  for (int r = 0; r < world; ++r) {
    const ShardPlan p = ShardPlan::make(c, r, world);
    const uint64_t held = held_weight_bytes(plan_weights(w, c, p));
    std::printf("  rank %d:     %s (%.2fx one process); heads %s, vocab %s", r, human(double(held), "B").c_str(),
                double(held) / double(one), range_str(p.heads).c_str(), range_str(p.vocab).c_str());
    if (c.n_routed_experts > 0) std::printf(", experts %s", range_str(p.experts).c_str());
    if (p.intermediate.count() > 0) std::printf(", dense rows %s", range_str(p.intermediate).c_str());
    if (p.shared_inter.count() > 0) std::printf(", shared-expert rows %s", range_str(p.shared_inter).c_str());
    std::printf("\n");
  }
  std::printf("  one process: %s; replicated on every rank: norms, q_a/kv_a projections, routers, eh_proj, and the "
              "KV cache\n",
              human(double(one), "B").c_str());
  std::printf("  collectives per token and layer: all-reduce after o_proj and after the FFN; embedding all-reduce "
              "and head all-gather per step\n");
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  auto world = std::make_shared<int>(1);
  auto* sub = app.add_subcommand("info", "Describe a checkpoint: architecture, parameters, bytes and quantization per tensor class, KV cache, problems; "
      "a directory with only config.json gets the bytes its quantization_config implies (total and per decode token)");
  sub->add_option("--model", *dir, "Checkpoint directory (Hugging Face layout)")->required();
  sub->add_option("--world-size", *world,
                  "Also print the memory plan of a tensor/expert-parallel run over N ranks (mpirun -np N): what each "
                  "rank holds (no MPI needed)")
      ->check(CLI::Range(1, 4096));
  sub->callback([dir, world] { run_info(*dir, *world); });
}

}  // namespace dsv3::cli
