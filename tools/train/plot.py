#!/usr/bin/python3
"""The loss curve of a run (metrics.jsonl from train.py) as a PNG: training loss and MTP loss per
logged step, held-out loss and held-out MTP loss at each evaluation; optionally a second run
(--compare, e.g. the ablation without bias updates) dashed.

Usage: plot.py --metrics RUN/metrics.jsonl [--compare OTHER/metrics.jsonl --compare-label L] --out loss.png
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    recs = [json.loads(l) for l in open(path)]
    return [r for r in recs if "loss" in r], [r for r in recs if "heldout_loss" in r]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--label", default="bias updates (gamma 0.01)")
    ap.add_argument("--compare")
    ap.add_argument("--compare-label", default="no bias updates")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    runs = [(a.metrics, a.label, "-")] + ([(a.compare, a.compare_label, "--")] if a.compare else [])
    for path, label, ls in runs:
        tr, ev = read(path)
        ax.plot([r["step"] for r in tr], [r["loss"] for r in tr], ls, color="C0", label=f"train, {label}")
        ax.plot([r["step"] for r in tr], [r["mtp_loss"] for r in tr], ls, color="C1", label=f"train MTP, {label}")
        ax.plot([r["step"] for r in ev], [r["heldout_loss"] for r in ev], ls, color="C2", marker="o",
                label=f"held-out, {label}")
        ax2.plot([r["step"] for r in tr], [r["load_max_mean"] for r in tr], ls, color="C3", label=label)
    ax.set_xlabel("step (16 x 128 tokens)")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title("loss")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax2.set_xlabel("step")
    ax2.set_ylabel("max / mean tokens per expert")
    ax2.set_title("expert load (training batches, mean over MoE layers)")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.out, dpi=90)


if __name__ == "__main__":
    main()
