#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan, tests/fuzz) and runs each one: first over its
# seed corpus in tests/fuzz/corpus/<name> as a regression test, then fuzzing for
# DSV3_FUZZ_SECONDS (default 60) seconds each. A crash, leak, timeout or sanitizer report fails.
# New corpus entries go to build-fuzz/corpus, not into the repository.
#   scripts/fuzz.sh                 # every target
#   scripts/fuzz.sh template config # some
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${DSV3_FUZZ_SECONDS:-60}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(safetensors config tokenizer_json tokenizer_config tokenizer_encode template request)
if [[ ! -f build-fuzz/build.ninja ]]; then
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DCMAKE_C_COMPILER=clang -DDSV3_FUZZ=ON -DDSV3_TESTS=OFF -DDSV3_BENCH=OFF > /dev/null
fi
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]/#/fuzz_}"
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for t in "${targets[@]}"; do
  bin=build-fuzz/tests/fuzz/fuzz_$t
  seeds=tests/fuzz/corpus/$t
  work=build-fuzz/corpus/$t
  log=build-fuzz/fuzz_$t.log
  mkdir -p "$work" build-fuzz/findings
  echo "== fuzz_$t: seed corpus ($(ls "$seeds" | wc -l) inputs), then ${seconds}s =="
  rc=0
  "$bin" -runs=0 -timeout=10 -rss_limit_mb=4096 "$seeds"/* > "$log" 2>&1 || rc=$?
  if [[ $rc -eq 0 ]]; then
    "$bin" "$work" "$seeds" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix=build-fuzz/findings/"$t"- > "$log" 2>&1 || rc=$?
  fi
  grep -E "^stat::number_of_executed_units|^#[0-9]+ +DONE|ERROR|SUMMARY|Test unit written" "$log" || true
  if [[ $rc -ne 0 ]]; then
    echo "fuzz_$t: FINDING (exit $rc; $log, inputs in build-fuzz/findings)"
    tail -40 "$log"
    status=1
  fi
done
exit $status
