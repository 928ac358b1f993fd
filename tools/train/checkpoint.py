"""Hugging Face layout I/O for model.py: safetensors written and read with the format's own rules
(8-byte little-endian header size, JSON header, raw little-endian data), BF16 weights with the F32
e_score_correction_bias as DeepSeek ships them, and the MTP layer's embed_tokens /
shared_head.head written as copies of the main model's (DeepSeek's checkpoints carry them)."""
import json
import os
import struct

import numpy as np
import torch

from model import Config, Transformer

DTYPES = {"BF16": (torch.bfloat16, 2), "F32": (torch.float32, 4), "F16": (torch.float16, 2)}


def hf_tensors(model):
    """name -> tensor (float32 master values), HF names, MTP copies added."""
    out = {k: v.detach().float() for k, v in model.state_dict().items()}
    c = model.c
    for i in range(c.num_nextn_predict_layers or 0):
        p = f"model.layers.{c.num_hidden_layers + i}."
        out[p + "embed_tokens.weight"] = out["model.embed_tokens.weight"]
        out[p + "shared_head.head.weight"] = out["lm_head.weight"]
    return out


def write_safetensors(path, tensors):
    """tensors: name -> (dtype name, torch tensor already in that dtype)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        dt, t = tensors[name]
        t = t.contiguous().cpu()
        raw = (t.view(torch.int16) if dt == "BF16" else t).numpy().tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(path + ".tmp", path)
    return off


def read_safetensors(path):
    """name -> float32 tensor."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        if h["dtype"] not in DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {h['dtype']}; this reader takes BF16, F16, F32")
        a, b = h["data_offsets"]
        raw = data[a:b]
        if h["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(raw, dtype=np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=np.float32 if h["dtype"] == "F32" else np.float16).copy())
        out[name] = t.reshape(h["shape"]).float()
    return out


def export(model, config_dict, out_dir):
    """Writes config.json, model.safetensors (+ index) in BF16; returns the bytes of weights."""
    os.makedirs(out_dir, exist_ok=True)
    tensors = {}
    for k, v in hf_tensors(model).items():
        keep_f32 = k.endswith("e_score_correction_bias")
        tensors[k] = ("F32", v.float()) if keep_f32 else ("BF16", v.to(torch.bfloat16))
    size = write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors)
    index = {"metadata": {"total_size": size}, "weight_map": {k: "model.safetensors" for k in sorted(tensors)}}
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config_dict, f, indent=2)
    return size


def load(model_dir):
    """A Transformer (float32) from a Hugging Face directory written by export (or any
    single-file BF16/F32 checkpoint of this architecture)."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    model = Transformer(Config(cfg))
    idx_path = os.path.join(model_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx_path))["weight_map"].values())) if os.path.exists(idx_path) else ["model.safetensors"]
    tensors = {}
    for f in files:
        tensors.update(read_safetensors(os.path.join(model_dir, f)))
    c = model.c
    for i in range(c.num_nextn_predict_layers or 0):
        p = f"model.layers.{c.num_hidden_layers + i}."
        for copy, main in (("embed_tokens.weight", "model.embed_tokens.weight"), ("shared_head.head.weight", "lm_head.weight")):
            t = tensors.pop(p + copy, None)
            if t is not None and not torch.equal(t, tensors[main]):
                raise ValueError(f"{model_dir}: {p + copy} differs from {main}; model.py ties them")
    missing = set(model.state_dict()) - set(tensors)
    extra = set(tensors) - set(model.state_dict())
    if missing or extra:
        raise ValueError(f"{model_dir}: missing tensors {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
    model.load_state_dict(tensors)
    return model, cfg
