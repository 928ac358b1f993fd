#include "convert/convert.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "base/dtype.h"
#include "base/error.h"
#include "io/json_file.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "weights/fp8_block.h"
#include "weights/packed_quantize.h"

namespace dsv3 {

namespace fs = std::filesystem;
using OrderedJson = nlohmann::ordered_json;

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The input directory: every shard mapped and its header validated before anything is written.
struct Source {
  fs::path dir;
  std::vector<std::unique_ptr<SafetensorsFile>> shards;  // sorted by file name
  std::unordered_map<std::string, const TensorInfo*> by_name;
  OrderedJson index;   // null when the directory has a single model.safetensors and no index
  OrderedJson config;  // null when there is no config.json
  uint64_t total_bytes = 0;
  int64_t total_tensors = 0;
};

OrderedJson read_ordered_json(const fs::path& p) {
  // Ordered, so that the rewritten index and config keep the input's key order.
  try {
    return OrderedJson::parse(read_text_file(p.string()));
  } catch (const nlohmann::json::exception& e) {
    fail("'{}': invalid JSON: {}", p.string(), e.what());
  }
}

Source open_source(const ConvertOptions& opts) {
  Source s;
  s.dir = opts.in_dir;
  if (!fs::is_directory(s.dir)) fail("--in: '{}' does not exist or is not a directory", opts.in_dir);
  if (opts.out_dir.empty()) fail("--out: no output directory given");
  if (fs::exists(opts.out_dir) && fs::equivalent(opts.out_dir, s.dir))
    fail("--out: '{}' is the input directory; write the converted checkpoint somewhere else", opts.out_dir);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(s.dir))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  if (names.empty()) fail("--in: '{}' has no .safetensors files (is it a Hugging Face checkpoint directory?)", opts.in_dir);
  if (fs::exists(s.dir / kIndexName)) {
    s.index = read_ordered_json(s.dir / kIndexName);
    if (!s.index.is_object() || !s.index.contains("weight_map") || !s.index["weight_map"].is_object())
      fail("'{}': missing object field 'weight_map'", (s.dir / kIndexName).string());
  }
  if (fs::exists(s.dir / "config.json")) {
    s.config = read_ordered_json(s.dir / "config.json");
    if (!s.config.is_object()) fail("'{}': not a JSON object", (s.dir / "config.json").string());
    // The output keeps this config: one the loader would refuse is refused now, not after the copy.
    ModelConfig::from_json(nlohmann::json::parse(s.config.dump()), (s.dir / "config.json").string());
  }
  for (const auto& n : names) {
    s.shards.push_back(std::make_unique<SafetensorsFile>((s.dir / n).string()));
    for (const auto& t : s.shards.back()->tensors()) {
      auto [it, inserted] = s.by_name.emplace(t.name, &t);
      if (!inserted) fail("tensor '{}' appears in both '{}' and '{}'", t.name, *it->second->file, *t.file);
      s.total_bytes += t.nbytes;
      ++s.total_tensors;
    }
  }
  if (!s.index.is_null())
    for (const auto& [name, file] : s.index["weight_map"].items()) {
      const std::string listed = file.is_string() ? file.get<std::string>() : file.dump();
      const auto it = s.by_name.find(name);
      if (it == s.by_name.end())
        fail("'{}' lists tensor '{}' in '{}', but no shard has it", (s.dir / kIndexName).string(), name, listed);
      // The loader opens the shard the index names: an index that names another file (or one
      // that does not exist) would be copied into a checkpoint nothing can load.
      const std::string holder = fs::path(*it->second->file).filename().string();
      if (!file.is_string() || listed != holder)
        fail("'{}' lists tensor '{}' in '{}', but it is in '{}'", (s.dir / kIndexName).string(), name, listed, holder);
    }
  // Packed integer weights would be copied as they are under a new quantization_config that does
  // not describe them: refuse rather than write a checkpoint nothing can load.
  for (const auto& [name, t] : s.by_name)
    if (ends_with(name, ".weight_packed"))
      fail("--in '{}': tensor '{}' is a compressed-tensors packed weight; cast and quantize read FP8 or BF16 "
           "checkpoints (convert the original one instead)",
           opts.in_dir, name);
  return s;
}

