#!/usr/bin/python3
"""Writes variants of DeepSeek-V3's tokenizer.json that exercise the other pre-tokenizer
settings (Split behaviours, invert, String patterns, ^ and $, ByteLevel's own regex and prefix
space, DeepSeek-V2-style patterns), one directory per variant under OUT_DIR. The ids of each
variant come from Hugging Face's tokenizers as for the real file (check_tokenizer.sh variants).
Usage: make_variants.py DEEPSEEK_V3_TOKENIZER_JSON OUT_DIR
"""
import json
import os
import sys


def split(regex, behavior="Isolated", invert=False, string=False):
    return {"type": "Split", "pattern": {"String" if string else "Regex": regex}, "behavior": behavior, "invert": invert}


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
VARIANTS = {
    # DeepSeek-V2 / Coder style: letters, punctuation, CJK, digits as separate splits, anchors.
    "v2_style": [split("[\r\n]"), split("\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]+"),
                 split("\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+"), split("\\s+$"),
                 split("[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"), split("\\p{N}+"), BYTE_LEVEL],
    "anchors": [split("\\s+$|^ +|x.y"), BYTE_LEVEL],
    "removed": [split("\\s+", "Removed"), BYTE_LEVEL],
    "merged_previous": [split("[,.;:!?]", "MergedWithPrevious"), BYTE_LEVEL],
    "merged_next": [split("\\s", "MergedWithNext"), BYTE_LEVEL],
    "contiguous": [split("\\p{P}", "Contiguous"), BYTE_LEVEL],
    "inverted": [split("\\p{L}+", "Isolated", invert=True), BYTE_LEVEL],
    "string_pattern": [split("<｜", "Isolated", string=True), split(" ", "MergedWithNext", string=True), BYTE_LEVEL],
    "gpt2_byte_level": [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}],
    "gpt2_prefix_space": [{"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}],
}


def main():
    base = json.load(open(sys.argv[1], encoding="utf-8"))
    for name, steps in VARIANTS.items():
        t = dict(base)
        t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": steps}
        os.makedirs(os.path.join(sys.argv[2], name), exist_ok=True)
        with open(os.path.join(sys.argv[2], name, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(t, f, ensure_ascii=False)
        print(name)


if __name__ == "__main__":
    main()
