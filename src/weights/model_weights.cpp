#include "weights/model_weights.h"

#include <cmath>
#include <cstring>
#include <set>

#include "base/error.h"
#include "io/compressed_tensors_config.h"
#include "weights/packed_int.h"
#include "weights/weight_table.h"

namespace dsv3 {

uint64_t Weight::data_bytes() const {
  if (packed()) return uint64_t(rows) * uint64_t(packed_cols()) * 4;
  return uint64_t(rows) * uint64_t(cols) * uint64_t(dtype_size(dtype));
}

uint64_t Weight::bytes() const {
  uint64_t n = data_bytes();
  if (packed()) n += uint64_t(rows) * uint64_t(n_groups()) * 2;
  if (scale_inv) n += uint64_t((rows + kFp8BlockSize - 1) / kFp8BlockSize) * uint64_t(scale_cols()) * 4;
  return n;
}

float weight_at(const Weight& w, int64_t r, int64_t c) {
  if (w.packed()) {
    const auto* row = static_cast<const int32_t*>(w.data) + r * w.packed_cols();
    return float(packed_code(row, w.bits, c)) * bf16_to_f32(w.weight_scale[r * w.n_groups() + c / w.group_size]);
  }
  const int64_t i = r * w.cols + c;
  switch (w.dtype) {
    case DType::F32: return static_cast<const float*>(w.data)[i];
    case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case DType::F8_E4M3: {
      const float s = w.scale_inv[(r / kFp8BlockSize) * w.scale_cols() + c / kFp8BlockSize];
      return e4m3_to_f32(static_cast<const uint8_t*>(w.data)[i]) * s;
    }
    default: DSV3_CHECK(false, "weight_at: unsupported dtype");
  }
  return 0.0f;
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

class Binder {
 public:
  Binder(const Checkpoint& ckpt, ModelWeights& mw, std::vector<std::string>* problems,
         const CompressedTensorsConfig* packed_config)
      : ckpt_(ckpt), mw_(mw), problems_(problems), packed_config_(packed_config) {}

  Weight bind(const WeightSpec& spec) {
    if (!problems_) return bind_or_throw(spec);
    try {
      return bind_or_throw(spec);
    } catch (const Error& e) {
      problems_->push_back(e.what());
      return Weight{};
    }
  }

  Weight bind_or_throw(const WeightSpec& spec) {
    const TensorInfo* t = ckpt_.find(spec.name);
    // compressed-tensors replaces W.weight by W.weight_packed, W.weight_scale and W.weight_shape.
    if (!t && spec.role == WeightRole::Linear)
      if (const TensorInfo* p = ckpt_.find(spec.name + "_packed")) return bind_packed(spec, *p);
    if (!t) fail("{}: tensor '{}' is missing (expected shape {})", ckpt_.dir(), spec.name, shape_str(spec.shape));
    used_.insert(spec.name);
    const std::string where = fmt::format("{}: tensor '{}'", *t->file, spec.name);
    if (t->shape != spec.shape)
      fail("{} has shape {}; the config implies {}", where, shape_str(t->shape), shape_str(spec.shape));
    Weight w;
    w.name = spec.name;
    w.dtype = t->dtype;
    w.rows = spec.shape.size() == 2 ? spec.shape[0] : 1;
    w.cols = spec.shape.back();
    w.data = aligned(*t);
    const bool float_dtype = t->dtype == DType::BF16 || t->dtype == DType::F16 || t->dtype == DType::F32;
    const std::string scale_name = spec.name + "_scale_inv";
    const TensorInfo* s = ckpt_.find(scale_name);
    if (spec.role == WeightRole::Linear) {
      if (t->dtype == DType::F8_E4M3) {
        if (!s) fail("{} is F8_E4M3 but '{}' is missing (FP8 weights need their 128x128 block scales)", where, scale_name);
        used_.insert(scale_name);
        const std::vector<int64_t> want{(w.rows + kFp8BlockSize - 1) / kFp8BlockSize, w.scale_cols()};
        if (s->dtype != DType::F32)
          fail("{}: tensor '{}' has dtype {}; block scales must be F32", *s->file, scale_name, dtype_name(s->dtype));
        if (s->shape != want)
          fail("{}: tensor '{}' has shape {}; expected {} for weight {} in 128x128 blocks", *s->file, scale_name,
               shape_str(s->shape), shape_str(want), shape_str(spec.shape));
        w.scale_inv = static_cast<const float*>(aligned(*s));
        // A NaN or infinite scale turns every output of the model into NaN (greedy decoding then
        // repeats token 0) with no error; a few KB per weight, read once here.
        for (int64_t i = 0, n = want[0] * want[1]; i < n; ++i)
          if (!std::isfinite(w.scale_inv[i]))
            fail("{}: tensor '{}' holds {} at block [{}, {}]; block scales must be finite", *s->file, scale_name,
                 w.scale_inv[i], i / want[1], i % want[1]);
      } else if (!float_dtype) {
        fail("{} has dtype {}; expected F8_E4M3, BF16, F16 or F32", where, dtype_name(t->dtype));
      } else if (s) {
        fail("{} is {} but has a '{}'; only F8_E4M3 weights take block scales", where, dtype_name(t->dtype),
             scale_name);
      }
    } else if (!float_dtype) {
      fail("{} has dtype {}; expected BF16, F16 or F32", where, dtype_name(t->dtype));
    }
    mw_.bytes_by_dtype[int(w.dtype)] += uint64_t(t->nbytes);
    if (w.scale_inv) mw_.bytes_by_dtype[int(DType::F32)] += uint64_t(s->nbytes);
    return w;
  }

  // A compressed-tensors pack-quantized weight: its bits and group size come from the config group
  // that quantises the module; every tensor's dtype and shape is checked against them.
  Weight bind_packed(const WeightSpec& spec, const TensorInfo& p) {
    const std::string module = spec.name.substr(0, spec.name.size() - std::string(".weight").size());
    const std::string where = fmt::format("{}: tensor '{}'", *p.file, p.name);
    used_.insert(p.name);
    const PackedScheme* scheme = packed_config_ ? packed_config_->scheme_for(module, true) : nullptr;
    if (!scheme)
      fail("{} is packed, but config.json's quantization_config {} '{}'", where,
           packed_config_ ? "quantises no such module (its targets miss, or its ignore list matches)"
                          : "is not compressed-tensors pack-quantized, which is needed to read",
           module);
    if (p.dtype != DType::I32) fail("{} has dtype {}; packed weights are I32", where, dtype_name(p.dtype));
    if (module.size() >= 9 && module.compare(module.size() - 9, 9, "kv_b_proj") == 0)
      fail("{}: dsv3 reads kv_b_proj in BF16/F16/F32 or FP8 only (MLA folds it per head; Kimi-K2-Thinking leaves "
           "self_attn unquantised)",
           where);
    const std::string shape_name = spec.name + "_shape", scale_name = spec.name + "_scale";
    const TensorInfo* sh = ckpt_.find(shape_name);
    if (!sh) fail("{}: tensor '{}' is missing; packed weight '{}' needs it for its [rows, cols]", ckpt_.dir(), shape_name, p.name);
    used_.insert(shape_name);
    if ((sh->dtype != DType::I64 && sh->dtype != DType::I32) || sh->shape != std::vector<int64_t>{2})
      fail("{}: tensor '{}' is {} {}; expected I64 (or I32) [2]", *sh->file, shape_name, dtype_name(sh->dtype), shape_str(sh->shape));
    std::vector<int64_t> stored(2);
    for (int i = 0; i < 2; ++i) {
      if (sh->dtype == DType::I64) {
        std::memcpy(&stored[size_t(i)], sh->data + 8 * i, 8);
      } else {
        int32_t v;
        std::memcpy(&v, sh->data + 4 * i, 4);
        stored[size_t(i)] = v;
      }
    }
    if (stored != spec.shape)
      fail("{}: tensor '{}' says {}; the config implies {} for '{}'", *sh->file, shape_name, shape_str(stored),
           shape_str(spec.shape), spec.name);
    Weight w;
    w.name = spec.name;
    w.dtype = DType::I32;
    w.rows = spec.shape[0];
    w.cols = spec.shape[1];
    w.bits = scheme->num_bits;
    w.group_size = scheme->group_size > 0 ? scheme->group_size : w.cols;
    const std::vector<int64_t> want_packed{w.rows, w.packed_cols()};
    if (p.shape != want_packed)
      fail("{} has shape {}; expected {} for {}-bit codes of a {} weight", where, shape_str(p.shape),
           shape_str(want_packed), w.bits, shape_str(spec.shape));
    const TensorInfo* s = ckpt_.find(scale_name);
    if (!s)
      fail("{}: tensor '{}' is missing; packed weight '{}' needs its scales ({} of config group '{}')", ckpt_.dir(),
           scale_name, p.name, scheme->group_size > 0 ? fmt::format("one per {} columns", scheme->group_size) : "one per row",
           scheme->group_name);
    used_.insert(scale_name);
    const std::vector<int64_t> want_scale{w.rows, w.n_groups()};
    if (s->dtype != DType::BF16) fail("{}: tensor '{}' has dtype {}; dsv3 reads BF16 scales", *s->file, scale_name, dtype_name(s->dtype));
    if (s->shape != want_scale)
      fail("{}: tensor '{}' has shape {}; expected {} ({}) for weight {}", *s->file, scale_name, shape_str(s->shape),
           shape_str(want_scale),
           scheme->group_size > 0 ? fmt::format("group_size {} of config group '{}'", scheme->group_size, scheme->group_name)
                                  : "strategy channel",
           shape_str(spec.shape));
    w.data = aligned(p);
    w.weight_scale = static_cast<const uint16_t*>(aligned(*s));
    mw_.bytes_by_dtype[int(DType::I32)] += p.nbytes;
    mw_.bytes_by_dtype[int(DType::BF16)] += s->nbytes;
    return w;
  }

  bool has_any_with_prefix(const std::string& prefix) const {
    for (const auto* t : ckpt_.tensors())
      if (t->name.compare(0, prefix.size(), prefix) == 0) return true;
    return false;
  }

  void collect_extra() {
    for (const auto* t : ckpt_.tensors())
      if (!used_.count(t->name)) mw_.extra.push_back(t->name);
    mw_.bound = used_;
  }

 private:
  // Kernels read elements through typed pointers: copy the rare tensor whose data offset is
  // not a multiple of its element size.
  const void* aligned(const TensorInfo& t) {
    const size_t align = size_t(dtype_size(t.dtype));
    if (reinterpret_cast<uintptr_t>(t.data) % align == 0) return t.data;
    auto copy = std::make_unique<uint8_t[]>(t.nbytes);
    std::memcpy(copy.get(), t.data, t.nbytes);
    mw_.owned.push_back(std::move(copy));
    return mw_.owned.back().get();
  }

  const Checkpoint& ckpt_;
  ModelWeights& mw_;
  std::vector<std::string>* problems_;
  const CompressedTensorsConfig* packed_config_;
  std::set<std::string> used_;
};

MlpWeights bind_mlp(Binder& b, std::vector<WeightSpec>::const_iterator& it) {
  MlpWeights m;
  m.gate_proj = b.bind(*it++);
  m.up_proj = b.bind(*it++);
  m.down_proj = b.bind(*it++);
  return m;
}

// Binds in the order layer_weight_specs lists them.
LayerWeights bind_layer(Binder& b, const ModelConfig& c, int64_t il) {
  const auto specs = layer_weight_specs(c, il);
  auto it = specs.cbegin();
  LayerWeights l;
  l.input_layernorm = b.bind(*it++);
  l.post_attention_layernorm = b.bind(*it++);
  AttentionWeights& a = l.self_attn;
  if (c.q_lora_rank > 0) {
    a.q_a_proj = b.bind(*it++);
    a.q_a_layernorm = b.bind(*it++);
    a.q_b_proj = b.bind(*it++);
  } else {
    a.q_proj = b.bind(*it++);
  }
  a.kv_a_proj_with_mqa = b.bind(*it++);
  a.kv_a_layernorm = b.bind(*it++);
  a.kv_b_proj = b.bind(*it++);
  a.o_proj = b.bind(*it++);
  l.is_moe = c.is_moe_layer(il);
  if (l.is_moe) {
    l.moe.gate = b.bind(*it++);
    if (c.topk_method == TopkMethod::NoauxTc) l.moe.e_score_correction_bias = b.bind(*it++);
    for (int64_t e = 0; e < c.n_routed_experts; ++e) l.moe.experts.push_back(bind_mlp(b, it));
    if (c.n_shared_experts > 0) l.moe.shared_experts = bind_mlp(b, it);
  } else {
    l.mlp = bind_mlp(b, it);
  }
  DSV3_CHECK(il == c.num_hidden_layers || it == specs.cend(), "layer spec order");
  return l;
}

}  // namespace

ModelWeights bind_weights(const Checkpoint& ckpt, const ModelConfig& c, bool load_mtp,
                          std::vector<std::string>* problems) {
  ModelWeights mw;
  const auto packed_config = compressed_tensors_config_of(ckpt.config_json(), ckpt.dir() + "/config.json");
  Binder b(ckpt, mw, problems, packed_config ? &*packed_config : nullptr);
  const auto globals = global_weight_specs(c);
  mw.embed_tokens = b.bind(globals[0]);
  mw.norm = b.bind(globals[1]);
  mw.lm_head = c.tie_word_embeddings ? mw.embed_tokens : b.bind(globals[2]);
  for (int64_t il = 0; il < c.num_hidden_layers; ++il) mw.layers.push_back(bind_layer(b, c, il));
  // The MTP layer is optional in a checkpoint (some conversions drop it), but when any of its
  // tensors is present, all must be.
  const int64_t im = c.num_hidden_layers;
  if (c.has_mtp() && load_mtp && b.has_any_with_prefix(layer_prefix(im))) {
    MtpWeights m;
    m.layer = bind_layer(b, c, im);
    const auto specs = layer_weight_specs(c, im);
    auto it = specs.cend() - 6;
    m.embed_tokens = b.bind(*it++);
    m.enorm = b.bind(*it++);
    m.hnorm = b.bind(*it++);
    m.eh_proj = b.bind(*it++);
    m.shared_head_norm = b.bind(*it++);
    m.shared_head_head = b.bind(*it++);
    mw.mtp = std::move(m);
  }
  b.collect_extra();
  if (!load_mtp) {  // skipped on purpose: not "extra"
    const std::string p = layer_prefix(im);
    std::erase_if(mw.extra, [&](const std::string& n) { return n.compare(0, p.size(), p) == 0; });
  }
  return mw;
}

}  // namespace dsv3