// Copies the files that are not weights (tokenizer files, generation_config.json, ...).
std::vector<std::string> copy_side_files(const Source& s, const fs::path& out) {
  std::vector<std::string> copied;
  for (const auto& e : fs::directory_iterator(s.dir)) {
    const std::string n = e.path().filename().string();
    if (!e.is_regular_file() || e.path().extension() == ".safetensors" || n == kIndexName || n == "config.json") continue;
    std::error_code ec;
    fs::copy_file(e.path(), out / n, fs::copy_options::overwrite_existing, ec);
    if (ec) fail("cannot copy '{}' to '{}': {}", e.path().string(), (out / n).string(), ec.message());
    copied.push_back(n);
  }
  std::sort(copied.begin(), copied.end());
  return copied;
}

void for_rows(ThreadPool* pool, int64_t rows, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool && rows > 1)
    pool->parallel_for(rows, fn);
  else
    fn(0, rows);
}

// out [rows, cols] bf16 = round_nearest_even(e4m3(code) * scale of its block), the product in
// float32 (one rounding, as the official Triton kernel and our dequantize_fp8_blocks).
void fp8_to_bf16(const uint8_t* codes, const std::vector<float>& scale, int64_t rows, int64_t cols, uint16_t* out,
                 ThreadPool* pool) {
  const int64_t B = kFp8BlockSize, sc = (cols + B - 1) / B;
  const float* table = e4m3_table();
  for_rows(pool, rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* srow = scale.data() + (r / B) * sc;
      for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = f32_to_bf16(table[codes[r * cols + c]] * srow[c / B]);
    }
  });
}

std::vector<float> tensor_as_f32(const TensorInfo& t) {
  std::vector<float> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) {
    switch (t.dtype) {
      case DType::F32: std::memcpy(&v[i], t.data + 4 * i, 4); break;
      case DType::BF16: {
        uint16_t b;
        std::memcpy(&b, t.data + 2 * i, 2);
        v[i] = bf16_to_f32(b);
        break;
      }
      case DType::F16: {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        v[i] = f16_to_f32(h);
        break;
      }
      default: DSV3_CHECK(false, "tensor_as_f32: unsupported dtype");
    }
  }
  return v;
}

// What one output shard holds until it is written: the tensors, and the bytes of those we made.
struct OutShard {
  std::vector<TensorToWrite> tensors;
  std::vector<std::vector<uint8_t>> storage;

  std::span<const uint8_t> keep(std::vector<uint8_t> bytes) {
    storage.push_back(std::move(bytes));
    return storage.back();
  }
  void copy(const TensorInfo& t) { tensors.push_back({t.name, t.dtype, t.shape, {t.data, size_t(t.nbytes)}}); }
};

// Rewrites every shard under its own name, one tensor at a time through `convert_tensor`
// (which appends what it writes to the shard), reporting progress after each tensor: one shard
// in memory at a time, so a 671B checkpoint never needs its own size in RAM.
void rewrite_shards(const Source& s, const ConvertOptions& opts, const fs::path& out,
                    const std::map<std::string, std::string>& metadata, ConvertReport& report,
                    const std::function<void(const TensorInfo&, OutShard&)>& convert_tensor) {
  ConvertProgress p{.n_shards = int(s.shards.size()), .file = {}, .bytes_total = s.total_bytes, .tensors_total = s.total_tensors};
  for (size_t is = 0; is < s.shards.size(); ++is) {
    const SafetensorsFile& shard = *s.shards[is];
    p.shard = int(is);
    p.file = fs::path(shard.path()).filename().string();
    OutShard o;
    for (const TensorInfo& t : shard.tensors()) {
      convert_tensor(t, o);
      p.bytes_done += t.nbytes;
      ++p.tensors_done;
      if (opts.progress) opts.progress(p);
    }
    report.n_tensors_written += int64_t(o.tensors.size());
    report.bytes_written += write_safetensors((out / p.file).string(), std::move(o.tensors), metadata);
    if (opts.progress) opts.progress(p);
  }
}

