#!/usr/bin/python3
"""CTest: `dsv3 generate --temperature 0` on the trained model writes what model.py's greedy decoding
writes (the same token ids), and its words are words of the corpus (no byte garbage).
Both a raw continuation and a chat reply (DeepSeek-V3's template) are checked.

Usage: check_generate.py --dsv3 build/dsv3 --model DIR --words tests/data/train/corpus_words.txt
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint import load  # noqa: E402

PROMPTS = [("raw", "And God said unto Moses,"), ("chat", "And the LORD spake unto Moses, saying,")]


def dsv3_json(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"check_generate: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return [json.loads(l) for l in p.stdout.splitlines() if l.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsv3", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--words", required=True, help="the corpus's words, one a line (lower case)")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, cfg = load(a.model)
    model.eval()
    vocab = set(open(a.words, encoding="utf-8").read().split())
    eos = cfg["eos_token_id"]
    for kind, text in PROMPTS:
        with tempfile.TemporaryDirectory() as tmp:
            prompts, messages = os.path.join(tmp, "p.jsonl"), os.path.join(tmp, "m.json")
            conv = [{"role": "user", "content": text}]
            with open(prompts, "w") as f:
                f.write(json.dumps(text if kind == "raw" else conv) + "\n")
            with open(messages, "w") as f:
                json.dump(conv, f)
            cmd = [a.dsv3, "generate", "--model", a.model, "--threads", "1", "--quiet", "--temperature", "0",
                   "--max-new-tokens", str(a.max_new_tokens), "--prompts-jsonl", prompts, "--jsonl"]
            got = dsv3_json(cmd + (["--raw"] if kind == "raw" else []))[0]
            # The prompt's ids as dsv3 feeds them: BOS + text, or the rendered chat template.
            if kind == "raw":
                prompt_ids = dsv3_json([a.dsv3, "tokenize", "--model", a.model, "--text", text])[0]
            else:
                p = subprocess.run([a.dsv3, "template", "--model", a.model, "--messages", messages,
                                    "--add-generation-prompt"], capture_output=True, text=True, check=True)
                prompt_ids = dsv3_json([a.dsv3, "tokenize", "--model", a.model, "--no-bos", "--text", p.stdout])[0]
        if got["prompt_tokens"] != len(prompt_ids):
            sys.exit(f"check_generate: FAIL: dsv3 generate saw {got['prompt_tokens']} prompt tokens, expected "
                     f"{len(prompt_ids)}")
        seq = list(prompt_ids)
        ours = []
        with torch.no_grad():
            for _ in range(a.max_new_tokens):
                logits, _ = model(torch.tensor([seq]), mtp=False)
                t = int(logits[0, -1].argmax())
                ours.append(t)
                if t == eos:
                    break
                seq.append(t)
        theirs = got["tokens"]
        words = re.findall(r"[A-Za-z]+", got["completion"])
        unknown = [w for w in words if w.lower() not in vocab]
        print(f"{kind}: {text!r} -> {got['completion']!r}")
        if ours[:len(theirs)] != theirs or (len(theirs) < len(ours) and ours[len(theirs)] != eos):
            sys.exit(f"check_generate: FAIL: dsv3 generated {theirs}, model.py greedy {ours}")
        if not words or unknown:
            sys.exit(f"check_generate: FAIL: words not in the corpus: {unknown}" if words else
                     "check_generate: FAIL: no words in the output")
    print("check_generate: OK")


if __name__ == "__main__":
    main()
