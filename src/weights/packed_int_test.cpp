// Packed integer weights against compressed-tensors' own functions: tests/data/int4/ holds what
// the library's pack_to_int32 / unpack_from_int32 / calculate_qparams / _quantize / _dequantize
// returned (tests/data/int4/README.md has the command), and these tests compare ours bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>

#include "io/safetensors.h"
#include "weights/packed_int.h"
#include "weights/packed_quantize.h"
#include "weights/weight.h"

namespace dsv3 {
namespace {

const char* kOracle = "tests/data/int4/compressed_tensors_oracle.safetensors";

struct Oracle {
  SafetensorsFile file{kOracle};
  const TensorInfo& at(const std::string& name) const {
    const TensorInfo* t = file.find(name);
    if (!t) throw std::runtime_error("oracle tensor missing: " + name);
    return *t;
  }
  template <class T>
  std::vector<T> values(const std::string& name) const {
    const TensorInfo& t = at(name);
    std::vector<T> v(t.nbytes / sizeof(T));
    std::memcpy(v.data(), t.data, t.nbytes);
    return v;
  }
  // Test cases: the distinct prefixes "kind.params.RxC" of tensors named prefix + suffix.
  std::vector<std::string> cases(const std::string& kind, const std::string& suffix) const {
    std::vector<std::string> out;
    for (const auto& t : file.tensors())
      if (t.name.rfind(kind, 0) == 0 && t.name.size() > suffix.size() &&
          t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0)
        out.push_back(t.name.substr(0, t.name.size() - suffix.size()));
    return out;
  }
};

TEST(PackedInt, UnpackingEqualsTheLibrarysOnEveryCodeAndWidth) {
  const Oracle o;
  int n_cases = 0;
  for (const std::string bits_s : {"4", "8"}) {
    const int bits = std::stoi(bits_s);
    for (const auto& key : o.cases("unpack" + bits_s + ".", ".packed")) {
      const TensorInfo& codes_t = o.at(key + ".codes");
      const int64_t rows = codes_t.shape[0], cols = codes_t.shape[1];
      const auto packed = o.values<int32_t>(key + ".packed");
      const auto codes = o.values<int8_t>(key + ".codes");
      const int64_t words = (cols * bits + 31) / 32;
      ASSERT_EQ(o.at(key + ".packed").shape, (std::vector<int64_t>{rows, words})) << key;
      std::vector<int> seen(256, 0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const int got = packed_code(packed.data() + r * words, bits, c);
          ASSERT_EQ(got, codes[size_t(r * cols + c)]) << key << " row " << r << " col " << c;
          ++seen[size_t(got + 128)];
        }
      if (rows * cols >= (1 << bits))  // the oracle puts every code first where it fits
        for (int v = -(1 << (bits - 1)); v < (1 << (bits - 1)); ++v) EXPECT_GT(seen[size_t(v + 128)], 0) << key << " code " << v;
      ++n_cases;
    }
  }
  EXPECT_EQ(n_cases, 10);
}

// Our quantiser gives the library's scales and packed words bit for bit, and our exact
// dequantisation (weight_at: code * scale in f32) the library's _dequantize with f32 scales; the
// library's own decompression (BF16 scales) is that value rounded to BF16.
TEST(PackedInt, QuantisingEqualsTheLibrarysBitForBit) {
  const Oracle o;
  int n_cases = 0;
  for (const auto& key : o.cases("quant", ".weight_packed")) {
    const int bits = key[5] - '0';
    const int64_t gs = std::stoll(key.substr(key.find(".g") + 2));
    const TensorInfo& wt = o.at(key + ".weight");
    const int64_t rows = wt.shape[0], cols = wt.shape[1];
    const auto w = o.values<uint16_t>(key + ".weight");
    const PackedQuantized q = quantize_packed(w, rows, cols, bits, gs);
    EXPECT_EQ(q.scale, o.values<uint16_t>(key + ".weight_scale")) << key;
    EXPECT_EQ(q.packed, o.values<int32_t>(key + ".weight_packed")) << key;

    Weight pw;
    pw.dtype = DType::I32;
    pw.rows = rows, pw.cols = cols, pw.bits = bits, pw.group_size = gs;
    pw.data = q.packed.data();
    pw.weight_scale = q.scale.data();
    const auto deq = o.values<float>(key + ".deq_f32");
    const auto deq_bf16 = o.values<uint16_t>(key + ".deq_bf16");
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float v = weight_at(pw, r, c);
        ASSERT_EQ(f32_to_bits(v), f32_to_bits(deq[size_t(r * cols + c)])) << key << " " << r << "," << c;
        ASSERT_EQ(f32_to_bf16(v), deq_bf16[size_t(r * cols + c)]) << key << " " << r << "," << c;
      }
    ++n_cases;
  }
  EXPECT_EQ(n_cases, 5);
}

}  // namespace
}  // namespace dsv3