void write_index(const fs::path& out, const OrderedJson& metadata, const OrderedJson& weight_map) {
  OrderedJson index = {{"metadata", metadata}, {"weight_map", weight_map}};
  write_text_file((out / kIndexName).string(), index.dump(2));
}

void check_block_size(const Source& s) {
  if (s.config.is_null() || !s.config.contains("quantization_config")) return;
  const auto& q = s.config["quantization_config"];
  if (q.is_object() && q.contains("weight_block_size") && q["weight_block_size"] != OrderedJson::array({kFp8BlockSize, kFp8BlockSize}))
    fail("config.json: quantization_config.weight_block_size is {}; only [128, 128] (DeepSeek's) is supported",
         q["weight_block_size"].dump());
}

}  // namespace

bool is_fp8_linear_name(const std::string& name) {
  if (ends_with(name, "eh_proj.weight")) return false;  // MTP's projection stays BF16 in DeepSeek's release
  return ends_with(name, "_proj.weight") || ends_with(name, "kv_a_proj_with_mqa.weight");
}

ConvertReport cast_fp8_to_bf16(const ConvertOptions& opts) {
  const Source s = open_source(opts);
  check_block_size(s);
  const fs::path out(opts.out_dir);
  fs::create_directories(out);
  ConvertReport report;
  std::vector<std::string> converted;
  // The official script saves without metadata.
  rewrite_shards(s, opts, out, {}, report, [&](const TensorInfo& t, OutShard& o) {
      if (ends_with(t.name, "_scale_inv")) {
        // dropped
      } else if (dtype_size(t.dtype) == 1) {
        const auto it = s.by_name.find(t.name + "_scale_inv");
        if (it == s.by_name.end()) {
          report.warnings.push_back(fmt::format("'{}' is 1-byte ({}) but has no scale_inv tensor; copied unconverted",
                                                t.name, dtype_name(t.dtype)));
          o.copy(t);
        } else {
          const TensorInfo& sc = *it->second;
          if (t.dtype != DType::F8_E4M3 || sc.dtype != DType::F32)
            fail("'{}': tensor '{}' is {} with {} scales; only F8_E4M3 with F32 scales can be cast", *t.file, t.name,
                 dtype_name(t.dtype), dtype_name(sc.dtype));
          if (t.shape.size() != 2) fail("'{}': FP8 tensor '{}' has {} dimensions; expected 2", *t.file, t.name, t.shape.size());
          const int64_t rows = t.shape[0], cols = t.shape[1], B = kFp8BlockSize;
          const std::vector<int64_t> want{(rows + B - 1) / B, (cols + B - 1) / B};
          if (sc.shape != want)
            fail("'{}': '{}' has shape [{}]; expected [{}, {}] for weight [{}, {}] in 128x128 blocks", *sc.file, sc.name,
                 fmt::join(sc.shape, ", "), want[0], want[1], rows, cols);
          const std::vector<float> scale = tensor_as_f32(sc);
          std::vector<uint8_t> bytes(size_t(rows * cols * 2));
          fp8_to_bf16(t.data, scale, rows, cols, reinterpret_cast<uint16_t*>(bytes.data()), opts.pool);
          o.tensors.push_back({t.name, DType::BF16, t.shape, o.keep(std::move(bytes))});
          converted.push_back(t.name);
        }
      } else {
        o.copy(t);
      }
  });
  report.n_converted = int64_t(converted.size());

  if (!s.index.is_null()) {
    OrderedJson weight_map = s.index["weight_map"];
    for (const auto& name : converted) weight_map.erase(name + "_scale_inv");
    write_index(out, OrderedJson::object(), weight_map);
  }
  if (!s.config.is_null()) {
    OrderedJson config = s.config;
    config.erase("quantization_config");
    write_text_file((out / "config.json").string(), config.dump(2) + "\n");
  }
  report.copied = copy_side_files(s, out);
  return report;
}

