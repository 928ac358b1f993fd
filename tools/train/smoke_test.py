#!/usr/bin/python3
"""CTest: a 20-step training run of a tiny model (configs/tiny.json) on a few chapters
(tests/data/train/smoke.jsonl) with the committed tokenizer. Checks that the loss falls, that the
bias updates moved the experts toward balance (the trained biases give a lower load max/mean on the
training text than zero biases), that --resume continues the run, and that the export loads in dsv3
(`dsv3 logits`, compared with model.py by check_forward.py).

Usage: smoke_test.py --dsv3 build/dsv3 --tokenizer DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from model import Config, Transformer  # noqa: E402
from train import expert_counts, load_ratio  # noqa: E402


def fail(msg):
    sys.exit(f"smoke_test: FAIL: {msg}")


def train(out, data, tok, steps, extra=()):
    cmd = [sys.executable, os.path.join(HERE, "train.py"), "--config", os.path.join(HERE, "configs", "tiny.json"),
           "--data", data, "--tokenizer", tok, "--out", out, "--steps", "20", "--stop-at", str(steps),
           "--batch", "8", "--seq", "64", "--lr", "1e-2", "--warmup", "2", "--gamma", "0.02", "--log-every", "5",
           "--eval-every", "10", "--eval-windows", "4", "--ckpt-every", "10", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(p.stderr)
    if p.returncode != 0:
        fail(f"{' '.join(cmd)} exited with {p.returncode}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsv3", required=True)
    ap.add_argument("--tokenizer", required=True, help="directory with the committed tokenizer files")
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data, out = os.path.join(tmp, "data"), os.path.join(tmp, "run")
        os.makedirs(data)
        for name in ("train.jsonl", "heldout.jsonl"):
            shutil.copyfile(os.path.join(ROOT, "tests", "data", "train", "smoke.jsonl"), os.path.join(data, name))
        train(out, data, a.tokenizer, 10)
        train(out, data, a.tokenizer, 20, ["--resume"])  # the second half continues the checkpoint
        recs = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
        steps = [r for r in recs if "loss" in r]
        if [r["step"] for r in steps] != [5, 10, 15, 20]:
            fail(f"logged steps {[r['step'] for r in steps]}, expected 5, 10, 15, 20 (did --resume continue?)")
        first, last = steps[0]["loss"], steps[-1]["loss"]
        print(f"loss {first:.3f} (steps 1-5) -> {last:.3f} (steps 16-20)")
        if not last < first - 0.5:
            fail(f"the loss did not fall: {first:.3f} -> {last:.3f}")

        st = torch.load(os.path.join(out, "ckpt.pt"))
        if st["step"] != 20:
            fail(f"checkpoint at step {st['step']}, expected 20")
        model = Transformer(Config(st["config"]))
        model.load_state_dict(st["model"])
        model.eval()
        ids = np.load(os.path.join(out, "tokens_train.npy"))
        x = torch.from_numpy(ids[:8 * 64].astype(np.int64)).view(8, 64)

        def ratio():
            with torch.no_grad():
                model(x)
            return load_ratio([expert_counts(m) for m in model.moe_layers()])

        trained = ratio()
        biases = [m.gate.e_score_correction_bias.clone() for m in model.moe_layers()]
        for m in model.moe_layers():
            m.gate.e_score_correction_bias.zero_()
        zero = ratio()
        print(f"expert load max/mean: {trained:.3f} with the trained biases, {zero:.3f} with zero biases; "
              f"|bias| max {max(b.abs().max().item() for b in biases):.3f}")
        if not trained < zero:
            fail("the bias updates did not move the experts toward balance")

        exp = os.path.join(tmp, "export")
        subprocess.run([sys.executable, os.path.join(HERE, "export.py"), "--ckpt", os.path.join(out, "ckpt.pt"),
                        "--tokenizer", a.tokenizer, "--out", exp], check=True)
        p = subprocess.run([sys.executable, os.path.join(HERE, "check_forward.py"), "--dsv3", a.dsv3, "--model", exp,
                            "--ids", "0,5,6,7,8,9,10", "--decode", "2"], capture_output=True, text=True)
        print(p.stdout + p.stderr, end="")
        if p.returncode != 0:
            fail("the export does not load in dsv3 or disagrees with model.py")
    print("smoke_test: OK")


if __name__ == "__main__":
    main()
