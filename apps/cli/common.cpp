#include "apps/cli/common.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <unistd.h>

#include <fmt/ranges.h>

#include "apps/cli/progress.h"
#include "base/error.h"
#include "io/prefetch.h"
#include "parallel/mpi_comm.h"
#include "weights/requantize.h"
#include "weights/shard.h"

namespace dsv3::cli {

std::vector<int32_t> parse_ids(const std::string& text, const std::string& flag) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    size_t j = text.find(',', i);
    if (j == std::string::npos) j = text.size();
    std::string item = text.substr(i, j - i);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos || item.size() > 9)
      fail("{}: '{}' is not a token id (expected comma-separated non-negative integers)", flag, item);
    ids.push_back(int32_t(std::stol(item)));
    i = j + 1;
  }
  if (ids.empty()) fail("{}: the list of token ids is empty", flag);
  return ids;
}

Tokenizer load_tokenizer(const std::string& dir, const std::string& pattern_flag) {
  TokenizerOptions o;
  o.tiktoken_pattern = pattern_flag;
  if (o.tiktoken_pattern.empty())
    if (const char* env = std::getenv("DSV3_TIKTOKEN_PATTERN"); env && *env) o.tiktoken_pattern = env;
  return Tokenizer::load(dir, o);
}

int default_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : int(n);
}

namespace {

// FNV-1a over config.json and every tensor's name, dtype, shape and file: ranks compare it
// before the first step (the same directory contents on every host).
uint64_t checkpoint_fingerprint(const LoadedCheckpoint& lc) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const std::string& s) {
    for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  };
  mix(lc.checkpoint.config_json().dump());
  for (const TensorInfo* t : lc.checkpoint.tensors()) {
    mix(t->name);
    mix(std::string(dtype_name(t->dtype)));
    for (int64_t d : t->shape) mix(std::to_string(d));
    mix(std::filesystem::path(*t->file).filename().string());
  }
  return h;
}

}  // namespace

void check_tokenizer_fits(const Tokenizer& tok, const ModelConfig& config, const std::string& dir) {
  if (tok.vocab_size() > config.vocab_size)
    fail("'{}': the tokenizer has token ids up to {} (tokenizer.json and the added tokens) but config.json's "
         "vocab_size is {}; they do not belong together",
         dir, tok.vocab_size() - 1, config.vocab_size);
}

Runner load_runner(const std::string& dir, int threads, bool quiet, bool fp8_head, const LoadOptions& load) {
  Runner r;
  r.comm = open_world_comm();
  Comm& comm = *r.comm;
  if (comm.rank() != 0) {
    quiet = true;
    // Rank 0 prints; the others' stdout goes nowhere (their stderr still carries errors).
    if (std::freopen("/dev/null", "w", stdout) == nullptr) fail("rank {}: cannot redirect stdout", comm.rank());
  }
  // Every rank loads, then all learn whether any failed: no rank waits for one that left.
  std::string error;
  try {
    r.ckpt = LoadedCheckpoint::load(dir, load);
    if (comm.size() > 1)
      shard_weights(r.ckpt->weights, r.ckpt->config, ShardPlan::make(r.ckpt->config, comm.rank(), comm.size()));
  } catch (const std::exception& e) {
    error = e.what();
  }
  agree_or_throw(comm, error);
  check_same_on_all_ranks(comm, checkpoint_fingerprint(*r.ckpt), fmt::format("'{}' (config.json and tensor index)", dir));
  if (!quiet && !r.ckpt->weights.extra.empty()) {
    std::fprintf(stderr, "dsv3: warning: %zu tensor(s) in '%s' are not used by this config, e.g. '%s'\n",
                 r.ckpt->weights.extra.size(), dir.c_str(), r.ckpt->weights.extra.front().c_str());
  }
  if (!quiet && !r.ckpt->config.unread_fields.empty())
    std::fprintf(stderr, "dsv3: note: '%s/config.json' has field(s) dsv3 does not know and did not read: %s\n",
                 dir.c_str(), fmt::format("{}", fmt::join(r.ckpt->config.unread_fields, ", ")).c_str());
  r.pool = std::make_unique<ThreadPool>(threads > 0 ? threads : default_threads());
  // The shards are mapped; fault in the tensors the model reads now, with progress when it takes
  // a while (an MTP layer not asked for stays on disk). Not when they exceed physical memory: the
  // first pages would be evicted before the last arrive.
  const uint64_t ram = uint64_t(sysconf(_SC_PHYS_PAGES)) * uint64_t(sysconf(_SC_PAGESIZE));
  const auto bound = r.ckpt->bound_tensors();
  uint64_t bound_bytes = 0;
  for (const TensorInfo* t : bound) bound_bytes += t->nbytes;
  if (comm.size() > 1) {
    // Only this rank's part: its slices' pages, not every page of every shard.
    prefetch_weights(r.ckpt->weights, r.pool.get());
  } else if (bound_bytes < ram / 10 * 9) {
    ProgressLine line("loading " + dir, quiet);
    prefetch_tensors(bound, r.pool.get(), [&](uint64_t b, uint64_t bt, int64_t t, int64_t tt) {
      line.update(b, bt, t, tt);
    });
    line.finish(format_bytes(bound_bytes) + " in memory", /*only_if_slow=*/true);
  } else if (!quiet) {
    std::fprintf(stderr, "dsv3: note: '%s' (%s) is larger than this machine's memory (%s); weights are read from "
                 "disk as they are used\n", dir.c_str(), format_bytes(bound_bytes).c_str(), format_bytes(ram).c_str());
  }
  // Checkpoint tensors are read-only file mappings: the 16-bit pages can go once quantised.
  if (fp8_head) requantize_fp8(r.ckpt->weights.lm_head, r.ckpt->weights, *r.pool, /*release_source=*/true);
  r.backend = std::make_unique<CpuBackend>(*r.pool);
  r.model = std::make_unique<Model>(r.ckpt->config, r.ckpt->weights, *r.backend, comm);
  return r;
}

void share_seed(Runner& r, uint64_t& seed) {
  if (r.comm && r.comm->size() > 1) r.comm->broadcast(&seed, sizeof seed, 0);
}

std::optional<std::string> share_line(Runner& r, std::optional<std::string> line) {
  if (!r.comm || r.comm->size() == 1) return line;
  int64_t n = line ? int64_t(line->size()) : -1;
  r.comm->broadcast(&n, sizeof n, 0);
  if (n < 0) return std::nullopt;
  std::string text = r.comm->rank() == 0 ? *line : std::string(size_t(n), '\0');
  if (n > 0) r.comm->broadcast(text.data(), n, 0);
  return text;
}

void write_f32_file(const std::string& path, const std::vector<float>& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail("cannot create '{}': {}", path, std::strerror(errno));
  // float32 little-endian rows (x86-64 and aarch64 are little-endian).
  out.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size() * sizeof(float)));
  if (!out) fail("cannot write '{}'", path);
}

CacheDtype cache_dtype_from_flag(const std::string& value) {
  if (value == "f32") return CacheDtype::F32;
  if (value == "bf16") return CacheDtype::BF16;
  fail("--kv-cache-dtype: expected f32 or bf16, got '{}'", value);
}

}  // namespace dsv3::cli
