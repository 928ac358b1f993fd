#!/usr/bin/python3
"""Builds the tokenizer conformance corpus (JSONL, one JSON string per line) on stdout.

Deterministic for a given seed: text samples are synthesized here, not read from the machine.
Covers every case the encoder must match Hugging Face on: many scripts, emoji sequences (ZWJ,
skin tones, flags, keycaps), combining marks, CJK and kana, digit runs, runs of spaces, tabs,
CR/LF, code, special tokens written inside text, Unicode white space, and the empty string.
Usage: python3 make_corpus.py [SEED] > corpus.jsonl
"""
import json
import random
import sys

RANGES = {
    "latin": (0x41, 0x7A), "latin_ext": (0xC0, 0x24F), "ipa": (0x250, 0x2AF), "greek": (0x370, 0x3FF),
    "cyrillic": (0x400, 0x4FF), "armenian": (0x531, 0x58A), "hebrew": (0x5D0, 0x5EA), "arabic": (0x600, 0x6FF),
    "syriac": (0x710, 0x74A), "thaana": (0x780, 0x7B1), "devanagari": (0x900, 0x97F), "bengali": (0x980, 0x9FE),
    "tamil": (0xB82, 0xBFA), "telugu": (0xC00, 0xC7F), "thai": (0xE01, 0xE5B), "lao": (0xE81, 0xEDF),
    "tibetan": (0xF00, 0xFD8), "myanmar": (0x1000, 0x109F), "georgian": (0x10A0, 0x10FF), "hangul_jamo": (0x1100, 0x11FF),
    "ethiopic": (0x1200, 0x137C), "cherokee": (0x13A0, 0x13F5), "mongolian": (0x1800, 0x18AA), "khmer": (0x1780, 0x17F9),
    "general_punct": (0x2010, 0x205E), "super_sub": (0x2070, 0x209C), "currency": (0x20A0, 0x20C0),
    "letterlike": (0x2100, 0x214F), "number_forms": (0x2150, 0x218B), "arrows": (0x2190, 0x21FF), "math": (0x2200, 0x22FF),
    "box": (0x2500, 0x257F), "dingbats": (0x2700, 0x27BF), "braille": (0x2800, 0x28FF), "cjk_punct": (0x3000, 0x303F),
    "hiragana": (0x3041, 0x309F), "katakana": (0x30A0, 0x30FF), "bopomofo": (0x3105, 0x312F), "cjk": (0x4E00, 0x9FA5),
    "cjk_tail": (0x9FA6, 0x9FFF), "cjk_ext_a": (0x3400, 0x4DBF), "yi": (0xA000, 0xA48C), "hangul": (0xAC00, 0xD7A3),
    "cjk_compat": (0xF900, 0xFAD9), "alpha_pres": (0xFB00, 0xFB4F), "arabic_pres": (0xFE70, 0xFEFC),
    "fullwidth": (0xFF01, 0xFF5E), "halfwidth_kana": (0xFF61, 0xFF9F), "emoji": (0x1F300, 0x1F64F),
    "emoji_suppl": (0x1F900, 0x1F9FF), "emoji_ext_a": (0x1FA70, 0x1FAF8), "math_alnum": (0x1D400, 0x1D7FF),
    "cjk_ext_b": (0x20000, 0x2A6DF), "combining": (0x300, 0x36F), "digits_arabic": (0x660, 0x669),
    "digits_deva": (0x966, 0x96F), "digits_fullwidth": (0xFF10, 0xFF19), "private_use": (0xE000, 0xE0FF),
}
SPACES = [" ", "  ", "   ", "    ", "        ", "\t", "\t\t", " \t ", "\u00a0", "\u3000", "\u2009", "\u200b", "\u180e",
          "\u2028", "\u2029", "\u0085", "\u1680", "\u202f", "\u205f", "\ufeff", "\u000b", "\u000c", "\u001c", "\u200d"]
NEWLINES = ["\n", "\n\n", "\r\n", "\r\n\r\n", " \n", "\n  ", "\r", "\n\t", "  \n  ", "\n\n\n\n", " \r\n "]
SPECIAL = ["<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>", "<think>", "</think>",
           "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<|EOT|>", "<｜fim▁hole｜>",
           "<｜fim▁begin｜>", "<｜place▁holder▁no▁17｜>", "<｜▁pad▁｜>", "<|endoftext|>", "<｜User", "｜>", "<｜",
           "<｜User｜><｜Assistant｜>", " <｜User｜> "]
EMOJI = ["👨‍👩‍👧‍👦", "🏳️‍🌈", "👍🏽", "👋🏿", "🇯🇵", "🇺🇸🇫🇷", "❤️", "☺️", "1️⃣", "#️⃣", "🧑🏻‍💻", "👩‍❤️‍💋‍👨", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
         "😀", "🤖", "🫠", "🪿", "🫨", "✅", "⚠️", "🔥🔥🔥", "😂😂", "🙂‍↔️"]
COMBINING = ["e\u0301", "a\u0308\u0304", "n\u0303", "\u0915\u094d\u0937", "\u0e01\u0e34\u0e4d", "Z\u0351\u036b\u0343\u036a",
             "\u05e9\u05c1\u05b8", "\u1100\u1161\u11a8", "o\u0328\u0301", "\u0627\u0644\u0652"]
