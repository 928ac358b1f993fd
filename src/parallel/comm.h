// How the model speaks to the other ranks of a tensor/expert-parallel run (DeepSeek-V3's
// inference/model.py uses torch.distributed for the same four collectives). The model calls
// only this interface; in one process every call is a no-op (LocalComm), across processes the
// MPI implementation (mpi_comm.h, the only code that names MPI) carries them.
//
// Every collective must be called by every rank, in the same order, with the same sizes.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dsv3 {

// Time and calls spent inside collectives, for `dsv3 bench` (communication per decode token).
struct CommStats {
  double seconds = 0;
  int64_t calls = 0;
  int64_t bytes = 0;  // payload bytes this rank sent into collectives
};

class Comm {
 public:
  virtual ~Comm() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data [count] f32 <- the element-wise sum over ranks. The sum is taken in rank order on
  // every rank, so every rank gets identical bits (greedy and sampled tokens must agree on all
  // ranks; MPI_Allreduce's algorithms may add in a different order per rank).
  virtual void all_reduce_sum(float* data, int64_t count) = 0;
  // out [size() * bytes] <- each rank's in [bytes], rank r at out + r * bytes.
  virtual void all_gather(const void* in, int64_t bytes, void* out) = 0;
  // data [bytes] on every rank <- root's data.
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  // The same, for ranks that may wait a long time for root (a server's ranks waiting for the next
  // request): a waiting rank sleeps between polls (answering up to ~1 ms late) instead of
  // spinning on a core as MPI's blocking collectives do. Every rank of one call must use this
  // form (MPI matches non-blocking collectives only with non-blocking ones). Default: broadcast.
  virtual void broadcast_waiting(void* data, int64_t bytes, int root) { broadcast(data, bytes, root); }
  virtual void barrier() = 0;
  // Prints "dsv3: rank R: message" on stderr and ends every rank with `code` (no rank hangs).
  [[noreturn]] virtual void abort(const std::string& message, int code) = 0;

  const CommStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 protected:
  // Adds the time of one collective to stats(): construct at a collective's entry.
  class Timed {
   public:
    Timed(CommStats& s, int64_t bytes) : s_(s), t0_(std::chrono::steady_clock::now()) {
      ++s_.calls;
      s_.bytes += bytes;
    }
    ~Timed() { s_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

   private:
    CommStats& s_;
    std::chrono::steady_clock::time_point t0_;
  };
  CommStats stats_;
};

// One process: rank 0 of 1; collectives leave the data as it is (all_gather copies in to out).
class LocalComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce_sum(float*, int64_t) override {}
  void all_gather(const void* in, int64_t bytes, void* out) override;
  void broadcast(void*, int64_t, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(const std::string& message, int code) override;
};

// Every rank calls this with its own outcome of a step that may fail on some ranks only
// (loading its part of the weights): `error` empty on success. When any rank failed, every rank
// throws Error("rank R: <that rank's message>") naming the lowest failing rank (and how many
// failed), so that all ranks exit with the same message instead of waiting for one that left.
// Messages longer than 4000 bytes are cut.
void agree_or_throw(Comm& comm, const std::string& error);

// Every rank passes a fingerprint of what it loaded (hash of config + checkpoint index); throws
// Error on every rank naming the ranks that differ from rank 0 and what `what` is.
void check_same_on_all_ranks(Comm& comm, uint64_t fingerprint, const std::string& what);

}  // namespace dsv3
