#include "io/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "base/error.h"
#include "io/json_file.h"

namespace dsv3 {

namespace fs = std::filesystem;

Checkpoint Checkpoint::open(const std::string& dir) {
  Checkpoint c;
  c.dir_ = dir;
  if (!fs::is_directory(dir)) fail("model directory '{}' does not exist or is not a directory", dir);
  const fs::path root(dir);
  const fs::path config_path = root / "config.json";
  if (!fs::exists(config_path)) fail("'{}' has no config.json (is it a Hugging Face checkpoint directory?)", dir);
  c.config_ = read_json_file(config_path.string());
  if (!c.config_.is_object()) fail("'{}': not a JSON object", config_path.string());

  const fs::path index_path = root / "model.safetensors.index.json";
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  std::vector<std::string> shard_names;
  if (fs::exists(index_path)) {
    const nlohmann::json index = read_json_file(index_path.string());
    const auto wm = index.is_object() ? index.find("weight_map") : index.end();
    if (wm == index.end() || !wm->is_object())
      fail("'{}': missing object field 'weight_map'", index_path.string());
    for (const auto& [name, file] : wm->items()) {
      if (!file.is_string()) fail("'{}': weight_map['{}'] is not a string", index_path.string(), name);
      const std::string f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f == "..")
        fail("'{}': weight_map['{}'] names '{}', which is not a file in the directory", index_path.string(), name, f);
      weight_map[name] = f;
    }
    for (const auto& [name, file] : weight_map)
      if (std::find(shard_names.begin(), shard_names.end(), file) == shard_names.end()) shard_names.push_back(file);
    std::sort(shard_names.begin(), shard_names.end());
  } else if (fs::exists(root / "model.safetensors")) {
    shard_names.push_back("model.safetensors");
  } else {
    fail("'{}' has neither model.safetensors.index.json nor model.safetensors", dir);
  }

  for (const auto& name : shard_names) {
    const fs::path p = root / name;
    if (!fs::exists(p)) fail("'{}' lists shard '{}', which does not exist", index_path.string(), name);
    c.shards_.push_back(std::make_unique<SafetensorsFile>(p.string()));
  }
  for (const auto& shard : c.shards_) {
    for (const auto& t : shard->tensors()) {
      auto [it, inserted] = c.by_name_.emplace(t.name, &t);
      if (!inserted) fail("tensor '{}' appears in both '{}' and '{}'", t.name, *it->second->file, shard->path());
    }
  }
  for (const auto& [name, file] : weight_map) {
    const auto it = c.by_name_.find(name);
    const std::string expected = (root / file).string();
    if (it == c.by_name_.end() || *it->second->file != expected)
      fail("'{}' says tensor '{}' is in '{}', but that shard has no such tensor", index_path.string(), name, file);
  }
  if (!weight_map.empty())
    for (const auto& [name, t] : c.by_name_)
      if (!weight_map.count(name))
        fail("tensor '{}' in '{}' is not listed in '{}'", name, *t->file, index_path.string());
  return c;
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

std::vector<const TensorInfo*> Checkpoint::tensors() const {
  std::vector<const TensorInfo*> out;
  for (const auto& s : shards_)
    for (const auto& t : s->tensors()) out.push_back(&t);
  return out;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& s : shards_)
    for (const auto& t : s->tensors()) n += t.nbytes;
  return n;
}

}  // namespace dsv3
