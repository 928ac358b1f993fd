// A checkpoint directory opened, its config parsed and its weights bound: what every command
// that runs the model starts from. Non-copyable; the weights point into the mapped shards.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "io/model_config.h"
#include "weights/model_weights.h"

namespace dsv3 {

struct LoadOptions {
  // Bind the MTP layer (layer num_hidden_layers, 1.65 GB of the 4.3 GB bench-m FP8) when the
  // checkpoint has one. Only speculative decoding and `dsv3 logits --mtp-out` read it; left
  // off, its tensors are not bound, not prefetched and never touched, the model has no MTP cache
  // layer, and resident memory is what plain decoding needs.
  bool mtp = false;
};

struct LoadedCheckpoint {
  Checkpoint checkpoint;
  ModelConfig config;
  ModelWeights weights;

  // Throws Error naming the directory, file, field or tensor at fault.
  static std::unique_ptr<LoadedCheckpoint> load(const std::string& dir, const LoadOptions& options = {});

  // The checkpoint tensors the weights are bound to (weights and their FP8 scales), in shard
  // order: what a forward step may read, and all that load-time prefetching should touch. The
  // rest (an MTP layer not asked for, tensors the config does not explain) stays unread.
  std::vector<const TensorInfo*> bound_tensors() const;
};

}  // namespace dsv3
