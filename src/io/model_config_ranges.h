// Range checks of config.json values against their meaning (issue 19): a value that parses
// but cannot describe a working model (rope_theta 0, rms_norm_eps 1e308, 10^12 layers) would
// load and then give NaN logits, all-zero logits or a hang. Each bound is what published
// DeepSeek-V2/V3/Kimi-K2 configs use times a wide margin; the message names the field, the
// value and the accepted range.
#pragma once

#include <string>

#include "io/model_config.h"

namespace dsv3 {

// Throws Error "<source>: '<field>' is <value>; ..." for the first value out of range.
void check_model_config_ranges(const ModelConfig& c, const std::string& source);

}  // namespace dsv3
