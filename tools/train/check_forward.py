#!/usr/bin/python3
"""The trainer's PyTorch forward (model.py) against dsv3 on the same checkpoint: `dsv3 logits`
(prefill, greedy decode steps, MTP logits) must agree with model.py's logits within --tol max abs,
with the same greedy tokens. A second oracle beside DeepSeek's reference goldens, and the proof that
what train.py optimises is what dsv3 runs.

Usage: check_forward.py --dsv3 build/dsv3 (--model DIR | --random CONFIG [--seed N]) [--ids 0,5,...]
--random writes a checkpoint with random weights and random e_score_correction_bias (the trainer's
export) to a temporary directory first.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint import export, load  # noqa: E402
from model import Config, Transformer  # noqa: E402


def random_model(config_path, seed, out_dir):
    cfg = json.load(open(config_path))
    m = Transformer(Config(cfg))
    m.init_weights(seed, std=0.1)  # larger than training's init: sharper logits and routing
    g = torch.Generator().manual_seed(seed + 1)
    for moe in m.moe_layers():
        moe.gate.e_score_correction_bias.copy_(torch.randn(moe.c.n_routed_experts, generator=g) * 0.05)
    export(m, cfg, out_dir)


def run(a, model_dir):
    model, cfg = load(model_dir)
    model.eval()
    V = cfg["vocab_size"]
    prompt = [int(x) for x in a.ids.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        out, mtp_out = os.path.join(tmp, "logits.bin"), os.path.join(tmp, "mtp.bin")
        cmd = [a.dsv3, "logits", "--model", model_dir, "--ids", a.ids, "--decode", str(a.decode), "--out", out,
               "--threads", "1"]
        has_mtp = bool(cfg.get("num_nextn_predict_layers"))
        if has_mtp:
            cmd += ["--mtp-out", mtp_out]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"check_forward: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
        rows = np.fromfile(out, dtype=np.float32).reshape(-1, V)
        mtp_rows = np.fromfile(mtp_out, dtype=np.float32).reshape(-1, V) if has_mtp else None
    # dsv3 row k (k >= 1) is the logits after feeding greedy token k-1: recompute each from the
    # whole sequence (the same function as decoding with a cache).
    toks = []
    worst = 0.0
    seq = list(prompt)
    with torch.no_grad():
        for k in range(rows.shape[0]):
            logits, mlog = model(torch.tensor([seq]), mtp=(k == 0))
            ref = logits[0, -1].numpy()
            worst = max(worst, float(np.abs(ref - rows[k]).max()))
            if k == 0 and has_mtp:
                d_mtp = float(np.abs(mlog[0].numpy() - mtp_rows).max())
            toks.append(int(ref.argmax()))
            if int(rows[k].argmax()) != toks[-1]:
                sys.exit(f"check_forward: {model_dir}: row {k}: dsv3's greedy token {int(rows[k].argmax())} != "
                         f"model.py's {toks[-1]}")
            seq.append(toks[-1])
    scale = float(np.abs(rows).max())
    msg = (f"{model_dir}: {rows.shape[0]} rows, max |dsv3 - model.py| logits {worst:.2e}"
           + (f", MTP ({mtp_rows.shape[0]} rows) {d_mtp:.2e}" if has_mtp else "") + f"; max |logit| {scale:.2f}; "
           f"greedy {toks}")
    print(msg)
    if worst > a.tol or (has_mtp and d_mtp > a.tol):
        sys.exit(f"check_forward: FAIL: difference above {a.tol}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsv3", required=True, help="the dsv3 binary")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="a checkpoint directory (Hugging Face layout, BF16/F32)")
    g.add_argument("--random", metavar="CONFIG", help="a config.json: make a random checkpoint of it")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--ids", default="0,17,345,1023,512,77,900,5,611,128,129,940,3,777,256,1000,42,42,42,301")
    ap.add_argument("--decode", type=int, default=8)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.model:
        run(a, a.model)
        return
    with tempfile.TemporaryDirectory() as tmp:
        random_model(a.random, a.seed, tmp)
        run(a, tmp)


if __name__ == "__main__":
    main()
