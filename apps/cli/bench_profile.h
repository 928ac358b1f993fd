// dsv3 bench --profile: where a decode step's time goes. A Backend that forwards every op to
// another and adds up, per op (linear layers by weight name), its calls, wall time and the bytes
// of weights and latent cache it reads; ops with GB/s far below the probe are the ones to fix.
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "ops/backend.h"

namespace dsv3::cli {

struct OpProfile {
  int64_t calls = 0;
  double seconds = 0, bytes = 0;
};

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(Backend& inner) : inner_(inner) {}

  // Per op name ("linear q_a_proj", "moe", "mla_attention", ...), since construction.
  const std::map<std::string, OpProfile>& ops() const { return ops_; }
  void reset() { ops_.clear(); }

  void embed(const Weight& table, std::span<const int32_t> ids, float* out) override;
  void rms_norm(const float* x, int64_t n, const Weight& w, float eps, float* out) override;
  void linear(const Weight& w, const float* x, int64_t n, float* y) override;
  void rope(float* x, int64_t n, int64_t token_stride, int64_t n_vec, int64_t vec_stride, int64_t rope_dim,
            const int32_t* pos, const float* inv_freq) override;
  void mla_attention(const MlaShape& s, const float* q, int64_t n, std::span<const LatentRows> ctx, float* out,
                     bool absorbed) override;
  void moe_route(const RouteShape& s, const float* logits, int64_t n, int32_t* experts, float* weights) override;
  void moe(const MoeWeights& w, const float* x, int64_t n, const int32_t* experts, const float* weights, int64_t top_k,
           float* out) override;
  void mlp(const MlpWeights& w, const float* x, int64_t n, float* out) override;
  void add(float* y, const float* x, int64_t count) override;

 private:
  // Runs f, adding its wall time and `bytes` to op `name`.
  template <class F>
  void timed(const std::string& name, double bytes, F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    OpProfile& p = ops_[name];
    p.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    p.bytes += bytes;
    ++p.calls;
  }

  Backend& inner_;
  std::map<std::string, OpProfile> ops_;
};

}  // namespace dsv3::cli