ConvertReport quantize_bf16_to_fp8(const ConvertOptions& opts) {
  const Source s = open_source(opts);
  const fs::path out(opts.out_dir);
  fs::create_directories(out);
  ConvertReport report;
  std::vector<std::string> converted;
  rewrite_shards(s, opts, out, {{"format", "pt"}}, report, [&](const TensorInfo& t, OutShard& o) {
      if (t.dtype == DType::F8_E4M3 || ends_with(t.name, "_scale_inv"))
        fail("'{}': tensor '{}' is already FP8 (or its scale); quantize takes a BF16/F16/F32 checkpoint", *t.file,
             t.name);
      const bool floaty = t.dtype == DType::BF16 || t.dtype == DType::F16 || t.dtype == DType::F32;
      if (is_fp8_linear_name(t.name) && floaty && t.shape.size() == 2) {
        const int64_t rows = t.shape[0], cols = t.shape[1], B = kFp8BlockSize, sr = (rows + B - 1) / B,
                      sc = (cols + B - 1) / B;
        const std::vector<float> w = tensor_as_f32(t);
        std::vector<uint8_t> codes(size_t(rows * cols));
        std::vector<uint8_t> scale(size_t(sr * sc * 4));
        // Blocks never straddle a 128-row band, so bands quantise independently.
        for_rows(opts.pool, sr, [&](int64_t b0, int64_t b1) {
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t r0 = b * B, n = std::min(B, rows - r0);
            const Fp8Block q = quantize_fp8_blocks(std::span(w).subspan(size_t(r0 * cols), size_t(n * cols)), n, cols);
            std::memcpy(codes.data() + r0 * cols, q.codes.data(), q.codes.size());
            std::memcpy(scale.data() + b * sc * 4, q.scale_inv.data(), q.scale_inv.size() * 4);
          }
        });
        o.tensors.push_back({t.name, DType::F8_E4M3, t.shape, o.keep(std::move(codes))});
        o.tensors.push_back({t.name + "_scale_inv", DType::F32, {sr, sc}, o.keep(std::move(scale))});
        converted.push_back(t.name);
      } else {
        o.copy(t);
      }
  });
  report.n_converted = int64_t(converted.size());

  if (!s.index.is_null()) {
    const std::unordered_map<std::string, bool> is_converted = [&] {
      std::unordered_map<std::string, bool> m;
      for (const auto& n : converted) m[n] = true;
      return m;
    }();
    OrderedJson weight_map = OrderedJson::object();
    for (const auto& [name, file] : s.index["weight_map"].items()) {
      weight_map[name] = file;
      if (is_converted.count(name)) weight_map[name + "_scale_inv"] = file;
    }
    write_index(out, {{"total_size", report.bytes_written}}, weight_map);
  }
  if (!s.config.is_null()) {
    OrderedJson config = s.config;
    config["quantization_config"] = fp8_quantization_config();
    write_text_file((out / "config.json").string(), config.dump(2) + "\n");
  }
  report.copied = copy_side_files(s, out);
  return report;
}

bool is_packed_target(const std::string& name, bool all_linear) {
  if (!all_linear) return name.find(".mlp.experts.") != std::string::npos && ends_with(name, "_proj.weight");
  if (ends_with(name, "kv_b_proj.weight")) return false;
  return ends_with(name, "_proj.weight") || ends_with(name, "kv_a_proj_with_mqa.weight");
}

