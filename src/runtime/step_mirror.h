// Serving under tensor/expert parallelism (`mpirun -np N dsv3 serve`): rank 0 runs the Scheduler
// and decides every step; the other ranks run the same Model::forward with the same inputs over
// the same KV cache block layout, so that each collective inside the forward meets its partners.
//
// Every rank holds a BlockPool of the same layout and size. Rank 0's pool changes its block
// contents in two ways only: the model writes rows (every rank does that itself, as the latent
// cache is replicated and computed identically on every rank) and copy on write copies blocks
// (BlockPool::copy_rows, which rank 0 logs and sends). Allocation, reference counts, the prefix
// cache and preemption stay on rank 0: a step carries each of its sequences' block table and
// per-layer lengths, and the other ranks build borrowed caches (SequenceCache::borrowed) over
// them. Logits are gathered on every rank by the sharded head; only rank 0 samples.
//
//   rank 0:   StepSender sender(comm, *pool);  scheduler option before_forward -> sender.send(...);
//             ... at shutdown, after the scheduler is gone: sender.stop();
//   others:   follow_steps(model, pool, absorbed);   // returns at rank 0's stop()
//
// Speculative decoding (MTP drafts sampled inside the step) is not mirrored.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/kv_cache.h"
#include "model/model.h"
#include "parallel/comm.h"

namespace dsv3 {

// Rank 0's side. Hooks `pool`'s copies (BlockPool::set_copy_hook) for its lifetime; the pool
// must outlive it. Calls are made on one thread at a time (the scheduler's, then the one that
// calls stop()).
class StepSender {
 public:
  StepSender(Comm& comm, BlockPool& pool);
  ~StepSender();
  StepSender(const StepSender&) = delete;
  StepSender& operator=(const StepSender&) = delete;

  // Sends one step: the copies logged since the last step, then the entries, every sequence's
  // block table and per-layer lengths (caches [n_seqs], as Model::forward takes them), and the
  // entries whose logits are wanted. Call right before rank 0's own Model::forward.
  void send(std::span<const StepEntry> entries, std::span<SequenceCache* const> caches,
            std::span<const int32_t> logit_rows);
  // Tells the other ranks that no step follows: follow_steps returns there. Once.
  void stop();

 private:
  Comm& comm_;
  BlockPool& pool_;
  std::vector<int32_t> copies_;  // [n][dst, src, n_rows] since the last step
  std::vector<int32_t> payload_;
  bool stopped_ = false;
};

// A rank other than 0: runs rank 0's steps over `pool` (the same layout and number of blocks as
// rank 0's) until rank 0 calls StepSender::stop(). Waits for a step without spinning on a core
// (Comm::broadcast_waiting). A step the model refuses (it cannot be: rank 0 ran it) ends every
// rank through Comm::abort with the message.
void follow_steps(Model& model, const std::shared_ptr<BlockPool>& pool, bool absorbed);

}  // namespace dsv3
