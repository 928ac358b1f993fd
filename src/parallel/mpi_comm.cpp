#include "parallel/mpi_comm.h"

#include <cstdio>
#include <algorithm>
#include <chrono>
#include <thread>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include <mpi.h>

#include "base/error.h"

namespace dsv3 {

namespace {

// Payloads above 2 GiB go in pieces: MPI counts are int.
constexpr int64_t kMaxChunk = int64_t(1) << 30;

class MpiComm final : public Comm {
 public:
  MpiComm() {
    // A rank waiting in a collective yields its core between polls (Open MPI's
    // mpi_yield_when_idle) unless the user set it (--mca, or OMPI_MCA_mpi_yield_when_idle). Open
    // MPI spins by default: on a machine shared with other work the spinning rank uses up its
    // share of the core, and the scheduler then runs it late when its work arrives. bench-m
    // decode, 2 ranks x 1 thread on 2 busy cores: 1.4x faster with it (README, Speed).
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", /*overwrite=*/0);
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  // During unwinding (an Error on this rank only, caught in main) MPI_Finalize could wait for
  // ranks that are still inside a collective: leave without it; mpirun then ends the job,
  // because this rank exits non-zero.
  ~MpiComm() override {
    if (std::uncaught_exceptions() == 0) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(float* data, int64_t count) override {
    Timed t(stats_, count * 4);
    // Gather every rank's vector, then add them in rank order: identical bits on every rank.
    gathered_.resize(size_t(count) * size_t(size_));
    gather_raw(data, count * 4, gathered_.data());
    for (int64_t i = 0; i < count; ++i) data[i] = gathered_[size_t(i)];
    for (int r = 1; r < size_; ++r) {
      const float* src = gathered_.data() + size_t(r) * size_t(count);
      for (int64_t i = 0; i < count; ++i) data[i] += src[i];
    }
  }

  void all_gather(const void* in, int64_t bytes, void* out) override {
    Timed t(stats_, bytes);
    gather_raw(in, bytes, out);
  }

  void broadcast(void* data, int64_t bytes, int root) override {
    Timed t(stats_, bytes);
    for (int64_t off = 0; off < bytes; off += kMaxChunk)
      MPI_Bcast(static_cast<char*>(data) + off, int(std::min(kMaxChunk, bytes - off)), MPI_BYTE, root,
                MPI_COMM_WORLD);
  }

  void broadcast_waiting(void* data, int64_t bytes, int root) override {
    Timed t(stats_, bytes);
    DSV3_CHECK(bytes <= kMaxChunk, "broadcast_waiting: payload over 1 GiB");
    MPI_Request req;
    MPI_Ibcast(data, int(bytes), MPI_BYTE, root, MPI_COMM_WORLD, &req);
    // Spin for the first ~50 us (a step follows the previous one closely), then sleep in
    // growing naps up to 1 ms: an idle server's ranks then take no CPU.
    int done = 0;
    auto nap = std::chrono::microseconds(0);
    const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
    while (true) {
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (done) return;
      if (std::chrono::steady_clock::now() < spin_until) continue;
      nap = std::min<std::chrono::microseconds>(std::chrono::microseconds(1000), nap + std::chrono::microseconds(50));
      std::this_thread::sleep_for(nap);
    }
  }

  void barrier() override {
    Timed t(stats_, 0);
    MPI_Barrier(MPI_COMM_WORLD);
  }

  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "dsv3: rank %d: %s\n", rank_, message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::exit(code);
  }

 private:
  void gather_raw(const void* in, int64_t bytes, void* out) {
    if (bytes <= kMaxChunk) {
      MPI_Allgather(in, int(bytes), MPI_BYTE, out, int(bytes), MPI_BYTE, MPI_COMM_WORLD);
      return;
    }
    // Large payloads: one rank's block at a time by broadcast.
    for (int r = 0; r < size_; ++r) {
      char* dst = static_cast<char*>(out) + int64_t(r) * bytes;
      if (r == rank_ && in != dst) std::copy_n(static_cast<const char*>(in), bytes, dst);
      for (int64_t off = 0; off < bytes; off += kMaxChunk)
        MPI_Bcast(dst + off, int(std::min(kMaxChunk, bytes - off)), MPI_BYTE, r, MPI_COMM_WORLD);
    }
  }

  int rank_ = 0, size_ = 1;
  std::vector<float> gathered_;
};

}  // namespace

bool built_with_mpi() { return true; }

std::unique_ptr<Comm> open_world_comm() {
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMIX_RANK")) return std::make_unique<LocalComm>();
  return std::make_unique<MpiComm>();
}

}  // namespace dsv3
