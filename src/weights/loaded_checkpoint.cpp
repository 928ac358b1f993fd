#include "weights/loaded_checkpoint.h"

#include <filesystem>

namespace dsv3 {

std::unique_ptr<LoadedCheckpoint> LoadedCheckpoint::load(const std::string& dir, const LoadOptions& options) {
  auto lc = std::make_unique<LoadedCheckpoint>(LoadedCheckpoint{Checkpoint::open(dir), {}, {}});
  lc->config = ModelConfig::from_json(lc->checkpoint.config_json(),
                                      (std::filesystem::path(dir) / "config.json").string());
  lc->weights = bind_weights(lc->checkpoint, lc->config, options.mtp);
  return lc;
}

std::vector<const TensorInfo*> LoadedCheckpoint::bound_tensors() const {
  std::vector<const TensorInfo*> out;
  for (const TensorInfo* t : checkpoint.tensors())
    if (weights.bound.count(t->name)) out.push_back(t);
  return out;
}

}  // namespace dsv3
