#include "base/error.h"

#include <cstdio>
#include <cstdlib>

namespace dsv3 {

void check_failed(const char* file, int line, const char* cond, const std::string& msg) {
  std::fprintf(stderr, "dsv3: internal error at %s:%d: %s (%s)\n", file, line, msg.c_str(), cond);
  std::abort();
}

}  // namespace dsv3
