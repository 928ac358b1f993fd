// Whole-checkpoint format conversions, one shard at a time (a 671B checkpoint must not need its
// size in RAM): FP8 -> BF16 as DeepSeek's inference/fp8_cast_bf16.py does it, and the inverse
// BF16 -> FP8 with 128x128 block scales for models published in BF16 (V2-Lite).
//
//   ThreadPool pool(8);
//   ConvertReport r = cast_fp8_to_bf16({.in_dir = "V3", .out_dir = "V3-bf16", .pool = &pool});
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/thread_pool.h"

namespace dsv3 {

struct ConvertProgress {
  int shard = 0, n_shards = 0;  // shard being processed (0-based)
  std::string file;             // its name
  uint64_t bytes_done = 0, bytes_total = 0;  // input tensor bytes
  int64_t tensors_done = 0, tensors_total = 0;
};

struct ConvertOptions {
  std::string in_dir, out_dir;
  ThreadPool* pool = nullptr;  // null: one thread
  // Called after each tensor and once at the end of each shard.
  std::function<void(const ConvertProgress&)> progress;
};

struct ConvertReport {
  int64_t n_converted = 0;            // weights whose dtype changed
  int64_t n_tensors_written = 0;
  uint64_t bytes_written = 0;         // tensor data
  std::vector<std::string> warnings;  // e.g. an FP8 weight without a scale, kept as it is
  std::vector<std::string> copied;    // non-weight files copied (tokenizer files, ...)
};

// Every *.safetensors file of in_dir (sorted by name) is written under the same name, without
// __metadata__. An F8_E4M3 weight W with an F32 W_scale_inv (found through the index, so it
// may sit in another shard) becomes BF16: code * scale of its 128x128 block in float32, then
// rounded to nearest even. *_scale_inv tensors are dropped; every other tensor is copied as
// it is, dtype included. The index is rewritten as {"metadata": {}, "weight_map"} in the
// input's order without the dropped scales (as the official script). Unlike the official
// script, config.json is written too, without quantization_config, and the other files of
// the directory (tokenizer.json, tokenizer_config.json, ...) are copied.
ConvertReport cast_fp8_to_bf16(const ConvertOptions& opts);

// The inverse for BF16/F16/F32 checkpoints: the decoder's linear projection weights (names
// ending in _proj.weight or kv_a_proj_with_mqa.weight, except MTP's eh_proj, which DeepSeek
// keeps in BF16) become F8_E4M3 with an F32 `weight_scale_inv` [ceil(rows/128),
// ceil(cols/128)], scale = amax/448 of each block; everything else is copied. config.json
// gains DeepSeek's quantization_config; the index lists each scale after its weight.
ConvertReport quantize_bf16_to_fp8(const ConvertOptions& opts);

// FP8 or BF16 checkpoint -> compressed-tensors pack-quantized integer weights in Kimi-K2-Thinking's
// layout: each targeted weight W.weight [rows, cols] becomes W.weight_packed (I32 [rows,
// ceil(cols * bits / 32)]), W.weight_scale (BF16 [rows, cols / group_size]) and W.weight_shape (I64
// [2]), computed by quantize_packed (weights/packed_quantize.h: bit-identical to the library's
// output for the same BF16 input). An FP8 weight is first dequantised exactly and rounded to BF16
// (as `cast`); F16/F32 ones are rounded to BF16. Targets: the routed experts' projections (all
// layers, the MTP layer included), or with `all_linear` every Linear projection except kv_b_proj
// (MLA folds it per head) and the heads. Weights not targeted are written BF16 (FP8 ones cast), the
// rest copied. config.json's quantization_config becomes compressed-tensors' (format
// pack-quantized, one group targeting Linear, an ignore list naming what stays BF16); the index is
// rewritten.
struct PackedOptions {
  int bits = 4;
  int64_t group_size = 32;
  bool all_linear = false;
  // Non-targeted FP8 weights keep their format and weight_scale_inv (dsv3 reads a weight's format
  // from its dtype; other readers of compressed-tensors expect BF16 there).
  bool keep_fp8 = false;
};
ConvertReport quantize_to_packed(const ConvertOptions& opts, const PackedOptions& packed);

// Whether quantize_to_packed packs the 2-D weight called `name`.
bool is_packed_target(const std::string& name, bool all_linear);

// Whether quantize_bf16_to_fp8 turns the tensor called `name` into FP8 (2-D ones only).
bool is_fp8_linear_name(const std::string& name);

}  // namespace dsv3
