// dsv3 bench: prefill and decode tokens/s, peak resident memory, the weight bytes each decode
// token reads (from the config and the routing actually taken), and the achieved fraction of
// the machine's memory read bandwidth, measured by a built-in probe in the same process with the
// same thread count. Ratios measured in one run hold on a shared machine; absolute times drift.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "apps/cli/bench_speculative.h"
#include "apps/cli/commands.h"
#include "apps/cli/common.h"
#include "apps/cli/generation_flags.h"
#include "backends/cpu/bandwidth_probe.h"
#include "backends/cpu/kernels.h"
#include "base/error.h"
#include "io/json_file.h"
#include "runtime/greedy.h"

namespace dsv3::cli {

namespace {

struct BenchOptions {
  std::string model;
  int64_t prompt = 512, decode = 128;
  int64_t ctx_size = 0;
  int threads = 0;
  bool json = false, fp8_head = false;
  std::string kv_cache_dtype = "f32";
  int64_t probe_mb = 1024;
  SpeculativeFlags speculative;
  int speculative_rounds = 3;
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
    const uint64_t n = x.data_bytes();  // packed int4: the int32 words, not rows x cols
    for (uint64_t i = 0; i < n; i += 4096) sink = sink + p[i];
    if (x.scale_inv) sink = sink + static_cast<uint8_t>(x.scale_inv[0]);
    if (x.weight_scale) sink = sink + static_cast<uint8_t>(x.weight_scale[0]);
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

void run_bench(const BenchOptions& o) {
  Runner r = load_runner(o.model, o.threads, /*quiet=*/true, o.fp8_head);
  Model& model = *r.model;
  const ModelConfig& c = model.config();
  ModelWeights& weights = r.ckpt->weights;
  touch_weights(weights);

  const int64_t V = c.vocab_size, H = c.hidden_size, P = o.prompt;
  const int64_t ctx = resolve_ctx_size(o.ctx_size, c);
  if (P + o.decode > ctx)
    fail("bench: -p {} and -n {} need {} positions; the context holds {} (--ctx-size; the model's "
         "max_position_embeddings is {})",
         P, o.decode, P + o.decode, ctx, c.max_position_embeddings);
  std::vector<StepEntry> entries;
  for (int64_t i = 0; i < P; ++i) entries.push_back({0, int32_t((i * 7919 + 13) % V), int32_t(i)});
  std::vector<float> hidden(static_cast<size_t>(P * H)), logits(static_cast<size_t>(V));
  const int32_t last[] = {int32_t(P - 1)}, row0[] = {0};

  {
    // Warm-up on a throw-away cache, outside the timing: the whole prompt once (every scratch
    // buffer reaches its prefill size and its pages are touched) and two decode steps.
    SequenceCache warm = model.new_cache(P + 2, cache_dtype_from_flag(o.kv_cache_dtype));
    SequenceCache* wc[] = {&warm};
    model.forward(entries, wc, {.logit_rows = last}, hidden.data(), logits.data());
    for (int32_t k = 0; k < 2; ++k) {
      const StepEntry e{0, 1, int32_t(P + k)};
      model.forward({&e, 1}, wc, {.logit_rows = row0}, hidden.data(), logits.data());
    }
  }

  SequenceCache cache = model.new_cache(P + o.decode + 1, cache_dtype_from_flag(o.kv_cache_dtype));
  SequenceCache* caches[] = {&cache};
  double cpu0 = process_cpu_seconds();
  auto t0 = std::chrono::steady_clock::now();
  model.forward(entries, caches, {.logit_rows = last}, hidden.data(), logits.data());
  const double prefill_s = seconds_since(t0), prefill_cpu_s = process_cpu_seconds() - cpu0;

  // Peak memory of the engine itself: every buffer a step needs exists after the warm-up and the
  // prefill (decode steps do not allocate), and the probe buffer below must not count.
  const uint64_t peak_before_probe = proc_status_bytes("VmHWM:");

  // Decode in rounds with a bandwidth probe after each: this machine's bandwidth drifts (other
  // tenants) by tens of percent within seconds, so each round's tokens/s is set against the
  // bandwidth measured right after it and the bench reports the median of those ratios.
  cpu::ReadBandwidthProbe probe(*r.pool, o.probe_mb << 20);
  const int64_t rounds = std::clamp<int64_t>(o.decode / 8, 1, 8);
  std::vector<double> round_fraction, round_probe;
  const uint64_t fixed = fixed_decode_bytes(weights);
  uint64_t routed = 0;
  RoutingTrace trace;
  trace.calls.reserve(size_t(c.num_hidden_layers));
  int32_t token = argmax(logits.data(), V);
  double decode_s = 0, decode_cpu_s = 0;
  Comm& comm = *r.comm;
  comm.reset_stats();
  CommStats decode_comm;
  for (int64_t round = 0, k = 0; round < rounds; ++round) {
    const int64_t k_end = o.decode * (round + 1) / rounds;
    uint64_t round_routed = 0;
    cpu0 = process_cpu_seconds();
    t0 = std::chrono::steady_clock::now();
    for (; k < k_end; ++k) {
      trace.calls.clear();
      const StepEntry e{0, token, int32_t(P + k)};
      model.forward({&e, 1}, caches, {.logit_rows = row0, .trace = &trace}, hidden.data(), logits.data());
      token = argmax(logits.data(), V);
      round_routed += routed_bytes(weights, trace);
    }
    const double s = seconds_since(t0);
    decode_comm.seconds += comm.stats().seconds;
    decode_comm.calls += comm.stats().calls;
    decode_comm.bytes += comm.stats().bytes;
    decode_s += s;
    decode_cpu_s += process_cpu_seconds() - cpu0;
    routed += round_routed;
    const int64_t n_round = k_end - o.decode * round / rounds;
    const double gb_s = probe.measure(2);
    comm.reset_stats();  // the probe's time is not communication
    round_probe.push_back(gb_s);
    if (n_round > 0) round_fraction.push_back((double(fixed) * double(n_round) + double(round_routed)) / s / 1e9 / gb_s);
  }
  const uint64_t rss_now = proc_status_bytes("VmRSS:"), probe_bytes = uint64_t(probe.bytes());
  const uint64_t peak = std::max(peak_before_probe, rss_now > probe_bytes ? rss_now - probe_bytes : 0);

  const double prefill_tok_s = double(P) / prefill_s;
  const double decode_tok_s = o.decode > 0 ? double(o.decode) / decode_s : 0.0;
  const double bytes_per_token = double(fixed) + double(routed) / double(std::max<int64_t>(o.decode, 1));
  const double achieved = bytes_per_token * decode_tok_s / 1e9;
  const double bandwidth = median(round_probe);
  const double fraction = round_fraction.empty() ? 0.0 : median(round_fraction);
  const uint64_t ckpt_bytes = r.ckpt->checkpoint.total_bytes(), kv_bytes = cache.bytes();
  // Speculation: the same prompt decoded greedily through the engine with and without MTP drafts,
  // alternated, after the plain measurements above.
  std::optional<SpeculativeBench> sb;
  if (!o.speculative.method.empty()) {
    std::vector<int32_t> prompt;
    for (const auto& e : entries) prompt.push_back(e.token);
    sb = bench_speculative(model, prompt, std::max<int64_t>(o.decode, 1), o.speculative_rounds,
                           resolve_speculative(o.speculative, model), cache_dtype_from_flag(o.kv_cache_dtype));
  }
  // Under mpirun: every rank's peak, and this rank's time inside collectives per decode token.
  std::vector<uint64_t> rank_peaks(size_t(comm.size()));
  comm.all_gather(&peak, sizeof peak, rank_peaks.data());
  const double tokens = double(std::max<int64_t>(o.decode, 1));
  const double comm_ms_per_token = 1e3 * decode_comm.seconds / tokens;
  const double comm_calls_per_token = double(decode_comm.calls) / tokens;
  const double comm_us_per_call = decode_comm.calls ? 1e6 * decode_comm.seconds / double(decode_comm.calls) : 0.0;
  // The latency of one collective alone (ranks lined up by a barrier first; median of 50): the waiting for a
  // slower rank that the decode figure above includes is not in it. For the hidden size here
  // and for DeepSeek-V3's (7168), which gives its decode cost: 61 layers x 2 all-reduces per token.
  double lat_us = 0, lat_v3_us = 0;
  if (comm.size() > 1) {
    auto latency = [&](int64_t count) {
      std::vector<float> buf(size_t(count), 1.0f);
      // The median of 50 calls: on a shared machine a rank that loses its core for a while
      // would dominate a mean.
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
    lat_us = latency(H);
    lat_v3_us = latency(7168);
  }
  if (!is_root(r)) return;
  if (o.json) {
    nlohmann::ordered_json j = {{"model", o.model},
                                {"threads", r.pool->size()},
                                {"isa", cpu::target_name()},
                                {"fp8_head", o.fp8_head},
                                {"prompt_tokens", P},
                                {"decode_tokens", o.decode},
                                {"prefill_tok_s", prefill_tok_s},
                                {"decode_tok_s", decode_tok_s},
                                {"peak_rss_bytes", peak},
                                {"checkpoint_bytes", ckpt_bytes},
                                {"kv_cache_bytes", kv_bytes},
                                {"decode_bytes_per_token", bytes_per_token},
                                {"achieved_gb_s", achieved},
                                {"bandwidth_gb_s", bandwidth},
                                {"roofline_fraction", fraction},
                                {"bandwidth_gb_s_min", round_probe.empty() ? 0.0 : *std::min_element(round_probe.begin(), round_probe.end())},
                                {"bandwidth_gb_s_max", round_probe.empty() ? 0.0 : *std::max_element(round_probe.begin(), round_probe.end())},
                                {"rounds", rounds},
                                {"prefill_cpu_util", prefill_cpu_s / prefill_s / r.pool->size()},
                                {"decode_cpu_util", o.decode > 0 ? decode_cpu_s / decode_s / r.pool->size() : 0.0}};
    if (sb) {
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
                          {"turned_off", sb->stats.turned_off > 0},
                          {"draft_s", sb->stats.draft_s},
                          {"verify_s", sb->stats.verify_s},
                          {"same_tokens", sb->same_tokens},
                          {"plain_step_bytes", sb->cost.plain_bytes},
                          {"verify_step_bytes", sb->cost.verify_bytes},
                          {"break_even_tokens", sb->cost.break_even_tokens()},
                          {"predicted_speedup", sb->cost.predicted_speedup(sb->stats.mean_accepted_tokens())}};
      j["accept_rate"] = sb->stats.accept_rate();
      j["mean_accepted_tokens"] = sb->stats.mean_accepted_tokens();
      j["decode_tok_s_speculative"] = sb->decode_tok_s_speculative;
    }
    if (comm.size() > 1) {
      j["world_size"] = comm.size();
      j["rank_peak_rss_bytes"] = rank_peaks;
      j["comm_ms_per_token"] = comm_ms_per_token;
      j["comm_calls_per_token"] = comm_calls_per_token;
      j["comm_us_per_call"] = comm_us_per_call;
      j["comm_bytes_per_token"] = double(decode_comm.bytes) / tokens;
      j["all_reduce_us"] = lat_us;
      j["all_reduce_7168_us"] = lat_v3_us;
    }
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("model:            %s%s\n", o.model.c_str(), o.fp8_head ? " (lm_head quantised to FP8 at load)" : "");
  std::printf("threads:          %d (kernels: %s)\n", r.pool->size(), cpu::target_name());
  // CPU use below ~95% means other processes took cores from this run: its times are pessimistic.
  std::printf("prefill:          %lld tokens in %.3f s = %.2f tok/s (CPU use %.0f%% of %d threads)\n", (long long)P,
              prefill_s, prefill_tok_s, 100 * prefill_cpu_s / prefill_s / r.pool->size(), r.pool->size());
  std::printf("decode:           %lld tokens in %.3f s = %.2f tok/s (CPU use %.0f%% of %d threads)\n",
              (long long)o.decode, decode_s, decode_tok_s, 100 * decode_cpu_s / decode_s / r.pool->size(),
              r.pool->size());
  std::printf("bytes per token:  %.1f MB (weights read per decode token, routing as taken)\n", bytes_per_token / 1e6);
  std::printf("achieved:         %.2f GB/s\n", achieved);
  std::printf("bandwidth probe:  %.2f GB/s median of %lld rounds (range %.2f-%.2f; %d threads, %lld MB buffer)\n",
              bandwidth, (long long)rounds, *std::min_element(round_probe.begin(), round_probe.end()),
              *std::max_element(round_probe.begin(), round_probe.end()), r.pool->size(),
              (long long)(probe.bytes() >> 20));
  std::printf("roofline:         %.1f%% of measured bandwidth (median over rounds of each round's tokens/s\n"
              "                  against the probe run right after it)\n", 100 * fraction);
  if (sb) {
    std::printf("speculative:      %s, %d alternating rounds of %lld greedy tokens through the engine: plain %.2f tok/s, "
                "speculative %.2f tok/s, speedup %.2fx (median of pairs)%s\n",
                o.speculative.method.c_str(), sb->rounds, (long long)std::max<int64_t>(o.decode, 1), sb->decode_tok_s,
                sb->decode_tok_s_speculative, sb->speedup, sb->same_tokens ? "" : " TOKENS DIFFER");
    std::printf("                  %s\n", speculative_summary(sb->stats, sb->cost).c_str());
    std::printf("                  cost model: plain step %.1f MB, verify step %.1f MB, predicted speedup %.2fx\n",
                sb->cost.plain_bytes / 1e6, sb->cost.verify_bytes / 1e6,
                sb->cost.predicted_speedup(sb->stats.mean_accepted_tokens()));
  }
  std::printf("peak memory:      %.1f MB resident (checkpoint %.1f MB + KV cache %.1f MB = %.1f MB)\n", double(peak) / 1e6,
              double(ckpt_bytes) / 1e6, double(kv_bytes) / 1e6, double(ckpt_bytes + kv_bytes) / 1e6);
  if (comm.size() > 1) {
    std::string peaks;
    for (size_t i = 0; i < rank_peaks.size(); ++i)
      peaks += fmt::format("{}rank {}: {:.1f} MB", i ? ", " : "", i, double(rank_peaks[i]) / 1e6);
    std::printf("ranks:            %d (mpirun); peak resident per rank: %s\n", comm.size(), peaks.c_str());
    std::printf("communication:    %.3f ms per decode token on rank 0 (%.0f collectives of %.1f us each, %.1f KB "
                "sent per token)\n", comm_ms_per_token, comm_calls_per_token, comm_us_per_call,
                double(decode_comm.bytes) / tokens / 1e3);
    std::printf("all-reduce alone: %.1f us for %lld floats; %.1f us for 7168 (DeepSeek-V3's hidden size): its 61 "
                "layers x 2 per decode token = %.2f ms\n",
                lat_us, (long long)H, lat_v3_us, 61 * 2 * lat_v3_us / 1e3);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* sub = app.add_subcommand("bench", "Prefill and decode tokens/s against the machine's measured memory bandwidth");
  sub->add_option("--model", o->model, "Checkpoint directory (Hugging Face layout)")->required();
  sub->add_option("-p,--prompt", o->prompt, "Prompt tokens to prefill in one step")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20))
      ->capture_default_str();
  sub->add_option("-n,--decode", o->decode, "Tokens to decode one at a time after the prompt")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20))
      ->capture_default_str();
  sub->add_option("-t,--threads", o->threads, "Worker threads (default: all cores)")->check(CLI::Range(0, 1024));
  sub->add_flag("--json", o->json,
                "Print one JSON object (under mpirun also world_size, rank_peak_rss_bytes and comm_* per decode token)");
  sub->add_option("--ctx-size", o->ctx_size, kCtxSizeHelp)->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  sub->add_flag("--fp8-head", o->fp8_head, kFp8HeadHelp);
  sub->add_option("--kv-cache-dtype", o->kv_cache_dtype, kKvCacheDtypeHelp)
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  sub->add_option("--probe-mb", o->probe_mb,
                  "Bandwidth probe buffer in MiB, read by all threads after each decode round (not counted in peak memory)")
      ->check(CLI::Range(int64_t(64), int64_t(1) << 20))
      ->capture_default_str();
  add_speculative_flags(sub, o->speculative);
  sub->add_option("--speculative-rounds", o->speculative_rounds,
                  "With --speculative: alternating pairs of plain and speculative greedy decodes of -n tokens")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  sub->callback([o] { run_bench(*o); });
}

}  // namespace dsv3::cli
