#include "weights/loaded_checkpoint.h"

#include <filesystem>

namespace dsv3 {

std::unique_ptr<LoadedCheckpoint> LoadedCheckpoint::load(const std::string& dir, bool load_mtp) {
  auto lc = std::make_unique<LoadedCheckpoint>(LoadedCheckpoint{Checkpoint::open(dir), {}, {}});
  lc->config = ModelConfig::from_json(lc->checkpoint.config_json(),
                                      (std::filesystem::path(dir) / "config.json").string());
  lc->weights = bind_weights(lc->checkpoint, lc->config, load_mtp);
  return lc;
}

}  // namespace dsv3
