#!/usr/bin/env bash
# Runs every test: set up and build (plus Chromium for the chat page's tests), the whole CTest
# suite; then every C++ test again under AddressSanitizer + UBSan; then each libFuzzer target
# over its seed corpus and for DSV3_FUZZ_SECONDS seconds (default 30 here, to keep CI within its
# hour on 2 cores; 0 skips fuzzing; scripts/fuzz.sh alone defaults to 60).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
bash scripts/setup.sh build
# The chat page's tests (label 'web') drive Debian's Chromium, headless.
if [ -z "${DSV3_CHROMIUM:-}" ] && ! command -v chromium > /dev/null; then
  echo "test: installing chromium (for the chat page's tests)"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq chromium
fi
ctest --test-dir build --output-on-failure -j"$jobs"

# The node-driven suites (oracle, server, bench) exercise the same binary end to end and take
# most of their time in node; under ASan they would only slow down. Every C++ test runs.
labels=${DSV3_ASAN_LABELS:-unit|parser|cli|golden}
echo "== AddressSanitizer/UBSan build: C++ tests (labels $labels) =="
SECONDS=0
# -O1 -g1 (line tables: file:line in the reports) compiles in half the time of -O2 -g.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DDSV3_SANITIZE=ON -DDSV3_BENCH=OFF > /dev/null
cmake --build build-asan -j"$jobs"
echo "ASan build: ${SECONDS}s"
SECONDS=0
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -L "$labels"
echo "ASan tests: ${SECONDS}s"

export DSV3_FUZZ_SECONDS=${DSV3_FUZZ_SECONDS:-30}
if [[ $DSV3_FUZZ_SECONDS != 0 ]]; then
  echo "== libFuzzer targets: seed corpora, then ${DSV3_FUZZ_SECONDS}s each =="
  SECONDS=0
  bash scripts/fuzz.sh
  echo "fuzzing: ${SECONDS}s"
fi