namespace {

// Kimi-K2-Thinking's quantization_config with our bits, group size and ignore list.
OrderedJson packed_quantization_config(const PackedOptions& p, bool has_mtp) {
  OrderedJson weights = {{"actorder", nullptr},  {"block_structure", nullptr}, {"dynamic", false},
                         {"group_size", p.group_size}, {"num_bits", p.bits}, {"observer", "minmax"},
                         {"observer_kwargs", OrderedJson::object()}, {"strategy", "group"},
                         {"symmetric", true},     {"type", "int"}};
  OrderedJson ignore = p.all_linear ? OrderedJson{"lm_head", "re:.*kv_b_proj.*", "re:.*shared_head.*"}
                                    : OrderedJson{"lm_head", "re:.*self_attn.*", "re:.*shared_experts.*",
                                                  "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"};
  // The MTP layer's own Linears stay BF16 (Kimi-K2-Thinking has none: its list ends above).
  if (has_mtp && !p.all_linear) ignore.insert(ignore.end(), {"re:.*eh_proj.*", "re:.*shared_head.*"});
  return {{"config_groups",
           {{"group_0",
             {{"input_activations", nullptr}, {"output_activations", nullptr}, {"targets", {"Linear"}}, {"weights", weights}}}}},
          {"format", "pack-quantized"},
          {"ignore", ignore},
          {"kv_cache_scheme", nullptr},
          {"quant_method", "compressed-tensors"},
          {"quantization_status", "compressed"}};
}

// The BF16 values of weight t: BF16 as stored, FP8 dequantised exactly and rounded (as `cast`),
// F16/F32 rounded.
std::vector<uint16_t> weight_as_bf16(const Source& s, const TensorInfo& t, ThreadPool* pool) {
  const int64_t rows = t.shape[0], cols = t.shape[1];
  std::vector<uint16_t> out(size_t(rows * cols));
  if (t.dtype == DType::BF16) {
    std::memcpy(out.data(), t.data, out.size() * 2);
  } else if (t.dtype == DType::F8_E4M3) {
    const auto it = s.by_name.find(t.name + "_scale_inv");
    if (it == s.by_name.end()) fail("'{}': FP8 tensor '{}' has no '{}_scale_inv'", *t.file, t.name, t.name);
    const TensorInfo& sc = *it->second;
    const int64_t B = kFp8BlockSize;
    const std::vector<int64_t> want{(rows + B - 1) / B, (cols + B - 1) / B};
    if (sc.dtype != DType::F32 || sc.shape != want)
      fail("'{}': '{}' is {} [{}]; expected F32 [{}, {}] for weight [{}, {}] in 128x128 blocks", *sc.file, sc.name,
           dtype_name(sc.dtype), fmt::join(sc.shape, ", "), want[0], want[1], rows, cols);
    fp8_to_bf16(t.data, tensor_as_f32(sc), rows, cols, out.data(), pool);
  } else if (t.dtype == DType::F32 || t.dtype == DType::F16) {
    const std::vector<float> v = tensor_as_f32(t);
    for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  } else {
    fail("'{}': tensor '{}' has dtype {}; quantize --to int4 reads FP8, BF16, F16 or F32 weights", *t.file, t.name,
         dtype_name(t.dtype));
  }
  return out;
}

}  // namespace

