// Greedy runs of one prompt, the shape of DeepSeek's reference checks: prefill the whole prompt
// in one step, then decode single tokens fed back from the argmax.
#pragma once

#include <cstdint>
#include <vector>

#include "model/model.h"

namespace dsv3 {

struct GreedyRun {
  std::vector<float> logits;      // [decode_steps + 1, vocab]: row 0 at the last prompt position
  std::vector<int32_t> tokens;    // argmax of each row
  std::vector<float> mtp_logits;  // [L - 1, vocab] when asked: MTP over prompt positions 0..L-2
  std::vector<float> prefill_hidden;  // [L, hidden] after the final norm
};

struct GreedyOptions {
  int64_t decode_steps = 0;
  bool absorbed = true;
  bool mtp = false;
  RoutingTrace* trace = nullptr;
  CacheDtype cache_dtype = CacheDtype::F32;
};

GreedyRun run_greedy(Model& model, const std::vector<int32_t>& prompt, const GreedyOptions& opts);

int32_t argmax(const float* v, int64_t n);

}  // namespace dsv3
