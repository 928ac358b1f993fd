// A steady decode step on the CPU backend must not allocate (STYLE.md: per-token code neither
// throws nor allocates). Counts global operator new calls during decode steps after warm-up steps
// have grown every scratch buffer, on the v3-tiny FP8 and BF16 golden checkpoints, at 1 and 2
// threads.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <new>

#include "backends/cpu/cpu_backend.h"
#include "model/model.h"
#include "weights/loaded_checkpoint.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_allocations{0};
}  // namespace

void* operator new(size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace dsv3 {
namespace {

TEST(DecodeStep, DoesNotAllocateOnceWarm) {
  for (const char* name : {"v3-tiny-fp8", "v3-tiny-bf16"}) {
    const std::string dir = std::string("tests/data/golden/") + name;
    auto ckpt = LoadedCheckpoint::load(dir);
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      CpuBackend backend(pool);
      Model model(ckpt->config, ckpt->weights, backend);
      const int64_t V = ckpt->config.vocab_size, H = ckpt->config.hidden_size, steps = 24;
      SequenceCache cache = model.new_cache(8 + steps);
      SequenceCache* caches[] = {&cache};
      std::vector<StepEntry> prompt;
      for (int32_t i = 0; i < 8; ++i) prompt.push_back({0, (i * 37 + 5) % int32_t(V), i});
      std::vector<float> hidden(static_cast<size_t>(8 * H)), logits(static_cast<size_t>(V));
      const int32_t last[] = {7}, row0[] = {0};
      model.forward(prompt, caches, {.logit_rows = last}, hidden.data(), logits.data());
      int64_t allocations_late = 0;
      for (int32_t k = 0; k < steps; ++k) {
        const StepEntry e{0, (k * 13 + 1) % int32_t(V), 8 + k};
        // Scratch that grows with the context grows geometrically: after the first steps no
        // step allocates.
        g_allocations = 0;
        g_counting = k >= steps / 2;
        model.forward({&e, 1}, caches, {.logit_rows = row0}, hidden.data(), logits.data());
        g_counting = false;
        allocations_late += g_allocations.load();
      }
      EXPECT_EQ(allocations_late, 0) << name << " threads=" << threads;
    }
  }
}

}  // namespace
}  // namespace dsv3
