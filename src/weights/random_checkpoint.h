// Writes a random-weight checkpoint in exactly the Hugging Face layout the loader reads
// (config.json, model.safetensors.index.json, shards), for tests and benchmarks.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/thread_pool.h"

namespace dsv3 {

struct RandomCheckpointOptions {
  std::string out_dir;
  bool fp8 = true;  // linear weights F8_E4M3 + F32 128x128 scales (lm_head, MTP head and eh_proj stay BF16)
  uint64_t seed = 0;
  int shards = 1;
  ThreadPool* pool = nullptr;
  // Called after each tensor with (bytes written so far, total bytes).
  std::function<void(uint64_t, uint64_t)> progress;
};

// `config` is a Hugging Face config.json object (validated first). Returns the bytes of
// tensor data written.
uint64_t write_random_checkpoint(const nlohmann::ordered_json& config, const RandomCheckpointOptions& opts);

}  // namespace dsv3
