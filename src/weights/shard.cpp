#include "weights/shard.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "base/error.h"

namespace dsv3 {

namespace {

uint8_t* own(ModelWeights& owner, size_t bytes) {
  owner.owned.push_back(std::make_unique<uint8_t[]>(std::max<size_t>(bytes, 1)));
  return owner.owned.back().get();
}

// Drops the resident pages wholly inside [p, p + n): the copy replaces them; the file keeps them.
void release_pages(const void* p, size_t n) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t b = (uintptr_t(p) + page - 1) / page * page, e = (uintptr_t(p) + n) / page * page;
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

bool is_owned(const ModelWeights& m, const void* p) {
  for (const auto& o : m.owned)
    if (static_cast<const void*>(o.get()) == p) return true;
  return false;
}

// rows x cols of w starting at (r0, c0), dequantised to f32.
Weight dequant_copy(const Weight& w, int64_t r0, int64_t rows, int64_t c0, int64_t cols, ModelWeights& owner) {
  Weight s;
  s.name = w.name;
  s.dtype = DType::F32;
  s.rows = rows;
  s.cols = cols;
  float* d = reinterpret_cast<float*>(own(owner, size_t(rows * cols) * 4));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) d[r * cols + c] = weight_at(w, r0 + r, c0 + c);
  s.data = d;
  return s;
}

}  // namespace

Weight slice_rows(const Weight& w, Range r, ModelWeights& owner) {
  DSV3_CHECK(r.begin >= 0 && r.end <= w.rows && r.count() > 0, "slice_rows range");
  if (r.begin == 0 && r.end == w.rows) return w;
  if (w.packed()) {  // rows of packed codes and of their group scales: a view
    Weight s = w;
    s.rows = r.count();
    s.data = static_cast<const uint8_t*>(w.data) + r.begin * w.packed_cols() * 4;
    s.weight_scale = w.weight_scale + r.begin * w.n_groups();
    return s;
  }
  if (w.scale_inv && r.begin % kFp8BlockSize != 0) return dequant_copy(w, r.begin, r.count(), 0, w.cols, owner);
  Weight s = w;
  s.rows = r.count();
  s.data = static_cast<const uint8_t*>(w.data) + r.begin * w.cols * dtype_size(w.dtype);
  if (w.scale_inv) s.scale_inv = w.scale_inv + (r.begin / kFp8BlockSize) * w.scale_cols();
  return s;
}

Weight slice_cols(const Weight& w, Range c, ModelWeights& owner) {
  DSV3_CHECK(c.begin >= 0 && c.end <= w.cols && c.count() > 0, "slice_cols range");
  if (c.begin == 0 && c.end == w.cols) return w;
  Weight s;
  if (w.packed()) {
    // Whole 32-bit words and whole groups: copy codes and scales; otherwise F32.
    const bool aligned = (c.begin * w.bits) % 32 == 0 && c.begin % w.group_size == 0 &&
                         (c.end == w.cols || ((c.count() * w.bits) % 32 == 0 && c.count() % w.group_size == 0));
    if (!aligned) {
      s = dequant_copy(w, 0, w.rows, c.begin, c.count(), owner);
    } else {
      s = w;
      s.cols = c.count();
      const int64_t w0 = c.begin * w.bits / 32, g0 = c.begin / w.group_size;
      uint32_t* d = reinterpret_cast<uint32_t*>(own(owner, size_t(w.rows * s.packed_cols()) * 4));
      uint16_t* sc = reinterpret_cast<uint16_t*>(own(owner, size_t(w.rows * s.n_groups()) * 2));
      for (int64_t r = 0; r < w.rows; ++r) {
        std::memcpy(d + r * s.packed_cols(), static_cast<const uint32_t*>(w.data) + r * w.packed_cols() + w0,
                    size_t(s.packed_cols()) * 4);
        std::copy_n(w.weight_scale + r * w.n_groups() + g0, s.n_groups(), sc + r * s.n_groups());
      }
      s.data = d;
      s.weight_scale = sc;
    }
  } else if (w.scale_inv && c.begin % kFp8BlockSize != 0) {
    s = dequant_copy(w, 0, w.rows, c.begin, c.count(), owner);
  } else {
    s = w;
    s.cols = c.count();
    const int64_t es = dtype_size(w.dtype);
    uint8_t* d = own(owner, size_t(w.rows * s.cols * es));
    for (int64_t r = 0; r < w.rows; ++r)
      std::memcpy(d + r * s.cols * es, static_cast<const uint8_t*>(w.data) + (r * w.cols + c.begin) * es,
                  size_t(s.cols * es));
    s.data = d;
    if (w.scale_inv) {
      const int64_t srows = (w.rows + kFp8BlockSize - 1) / kFp8BlockSize, sc0 = c.begin / kFp8BlockSize;
      float* sd = reinterpret_cast<float*>(own(owner, size_t(srows * s.scale_cols()) * 4));
      for (int64_t r = 0; r < srows; ++r)
        std::copy_n(w.scale_inv + r * w.scale_cols() + sc0, s.scale_cols(), sd + r * s.scale_cols());
      s.scale_inv = sd;
    }
  }
  if (!is_owned(owner, w.data)) release_pages(w.data, size_t(w.data_bytes()));
  return s;
}

