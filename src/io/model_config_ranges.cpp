#include "io/model_config_ranges.h"

#include <cmath>

#include "base/error.h"

namespace dsv3 {

namespace {

// Integer fields: [lo, hi]; `used` is the published value quoted in the message.
void check_int(const std::string& source, const char* name, int64_t v, int64_t lo, int64_t hi, const char* used) {
  if (v < lo || v > hi)
    fail("{}: '{}' is {}; it must be between {} and {} (DeepSeek-V3 uses {})", source, name, v, lo, hi, used);
}

// Real fields: finite and in (lo, hi] (or [lo, hi] when `lo_inclusive`).
void check_real(const std::string& source, const char* name, double v, double lo, bool lo_inclusive, double hi,
                const char* used) {
  const bool ok = std::isfinite(v) && (lo_inclusive ? v >= lo : v > lo) && v <= hi;
  if (!ok)
    fail("{}: '{}' is {}; it must be a finite number in {}{:g}, {:g}] (DeepSeek-V3 uses {})", source, name, v,
         lo_inclusive ? "[" : "(", lo, hi, used);
}

}  // namespace

void check_model_config_ranges(const ModelConfig& c, const std::string& source) {
  // Sizes. Published maxima: vocab 163840 (Kimi-K2), hidden 7168, intermediate 18432, 61
  // layers, 128 heads, 384 routed experts (Kimi-K2), kv_lora_rank 512, q_lora_rank 1536.
  check_int(source, "vocab_size", c.vocab_size, 1, int64_t(1) << 22, "129280");
  check_int(source, "hidden_size", c.hidden_size, 1, int64_t(1) << 16, "7168");
  check_int(source, "intermediate_size", c.intermediate_size, 1, int64_t(1) << 19, "18432");
  check_int(source, "num_hidden_layers", c.num_hidden_layers, 1, 1024, "61");
  check_int(source, "num_attention_heads", c.num_attention_heads, 1, 1024, "128");
  check_int(source, "kv_lora_rank", c.kv_lora_rank, 1, int64_t(1) << 14, "512");
  check_int(source, "q_lora_rank", c.q_lora_rank, 0, int64_t(1) << 16, "1536");
  check_int(source, "qk_nope_head_dim", c.qk_nope_head_dim, 1, 4096, "128");
  check_int(source, "qk_rope_head_dim", c.qk_rope_head_dim, 2, 4096, "64");
  check_int(source, "v_head_dim", c.v_head_dim, 1, 4096, "128");
  check_int(source, "n_routed_experts", c.n_routed_experts, 0, 4096, "256");
  check_int(source, "n_shared_experts", c.n_shared_experts, 0, 64, "1");
  check_int(source, "first_k_dense_replace", c.first_k_dense_replace, 0, c.num_hidden_layers + 1, "3");
  check_int(source, "moe_layer_freq", c.moe_layer_freq, 1, 1024, "1");
  check_int(source, "max_position_embeddings", c.max_position_embeddings, 1, int64_t(1) << 24, "163840");
  if (c.n_routed_experts > 0) {
    check_int(source, "moe_intermediate_size", c.moe_intermediate_size, 1, int64_t(1) << 17, "2048");
    check_int(source, "n_group", c.n_group, 1, c.n_routed_experts, "8");
  }
  if (c.bos_token_id != -1) check_int(source, "bos_token_id", c.bos_token_id, 0, c.vocab_size - 1, "0");
  for (int64_t id : c.eos_token_ids) check_int(source, "eos_token_id", id, 0, c.vocab_size - 1, "1");

  // Reals. rope_theta must exceed 1: YaRN divides by log(rope_theta), and theta <= 0 makes the
  // frequencies NaN. rms_norm_eps beyond ~1 swamps the activations (all-zero logits).
  check_real(source, "rope_theta", c.rope_theta, 1.0, false, 1e12, "10000");
  check_real(source, "rms_norm_eps", c.rms_norm_eps, 0.0, false, 0.1, "1e-6");
  check_real(source, "routed_scaling_factor", c.routed_scaling_factor, 0.0, false, 1000.0, "2.5");
  if (c.rope_scaling) {
    const YarnScaling& y = *c.rope_scaling;
    check_real(source, "rope_scaling.factor", y.factor, 0.0, false, 1e4, "40");
    check_int(source, "rope_scaling.original_max_position_embeddings", y.original_max_position_embeddings, 1,
              int64_t(1) << 24, "4096");
    // YaRN takes log(original_max_position_embeddings / (2 pi beta)): beta must be positive.
    check_real(source, "rope_scaling.beta_fast", y.beta_fast, 0.0, false, 1e4, "32");
    check_real(source, "rope_scaling.beta_slow", y.beta_slow, 0.0, false, 1e4, "1");
    check_real(source, "rope_scaling.mscale", y.mscale, 0.0, true, 100.0, "1.0");
    check_real(source, "rope_scaling.mscale_all_dim", y.mscale_all_dim, 0.0, true, 100.0, "1.0");
  }

  // Products: with every size in range the parameter count stays far below 2^63, but a config
  // can combine maxima into 10^17 parameters. Bound the total (V3: 6.7e11) so that every shape
  // and byte count downstream fits int64 with room to spare.
  const double h = double(c.hidden_size);
  const double attention = h * double(c.q_lora_rank > 0 ? c.q_lora_rank : 0) +
                           double(c.num_attention_heads) * double(c.qk_nope_head_dim + c.qk_rope_head_dim) *
                               double(c.q_lora_rank > 0 ? c.q_lora_rank : c.hidden_size) +
                           h * double(c.kv_lora_rank + c.qk_rope_head_dim) +
                           double(c.kv_lora_rank) * double(c.num_attention_heads) *
                               double(c.qk_nope_head_dim + c.v_head_dim) +
                           double(c.num_attention_heads) * double(c.v_head_dim) * h;
  const double ffn = 3.0 * h *
                     std::max(double(c.intermediate_size),
                              double(c.n_routed_experts + c.n_shared_experts) * double(c.moe_intermediate_size));
  const double total = double(c.num_hidden_layers + 1) * (attention + ffn) + 2.0 * double(c.vocab_size) * h;
  constexpr double kMaxParameters = 1e15;
  if (!(total <= kMaxParameters))
    fail("{}: these sizes make a model of about {:.3g} parameters; dsv3 accepts at most {:.0e} (DeepSeek-V3 has "
         "6.7e11; is a size mistyped?)",
         source, total, kMaxParameters);
}

}  // namespace dsv3
