"""Cuts each document as Kimi-K2's and Moonlight's tokenization_kimi.py cuts a text before
tiktoken encodes it (its encode(), after Llama 3's tokenizer.py): chunks of 400,000 code points,
each cut further wherever a run of white space (Python's str.isspace, the point of running this
in Python) or of other characters would exceed 25,000 code points. Prints one JSON list of pieces
per document; tiktoken_oracle.mjs encode-pieces encodes each piece.
Usage: python3 kimi_presplit.py DOCS_JSONL > PIECES_JSONL
"""
import json
import sys

MAX_ENCODE_CHARS = 400_000
MAX_RUN_CHARS = 25_000


def runs(s, limit):
    """The pieces of s, no run of white space or of other characters longer than limit."""
    pieces, start, run, run_is_space = [], 0, 0, s[:1].isspace()
    for i, ch in enumerate(s):
        if ch.isspace() != run_is_space:
            run, run_is_space = 1, ch.isspace()
        else:
            run += 1
            if run > limit:
                pieces.append(s[start:i])
                start, run = i, 1
    pieces.append(s[start:])
    return pieces


def main():
    out = []
    for line in open(sys.argv[1], encoding="utf-8"):
        if not line.strip():
            continue
        text = json.loads(line)
        pieces = []
        for at in range(0, len(text), MAX_ENCODE_CHARS):
            pieces += runs(text[at:at + MAX_ENCODE_CHARS], MAX_RUN_CHARS)
        out.append(json.dumps(pieces, ensure_ascii=False))
    sys.stdout.write("\n".join(out) + ("\n" if out else ""))


if __name__ == "__main__":
    main()
