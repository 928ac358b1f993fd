#include "parallel/comm.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/error.h"

namespace dsv3 {

void LocalComm::all_gather(const void* in, int64_t bytes, void* out) {
  if (in != out) std::memmove(out, in, size_t(bytes));
}

void LocalComm::abort(const std::string& message, int code) {
  std::fprintf(stderr, "dsv3: %s\n", message.c_str());
  std::exit(code);
}

void agree_or_throw(Comm& comm, const std::string& error) {
  if (comm.size() == 1) {
    if (!error.empty()) throw Error(error);
    return;
  }
  // Fixed-size slots: [failed flag][message, NUL-terminated].
  constexpr size_t kSlot = 4096;
  std::vector<char> mine(kSlot, 0), all(kSlot * size_t(comm.size()), 0);
  mine[0] = error.empty() ? 0 : 1;
  std::memcpy(mine.data() + 1, error.data(), std::min(error.size(), kSlot - 2));
  comm.all_gather(mine.data(), int64_t(kSlot), all.data());
  int first = -1, failed = 0;
  for (int r = 0; r < comm.size(); ++r)
    if (all[size_t(r) * kSlot]) {
      if (first < 0) first = r;
      ++failed;
    }
  if (first < 0) return;
  const std::string msg(all.data() + size_t(first) * kSlot + 1);
  if (failed == 1) fail("rank {} of {}: {}", first, comm.size(), msg);
  fail("rank {} of {} (and {} other rank(s)): {}", first, comm.size(), failed - 1, msg);
}

void check_same_on_all_ranks(Comm& comm, uint64_t fingerprint, const std::string& what) {
  if (comm.size() == 1) return;
  std::vector<uint64_t> all(size_t(comm.size()));
  comm.all_gather(&fingerprint, sizeof fingerprint, all.data());
  std::string differ;
  for (int r = 1; r < comm.size(); ++r)
    if (all[size_t(r)] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  if (!differ.empty())
    fail("rank(s) {} loaded a different {} than rank 0 (fingerprint {:016x} on rank 0); every rank must load the "
         "same model (the same directory contents on every host)",
         differ, what, all[0]);
}

}  // namespace dsv3
