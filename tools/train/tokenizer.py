#!/usr/bin/python3
"""Byte-level BPE for the trained default model: trains merges on the corpus and writes
tokenizer.json + tokenizer_config.json in DeepSeek-V3's format (its pre-tokenizer, post-processor,
decoder, special/added tokens and chat template), so that dsv3's tokenizer and Hugging Face's
`tokenizers` read it as they read DeepSeek-V3's own files.

Also the encoder the trainer uses on the corpus. Its pre-tokenizer is DeepSeek-V3's split regex
restricted to ASCII (Python's `re` has no \\p{L}); the corpus is ASCII, where the two agree, and text
outside ASCII still encodes losslessly through the byte tokens. dsv3 and Hugging Face, which
implement the full pattern, are what the tests compare.

Usage: tokenizer.py --corpus DIR/train.jsonl --vocab-size 2048 --chat-template-from TOKENIZER_CONFIG_JSON --out DIR
"""
import argparse
import collections
import json
import os
import re

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
# DeepSeek-V3's added tokens after its BPE vocabulary (a few of its 800 placeholders kept, which
# tests and R1-style tokenizers rename), then R1's <think>/</think> (special: false, as in R1).
N_PLACEHOLDERS = 16
TAIL_SPECIAL = ([f"<｜place▁holder▁no▁{i}｜>" for i in range(N_PLACEHOLDERS)] +
                ["<｜fim▁hole｜>", "<｜fim▁begin｜>", "<｜fim▁end｜>", USER, ASSISTANT, "<|EOT|>",
                 "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
                 "<｜tool▁call▁end｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>",
                 "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>", "<｜tool▁sep｜>"])
TAIL_PLAIN = ["<think>", "</think>"]
HEAD_SPECIAL = [BOS, EOS, PAD]

# DeepSeek-V3's tokenizer.json pre-tokenizer (digits, CJK runs, then words/punctuation/spaces).
DEEPSEEK_SPLIT = ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
                  " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")
PRE_TOKENIZER = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "[一-龥\u3040-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": DEEPSEEK_SPLIT}, "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}

_P = r"""[!-/:-@\[-`{-~]"""
_ASCII_SPLIT = re.compile(
    _P + r"[A-Za-z]+|[^\r\nA-Za-z!-/:-@\[-`{-~]?[A-Za-z\x80-\U0010ffff]+| ?" + _P + r"+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+|.")
_DIGITS = re.compile(r"\d{1,3}")


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: byte -> printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_CHARS = bytes_to_unicode()


def pre_tokenize(text):
    """Pre-tokens (byte-level strings) of plain text (no added tokens)."""
    out = []
    pos = 0
    for m in _DIGITS.finditer(text):
        out += _ASCII_SPLIT.findall(text[pos:m.start()])
        out.append(m.group(0))
        pos = m.end()
    out += _ASCII_SPLIT.findall(text[pos:])
    return ["".join(BYTE_CHARS[b] for b in w.encode("utf-8")) for w in out if w]


def train_merges(word_counts, n_merges):
    """Standard BPE: repeatedly merge the most frequent adjacent pair (ties: the first pair in
    lexicographic order), with pair counts kept up to date incrementally."""
    words = [list(w) for w in word_counts]
    counts = list(word_counts.values())
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pairs[a, b] += counts[i]
            where[a, b].add(i)
    merges = []
    while len(merges) < n_merges and pairs:
        best = max(pairs.items(), key=lambda kv: (kv[1], tuple(-ord(c) for c in kv[0][0] + " " + kv[0][1])))[0]
        if pairs[best] <= 1:
            break
        merges.append(best)
        joined = best[0] + best[1]
        for i in list(where[best]):
            w = words[i]
            for a, b in zip(w, w[1:]):
                pairs[a, b] -= counts[i]
                if pairs[a, b] <= 0:
                    del pairs[a, b]
            j, nw = 0, []
            while j < len(w):
                if j + 1 < len(w) and w[j] == best[0] and w[j + 1] == best[1]:
                    nw.append(joined)
                    j += 2
                else:
                    nw.append(w[j])
                    j += 1
            words[i] = nw
            for a, b in zip(nw, nw[1:]):
                pairs[a, b] += counts[i]
                where[a, b].add(i)
        del where[best]
    return merges


def doc_texts(doc):
    return [doc["text"]] if doc["kind"] == "text" else [doc["user"], doc["assistant"]]


