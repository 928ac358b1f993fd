// Built-in model shapes for `dsv3 init`, as Hugging Face config.json objects.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dsv3 {

// v3-tiny and v2-lite-tiny (the golden checkpoints' shapes), default-small (the default model:
// V3-shaped with the real vocabulary, random weights) and bench-m (~2.3B parameters,
// V3-shaped, for speed work). Throws Error listing the names for an unknown one.
nlohmann::ordered_json preset_config(const std::string& name);
std::vector<std::string> preset_names();

}  // namespace dsv3
