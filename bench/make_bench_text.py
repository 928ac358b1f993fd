#!/usr/bin/python3
"""Writes >= 12 MB of mixed text for dsv3_tokenizer_bench, as JSONL documents (one JSON string
per line): code (the Python standard library, C headers), English prose (/usr/share/doc and
licenses), locale data in many scripts, and the multilingual synthetic documents of the
conformance corpus generator. Deterministic for a given machine image.
Usage: python3 bench/make_bench_text.py > build/bench_text.jsonl
"""
import glob
import json
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tokenizer"))
import make_corpus  # noqa: E402

rng = random.Random(1)
budget = {"code": 5_000_000, "prose": 3_500_000, "locales": 1_500_000, "synthetic": 2_500_000}
sources = {
    "code": sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True)) + sorted(glob.glob("/usr/include/**/*.h", recursive=True)),
    "prose": sorted(glob.glob("/usr/share/doc/**/*", recursive=True)) + sorted(glob.glob("/usr/share/common-licenses/*")),
    "locales": sorted(glob.glob("/usr/share/i18n/locales/*")),
}
for kind, files in sources.items():
    rng.shuffle(files)
    used = 0
    for f in files:
        if used >= budget[kind] or not os.path.isfile(f):
            continue
        try:
            text = open(f, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        # Documents of at most 20 kB, as a chat or a retrieval chunk would be.
        for start in range(0, len(text), 20000):
            doc = text[start:start + 20000]
            if doc.strip():
                print(json.dumps(doc, ensure_ascii=False))
                used += len(doc.encode("utf-8"))
used = 0
while used < budget["synthetic"]:
    doc = make_corpus.synth(rng)
    print(json.dumps(make_corpus.surrogate_free(doc), ensure_ascii=False))
    used += len(doc.encode("utf-8"))
