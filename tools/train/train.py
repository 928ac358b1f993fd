#!/usr/bin/python3
"""Trains a small DeepSeek-V3-architecture model (model.py) with DeepSeek-V3's recipe at small scale:
next-token loss + MTP loss (weight lambda, lowered late in training), auxiliary-loss-free load
balancing (each step, every MoE layer's e_score_correction_bias moves by gamma * sign(mean load -
expert load)), an optional tiny sequence-wise balance loss, AdamW, linear warm-up then cosine decay,
gradient clipping. Checkpoints (OUT/ckpt.pt) every --ckpt-every steps; --resume continues one.
Metrics go to OUT/metrics.jsonl; a progress line to stderr.

Usage: train.py --config configs/default.json --data DATA --tokenizer TOKDIR --out OUT [--steps N] ...
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Config, MoE, Transformer  # noqa: E402
from tokenizer import Tokenizer, doc_texts  # noqa: E402


def encode_docs(tok, path):
    """All documents of a corpus file as one id stream: text as BOS text EOS, dialogues through the
    chat template (BOS <User> u <Assistant> a EOS)."""
    ids = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["kind"] == "chat":
                ids += tok.chat(d["user"], d["assistant"])
            else:
                ids += [tok.bos] + tok.encode(doc_texts(d)[0]) + [tok.eos]
    return np.array(ids, dtype=np.int32)


def token_stream(tok_dir, data_dir, name, cache_dir):
    cache = os.path.join(cache_dir, f"tokens_{name}.npy")
    if os.path.exists(cache):
        return np.load(cache)
    ids = encode_docs(Tokenizer(tok_dir), os.path.join(data_dir, f"{name}.jsonl"))
    np.save(cache, ids)
    return ids


def lr_at(step, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    t = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def mtp_lambda(step, a):
    return a.mtp_lambda if step < a.mtp_switch * a.steps else a.mtp_lambda_late


def expert_counts(moe):
    idx = moe.last[0]
    return torch.bincount(idx.flatten(), minlength=moe.c.n_routed_experts).float()


def seq_balance_loss(moes, B):
    """DeepSeek-V3's complementary sequence-wise loss, sum_i f_i P_i per sequence (before alpha)."""
    total = 0.0
    for moe in moes:
        idx, scores, T = moe.last
        E, K = moe.c.n_routed_experts, moe.c.num_experts_per_tok
        s = scores / scores.sum(-1, keepdim=True)
        P = s.view(B, T, E).mean(1)                                              # [B, E]
        f = F.one_hot(idx.view(B, T * K), E).float().sum(1) * (E / (K * T))       # [B, E]
        total = total + (f * P).sum(-1).mean()
    return total


@torch.no_grad()
def update_biases(moes, gamma):
    """Aux-loss-free balancing: an overloaded expert's bias goes down by gamma, an underloaded one's up."""
    for moe in moes:
        load = expert_counts(moe)
        moe.gate.e_score_correction_bias += gamma * torch.sign(load.mean() - load)


def load_ratio(counts):
    """max/mean of per-expert token counts, averaged over MoE layers."""
    return float(np.mean([c.max().item() / c.mean().item() for c in counts]))


