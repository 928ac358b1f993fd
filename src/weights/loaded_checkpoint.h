// A checkpoint directory opened, its config parsed and its weights bound: what every command
// that runs the model starts from. Non-copyable; the weights point into the mapped shards.
#pragma once

#include <memory>
#include <string>

#include "io/checkpoint.h"
#include "io/model_config.h"
#include "weights/model_weights.h"

namespace dsv3 {

struct LoadedCheckpoint {
  Checkpoint checkpoint;
  ModelConfig config;
  ModelWeights weights;

  // Throws Error naming the directory, file, field or tensor at fault.
  static std::unique_ptr<LoadedCheckpoint> load(const std::string& dir, bool load_mtp = true);
};

}  // namespace dsv3