WORDS = ["the", "The", "THE", "don't", "won't", "I'm", "you're", "we've", "they'll", "she'd", "it's", "O'Neil",
         "hello", "world", "tokenizer", "DeepSeek", "V3", "mixture-of-experts", "naïve", "café", "Straße", "ǅemal",
         "über", "İstanbul", "ﬁnance", "Ⅻ", "x²", "½", "℃", "№", "e.g.", "etc.", "U.S.A.", "3.14", "1,000,000",
         "2024-01-01", "12:30:45", "v1.2.3", "0x1F", "1e-10", "-42", "+7", "100%", "$5", "€20", "#tag", "@user",
         "foo_bar", "fooBar", "FOO_BAR", "__init__", "a/b/c", "C:\\Windows", "https://example.com/a?b=c&d=e#f",
         "user@example.com", "--flag", "->", "=>", "!=", "<=", "...", "…", "—", "–", "«quote»", "“curly”", "‘single’",
         "(parens)", "[brackets]", "{braces}", "<angle>", "`tick`", "~tilde", "^caret", "|pipe|", "\\backslash"]
CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "#include <stdio.h>\nint main(void) { printf(\"hi\\n\"); return 0; }\n",
    "const x = {a: 1, b: [2, 3]};\nconsole.log(x?.a ?? 0);\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}\n",
    "<div class=\"x\">\n  <p>Hello &amp; bye</p>\n</div>\n",
    "{\"key\": \"value\", \"n\": 12345, \"arr\": [1.5, -2e3, null, true]}",
    "$ ls -la | grep '\\.txt$' && echo done\n",
    "    if x:\n        pass\n    else:\n        raise ValueError('bad')\n",
    "x = [i**2 for i in range(100) if i % 3 == 0]\r\nprint(x)\r\n",
    "\\begin{equation} E = mc^2 \\end{equation}",
    "// comment\n/* block\n   comment */\n",
    "a\tb\tc\n1\t2\t3\n",
]
PROSE = [
    "The quick brown fox jumps over the lazy dog.",
    "DeepSeek-V3 is a Mixture-of-Experts language model with 671B total parameters.",
    "她说：“我们明天去北京吧！”然后笑了。",
    "東京都は日本の首都です。ひらがなとカタカナ、そして漢字。",
    "서울은 대한민국의 수도입니다.",
    "Москва — столица России.",
    "Ελληνικά: Η γρήγορη καφέ αλεπού.",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "สวัสดีชาวโลก",
    "Tiếng Việt có dấu: Xin chào thế giới.",
    "Ça va? Très bien, merci! L'été dernier...",
    "Zürich, München und Köln sind Städte.",
]


def rand_range(rng, name):
    lo, hi = RANGES[name]
    return "".join(chr(rng.randrange(lo, hi + 1)) for _ in range(rng.randrange(1, 12)))


def synth(rng):
    parts = []
    for _ in range(rng.randrange(1, 16)):
        kind = rng.choice(["range", "range", "space", "newline", "digits", "special", "emoji", "combining", "word",
                           "word", "word", "code", "prose", "ascii"])
        if kind == "range":
            parts.append(rand_range(rng, rng.choice(sorted(RANGES))))
        elif kind == "space":
            parts.append(rng.choice(SPACES) * rng.randrange(1, 4))
        elif kind == "newline":
            parts.append(rng.choice(NEWLINES))
        elif kind == "digits":
            parts.append(str(rng.randrange(10 ** rng.randrange(1, 20))))
        elif kind == "special":
            parts.append(rng.choice(SPECIAL))
        elif kind == "emoji":
            parts.append("".join(rng.choice(EMOJI) for _ in range(rng.randrange(1, 4))))
        elif kind == "combining":
            parts.append(rng.choice(COMBINING))
        elif kind == "word":
            parts.append(rng.choice(["", " ", " ", "  "]) + rng.choice(WORDS))
        elif kind == "code":
            parts.append(rng.choice(CODE))
        elif kind == "prose":
            parts.append(rng.choice(PROSE))
        else:
            parts.append("".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randrange(1, 30))))
    return "".join(parts)


def surrogate_free(s):
    return "".join(c for c in s if not 0xD800 <= ord(c) <= 0xDFFF)


def main():
    rng = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    docs = ["", " ", "  ", "\n", "\t", "\r\n", "a", " a", "a ", "  leading", "trailing  ", "x\n\n\n\ny",
            "1", "12", "123", "1234", "1234567890123", "3.14159e-10", "don't won't I'm", "HELLO World",
            "😀" * 20, "中" * 50, "a" * 500, " " * 300, "\n" * 50, "\t" * 20 + "x", "1" * 100, "ab" * 200,
            "あ" * 30 + "ア" * 30, "🇯🇵🇯🇵🇯🇵", "\u180e", "a\u180eb", " \u180e ", "a\u00a0b", "\u3000\u3000x",
            "".join(SPECIAL), "<｜User｜>", "<｜User｜><｜User｜>", "x<｜User｜>y", "<<｜User｜>>", "<think>\n\n</think>\n\n"]
    docs += PROSE + CODE + WORDS[:40] + EMOJI + COMBINING
    docs += [synth(rng) for _ in range(420)]
    # One long mixed document per script family, to exercise long words and the BPE heap path.
    for name in ["cjk", "hangul", "arabic", "cyrillic", "devanagari", "thai", "emoji", "hiragana"]:
        lo, hi = RANGES[name]
        docs.append("".join(chr(rng.randrange(lo, hi + 1)) for _ in range(400)))
    for d in docs:
        print(json.dumps(surrogate_free(d), ensure_ascii=False))


if __name__ == "__main__":
    main()
