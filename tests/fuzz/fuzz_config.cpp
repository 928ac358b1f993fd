// libFuzzer target: config.json bytes into ModelConfig. Any outcome but a config whose derived
// constants are finite, or dsv3::Error, is a finding.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "base/error.h"
#include "io/json_file.h"
#include "io/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto j = dsv3::parse_json(std::string_view(reinterpret_cast<const char*>(data), size), "config.json");
    const dsv3::ModelConfig c = dsv3::ModelConfig::from_json(j, "config.json");
    // A config that loads must not give NaN rope frequencies or attention scale.
    if (!std::isfinite(c.softmax_scale()) || c.softmax_scale() <= 0) std::abort();
    for (float f : c.rope_inv_freq())
      if (!std::isfinite(f)) std::abort();
  } catch (const dsv3::Error&) {
  }
  return 0;
}
