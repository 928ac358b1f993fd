#include "runtime/step_mirror.h"

#include <exception>

#include "base/error.h"

namespace dsv3 {

namespace {

// The fixed-size message every step starts with; the payload that follows is int32 values:
// entries [n_entries][seq, token, pos], logit rows [n_rows], copies [n_copies][dst, src, n_rows],
// block counts [n_seqs], block ids [n_block_ids], lengths [n_seqs][n_layers].
struct StepHeader {
  int64_t kind = 0;  // kStep or kStop
  int64_t n_entries = 0, n_rows = 0, n_copies = 0, n_seqs = 0, n_block_ids = 0, n_layers = 0;
  int64_t payload = 0;  // int32 values
};
constexpr int64_t kStep = 1, kStop = 2;

}  // namespace

StepSender::StepSender(Comm& comm, BlockPool& pool) : comm_(comm), pool_(pool) {
  pool_.set_copy_hook([this](int32_t dst, int32_t src, int64_t n_rows) {
    copies_.insert(copies_.end(), {dst, src, int32_t(n_rows)});
  });
}

StepSender::~StepSender() { pool_.set_copy_hook({}); }

void StepSender::send(std::span<const StepEntry> entries, std::span<SequenceCache* const> caches,
                      std::span<const int32_t> logit_rows) {
  DSV3_CHECK(!stopped_, "step after stop");
  StepHeader h;
  h.kind = kStep;
  h.n_entries = int64_t(entries.size());
  h.n_rows = int64_t(logit_rows.size());
  h.n_copies = int64_t(copies_.size() / 3);
  h.n_seqs = int64_t(caches.size());
  h.n_layers = pool_.layout().n_layers;
  payload_.clear();
  for (const StepEntry& e : entries) payload_.insert(payload_.end(), {e.seq, e.token, e.pos});
  payload_.insert(payload_.end(), logit_rows.begin(), logit_rows.end());
  payload_.insert(payload_.end(), copies_.begin(), copies_.end());
  copies_.clear();
  for (const SequenceCache* c : caches) {
    payload_.push_back(int32_t(c->blocks().size()));
    h.n_block_ids += int64_t(c->blocks().size());
  }
  for (const SequenceCache* c : caches) payload_.insert(payload_.end(), c->blocks().begin(), c->blocks().end());
  // Positions fit int32: StepEntry::pos is one.
  for (const SequenceCache* c : caches)
    for (int64_t il = 0; il < h.n_layers; ++il) payload_.push_back(int32_t(c->length(il)));
  h.payload = int64_t(payload_.size());
  comm_.broadcast_waiting(&h, sizeof h, 0);
  comm_.broadcast(payload_.data(), h.payload * 4, 0);
}

void StepSender::stop() {
  if (stopped_) return;
  stopped_ = true;
  StepHeader h;
  h.kind = kStop;
  comm_.broadcast_waiting(&h, sizeof h, 0);
}

void follow_steps(Model& model, const std::shared_ptr<BlockPool>& pool, bool absorbed) {
  Comm& comm = model.comm();
  const int64_t H = model.config().hidden_size, V = model.config().vocab_size;
  std::vector<int32_t> payload;
  std::vector<StepEntry> entries;
  std::vector<SequenceCache> caches;
  std::vector<SequenceCache*> cache_ptrs;
  std::vector<int64_t> lengths;
  std::vector<float> hidden, logits;
  while (true) {
    StepHeader h;
    comm.broadcast_waiting(&h, sizeof h, 0);
    if (h.kind == kStop) return;
    DSV3_CHECK(h.kind == kStep && h.n_entries > 0 && h.n_rows >= 0 && h.n_copies >= 0 && h.n_seqs > 0 &&
                   h.n_block_ids >= 0 && h.n_layers == pool->layout().n_layers &&
                   h.payload == 3 * h.n_entries + h.n_rows + 3 * h.n_copies + h.n_seqs + h.n_block_ids +
                                    h.n_seqs * h.n_layers,
               "step mirror: a step message that does not add up");
    payload.resize(size_t(h.payload));
    comm.broadcast(payload.data(), h.payload * 4, 0);
    const int32_t* p = payload.data();
    entries.resize(size_t(h.n_entries));
    for (auto& e : entries) {
      e = StepEntry{.seq = p[0], .token = p[1], .pos = p[2]};
      p += 3;
    }
    const std::span<const int32_t> rows(p, size_t(h.n_rows));
    p += h.n_rows;
    // Rank 0's copies on write, in its order, before the rows this step writes.
    for (int64_t i = 0; i < h.n_copies; ++i, p += 3) {
      DSV3_CHECK(p[0] >= 0 && p[0] < pool->n_blocks() && p[1] >= 0 && p[1] < pool->n_blocks() && p[2] >= 0 &&
                     p[2] <= pool->block_size(),
                 "step mirror: a block copy out of range");
      pool->copy_rows(p[0], p[1], p[2]);
    }
    const int32_t* counts = p;
    const int32_t* ids = counts + h.n_seqs;
    const int32_t* lens = ids + h.n_block_ids;
    caches.clear();
    cache_ptrs.clear();
    lengths.resize(size_t(h.n_layers));
    for (int64_t s = 0; s < h.n_seqs; ++s) {
      for (int64_t il = 0; il < h.n_layers; ++il) lengths[size_t(il)] = lens[s * h.n_layers + il];
      DSV3_CHECK(counts[s] >= 0 && ids + counts[s] <= payload.data() + payload.size(), "step mirror: bad block table");
      caches.push_back(SequenceCache::borrowed(pool, std::span<const int32_t>(ids, size_t(counts[s])), lengths));
      ids += counts[s];
    }
    for (auto& c : caches) cache_ptrs.push_back(&c);
    hidden.resize(size_t(h.n_entries * H));
    logits.resize(size_t(h.n_rows * V));
    try {
      model.forward(entries, cache_ptrs, {.absorbed = absorbed, .logit_rows = rows}, hidden.data(), logits.data());
    } catch (const std::exception& e) {
      comm.abort(std::string("serve: a step rank 0 ran failed here: ") + e.what(), 3);
    }
  }
}

}  // namespace dsv3