@torch.no_grad()
def evaluate(model, stream, seq, max_windows):
    """Held-out next-token loss, MTP loss, MTP top-1 agreement with the next-next token, and the
    experts' load max/mean, over non-overlapping windows of seq+1 tokens."""
    model.eval()
    n = min(max_windows, (len(stream) - 1) // seq)
    tot, mtp_tot, agree, cnt, mcnt = 0.0, 0.0, 0, 0, 0
    counts = [torch.zeros(m.c.n_routed_experts) for m in model.moe_layers()]
    for w in range(n):
        x = torch.from_numpy(stream[w * seq:w * seq + seq + 1].astype(np.int64))[None]
        logits, mlog = model(x[:, :-1])
        tot += F.cross_entropy(logits[0], x[0, 1:], reduction="sum").item()
        cnt += seq
        for i, m in enumerate(model.moe_layers()):
            counts[i] += expert_counts(m)
        if mlog is not None:
            mtp_tot += F.cross_entropy(mlog[0], x[0, 2:], reduction="sum").item()
            agree += (mlog[0].argmax(-1) == x[0, 2:]).sum().item()
            mcnt += seq - 1
    model.train()
    r = {"heldout_loss": tot / cnt, "heldout_ppl": math.exp(tot / cnt), "heldout_load_max_mean": load_ratio(counts),
         "heldout_tokens": cnt}
    if mcnt:
        r.update(heldout_mtp_loss=mtp_tot / mcnt, heldout_mtp_top1=agree / mcnt)
    return r


def save(path, model, opt, step, args, rng):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "args": vars(args),
                "config": model.c.d, "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="config.json of the model (Hugging Face fields)")
    ap.add_argument("--data", required=True, help="directory with train.jsonl and heldout.jsonl (corpus.py)")
    ap.add_argument("--tokenizer", required=True, help="directory with tokenizer.json (tokenizer.py)")
    ap.add_argument("--out", required=True, help="run directory: ckpt.pt, metrics.jsonl, token caches")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16, help="sequences per step")
    ap.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping")
    ap.add_argument("--gamma", type=float, default=1e-2, help="bias update speed; 0 turns aux-loss-free balancing off")
    ap.add_argument("--seq-aux-alpha", type=float, default=1e-4, help="sequence-wise balance loss weight (0: off)")
    ap.add_argument("--mtp-lambda", type=float, default=0.3)
    ap.add_argument("--mtp-lambda-late", type=float, default=0.1)
    ap.add_argument("--mtp-switch", type=float, default=0.7, help="fraction of steps after which lambda is late")
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-windows", type=int, default=64)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stop-at", type=int, default=0, help="stop (and save) after this step, the schedule still "
                    "being that of --steps (a shorter run comparable at equal steps)")
    ap.add_argument("--resume", action="store_true", help="continue OUT/ckpt.pt")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    cfg = json.load(open(a.config))
    model = Transformer(Config(cfg))
    model.init_weights(a.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed_tokens" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed_tokens" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    rng = random.Random(a.seed)
    torch.manual_seed(a.seed)
    step = 0
    ckpt = os.path.join(a.out, "ckpt.pt")
    if a.resume:
        if not os.path.exists(ckpt):
            sys.exit(f"train.py: --resume: {ckpt} does not exist")
        st = torch.load(ckpt)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        rng.setstate(st["rng"])
        torch.set_rng_state(st["torch_rng"])
        print(f"resumed at step {step}", file=sys.stderr)
    train = token_stream(a.tokenizer, a.data, "train", a.out)
    heldout = token_stream(a.tokenizer, a.data, "heldout", a.out)
    if model.c.vocab_size < max(train.max(), heldout.max()) + 1:
        sys.exit(f"train.py: the tokenizer has ids up to {train.max()}; config vocab_size is {model.c.vocab_size}")
    print(f"data: {len(train)} training tokens, {len(heldout)} held-out; "
          f"{sum(p.numel() for p in model.parameters())} parameters", file=sys.stderr)
    moes = model.moe_layers()
    metrics = open(os.path.join(a.out, "metrics.jsonl"), "a")
    t0, tok_since, win = time.time(), 0, {"loss": [], "mtp": [], "counts": None}
    model.train()
    last = min(a.steps, a.stop_at) if a.stop_at > 0 else a.steps
    while step < last:
        offs = [rng.randrange(0, len(train) - a.seq - 1) for _ in range(a.batch)]
        x = torch.from_numpy(np.stack([train[o:o + a.seq + 1] for o in offs]).astype(np.int64))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a)
        logits, mlog = model(x[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
        total = loss
        mloss = None
        if mlog is not None:
            mloss = F.cross_entropy(mlog.flatten(0, 1), x[:, 2:].flatten())
            total = total + mtp_lambda(step, a) * mloss
        if a.seq_aux_alpha > 0:
            total = total + a.seq_aux_alpha * seq_balance_loss(moes, a.batch)
        opt.zero_grad(set_to_none=True)
        total.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip).item()
        opt.step()
        counts = [expert_counts(m) for m in moes]
        if a.gamma > 0:
            update_biases(moes, a.gamma)
        step += 1
        tok_since += a.batch * a.seq
        win["loss"].append(loss.item())
        win["mtp"].append(mloss.item() if mloss is not None else float("nan"))
        win["counts"] = counts if win["counts"] is None else [p + c for p, c in zip(win["counts"], counts)]
        if step % a.log_every == 0 or step == last:
            dt = time.time() - t0
            rec = {"step": step, "loss": float(np.mean(win["loss"])), "mtp_loss": float(np.mean(win["mtp"])),
                   "lr": lr_at(step - 1, a), "grad_norm": gnorm, "tokens_per_s": tok_since / dt,
                   "load_max_mean": load_ratio(win["counts"]),
                   "bias_absmax": max(m.gate.e_score_correction_bias.abs().max().item() for m in moes) if moes else 0.0}
            print(f"step {step}/{a.steps} loss {rec['loss']:.4f} mtp {rec['mtp_loss']:.4f} lr {rec['lr']:.2e} "
                  f"gnorm {gnorm:.2f} {rec['tokens_per_s']:.0f} tok/s load max/mean {rec['load_max_mean']:.3f} "
                  f"|bias| {rec['bias_absmax']:.3f}", file=sys.stderr, flush=True)
            metrics.write(json.dumps(rec) + "\n")
            metrics.flush()
            t0, tok_since, win = time.time(), 0, {"loss": [], "mtp": [], "counts": None}
        if step % a.eval_every == 0 or step == last:
            rec = {"step": step, **evaluate(model, heldout, a.seq, a.eval_windows)}
            print("eval " + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in rec.items()),
                  file=sys.stderr, flush=True)
            metrics.write(json.dumps(rec) + "\n")
            metrics.flush()
            t0 = time.time()
        if step % a.ckpt_every == 0 or step == last:
            save(ckpt, model, opt, step, a, rng)
            t0 = time.time()


if __name__ == "__main__":
    main()