namespace {

// Cuts weights: for real (shard_weights) or on paper (plan_weights: shapes and dtypes only).
struct Cutter {
  virtual ~Cutter() = default;
  virtual Weight rows(const Weight& w, Range r) = 0;
  virtual Weight cols(const Weight& w, Range c) = 0;
};

struct RealCutter final : Cutter {
  explicit RealCutter(ModelWeights& o) : owner(o) {}
  Weight rows(const Weight& w, Range r) override { return slice_rows(w, r, owner); }
  Weight cols(const Weight& w, Range c) override { return slice_cols(w, c, owner); }
  ModelWeights& owner;
};

// The shape and dtype slice_rows / slice_cols would give; data stays the source's (never read).
struct PlanCutter final : Cutter {
  Weight rows(const Weight& w, Range r) override { return cut(w, r.begin, r.count(), w.rows, true); }
  Weight cols(const Weight& w, Range c) override { return cut(w, c.begin, c.count(), w.cols, false); }
  static Weight cut(const Weight& w, int64_t begin, int64_t count, int64_t full, bool rows) {
    if (begin == 0 && count == full) return w;
    Weight s = w;
    (rows ? s.rows : s.cols) = count;
    const bool packed_cut_ok = rows || ((begin * w.bits) % 32 == 0 && begin % std::max<int64_t>(w.group_size, 1) == 0 &&
                                        (begin + count == full ||
                                         ((count * w.bits) % 32 == 0 && count % std::max<int64_t>(w.group_size, 1) == 0)));
    if ((w.scale_inv && begin % kFp8BlockSize != 0) || (w.packed() && !packed_cut_ok)) {
      s.dtype = DType::F32;
      s.scale_inv = nullptr;
      s.bits = 0;
      s.weight_scale = nullptr;
    }
    return s;
  }
};

// model.py ColumnParallelLinear (output rows split) / RowParallelLinear (input columns split).
void split_mlp(MlpWeights& m, Range inter, Cutter& cut) {
  m.gate_proj = cut.rows(m.gate_proj, inter);
  m.up_proj = cut.rows(m.up_proj, inter);
  m.down_proj = cut.cols(m.down_proj, inter);
}

void split_layer(LayerWeights& l, const ModelConfig& c, const ShardPlan& p, Cutter& cut) {
  AttentionWeights& a = l.self_attn;
  const int64_t qk = c.qk_head_dim(), kvb = c.qk_nope_head_dim + c.v_head_dim;
  const Range q_rows{p.heads.begin * qk, p.heads.end * qk};
  if (c.q_lora_rank > 0)
    a.q_b_proj = cut.rows(a.q_b_proj, q_rows);
  else
    a.q_proj = cut.rows(a.q_proj, q_rows);
  a.kv_b_proj = cut.rows(a.kv_b_proj, Range{p.heads.begin * kvb, p.heads.end * kvb});
  a.o_proj = cut.cols(a.o_proj, Range{p.heads.begin * c.v_head_dim, p.heads.end * c.v_head_dim});
  if (!l.is_moe) {
    split_mlp(l.mlp, p.intermediate, cut);
    return;
  }
  MoeWeights& m = l.moe;
  std::vector<MlpWeights> kept(m.experts.begin() + (p.experts.begin - m.expert_begin),
                               m.experts.begin() + (p.experts.end - m.expert_begin));
  m.experts = std::move(kept);
  m.expert_begin = p.experts.begin;
  if (m.shared_experts) split_mlp(*m.shared_experts, p.shared_inter, cut);
}

// Cuts every sharded weight of `w` (globals, layers, MTP) with `cut`.
void split_all(ModelWeights& w, const ModelConfig& c, const ShardPlan& p, Cutter& cut) {
  const bool tied = w.lm_head.data == w.embed_tokens.data;
  w.embed_tokens = cut.rows(w.embed_tokens, p.vocab);
  w.lm_head = tied ? w.embed_tokens : cut.rows(w.lm_head, p.vocab);
  for (auto& l : w.layers) split_layer(l, c, p, cut);
  if (w.mtp) {
    w.mtp->embed_tokens = cut.rows(w.mtp->embed_tokens, p.vocab);
    w.mtp->shared_head_head = cut.rows(w.mtp->shared_head_head, p.vocab);
    split_layer(w.mtp->layer, c, p, cut);
  }
}

}  // namespace

