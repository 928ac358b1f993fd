#!/usr/bin/env bash
# Runs every test: set up and build (plus Chromium for the chat page's tests), the whole CTest
# suite, then the parser and loader tests again under AddressSanitizer + UBSan.
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

echo "== AddressSanitizer/UBSan build: parser and loader tests (label 'parser') =="
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DDSV3_SANITIZE=ON > /dev/null
# Only what the 'parser' label runs: the parsers' unit tests and the binary the CLI tests drive.
cmake --build build-asan -j"$jobs" --target dsv3 base_test io_test weights_test tokenizer_test convert_test cli_test serve_test
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs" -L parser
