// dsv3 bench: prefill and decode tokens/s, peak resident memory, the bytes each decode token
// reads (weights from the config and the routing actually taken, plus the latent cache its
// attention reads), and the achieved fraction of the machine's memory read bandwidth, measured by
// a built-in probe in the same process with the same thread count, with the CPU, its caches and
// the kernels' ISA target named. Ratios measured in one run hold on a shared machine; absolute
// times drift.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "apps/cli/bench_profile.h"
#include "apps/cli/bench_speculative.h"
#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "apps/cli/generation_flags.h"
#include "backends/cpu/bandwidth_probe.h"
#include "backends/cpu/cpu_info.h"
#include "backends/cpu/kernels.h"
#include "base/error.h"
#include "base/page_residency.h"
#include "io/json_file.h"
#include "runtime/engine.h"
#include "runtime/greedy.h"

namespace dsv3::cli {

namespace {

struct BenchOptions {
  std::string model;
  int64_t prompt = 512, decode = 128;
  int64_t ctx_size = 0;
  int threads = 0;
  bool json = false, fp8_head = false, profile = false;
  std::string kv_cache_dtype = "f32";
  int64_t probe_mb = 0;  // 0: the default, kProbeMbDefault or kProbeL3Multiple x L3
  SpeculativeFlags speculative;
  int speculative_rounds = 3;
};

// The probe must stream from memory, not cache: a buffer only 1.33x a 48 MiB L3 read 27.9 GB/s
// where 1 GiB read 22-25 (issue 20). Three times L3 leaves no line of a pass in cache for the next.
constexpr int64_t kProbeL3Multiple = 3, kProbeMbDefault = 1024, kProbeMbMin = 64;

int64_t probe_floor_mb(const cpu::CpuInfo& cpu) {
  return std::max(kProbeMbMin, (kProbeL3Multiple * cpu.l3_bytes + (1 << 20) - 1) >> 20);
}

// --probe-mb, checked against this machine's L3 (bench measures memory, never a cache).
int64_t resolve_probe_mb(int64_t flag, const cpu::CpuInfo& cpu) {
  const int64_t floor_mb = probe_floor_mb(cpu);
  if (flag == 0) return std::max(kProbeMbDefault, floor_mb);
  if (flag < floor_mb)
    fail("--probe-mb {} is too small: the probe would read this CPU's cache, not memory; use at least {} ({}x the "
         "{} MiB L3 {})",
         flag, floor_mb, kProbeL3Multiple, cpu.l3_bytes >> 20, cpu.l3_bytes > 0 ? "it reports" : "(unknown)");
  return flag;
}

struct Round {
  int64_t tokens = 0;
  double seconds = 0, bytes = 0, probe_gb_s = 0;
  double tok_s() const { return seconds > 0 ? double(tokens) / seconds : 0.0; }
  double fraction() const { return seconds > 0 && probe_gb_s > 0 ? bytes / seconds / 1e9 / probe_gb_s : 0.0; }
};

// CPU time of the whole process (all threads): on a shared machine, wall time / CPU time shows
// how much of the cores the run actually got.
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A "Key:   N kB" line of /proc/self/status (VmHWM: peak resident set, VmRSS: current), in bytes.
uint64_t proc_status_bytes(const std::string& key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stoull(line.substr(key.size())) * 1024;
  return 0;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

uint64_t bytes_of(const Weight& w) { return w.present() ? w.bytes() : 0; }
uint64_t bytes_of(const MlpWeights& m) { return bytes_of(m.gate_proj) + bytes_of(m.up_proj) + bytes_of(m.down_proj); }

// Every main-model weight a decode token reads except the routed experts (counted from the
// routing) and the embedding (one row). The MTP layer is not run by the bench decode.
uint64_t fixed_decode_bytes(const ModelWeights& w) {
  uint64_t n = bytes_of(w.norm) + bytes_of(w.lm_head);
  for (const auto& l : w.layers) {
    const auto& a = l.self_attn;
    n += bytes_of(l.input_layernorm) + bytes_of(l.post_attention_layernorm);
    for (const Weight* p : {&a.q_a_proj, &a.q_a_layernorm, &a.q_b_proj, &a.q_proj, &a.kv_a_proj_with_mqa,
                            &a.kv_a_layernorm, &a.kv_b_proj, &a.o_proj})
      n += bytes_of(*p);
    if (!l.is_moe) {
      n += bytes_of(l.mlp);
    } else {
      n += bytes_of(l.moe.gate) + bytes_of(l.moe.e_score_correction_bias);
      if (l.moe.shared_experts) n += bytes_of(*l.moe.shared_experts);
    }
  }
  return n;
}

// Routed-expert bytes of one decode step: the distinct experts each MoE layer actually ran.
uint64_t routed_bytes(const ModelWeights& w, const RoutingTrace& trace) {
  uint64_t n = 0;
  for (const auto& call : trace.calls) {
    const auto& moe = w.layers[size_t(call.layer)].moe;
    for (int32_t e : std::set<int32_t>(call.experts.begin(), call.experts.end())) {
      const int64_t local = e - moe.expert_begin;  // under mpirun: this rank's experts only
      if (local >= 0 && local < int64_t(moe.experts.size())) n += bytes_of(moe.experts[size_t(local)]);
    }
  }
  return n;
}

// Reads one byte per page of every weight the main model uses, so that page faults on the
// mapped checkpoint happen here and not inside the timed steps.
void touch_weights(const ModelWeights& w) {
  volatile uint8_t sink = 0;
  auto touch = [&](const Weight& x) {
    if (!x.present()) return;
    const auto* p = static_cast<const uint8_t*>(x.data);
    const uint64_t n = uint64_t(x.rows) * uint64_t(x.cols) * uint64_t(dtype_size(x.dtype));
    for (uint64_t i = 0; i < n; i += 4096) sink = sink + p[i];
    if (x.scale_inv) sink = sink + static_cast<uint8_t>(x.scale_inv[0]);
  };
  auto touch_mlp = [&](const MlpWeights& m) { touch(m.gate_proj), touch(m.up_proj), touch(m.down_proj); };
  touch(w.norm), touch(w.lm_head);
  for (const auto& l : w.layers) {
    const auto& a = l.self_attn;
    for (const Weight* p : {&l.input_layernorm, &l.post_attention_layernorm, &a.q_a_proj, &a.q_a_layernorm,
                            &a.q_b_proj, &a.q_proj, &a.kv_a_proj_with_mqa, &a.kv_a_layernorm, &a.kv_b_proj, &a.o_proj})
      touch(*p);
    if (!l.is_moe) touch_mlp(l.mlp);
    touch(l.moe.gate), touch(l.moe.e_score_correction_bias);
    for (const auto& e : l.moe.experts) touch_mlp(e);
    if (l.moe.shared_experts) touch_mlp(*l.moe.shared_experts);
  }
}

// What of the checkpoint this process holds: the bytes bound (what a forward step may read), and
// the checkpoint pages mapped into this process (pagemap; -1 where it cannot be read).
struct Residency {
  uint64_t checkpoint = 0, bound = 0;
  int64_t resident = -1;
};

Residency residency(const LoadedCheckpoint& lc) {
  Residency r;
  r.checkpoint = lc.checkpoint.total_bytes();
  for (const TensorInfo* t : lc.bound_tensors()) r.bound += t->nbytes;
  uint64_t resident = 0;
  for (const TensorInfo* t : lc.checkpoint.tensors()) {
    const auto b = resident_bytes(t->data, t->nbytes);
    if (!b) return r;
    resident += std::min<uint64_t>(*b, t->nbytes);
  }
  r.resident = int64_t(resident);
  return r;
}

// Prefills entries[0, n) into `caches` in steps of at most `step` tokens, as the engine does
// (EngineOptions::max_step_tokens), so that step buffers, and so peak memory, stop growing with
// the prompt at one step's size, as for a user. The last step's logits row is the prompt's last token.
void prefill(Model& model, std::span<const StepEntry> entries, std::span<SequenceCache* const> caches, int64_t step,
             float* hidden, float* logits) {
  for (size_t i = 0; i < entries.size(); i += size_t(step)) {
    const size_t n = std::min(entries.size() - i, size_t(step));
    const int32_t last[] = {int32_t(n - 1)};
    model.forward(entries.subspan(i, n), caches, {.logit_rows = last}, hidden, logits);
  }
}

// Per op, per decode token: where the time of a step goes.
struct ProfileResult {
  int64_t steps = 0;
  double step_seconds = 0;  // wall time of the profiled steps
  std::map<std::string, OpProfile> ops;
};

// --profile: `steps` decode steps again at positions P.. (the cache cut back to the prompt),
// through a ProfilingBackend, after the timed rounds (the timing per op does not slow them). A
// first step (its scratch buffers allocated) is not counted.
ProfileResult profile_decode(const ModelConfig& c, const ModelWeights& w, Backend& backend, SequenceCache& cache,
                             int64_t P, int64_t steps, int32_t token, float* hidden, float* logits) {
  ProfilingBackend prof(backend);
  Model model(c, w, prof);
  cache.truncate(P);
  SequenceCache* caches[] = {&cache};
  const int32_t row0[] = {0};
  ProfileResult out;
  std::chrono::steady_clock::time_point t0;
  for (int64_t k = 0; k <= steps; ++k) {
    if (k == 1) prof.reset(), t0 = std::chrono::steady_clock::now();
    const StepEntry e{0, token, int32_t(P + k)};
    model.forward({&e, 1}, caches, {.logit_rows = row0}, hidden, logits);
    token = argmax(logits, c.vocab_size);
  }
  out.steps = steps;
  out.step_seconds = seconds_since(t0);
  out.ops = prof.ops();
  return out;
}

struct BenchResult {
  cpu::CpuInfo cpu;
  int threads = 0;
  double prefill_s = 0, prefill_cpu_s = 0, decode_s = 0, decode_cpu_s = 0;
  uint64_t weight_bytes = 0, kv_read_bytes = 0;  // over all decode tokens
  std::vector<Round> rounds;
  int64_t probe_bytes = 0, step_tokens = 0;
  uint64_t peak = 0, kv_cache_bytes = 0, kv_layers = 0;
  Residency res;
  bool mtp_loaded = false;
  ProfileResult profile;
  std::optional<SpeculativeBench> spec;  // --speculative
  // Under mpirun: ranks, each rank's peak, this rank's collectives during the timed decode, and
  // the latency of one all-reduce alone (this model's hidden size, and DeepSeek-V3's 7168).
  int world = 1;
  int64_t hidden = 0;
  std::vector<uint64_t> rank_peaks;
  std::vector<double> rank_comm_s;  // each rank's decode_comm.seconds: the rank that waits least is the slowest
  CommStats decode_comm;
  double all_reduce_us = 0, all_reduce_7168_us = 0;
};

void print_json(const BenchOptions& o, const BenchResult& b);
void print_text(const BenchOptions& o, const BenchResult& b);

void run_bench(const BenchOptions& o) {
  BenchResult b;
  b.cpu = cpu::read_cpu_info();
  const int64_t probe_mb = resolve_probe_mb(o.probe_mb, b.cpu);
  // Plain decoding, as `dsv3 generate` without speculation: no MTP layer bound, touched or cached.
  Runner r = load_runner(o.model, o.threads, /*quiet=*/true, o.fp8_head, {.mtp = false});
  Model& model = *r.model;
  const ModelConfig& c = model.config();
  ModelWeights& weights = r.ckpt->weights;
  touch_weights(weights);
  b.threads = r.pool->size();
  b.mtp_loaded = model.has_mtp();

  const int64_t V = c.vocab_size, H = c.hidden_size, P = o.prompt;
  const int64_t ctx = resolve_ctx_size(o.ctx_size, c);
  if (P + o.decode > ctx)
    fail("bench: -p {} and -n {} need {} positions; the context holds {} (--ctx-size; the model's "
         "max_position_embeddings is {})",
         P, o.decode, P + o.decode, ctx, c.max_position_embeddings);
  b.step_tokens = EngineOptions{}.max_step_tokens;
  std::vector<StepEntry> entries;
  for (int64_t i = 0; i < P; ++i) entries.push_back({0, int32_t((i * 7919 + 13) % V), int32_t(i)});
  const int64_t step_rows = std::min(P, b.step_tokens);
  std::vector<float> hidden(static_cast<size_t>(step_rows * H)), logits(static_cast<size_t>(V));
  const int32_t row0[] = {0};
  const CacheDtype kv_dtype = cache_dtype_from_flag(o.kv_cache_dtype);

  {
    // Warm-up on a throw-away cache, outside the timing: the whole prompt once (every scratch
    // buffer reaches its prefill size and its pages are touched) and two decode steps.
    SequenceCache warm = model.new_cache(P + 2, kv_dtype);
    SequenceCache* wc[] = {&warm};
    prefill(model, entries, wc, b.step_tokens, hidden.data(), logits.data());
    for (int32_t k = 0; k < 2; ++k) {
      const StepEntry e{0, 1, int32_t(P + k)};
      model.forward({&e, 1}, wc, {.logit_rows = row0}, hidden.data(), logits.data());
    }
  }

  SequenceCache cache = model.new_cache(P + o.decode + 1, kv_dtype);
  SequenceCache* caches[] = {&cache};
  double cpu0 = process_cpu_seconds();
  auto t0 = std::chrono::steady_clock::now();
  prefill(model, entries, caches, b.step_tokens, hidden.data(), logits.data());
  b.prefill_s = seconds_since(t0), b.prefill_cpu_s = process_cpu_seconds() - cpu0;

  // Peak memory of the engine itself: every buffer a step needs exists after the warm-up and the
  // prefill (decode steps do not allocate), and the probe buffer below must not count.
  const uint64_t peak_before_probe = proc_status_bytes("VmHWM:");

  // Decode in rounds with a bandwidth probe after each: this machine's bandwidth drifts (other
  // tenants) by tens of percent within seconds, so each round's tokens/s is set against the
  // bandwidth measured right after it and the bench reports the median of those ratios.
  cpu::ReadBandwidthProbe probe(*r.pool, probe_mb << 20);
  b.probe_bytes = probe.bytes();
  const int64_t n_rounds = std::clamp<int64_t>(o.decode / 8, 1, 8);
  const uint64_t fixed = fixed_decode_bytes(weights);
  // Attention at position pos reads the latent rows of positions 0..pos in every main layer.
  const uint64_t kv_row_bytes = uint64_t(c.kv_lora_rank + c.qk_rope_head_dim) * uint64_t(cache_dtype_size(kv_dtype));
  RoutingTrace trace;
  trace.calls.reserve(size_t(c.num_hidden_layers));
  int32_t token = argmax(logits.data(), V);
  Comm& comm = *r.comm;
  b.world = comm.size();
  b.hidden = H;
  if (b.world > 1 && (o.profile || !o.speculative.method.empty()))
    fail("bench under mpirun: --profile and --speculative run in one process only");
  comm.reset_stats();
  for (int64_t round = 0, k = 0; round < n_rounds; ++round) {
    const int64_t k_end = o.decode * (round + 1) / n_rounds;
    Round rd;
    uint64_t routed = 0, kv_read = 0;
    cpu0 = process_cpu_seconds();
    t0 = std::chrono::steady_clock::now();
    for (; k < k_end; ++k) {
      trace.calls.clear();
      const StepEntry e{0, token, int32_t(P + k)};
      model.forward({&e, 1}, caches, {.logit_rows = row0, .trace = &trace}, hidden.data(), logits.data());
      token = argmax(logits.data(), V);
      routed += routed_bytes(weights, trace);
      kv_read += uint64_t(P + k + 1) * uint64_t(c.num_hidden_layers) * kv_row_bytes;
    }
    rd.seconds = seconds_since(t0);
    b.decode_comm.seconds += comm.stats().seconds;
    b.decode_comm.calls += comm.stats().calls;
    b.decode_comm.bytes += comm.stats().bytes;
    b.decode_s += rd.seconds;
    b.decode_cpu_s += process_cpu_seconds() - cpu0;
    rd.tokens = k_end - o.decode * round / n_rounds;
    rd.bytes = double(fixed) * double(rd.tokens) + double(routed) + double(kv_read);
    b.weight_bytes += fixed * uint64_t(rd.tokens) + routed;
    b.kv_read_bytes += kv_read;
    rd.probe_gb_s = probe.measure(2);
    comm.reset_stats();  // the probe's time is not communication
    b.rounds.push_back(rd);
  }
  const uint64_t rss_now = proc_status_bytes("VmRSS:"), probe_bytes = uint64_t(probe.bytes());
  b.peak = std::max(peak_before_probe, rss_now > probe_bytes ? rss_now - probe_bytes : 0);
  b.kv_cache_bytes = cache.bytes();
  b.kv_layers = uint64_t(cache.n_layers());
  b.res = residency(*r.ckpt);
  if (o.profile && o.decode > 1)
    b.profile = profile_decode(c, weights, *r.backend, cache, P, std::min<int64_t>(o.decode - 1, 32), token,
                               hidden.data(), logits.data());
  if (!o.speculative.method.empty()) {
    // Speculation, after the plain measurements: the checkpoint again with its MTP layer, the same
    // prompt decoded greedily through the engine with and without drafts, alternated.
    Runner rs = load_runner(o.model, o.threads, /*quiet=*/true, o.fp8_head, {.mtp = true});
    std::vector<int32_t> prompt;
    for (const auto& e : entries) prompt.push_back(e.token);
    b.spec = bench_speculative(*rs.model, prompt, std::max<int64_t>(o.decode, 1), o.speculative_rounds,
                               resolve_speculative(o.speculative, *rs.model), kv_dtype);
  }
  if (b.world > 1) {
    b.rank_peaks.resize(size_t(b.world));
    comm.all_gather(&b.peak, sizeof b.peak, b.rank_peaks.data());
    b.rank_comm_s.resize(size_t(b.world));
    comm.all_gather(&b.decode_comm.seconds, sizeof(double), b.rank_comm_s.data());
    // One collective alone (ranks lined up by a barrier; the median of 50, the slowest rank's):
    // the waiting for a slower rank that the decode figure includes is not in it.
    auto latency = [&](int64_t count) {
      std::vector<float> buf(size_t(count), 1.0f);
      std::vector<double> each;
      comm.barrier();
      for (int i = 0; i < 50; ++i) {
        comm.reset_stats();
        comm.all_reduce_sum(buf.data(), count);
        each.push_back(comm.stats().seconds);
      }
      std::vector<double> all(size_t(comm.size()));
      const double mine = median(each);
      comm.all_gather(&mine, sizeof mine, all.data());
      return 1e6 * *std::max_element(all.begin(), all.end());
    };
    b.all_reduce_us = latency(H);
    b.all_reduce_7168_us = latency(7168);
  }
  if (!is_root(r)) return;
  if (o.json)
    print_json(o, b);
  else
    print_text(o, b);
}

struct Summary {
  double prefill_tok_s, decode_tok_s, weight_per_token, kv_per_token, achieved, bandwidth, fraction, probe_min,
      probe_max;
};

Summary summarise(const BenchOptions& o, const BenchResult& b) {
  Summary s{};
  const double n = double(std::max<int64_t>(o.decode, 1));
  s.prefill_tok_s = double(o.prompt) / b.prefill_s;
  s.decode_tok_s = o.decode > 0 ? double(o.decode) / b.decode_s : 0.0;
  s.weight_per_token = double(b.weight_bytes) / n;
  s.kv_per_token = double(b.kv_read_bytes) / n;
  s.achieved = (s.weight_per_token + s.kv_per_token) * s.decode_tok_s / 1e9;
  std::vector<double> probes;
  for (const Round& rd : b.rounds) probes.push_back(rd.probe_gb_s);
  std::vector<double> fractions;
  for (const Round& rd : b.rounds)
    if (rd.tokens > 0) fractions.push_back(rd.fraction());
  s.bandwidth = median(probes);
  s.fraction = median(fractions);
  s.probe_min = probes.empty() ? 0.0 : *std::min_element(probes.begin(), probes.end());
  s.probe_max = probes.empty() ? 0.0 : *std::max_element(probes.begin(), probes.end());
  return s;
}

// Ops by time, most first.
std::vector<std::pair<std::string, OpProfile>> ops_by_time(const ProfileResult& p) {
  std::vector<std::pair<std::string, OpProfile>> v(p.ops.begin(), p.ops.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
  return v;
}

nlohmann::ordered_json profile_json(const ProfileResult& p) {
  if (p.steps == 0) return nullptr;
  nlohmann::ordered_json ops = nlohmann::ordered_json::array();
  const double n = double(p.steps);
  for (const auto& [name, op] : ops_by_time(p))
    ops.push_back({{"op", name},
                   {"calls_per_token", double(op.calls) / n},
                   {"ms_per_token", 1e3 * op.seconds / n},
                   {"bytes_per_token", op.bytes / n},
                   {"gb_s", op.seconds > 0 ? op.bytes / op.seconds / 1e9 : 0.0}});
  return {{"steps", p.steps}, {"ms_per_token", 1e3 * p.step_seconds / n}, {"ops", ops}};
}

void print_profile(const ProfileResult& p) {
  const double n = double(p.steps);
  double op_s = 0;
  for (const auto& [name, op] : p.ops) op_s += op.seconds;
  std::printf("profile:          %lld decode steps, %.2f ms each; backend ops %.2f ms, the rest (model glue, "
              "sampling) %.2f ms\n",
              (long long)p.steps, 1e3 * p.step_seconds / n, 1e3 * op_s / n, 1e3 * (p.step_seconds - op_s) / n);
  std::printf("  %-34s %8s %9s %6s %10s %7s\n", "op", "calls", "ms/token", "share", "MB/token", "GB/s");
  for (const auto& [name, op] : ops_by_time(p))
    std::printf("  %-34s %8.1f %9.3f %5.1f%% %10.2f %7.2f\n", name.c_str(), double(op.calls) / n,
                1e3 * op.seconds / n, 100 * op.seconds / p.step_seconds, op.bytes / n / 1e6,
                op.seconds > 0 ? op.bytes / op.seconds / 1e9 : 0.0);
}

void print_json(const BenchOptions& o, const BenchResult& b) {
  const Summary s = summarise(o, b);
  nlohmann::ordered_json rounds = nlohmann::ordered_json::array();
  for (const Round& rd : b.rounds)
    rounds.push_back({{"tokens", rd.tokens},
                      {"seconds", rd.seconds},
                      {"decode_tok_s", rd.tok_s()},
                      {"bytes", rd.bytes},
                      {"probe_gb_s", rd.probe_gb_s},
                      {"roofline_fraction", rd.fraction()}});
  nlohmann::ordered_json j = {
      {"model", o.model},
      {"cpu", b.cpu.model_name},
      {"cpu_family", b.cpu.family},
      {"cpu_model", b.cpu.model},
      {"l2_cache_bytes", b.cpu.l2_bytes},
      {"l3_cache_bytes", b.cpu.l3_bytes},
      {"threads", b.threads},
      {"isa", cpu::target_name()},
      {"fp8_head", o.fp8_head},
      {"mtp_loaded", b.mtp_loaded},
      {"prompt_tokens", o.prompt},
      {"prefill_step_tokens", b.step_tokens},
      {"decode_tokens", o.decode},
      {"prefill_tok_s", s.prefill_tok_s},
      {"decode_tok_s", s.decode_tok_s},
      {"peak_rss_bytes", b.peak},
      {"checkpoint_bytes", b.res.checkpoint},
      {"weights_bound_bytes", b.res.bound},
      {"checkpoint_resident_bytes", b.res.resident},
      {"kv_cache_bytes", b.kv_cache_bytes},
      {"kv_cache_layers", b.kv_layers},
      {"weight_bytes_per_token", s.weight_per_token},
      {"kv_read_bytes_per_token", s.kv_per_token},
      {"decode_bytes_per_token", s.weight_per_token + s.kv_per_token},
      {"achieved_gb_s", s.achieved},
      {"bandwidth_gb_s", s.bandwidth},
      {"roofline_fraction", s.fraction},
      {"bandwidth_gb_s_min", s.probe_min},
      {"bandwidth_gb_s_max", s.probe_max},
      {"probe_bytes", b.probe_bytes},
      {"rounds", int64_t(b.rounds.size())},
      {"per_round", rounds},
      {"profile", profile_json(b.profile)},
      {"prefill_cpu_util", b.prefill_cpu_s / b.prefill_s / b.threads},
      {"decode_cpu_util", o.decode > 0 ? b.decode_cpu_s / b.decode_s / b.threads : 0.0}};
  if (b.world > 1) {
    const double tokens = double(std::max<int64_t>(o.decode, 1));
    j["world_size"] = b.world;
    j["rank_peak_rss_bytes"] = b.rank_peaks;
    j["comm_ms_per_token"] = 1e3 * b.decode_comm.seconds / tokens;
    std::vector<double> per_rank;
    for (double sec : b.rank_comm_s) per_rank.push_back(1e3 * sec / tokens);
    j["rank_comm_ms_per_token"] = per_rank;
    j["comm_calls_per_token"] = double(b.decode_comm.calls) / tokens;
    j["comm_us_per_call"] = b.decode_comm.calls ? 1e6 * b.decode_comm.seconds / double(b.decode_comm.calls) : 0.0;
    j["comm_bytes_per_token"] = double(b.decode_comm.bytes) / tokens;
    j["all_reduce_us"] = b.all_reduce_us;
    j["all_reduce_7168_us"] = b.all_reduce_7168_us;
  }
  if (const auto& sb = b.spec) {
    nlohmann::ordered_json per = nlohmann::ordered_json::array();
    for (size_t k = 0; k < sb->stats.drafted.size(); ++k) per.push_back(sb->stats.accept_rate(k));
    j["speculative"] = {{"method", o.speculative.method},
                        {"draft_tokens", o.speculative.draft_tokens},
                        {"rounds", sb->rounds},
                        {"decode_tok_s", sb->decode_tok_s},
                        {"decode_tok_s_speculative", sb->decode_tok_s_speculative},
                        {"speedup", sb->speedup},
                        {"accept_rate", sb->stats.accept_rate()},
                        {"accept_rate_per_position", per},
                        {"mean_accepted_tokens", sb->stats.mean_accepted_tokens()},
                        {"verify_steps", sb->stats.rounds},
                        {"turned_off", sb->stats.turned_off},
                        {"draft_s", sb->stats.draft_s},
                        {"verify_s", sb->stats.verify_s},
                        {"same_tokens", sb->same_tokens},
                        {"plain_step_bytes", sb->cost.plain_bytes},
                        {"verify_step_bytes", sb->cost.verify_bytes},
                        {"draft_bytes", sb->cost.draft_bytes},
                        {"break_even_tokens", sb->cost.break_even_tokens()},
                        {"predicted_speedup", sb->cost.predicted_speedup(sb->stats.mean_accepted_tokens())}};
    j["accept_rate"] = sb->stats.accept_rate();
    j["mean_accepted_tokens"] = sb->stats.mean_accepted_tokens();
    j["decode_tok_s_speculative"] = sb->decode_tok_s_speculative;
  }
  std::printf("%s\n", j.dump().c_str());
}

void print_text(const BenchOptions& o, const BenchResult& b) {
  const Summary s = summarise(o, b);
  std::printf("model:            %s%s\n", o.model.c_str(), o.fp8_head ? " (lm_head quantised to FP8 at load)" : "");
  std::printf("cpu:              %s; L2 %lld KiB, L3 %lld MiB (as the CPU reports them)\n",
              b.cpu.description().c_str(), (long long)(b.cpu.l2_bytes >> 10), (long long)(b.cpu.l3_bytes >> 20));
  std::printf("threads:          %d (Highway target: %s)\n", b.threads, cpu::target_name());
  // CPU use below ~95% means other processes took cores from this run: its times are pessimistic.
  std::printf("prefill:          %lld tokens in %.3f s = %.2f tok/s (steps of %lld; CPU use %.0f%% of %d threads)\n",
              (long long)o.prompt, b.prefill_s, s.prefill_tok_s, (long long)b.step_tokens,
              100 * b.prefill_cpu_s / b.prefill_s / b.threads, b.threads);
  std::printf("decode:           %lld tokens in %.3f s = %.2f tok/s (CPU use %.0f%% of %d threads)\n",
              (long long)o.decode, b.decode_s, s.decode_tok_s, 100 * b.decode_cpu_s / b.decode_s / b.threads,
              b.threads);
  std::printf("bytes per token:  %.1f MB = %.1f MB weights (routing as taken) + %.1f MB latent cache read by attention\n",
              (s.weight_per_token + s.kv_per_token) / 1e6, s.weight_per_token / 1e6, s.kv_per_token / 1e6);
  std::printf("achieved:         %.2f GB/s\n", s.achieved);
  std::printf("bandwidth probe:  %.2f GB/s median of %zu rounds (range %.2f-%.2f; %d threads, %lld MiB buffer)\n",
              s.bandwidth, b.rounds.size(), s.probe_min, s.probe_max, b.threads, (long long)(b.probe_bytes >> 20));
  std::string per_round;
  for (const Round& rd : b.rounds)
    per_round += fmt::format("{}{:.1f} tok/s @ {:.1f} GB/s", per_round.empty() ? "" : ", ", rd.tok_s(), rd.probe_gb_s);
  std::printf("rounds:           %s\n", per_round.c_str());
  std::printf("roofline:         %.1f%% of measured bandwidth (median over rounds of each round's bytes/s\n"
              "                  against the probe run right after it)\n", 100 * s.fraction);
  std::printf("peak memory:      %.1f MB resident (weights bound %.1f MB of the %.1f MB checkpoint%s + KV cache "
              "%.1f MB for %llu layers)\n",
              double(b.peak) / 1e6, double(b.res.bound) / 1e6, double(b.res.checkpoint) / 1e6,
              b.mtp_loaded ? "" : ", MTP layer not loaded", double(b.kv_cache_bytes) / 1e6,
              (unsigned long long)b.kv_layers);
  if (b.res.resident >= 0)
    std::printf("checkpoint pages: %.1f MB mapped into this process\n", double(b.res.resident) / 1e6);
  if (b.profile.steps > 0) print_profile(b.profile);
  if (b.world > 1) {
    const double tokens = double(std::max<int64_t>(o.decode, 1));
    std::string peaks;
    for (size_t i = 0; i < b.rank_peaks.size(); ++i)
      peaks += fmt::format("{}rank {}: {:.1f} MB", i ? ", " : "", i, double(b.rank_peaks[i]) / 1e6);
    std::printf("ranks:            %d (mpirun); peak resident per rank: %s\n", b.world, peaks.c_str());
    std::string per_rank;
    for (size_t i = 0; i < b.rank_comm_s.size(); ++i)
      per_rank += fmt::format("{}{:.3f}", i ? " / " : "", 1e3 * b.rank_comm_s[i] / tokens);
    std::printf("communication:    %.3f ms per decode token on rank 0 (%.0f collectives of %.1f us each, %.1f KB "
                "sent per token); per rank %s ms (waiting for a slower rank included)\n",
                1e3 * b.decode_comm.seconds / tokens, double(b.decode_comm.calls) / tokens,
                b.decode_comm.calls ? 1e6 * b.decode_comm.seconds / double(b.decode_comm.calls) : 0.0,
                double(b.decode_comm.bytes) / tokens / 1e3, per_rank.c_str());
    std::printf("all-reduce alone: %.1f us for %lld floats; %.1f us for 7168 (DeepSeek-V3's hidden size): its 61 "
                "layers x 2 per decode token = %.2f ms\n",
                b.all_reduce_us, (long long)b.hidden, b.all_reduce_7168_us, 61 * 2 * b.all_reduce_7168_us / 1e3);
  }
  if (const auto& sb = b.spec) {
    std::printf("speculative:      %s, %d alternating rounds of %lld greedy tokens through the engine: plain %.2f tok/s, "
                "speculative %.2f tok/s, speedup %.2fx (median of pairs)%s\n",
                o.speculative.method.c_str(), sb->rounds, (long long)std::max<int64_t>(o.decode, 1), sb->decode_tok_s,
                sb->decode_tok_s_speculative, sb->speedup, sb->same_tokens ? "" : " TOKENS DIFFER");
    std::printf("                  %s\n", speculative_summary(sb->stats, sb->cost).c_str());
    std::printf("                  cost model: plain step %.1f MB, verify step %.1f MB (drafts %.1f MB each), "
                "predicted speedup %.2fx\n",
                sb->cost.plain_bytes / 1e6, sb->cost.verify_bytes / 1e6, sb->cost.draft_bytes / 1e6,
                sb->cost.predicted_speedup(sb->stats.mean_accepted_tokens()));
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* sub = app.add_subcommand("bench", "Prefill and decode tokens/s against the machine's measured memory bandwidth");
  sub->add_option("--model", o->model, "Checkpoint directory (Hugging Face layout)")->required();
  sub->add_option("-p,--prompt", o->prompt, fmt::format("Prompt tokens to prefill, in steps of at most {} (the engine's step)", EngineOptions{}.max_step_tokens))
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  sub->add_option("-n,--decode", o->decode, "Tokens to decode one at a time after the prompt")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20))
      ->capture_default_str();
  sub->add_option("-t,--threads", o->threads, "Worker threads (default: all cores)")->check(CLI::Range(0, 1024));
  sub->add_flag("--json", o->json,
                "Print one JSON object (under mpirun also world_size, rank_peak_rss_bytes, comm_* and rank_comm_ms_per_token per decode token)");
  sub->add_option("--ctx-size", o->ctx_size, kCtxSizeHelp)->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  sub->add_flag("--fp8-head", o->fp8_head, kFp8HeadHelp);
  sub->add_flag("--profile", o->profile,
                "After the timed rounds, decode up to 32 more tokens timing each backend op: per op calls, ms, MB "
                "read and GB/s per token");
  sub->add_option("--kv-cache-dtype", o->kv_cache_dtype, kKvCacheDtypeHelp)
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  sub->add_option("--probe-mb", o->probe_mb,
                  "Bandwidth probe buffer in MiB, read by all threads after each decode round (not counted in peak "
                  "memory; default 1024 or 3x the L3 cache, whichever is larger; at least 3x the L3 cache)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  add_speculative_flags(sub, o->speculative);
  sub->add_option("--speculative-rounds", o->speculative_rounds,
                  "With --speculative: alternating pairs of plain and speculative greedy decodes of -n tokens "
                  "(after the plain measurements; the MTP layer is loaded for them only)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  sub->callback([o] { run_bench(*o); });
}

}  // namespace dsv3::cli
