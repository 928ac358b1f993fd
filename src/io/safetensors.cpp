#include "io/safetensors.h"

#include <algorithm>

#include "base/error.h"
#include "io/json_file.h"

namespace dsv3 {

namespace {

// A header this large is not a checkpoint shard (the real V3 shards have headers < 1 MiB).
constexpr uint64_t kMaxHeaderBytes = uint64_t(256) << 20;

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

TensorInfo parse_entry(const std::string& name, const nlohmann::json& e, uint64_t data_size) {
  TensorInfo t;
  t.name = name;
  if (!e.is_object()) fail("tensor '{}': header entry is not an object", name);
  const auto dt = e.find("dtype");
  if (dt == e.end() || !dt->is_string()) fail("tensor '{}': missing string field 'dtype'", name);
  const auto dtype = dtype_from_name(dt->get<std::string>());
  if (!dtype) fail("tensor '{}': unsupported dtype '{}'", name, dt->get<std::string>());
  t.dtype = *dtype;
  const auto sh = e.find("shape");
  if (sh == e.end() || !sh->is_array()) fail("tensor '{}': missing array field 'shape'", name);
  uint64_t numel = 1;
  for (const auto& d : *sh) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0)
      fail("tensor '{}': shape {} has an entry that is not a non-negative integer", name, sh->dump());
    const auto v = d.get<uint64_t>();
    if (v != 0 && numel > (uint64_t(1) << 62) / v) fail("tensor '{}': shape {} is too large", name, sh->dump());
    numel *= v;
    t.shape.push_back(int64_t(v));
  }
  const auto off = e.find("data_offsets");
  if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    fail("tensor '{}': 'data_offsets' must be two non-negative integers", name);
  const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
  if (begin > end) fail("tensor '{}': data_offsets [{}, {}] run backwards", name, begin, end);
  if (end > data_size)
    fail("tensor '{}': data_offsets [{}, {}] run past the end of the data ({} bytes; is the file truncated?)", name,
         begin, end, data_size);
  // numel <= 2^62 but times the element size it can still wrap past 2^64 (shape [2^62] of F32
  // would claim 0 bytes and then be read far past the mapping).
  uint64_t expected = 0;
  if (__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &expected))
    fail("tensor '{}': shape {} of {} holds more than 2^64 bytes", name, sh->dump(), dtype_name(t.dtype));
  if (end - begin != expected)
    fail("tensor '{}': data_offsets [{}, {}] hold {} bytes; shape {} of {} needs {}", name, begin, end, end - begin,
         sh->dump(), dtype_name(t.dtype), expected);
  t.nbytes = expected;
  t.data = reinterpret_cast<const uint8_t*>(begin);  // rebased by the caller
  return t;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  with_context(path, [&] {
    const uint64_t size = file_.size();
    if (size < 8) fail("truncated: {} bytes, shorter than the 8-byte header length", size);
    const uint64_t header_len = read_u64_le(file_.data());
    if (header_len > size - 8)
      fail("header length {} runs past the end of the file ({} bytes; truncated or not safetensors?)", header_len,
           size);
    if (header_len > kMaxHeaderBytes) fail("header length {} is implausibly large", header_len);
    const std::string_view text(reinterpret_cast<const char*>(file_.data() + 8), header_len);
    // A tensor described twice would be silently replaced by its second description.
    const nlohmann::json header = parse_json(text, "safetensors header", {.reject_duplicate_keys = true});
    if (!header.is_object()) fail("safetensors header is not a JSON object");
    const uint8_t* base = file_.data() + 8 + header_len;
    const uint64_t data_size = size - 8 - header_len;
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        if (!entry.is_object()) fail("'__metadata__' is not an object");
        for (const auto& [k, v] : entry.items())
          metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();
        continue;
      }
      TensorInfo t = parse_entry(name, entry, data_size);
      t.data = base + reinterpret_cast<uint64_t>(t.data);
      t.file = &file_.path();
      tensors_.push_back(std::move(t));
    }
    // Overlapping data would let two tensors alias: reject it (zero-sized tensors never overlap).
    std::vector<const TensorInfo*> by_offset;
    for (const auto& t : tensors_)
      if (t.nbytes) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->data < b->data; });
    for (size_t i = 1; i < by_offset.size(); ++i)
      if (by_offset[i]->data < by_offset[i - 1]->data + by_offset[i - 1]->nbytes)
        fail("tensors '{}' and '{}' have overlapping data_offsets", by_offset[i - 1]->name, by_offset[i]->name);
    std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  });
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, const std::string& n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

}  // namespace dsv3
