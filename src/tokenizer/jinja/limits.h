// Limits of parsing and rendering one chat template (issue 19). A template comes inside a
// downloaded checkpoint and its variables from the network, so both are untrusted: without
// limits a macro that calls itself, range(10**9), a string doubled 40 times or 10^5 nested
// brackets crash or hang the process. Every limit is checked as the template runs, and
// exceeding one is an Error naming the limit, the template line and the column:
//   chat template line 3, column 12: exceeds the template limit max_depth = 400 (...)
// The defaults are far above what any published chat template needs (they nest < 10 levels,
// loop over the messages and tools, and render a prompt of at most a few MB: DeepSeek-V3's
// 163840-token context is ~0.7 MB of text); raise them through ChatTemplate's `limits` argument.
// Every hostile input is refused within about max_seconds.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dsv3::jinja {

struct RenderLimits {
  // Parsing: nested blocks, brackets, unary operators and operator chains (a + b + ... counts
  // one level per operator), so that every tree we build can be walked recursively.
  int max_nesting = 100;
  // Rendering: nested evaluations, including every macro call in progress.
  int max_depth = 400;
  // Loop iterations plus macro calls, over the whole render.
  int64_t max_steps = 500'000;
  // Elements of one array (range(), a + b, a loop's items).
  int64_t max_items = 100'000;
  // Bytes of any one string, including the rendered output.
  size_t max_string_bytes = size_t(16) << 20;
  // Bytes of all strings and arrays the render builds (a bound on its memory).
  size_t max_total_bytes = size_t(256) << 20;
  // Wall-clock seconds of one render.
  double max_seconds = 2.0;
};

// Values nest at most this deep when printed or converted to JSON (a namespace that holds itself).
inline constexpr int kMaxValueNesting = 512;

}  // namespace dsv3::jinja
