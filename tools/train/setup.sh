#!/usr/bin/env bash
# Installs what the trainer needs on Debian 12: PyTorch, NumPy and Matplotlib from Debian, and the
# corpus (the King James Bible: bible-kjv-text, read through bible-kjv's `bible` program).
set -euo pipefail
packages=(python3 python3-torch python3-numpy python3-matplotlib bible-kjv bible-kjv-text)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "tools/train/setup.sh: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi
