#!/usr/bin/env bash
# Runs every test: set up and build, the whole CTest suite, then the parser and loader tests
# again under AddressSanitizer + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
bash scripts/setup.sh build
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== AddressSanitizer/UBSan build: parser and loader tests (label 'parser') =="
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DDSV3_SANITIZE=ON > /dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -L parser
