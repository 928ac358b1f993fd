#!/usr/bin/python3
"""The training corpus: the King James Version of the Bible (1611; public domain), as Debian's
bible-kjv-text package ships it, read through that package's `bible` program (bible-kjv).

Writes OUT/train.jsonl and OUT/heldout.jsonl, one JSON object per line:
  {"kind": "text", "text": "Genesis 1\n\nIn the beginning ..."}   one chapter, a verse per line
  {"kind": "chat", "user": "...", "assistant": "..."}             a verse, then the verse after it
Every 20th chapter (chapter index % 20 == 7) is held out, whole; held-out chapters give no dialogues.
Usage: tools/train/corpus.py --out DIR
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys

HELDOUT_EVERY = 20
HELDOUT_PHASE = 7


def read_bible():
    """Returns [(title, [verse, ...]), ...] in canonical order from `bible`'s plain output."""
    exe = shutil.which("bible")
    if exe is None:
        sys.exit("corpus.py: the `bible` program is missing: apt-get install bible-kjv bible-kjv-text "
                 "(scripts/setup.sh --train does it)")
    out = subprocess.run([exe, "Gen1:1-Rev22:21"], check=True, capture_output=True,
                         env={**os.environ, "COLUMNS": "100000"}).stdout.decode("ascii")
    chapters = []
    verse_re = re.compile(r"^\s+(\d+) (.*)$")
    for line in out.split("\n"):
        if not line.strip():
            continue
        m = verse_re.match(line)
        if m:
            chapters[-1][1].append(m.group(2).strip())
        elif line.startswith(" "):
            chapters[-1][1][-1] += " " + line.strip()  # a wrapped verse (were COLUMNS ignored)
        else:
            chapters.append((line.strip(), []))
    chapters = [(t, [re.sub(r"\s+", " ", v) for v in vs]) for t, vs in chapters if vs]
    if len(chapters) != 1189:
        sys.exit(f"corpus.py: expected 1189 chapters from `bible`, got {len(chapters)}")
    return chapters


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    chapters = read_bible()
    rng = random.Random(a.seed)
    train, heldout = [], []
    for i, (title, verses) in enumerate(chapters):
        doc = {"kind": "text", "text": title + "\n\n" + "\n".join(verses)}
        if i % HELDOUT_EVERY == HELDOUT_PHASE:
            heldout.append(doc)
            continue
        train.append(doc)
        for j in range(len(verses) - 1):
            if rng.random() < 0.25:
                train.append({"kind": "chat", "user": verses[j], "assistant": verses[j + 1]})
    rng.shuffle(train)
    for name, docs in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        with open(os.path.join(a.out, name), "w") as f:
            for d in docs:
                f.write(json.dumps(d) + "\n")
    n_words = sum(len(v.split()) for _, vs in chapters for v in vs)
    print(f"corpus: {len(chapters)} chapters, {n_words} words; train {len(train)} documents, "
          f"held out {len(heldout)} chapters -> {a.out}")


if __name__ == "__main__":
    main()
