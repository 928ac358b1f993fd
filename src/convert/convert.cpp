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
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "weights/fp8_block.h"

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
    for (const auto& [name, file] : s.index["weight_map"].items())
      if (!s.by_name.count(name))
        fail("'{}' lists tensor '{}' in '{}', but no shard has it", (s.dir / kIndexName).string(), name,
             file.is_string() ? file.get<std::string>() : file.dump());
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

}  // namespace dsv3
