#!/usr/bin/python3
"""Writes a training checkpoint (train.py's ckpt.pt) as a Hugging Face model directory that dsv3
loads: config.json (model_type deepseek_v3), model.safetensors in BF16 (+ index; the MTP layer as
layer num_hidden_layers with its embed_tokens / shared_head.head), and the tokenizer files.

Usage: export.py --ckpt RUN/ckpt.pt --tokenizer TOKDIR --out DIR
"""
import argparse
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint import export  # noqa: E402
from model import Config, Transformer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="ckpt.pt written by train.py")
    ap.add_argument("--tokenizer", required=True, help="directory with tokenizer.json and tokenizer_config.json")
    ap.add_argument("--out", required=True, help="output directory (Hugging Face layout)")
    a = ap.parse_args()
    if not os.path.exists(a.ckpt):
        sys.exit(f"export.py: --ckpt {a.ckpt} does not exist")
    st = torch.load(a.ckpt)
    model = Transformer(Config(st["config"]))
    model.load_state_dict(st["model"])
    os.makedirs(a.out, exist_ok=True)
    size = export(model, st["config"], a.out)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(a.tokenizer, f)
        if not os.path.exists(src):
            sys.exit(f"export.py: --tokenizer: {src} does not exist")
        dst = os.path.join(a.out, f)
        if not (os.path.exists(dst) and os.path.samefile(src, dst)):
            shutil.copyfile(src, dst)
    print(f"export: step {st['step']}, {size / 1e6:.1f} MB of weights -> {a.out}")


if __name__ == "__main__":
    main()
