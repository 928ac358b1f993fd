// Which tensors a config implies: for each Hugging Face tensor name, its shape and its role
// (which decides the dtypes it may have). The loader checks the checkpoint against this table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/model_config.h"

namespace dsv3 {

enum class WeightRole {
  Linear,     // [out, in]; F8_E4M3 with a weight_scale_inv, or BF16/F16/F32
  Embedding,  // [vocab, hidden]; BF16/F16/F32
  Norm,       // [n]; BF16/F16/F32
  Router,     // MoE gate [n_routed_experts, hidden]; BF16/F16/F32
  Bias,       // e_score_correction_bias [n_routed_experts]; F32/BF16/F16
};

struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  WeightRole role;
};

// Tensors of layer `il` (the MTP layer is il == num_hidden_layers and adds its own extras).
std::vector<WeightSpec> layer_weight_specs(const ModelConfig& c, int64_t il);
// Everything outside the decoder layers: embeddings, final norm, head.
std::vector<WeightSpec> global_weight_specs(const ModelConfig& c);
std::string layer_prefix(int64_t il);

}  // namespace dsv3
