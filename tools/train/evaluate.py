#!/usr/bin/python3
"""Measures an exported model (Hugging Face directory) on the held-out chapters (corpus.py's
heldout.jsonl): perplexity, the MTP module's top-1 agreement with the next-next token, the MTP
module's top-1 agreement with the main model's own greedy choice there (what greedy MTP speculative
decoding accepts: the draft for position i+2 against the main model's argmax at i+1), and the
experts' load max/mean with the trained biases and with them zeroed. Prints JSON.

Usage: evaluate.py --model DIR --data DATA [--windows N] [--seq 128]
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint import load  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402
from train import encode_docs, expert_counts  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="directory with heldout.jsonl")
    ap.add_argument("--windows", type=int, default=0, help="at most this many windows (0: all)")
    ap.add_argument("--seq", type=int, default=128)
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, cfg = load(a.model)
    model.eval()
    ids = encode_docs(Tokenizer(a.model), os.path.join(a.data, "heldout.jsonl"))
    n = (len(ids) - 1) // a.seq
    if a.windows:
        n = min(n, a.windows)
    moes = model.moe_layers()
    main_moes = len(moes) - (cfg.get("num_nextn_predict_layers") or 0)  # the MTP layer's MoE comes last
    nll = mtp_nll = 0.0
    hit_truth = hit_main = cnt = mcnt = 0
    counts = [torch.zeros(m.c.n_routed_experts) for m in moes]
    with torch.no_grad():
        for w in range(n):
            x = torch.from_numpy(ids[w * a.seq:w * a.seq + a.seq + 1].astype(np.int64))[None]
            logits, mlog = model(x[:, :-1])
            nll += F.cross_entropy(logits[0], x[0, 1:], reduction="sum").item()
            cnt += a.seq
            for i, m in enumerate(moes):
                counts[i] += expert_counts(m)
            draft = mlog[0].argmax(-1)                       # [seq-1]: guesses for x[2:]
            mtp_nll += F.cross_entropy(mlog[0], x[0, 2:], reduction="sum").item()
            hit_truth += (draft == x[0, 2:]).sum().item()
            hit_main += (draft == logits[0, 1:].argmax(-1)).sum().item()
            mcnt += a.seq - 1
        ratio = [c.max().item() / c.mean().item() for c in counts]
        saved = [m.gate.e_score_correction_bias.clone() for m in moes]
        for m in moes:
            m.gate.e_score_correction_bias.zero_()
        zc = [torch.zeros(m.c.n_routed_experts) for m in moes]
        for w in range(n):
            x = torch.from_numpy(ids[w * a.seq:w * a.seq + a.seq].astype(np.int64))[None]
            model(x, mtp=False)
            for i, m in enumerate(moes[:main_moes]):
                zc[i] += expert_counts(m)
        for m, b in zip(moes, saved):
            m.gate.e_score_correction_bias.copy_(b)
    zratio = [c.max().item() / c.mean().item() for c in zc[:main_moes]]
    print(json.dumps({
        "heldout_tokens": cnt, "heldout_loss": nll / cnt, "heldout_ppl": math.exp(nll / cnt),
        "mtp_loss": mtp_nll / mcnt, "mtp_top1_vs_next_next_token": hit_truth / mcnt,
        "mtp_top1_vs_main_model_greedy": hit_main / mcnt,
        "load_max_mean_per_moe_layer": [round(r, 3) for r in ratio],
        "load_max_mean_mean_main_layers": float(np.mean(ratio[:main_moes])),
        "load_max_mean_main_layers_biases_zeroed": [round(r, 3) for r in zratio],
    }, indent=1))


if __name__ == "__main__":
    main()