void shard_weights(ModelWeights& w, const ModelConfig& c, const ShardPlan& p) {
  if (!p.sharded()) return;
  RealCutter cut(w);
  split_all(w, c, p, cut);
}

ModelWeights plan_weights(const ModelWeights& w, const ModelConfig& c, const ShardPlan& p) {
  ModelWeights out;
  out.embed_tokens = w.embed_tokens;
  out.layers = w.layers;
  out.norm = w.norm;
  out.lm_head = w.lm_head;
  out.mtp = w.mtp;
  PlanCutter cut;
  if (p.sharded()) split_all(out, c, p, cut);
  return out;
}

namespace {

template <typename Fn>
void for_each_weight(const ModelWeights& w, Fn&& fn) {
  auto mlp = [&](const MlpWeights& m) {
    fn(m.gate_proj);
    fn(m.up_proj);
    fn(m.down_proj);
  };
  auto layer = [&](const LayerWeights& l) {
    const AttentionWeights& a = l.self_attn;
    for (const Weight* x : {&l.input_layernorm, &l.post_attention_layernorm, &a.q_a_proj, &a.q_a_layernorm,
                            &a.q_b_proj, &a.q_proj, &a.kv_a_proj_with_mqa, &a.kv_a_layernorm, &a.kv_b_proj, &a.o_proj})
      fn(*x);
    if (!l.is_moe) return mlp(l.mlp);
    fn(l.moe.gate);
    fn(l.moe.e_score_correction_bias);
    for (const auto& e : l.moe.experts) mlp(e);
    if (l.moe.shared_experts) mlp(*l.moe.shared_experts);
  };
  fn(w.embed_tokens);
  fn(w.norm);
  if (w.lm_head.data != w.embed_tokens.data) fn(w.lm_head);
  for (const auto& l : w.layers) layer(l);
  if (w.mtp) {
    for (const Weight* x : {&w.mtp->embed_tokens, &w.mtp->enorm, &w.mtp->hnorm, &w.mtp->eh_proj,
                            &w.mtp->shared_head_norm, &w.mtp->shared_head_head})
      fn(*x);
    layer(w.mtp->layer);
  }
}

}  // namespace

uint64_t held_weight_bytes(const ModelWeights& w) {
  uint64_t n = 0;
  for_each_weight(w, [&](const Weight& x) {
    if (x.present()) n += x.bytes();
  });
  return n;
}

void prefetch_weights(const ModelWeights& w, ThreadPool* pool) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  std::atomic<uint64_t> sink{0};  // keeps the reads from being optimised away
  auto touch_range = [&](const void* p, size_t n) {
    if (!p || n == 0) return;
    const uintptr_t begin = uintptr_t(p) & ~(page - 1), end = uintptr_t(p) + n;
    madvise(reinterpret_cast<void*>(begin), end - begin, MADV_WILLNEED);  // advisory
    const int64_t n_pages = int64_t((end - begin + page - 1) / page);
    auto touch = [&](int64_t p0, int64_t p1) {
      uint64_t s = 0;
      for (int64_t i = p0; i < p1; ++i)
        s += *reinterpret_cast<const volatile uint8_t*>(std::max(begin + uintptr_t(i) * page, uintptr_t(p)));
      sink += s;
    };
    if (pool && n_pages > 64)
      pool->parallel_for(n_pages, touch);
    else
      touch(0, n_pages);
  };
  for_each_weight(w, [&](const Weight& x) {
    if (!x.present()) return;
    touch_range(x.data, size_t(x.data_bytes()));
    if (x.scale_inv) touch_range(x.scale_inv, size_t(x.bytes() - x.data_bytes()));
    if (x.weight_scale) touch_range(x.weight_scale, size_t(x.bytes() - x.data_bytes()));
  });
}

}  // namespace dsv3
