// The model's weights bound to checkpoint tensors in place, checked against the config:
// every implied tensor present with the right shape and an allowed dtype, FP8 weights with
// their 128x128 block scales; unknown tensors are listed, not fatal.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/model_config.h"
#include "weights/weight.h"

namespace dsv3 {

struct MlpWeights {
  Weight gate_proj, up_proj, down_proj;  // silu(gate(x)) * up(x), then down
};

struct AttentionWeights {
  Weight q_a_proj, q_a_layernorm, q_b_proj;  // with q LoRA
  Weight q_proj;                             // without
  Weight kv_a_proj_with_mqa, kv_a_layernorm, kv_b_proj, o_proj;
};

struct MoeWeights {
  Weight gate;                      // router [n_routed_experts, hidden]
  Weight e_score_correction_bias;   // noaux_tc only, [n_routed_experts]
  // Routed experts expert_begin .. expert_begin + experts.size() - 1: all n_routed_experts in one
  // process; under tensor/expert parallelism only this rank's (weights/shard.h).
  std::vector<MlpWeights> experts;
  int64_t expert_begin = 0;
  std::optional<MlpWeights> shared_experts;
};

struct LayerWeights {
  Weight input_layernorm, post_attention_layernorm;
  AttentionWeights self_attn;
  bool is_moe = false;
  MlpWeights mlp;  // dense layers
  MoeWeights moe;  // MoE layers
};

struct MtpWeights {
  Weight embed_tokens, enorm, hnorm, eh_proj, shared_head_norm, shared_head_head;
  LayerWeights layer;
};

struct ModelWeights {
  Weight embed_tokens;
  std::vector<LayerWeights> layers;
  Weight norm;
  Weight lm_head;  // embed_tokens when tie_word_embeddings
  std::optional<MtpWeights> mtp;

  std::vector<std::string> extra;  // checkpoint tensors the config does not explain
  std::set<std::string> bound;     // checkpoint tensors bound above (weights and their scales)
  uint64_t bytes_by_dtype[16] = {};
  std::vector<std::unique_ptr<uint8_t[]>> owned;  // aligned copies of misaligned tensors
};

// Binds every tensor; throws Error naming the tensor (and its shard) on the first problem.
// `load_mtp` false skips the MTP layer even when the checkpoint has it. With `problems`, every
// problem (missing tensor, wrong shape or dtype, missing scale) is collected there instead of
// thrown, and the weights are not usable when any was found (dsv3 info reports them all).
ModelWeights bind_weights(const Checkpoint& ckpt, const ModelConfig& config, bool load_mtp = true,
                          std::vector<std::string>* problems = nullptr);

}  // namespace dsv3
