#include "apps/cli/speculative_flags.h"

#include <fmt/format.h>

#include "base/error.h"

namespace dsv3::cli {

void add_speculative_flags(CLI::App* sub, SpeculativeFlags& f) {
  auto* g = sub->add_option_group("Speculative decoding");
  g->add_option("--speculative", f.method,
                "Speculative decoding: 'mtp' drafts tokens with the checkpoint's MTP module (layer "
                "num_hidden_layers) and verifies them in one step; greedy output stays the same token for token, "
                "sampled output keeps its distribution (default: off)")
      ->check(CLI::IsMember({"mtp"}));
  g->add_option("--draft-tokens", f.draft_tokens,
                "Drafts per step with --speculative mtp (K > 1 chains the MTP module on its own drafts)")
      ->check(CLI::Range(1, 8))
      ->capture_default_str();
  g->add_flag("--no-adaptive-speculation", f.no_adaptive,
              "Keep speculating for a sequence whose drafts are rarely accepted (by default speculation turns off "
              "for it once its tokens per step fall below the cost model's break-even)");
}

SpeculativeOptions resolve_speculative(const SpeculativeFlags& f, const Model& model) {
  SpeculativeOptions o;
  if (f.method.empty()) return o;
  if (!model.has_mtp())
    fail("--speculative mtp: this checkpoint has no MTP layer (config.json's num_nextn_predict_layers is 0, or "
         "layer {} is missing)",
         model.config().num_hidden_layers);
  o.draft_tokens = f.draft_tokens;
  o.adaptive = !f.no_adaptive;
  return o;
}

std::string speculative_summary(const SpeculativeStats& s, const SpeculationCost& cost) {
  const double k1 = double(s.drafted.size() + 1);
  if (s.rounds == 0 && cost.break_even_tokens() >= k1)
    return fmt::format(
        "speculative: off: a verify step with its drafting reads {:.2f}x the bytes of a plain step, more than the "
        "{:.0f} tokens it can yield (--no-adaptive-speculation speculates anyway)",
        cost.break_even_tokens(), k1);
  std::string per;
  for (size_t k = 0; k < s.drafted.size(); ++k)
    per += fmt::format("{}draft {}: {:.0f}%", k ? ", " : "", k + 1, 100 * s.accept_rate(k));
  return fmt::format(
      "speculative: {} verify steps, accepted {:.1f}% of drafts ({}), {:.2f} tokens/step (break-even {:.2f}), "
      "draft {:.3f} s, verify {:.3f} s{}",
      s.rounds, 100 * s.accept_rate(), per, s.mean_accepted_tokens(), cost.break_even_tokens(), s.draft_s,
      s.verify_s, s.turned_off ? fmt::format(", turned off for {} sequence(s)", s.turned_off) : "");
}

}  // namespace dsv3::cli
