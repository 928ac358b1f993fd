// --speculative mtp, --draft-tokens K and --no-adaptive-speculation: the flags chat, generate,
// bench and serve share (runtime/speculative.h).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "model/model.h"
#include "runtime/speculative.h"

namespace dsv3::cli {

struct SpeculativeFlags {
  std::string method;  // "" = off, "mtp"
  int draft_tokens = 1;
  bool no_adaptive = false;
};

void add_speculative_flags(CLI::App* sub, SpeculativeFlags& f);

// The options the flags ask for; throws Error naming --speculative when the model has no MTP
// layer.
SpeculativeOptions resolve_speculative(const SpeculativeFlags& f, const Model& model);

// One line of statistics ("speculative: K=1, accepted 83% (pos 1: 83%), 1.83 tokens/step, ...").
std::string speculative_summary(const SpeculativeStats& s, const SpeculationCost& cost);

}  // namespace dsv3::cli
