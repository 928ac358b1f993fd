// A Hugging Face checkpoint directory read in place: config.json, and either
// model.safetensors.index.json with any number of shards or a single model.safetensors.
// Opening parses every shard header (no tensor data is touched) and cross-checks the index.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"

namespace dsv3 {

class Checkpoint {
 public:
  // Throws Error naming the directory, file or tensor at fault.
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const nlohmann::json& config_json() const { return config_; }
  const TensorInfo* find(const std::string& name) const;
  // Every tensor of every shard, in shard order then name order.
  std::vector<const TensorInfo*> tensors() const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
  uint64_t total_bytes() const;

 private:
  std::string dir_;
  nlohmann::json config_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::unordered_map<std::string, const TensorInfo*> by_name_;
};

}  // namespace dsv3