ConvertReport quantize_to_packed(const ConvertOptions& opts, const PackedOptions& packed) {
  if (packed.bits != 4 && packed.bits != 8) fail("--to: {} bits; dsv3 writes 4- or 8-bit integers", packed.bits);
  if (packed.group_size <= 0) fail("--group-size: {}; expected a positive number of columns", packed.group_size);
  const Source s = open_source(opts);
  check_block_size(s);
  const fs::path out(opts.out_dir);
  fs::create_directories(out);
  ConvertReport report;
  OrderedJson weight_map = OrderedJson::object();
  rewrite_shards(s, opts, out, {{"format", "pt"}}, report, [&](const TensorInfo& t, OutShard& o) {
    const std::string file = fs::path(*t.file).filename().string();
    const size_t before = o.tensors.size();
    const bool fp8 = t.dtype == DType::F8_E4M3;
    if (ends_with(t.name, "_scale_inv")) {
      const std::string w = t.name.substr(0, t.name.size() - std::string("_scale_inv").size());
      const auto it = s.by_name.find(w);
      const bool weight_is_fp8 = it != s.by_name.end() && it->second->dtype == DType::F8_E4M3;
      const bool weight_kept = weight_is_fp8 && packed.keep_fp8 && !(it->second->shape.size() == 2 && is_packed_target(w, packed.all_linear));
      if (!weight_is_fp8 || weight_kept) o.copy(t);
    } else if (t.shape.size() == 2 && is_packed_target(t.name, packed.all_linear)) {
      const int64_t rows = t.shape[0], cols = t.shape[1];
      if (cols % packed.group_size != 0)
        fail("'{}': tensor '{}' has {} columns; --group-size {} must divide them (compressed-tensors' group "
             "strategy)",
             *t.file, t.name, cols, packed.group_size);
      const std::vector<uint16_t> w = weight_as_bf16(s, t, opts.pool);
      const int64_t words = (cols * packed.bits + 31) / 32, groups = cols / packed.group_size;
      std::vector<uint8_t> pk(size_t(rows * words * 4)), sc(size_t(rows * groups * 2));
      for_rows(opts.pool, rows, [&](int64_t r0, int64_t r1) {
        const PackedQuantized q = quantize_packed(std::span(w).subspan(size_t(r0 * cols), size_t((r1 - r0) * cols)),
                                                  r1 - r0, cols, packed.bits, packed.group_size);
        std::memcpy(pk.data() + r0 * words * 4, q.packed.data(), q.packed.size() * 4);
        std::memcpy(sc.data() + r0 * groups * 2, q.scale.data(), q.scale.size() * 2);
      });
      std::vector<uint8_t> shape(16);
      std::memcpy(shape.data(), &rows, 8);
      std::memcpy(shape.data() + 8, &cols, 8);
      const std::string base = t.name.substr(0, t.name.size() - std::string(".weight").size());
      o.tensors.push_back({base + ".weight_packed", DType::I32, {rows, words}, o.keep(std::move(pk))});
      o.tensors.push_back({base + ".weight_scale", DType::BF16, {rows, groups}, o.keep(std::move(sc))});
      o.tensors.push_back({base + ".weight_shape", DType::I64, {2}, o.keep(std::move(shape))});
      ++report.n_converted;
    } else if (fp8 && s.by_name.count(t.name + "_scale_inv") && !packed.keep_fp8) {
      o.tensors.push_back({t.name, DType::BF16, t.shape, o.keep([&] {
                             std::vector<uint8_t> b(size_t(t.numel() * 2));
                             const std::vector<uint16_t> v = weight_as_bf16(s, t, opts.pool);
                             std::memcpy(b.data(), v.data(), b.size());
                             return b;
                           }())});
    } else {
      o.copy(t);
    }
    for (size_t i = before; i < o.tensors.size(); ++i) weight_map[o.tensors[i].name] = file;
  });
  if (report.n_converted == 0)
    report.warnings.push_back(fmt::format("no tensor of '{}' was a {} target; nothing was packed", opts.in_dir,
                                          packed.all_linear ? "Linear" : "routed-expert"));
  write_index(out, {{"total_size", report.bytes_written}}, weight_map);
  if (!s.config.is_null()) {
    OrderedJson config = s.config;
    const bool has_mtp = s.config.contains("num_nextn_predict_layers") && s.config["num_nextn_predict_layers"].is_number() &&
                         s.config["num_nextn_predict_layers"].get<double>() > 0;
    config["quantization_config"] = packed_quantization_config(packed, has_mtp);
    write_text_file((out / "config.json").string(), config.dump(2) + "\n");
  }
  report.copied = copy_side_files(s, out);
  return report;
}

}  // namespace dsv3
