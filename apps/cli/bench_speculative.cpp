#include "apps/cli/bench_speculative.h"

#include <algorithm>

#include "runtime/engine.h"

namespace dsv3::cli {

namespace {
double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}
}  // namespace

SpeculativeBench bench_speculative(Model& model, const std::vector<int32_t>& prompt, int64_t decode, int rounds,
                                   const SpeculativeOptions& spec, CacheDtype cache_dtype) {
  SpeculativeBench b;
  b.rounds = rounds;
  Engine plain(model, {.cache_dtype = cache_dtype}), specul(model, {.cache_dtype = cache_dtype, .speculative = spec});
  b.cost = specul.speculation_cost();
  std::vector<double> tps_plain, tps_spec, ratio;
  std::vector<int32_t> reference;
  for (int r = 0; r < rounds; ++r) {
    double pair[2] = {0, 0};
    for (int s = 0; s < 2; ++s) {
      Engine& e = s ? specul : plain;
      GenerationRequest req{.prompt = prompt, .sampling = {.temperature = 0}, .max_new_tokens = decode};
      const auto out = e.generate({&req, 1});
      const GenerationStats& st = e.last_stats();
      pair[s] = st.decode_tps();
      if (s == 0 && reference.empty()) reference = out[0].tokens;
      if (s == 1) {
        b.stats.add(st.speculative);
        if (out[0].tokens != reference) b.same_tokens = false;
      }
    }
    tps_plain.push_back(pair[0]);
    tps_spec.push_back(pair[1]);
    if (pair[0] > 0) ratio.push_back(pair[1] / pair[0]);
  }
  b.decode_tok_s = median(tps_plain);
  b.decode_tok_s_speculative = median(tps_spec);
  b.speedup = median(ratio);
  return b;
}

}  // namespace dsv3::cli