class Tokenizer:
    """Encoder/decoder over a tokenizer.json written by `write` (BPE by merge rank)."""

    def __init__(self, directory):
        tj = json.load(open(os.path.join(directory, "tokenizer.json"), encoding="utf-8"))
        self.vocab = dict(tj["model"]["vocab"])
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(tj["model"]["merges"])}
        for t in tj["added_tokens"]:
            self.vocab[t["content"]] = t["id"]
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.added = {t["content"] for t in tj["added_tokens"]}
        self.byte_of = {c: b for b, c in BYTE_CHARS.items()}
        self.cache = {}
        self.bos, self.eos = self.vocab[BOS], self.vocab[EOS]
        self.user, self.assistant = self.vocab[USER], self.vocab[ASSISTANT]
        self.size = max(self.id_to_token) + 1

    def _bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            best = min(((self.ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(parts, parts[1:]))))
            if best[0] == 1 << 30:
                break
            i = best[1]
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        ids = [self.vocab[p] for p in parts]
        self.cache[word] = ids
        return ids

    def encode(self, text):
        """Ids of plain text (added tokens in it are not recognised; no BOS)."""
        return [i for w in pre_tokenize(text) for i in self._bpe(w)]

    def chat(self, user, assistant=None):
        """DeepSeek-V3's template for one user turn (and the reply, closed by EOS)."""
        ids = [self.bos, self.user] + self.encode(user) + [self.assistant]
        if assistant is not None:
            ids += self.encode(assistant) + [self.eos]
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            t = self.id_to_token[i]
            out += t.encode("utf-8") if t in self.added else bytes(self.byte_of[c] for c in t)
        return out.decode("utf-8", errors="replace")


def added_token(i, content, special):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": not special, "special": special}


def write(out_dir, merges, chat_template):
    vocab = {t: i for i, t in enumerate(HEAD_SPECIAL)}
    for b in range(256):
        vocab[BYTE_CHARS[b]] = len(vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    # As in DeepSeek-V3's file: BOS/EOS/pad are in the BPE vocabulary too (ids 0-2); the other added
    # tokens are not, and take the ids after it in order (Hugging Face numbers them so on load).
    added = [added_token(i, t, True) for i, t in enumerate(HEAD_SPECIAL)]
    for t in TAIL_SPECIAL:
        added.append(added_token(len(vocab) + len(added) - len(HEAD_SPECIAL), t, True))
    for t in TAIL_PLAIN:
        added.append(added_token(len(vocab) + len(added) - len(HEAD_SPECIAL), t, False))
    tj = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
          "normalizer": {"type": "Sequence", "normalizers": []}, "pre_tokenizer": PRE_TOKENIZER,
          "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
          "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
          "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                    "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                    "vocab": vocab, "merges": [a + " " + b for a, b in merges]}}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, indent=1)
    tok = lambda c: {"__type": "AddedToken", "content": c, "lstrip": False, "normalized": True,
                     "rstrip": False, "single_word": False}
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": tok(BOS),
           "clean_up_tokenization_spaces": False, "eos_token": tok(EOS), "legacy": True,
           "model_max_length": 131072, "pad_token": tok(EOS), "sp_model_kwargs": {}, "unk_token": None,
           "tokenizer_class": "LlamaTokenizerFast", "chat_template": chat_template}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
    return max(t["id"] for t in added) + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, help="train.jsonl from corpus.py")
    ap.add_argument("--vocab-size", type=int, default=2048, help="total ids, added tokens included")
    ap.add_argument("--chat-template-from", required=True, metavar="TOKENIZER_CONFIG_JSON",
                    help="take chat_template from this tokenizer_config.json (DeepSeek-V3's)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    word_counts = collections.Counter()
    with open(a.corpus, encoding="utf-8") as f:
        for line in f:
            for t in doc_texts(json.loads(line)):
                word_counts.update(pre_tokenize(t))
    n_merges = a.vocab_size - 256 - len(HEAD_SPECIAL) - len(TAIL_SPECIAL) - len(TAIL_PLAIN)
    merges = train_merges(word_counts, n_merges)
    template = json.load(open(a.chat_template_from, encoding="utf-8")).get("chat_template")
    if not isinstance(template, str):
        raise SystemExit(f"tokenizer.py: {a.chat_template_from} has no chat_template string")
    n = write(a.out, merges, template)
    print(f"tokenizer: {len(merges)} merges, {n} ids -> {a.out}")


if __name__ == "__main__":
    main()
