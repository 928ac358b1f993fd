// Pieces several commands share: parsing id lists, loading a model with a backend.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "base/thread_pool.h"
#include "model/model.h"
#include "parallel/comm.h"
#include "tokenizer/tokenizer.h"
#include "weights/loaded_checkpoint.h"

namespace dsv3::cli {

// "0,17,345" -> ids; throws Error naming the flag on anything else.
std::vector<int32_t> parse_ids(const std::string& text, const std::string& flag);

int default_threads();

// Tokenizer::load with the tiktoken split pattern of `pattern_flag` (--tiktoken-pattern), else
// of $DSV3_TIKTOKEN_PATTERN, else Kimi's.
Tokenizer load_tokenizer(const std::string& dir, const std::string& pattern_flag = "");
inline constexpr const char* kTiktokenPatternHelp =
    "For tiktoken.model tokenizers: the split pattern, by name (kimi: Kimi-K2/Moonlight, the default; o200k_base; "
    "cl100k_base) or as a regex in tiktoken's syntax (default: $DSV3_TIKTOKEN_PATTERN, else kimi)";

// Everything needed to run a checkpoint, owned together.
struct Runner {
  std::unique_ptr<Comm> comm;  // first: MPI is finalised after everything else is gone
  std::unique_ptr<LoadedCheckpoint> ckpt;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
};

// Loads `dir` and builds the CPU backend with `threads` threads (0: all cores). The shards are
// faulted in up front, with a progress line (bytes, tensors, ETA) on stderr when that takes
// more than a second. Unknown extra tensors are listed on stderr. `quiet` silences both.
// `fp8_head`: a BF16/F16/F32 lm_head is quantised to FP8 128x128 blocks in memory (its
// checkpoint pages released), so decode reads ~half its bytes; an FP8 head stays as it is.
//
// Under `mpirun -np N` (tensor/expert parallel, parallel/mpi_comm.h) each rank loads and keeps
// only its part of the weights (weights/shard.h) and faults in only those pages. A rank that
// cannot load its part makes every rank throw Error with that rank's message; ranks that loaded
// a different config.json or checkpoint index throw too, before any step. On ranks other than 0
// stdout is discarded and load notes are silent: rank 0 prints.
// `load`: what to bind (LoadOptions::mtp: the MTP layer, for speculative decoding); only the
// bound tensors are faulted in.
Runner load_runner(const std::string& dir, int threads, bool quiet = false, bool fp8_head = false,
                   const LoadOptions& load = {});

// Throws Error when the tokenizer has ids at or beyond config.vocab_size (the embedding has no row
// for them: a prompt holding one fails, and a generated id decodes to another token's text).
void check_tokenizer_fits(const Tokenizer& tok, const ModelConfig& config, const std::string& dir);

// Under mpirun every rank runs the same command; these make the inputs only rank 0 has the same
// everywhere. share_seed: rank 0's seed (a default seed is random per process), so that every
// rank samples the same tokens. share_line: rank 0's input line (nullopt: end of input; mpirun
// gives stdin to rank 0 only). Both no-ops in one process.
void share_seed(Runner& r, uint64_t& seed);
std::optional<std::string> share_line(Runner& r, std::optional<std::string> line);

// Whether this process prints results (rank 0, or the only process).
inline bool is_root(const Runner& r) { return !r.comm || r.comm->rank() == 0; }

// --help text of the commands' --fp8-head flag.
inline constexpr const char* kFp8HeadHelp =
    "Quantise lm_head to FP8 (128x128 blocks, scale = amax/448) in memory at load: decode reads half its "
    "bytes (DeepSeek ships it in BF16); logits then differ from the checkpoint's by FP8 rounding";

void write_f32_file(const std::string& path, const std::vector<float>& data);

// --kv-cache-dtype: "f32" (default; every golden within 1e-4) or "bf16" (half the cache bytes,
// as DeepSeek's demo keeps it). The flag's values are checked by CLI11; this maps them.
CacheDtype cache_dtype_from_flag(const std::string& value);
inline constexpr const char* kKvCacheDtypeHelp =
    "Element type of the latent KV cache: f32 (default, exact) or bf16 (half the cache memory; rows rounded to "
    "nearest even, as DeepSeek's demo keeps its cache)";

}  // namespace dsv3::cli
