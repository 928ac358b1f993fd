// config.json "quantization_config" of a compressed-tensors checkpoint (quant_method
// "compressed-tensors", the format vLLM's llm-compressor writes and Kimi-K2-Thinking ships):
// which Linear weights are stored as packed integers, with how many bits and which scales.
// dsv3 reads the "pack-quantized" format with symmetric int weights of 4 or 8 bits, per group
// (any group size) or per output channel; anything else is refused with a message naming the field.
//
// Semantics (compressed-tensors' own code, src/compressed_tensors/utils/match.py): a module
// (the tensor name without ".weight") is quantised by the first config group one of whose
// `targets` matches it, unless an `ignore` entry matches it. An entry matches when it equals the
// module's name, or names its class ("Linear": every Linear projection), or when it starts with
// "re:" and the rest matches at the start of the name (Python's re.match, not a full match).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3 {

struct PackedScheme {
  int num_bits = 4;         // 4 or 8
  int64_t group_size = 0;   // strategy "group": columns per scale; 0 for "channel" (one scale per row)
  std::string group_name;   // the config_groups key, for messages
};

// A target or ignore entry: a module name, a class name ("Linear"), or "re:" + a regex.
class ModuleMatcher {
 public:
  // Throws Error naming `where` when a "re:" pattern is not a valid regex (ECMAScript syntax,
  // which agrees with Python's on the patterns published checkpoints use).
  ModuleMatcher(const std::string& entry, const std::string& where);
  bool matches(const std::string& module, bool is_linear) const;
  const std::string& entry() const { return entry_; }

 private:
  std::string entry_;
  std::shared_ptr<const std::regex> re_;
};

struct CompressedTensorsConfig {
  struct Group {
    PackedScheme scheme;
    std::vector<ModuleMatcher> targets;
  };
  std::vector<Group> groups;
  std::vector<ModuleMatcher> ignore;

  // The scheme that quantises `module` (e.g. "model.layers.3.mlp.experts.7.up_proj"), or null.
  const PackedScheme* scheme_for(const std::string& module, bool is_linear) const;
};

// Parses and validates `q` (the quantization_config object; `where` names it in messages).
// Throws Error naming the field and its value for anything dsv3 does not implement: another
// format, asymmetric or float weights, activation or KV-cache quantisation, actorder, sparsity.
CompressedTensorsConfig parse_compressed_tensors_config(const nlohmann::json& q, const std::string& where);

// The parsed config when config.json's quantization_config is compressed-tensors, else nullopt.
std::optional<CompressedTensorsConfig> compressed_tensors_config_of(const nlohmann::json& config,
                                                                    const std::string& where);

}  // namespace dsv3
