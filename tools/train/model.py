"""A DeepSeek-V3-architecture model in PyTorch, computing what dsv3 computes (the semantics of
DeepSeek's inference/model.py as shared/golden/README.md states them), with parameter names that
are the Hugging Face checkpoint's tensor names, so that state_dict() is the checkpoint.

- MLA: q = q_b_proj(q_a_layernorm(q_a_proj(x))) (or q_proj(x) without q-LoRA), per head
  [nope | rope]; kv_a_proj_with_mqa gives [c_kv | k_pe]; kv_b_proj(kv_a_layernorm(c_kv)) gives per
  head [k_nope | v]; rope on adjacent pairs (2i, 2i+1); float32 softmax; causal.
- RoPE with YaRN whenever config.rope_scaling asks for it (dsv3's rule), softmax scale times
  mscale^2 then.
- MoE: sigmoid (or softmax) scores; experts *selected* by score + e_score_correction_bias within the
  topk_group best groups (group score = sum of its two best biased scores, dropped groups -inf);
  *weighted* by the unbiased score, renormalised when norm_topk_prob, times routed_scaling_factor;
  plus shared experts. The first first_k_dense_replace layers are dense.
- MTP (layer num_hidden_layers): x = eh_proj([enorm(embed(t[i+1])) | hnorm(h[i])]) with h the main
  model's hidden state AFTER model.norm (dsv3's convention), then its own block, then
  shared_head.norm and the shared head. Embedding and head are the main model's (tied in training;
  the export writes copies as embed_tokens / shared_head.head of that layer).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    """The config.json fields the model reads (names as in config.json)."""

    def __init__(self, d):
        self.d = dict(d)
        for k in ("vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "n_group",
                  "topk_group", "first_k_dense_replace", "routed_scaling_factor", "scoring_func", "norm_topk_prob",
                  "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "rms_norm_eps",
                  "rope_theta", "num_nextn_predict_layers"):
            setattr(self, k, d.get(k))
        self.rope_scaling = d.get("rope_scaling")
        self.moe_layer_freq = d.get("moe_layer_freq", 1)
        if d.get("model_type") != "deepseek_v3":
            raise ValueError(f"config.json: model_type must be deepseek_v3, not {d.get('model_type')!r}")

    def is_moe_layer(self, il):
        return (self.n_routed_experts is not None and il >= self.first_k_dense_replace
                and il % self.moe_layer_freq == 0)


def yarn_get_mscale(scale, mscale):
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def rope_inv_freq(c):
    """[qk_rope_head_dim/2] float32, YaRN-corrected when the config asks for YaRN."""
    d, base = c.qk_rope_head_dim, float(c.rope_theta)
    freqs = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    rs = c.rope_scaling
    if rs and rs.get("type", rs.get("rope_type")) == "yarn":
        factor, orig = float(rs["factor"]), float(rs["original_max_position_embeddings"])
        beta_fast, beta_slow = float(rs.get("beta_fast", 32)), float(rs.get("beta_slow", 1))

        def corr_dim(rot):
            return d * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(base))

        low = max(math.floor(corr_dim(beta_fast)), 0)
        high = min(math.ceil(corr_dim(beta_slow)), d - 1)
        if low == high:
            high += 0.001
        ramp = torch.clamp((torch.arange(d // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
        smooth = 1 - ramp
        freqs = freqs / factor * (1 - smooth) + freqs * smooth
    return freqs


def softmax_scale(c):
    s = (c.qk_nope_head_dim + c.qk_rope_head_dim) ** -0.5
    rs = c.rope_scaling
    if rs and rs.get("type", rs.get("rope_type")) == "yarn":
        m = yarn_get_mscale(float(rs["factor"]), float(rs.get("mscale_all_dim", 1.0)))
        s = s * m * m
    return s


def apply_rope(x, cos, sin):
    """x [..., T, H, d]: rotates adjacent pairs (2i, 2i+1) by pos * f_i. cos/sin [T, d/2]."""
    xr = x.float().unflatten(-1, (-1, 2))
    a, b = xr[..., 0], xr[..., 1]
    cos, sin = cos[:, None, :], sin[:, None, :]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def linear(i, o):
    return nn.Linear(i, o, bias=False)


class MLA(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        h, H = c.hidden_size, c.num_attention_heads
        qk = c.qk_nope_head_dim + c.qk_rope_head_dim
        if c.q_lora_rank:
            self.q_a_proj = linear(h, c.q_lora_rank)
            self.q_a_layernorm = RMSNorm(c.q_lora_rank, c.rms_norm_eps)
            self.q_b_proj = linear(c.q_lora_rank, H * qk)
        else:
            self.q_proj = linear(h, H * qk)
        self.kv_a_proj_with_mqa = linear(h, c.kv_lora_rank + c.qk_rope_head_dim)
        self.kv_a_layernorm = RMSNorm(c.kv_lora_rank, c.rms_norm_eps)
        self.kv_b_proj = linear(c.kv_lora_rank, H * (c.qk_nope_head_dim + c.v_head_dim))
        self.o_proj = linear(H * c.v_head_dim, h)
        self.scale = softmax_scale(c)

    def forward(self, x, cos, sin):  # x [B, T, hidden]
        c = self.c
        B, T, _ = x.shape
        H, dn, dr, dv = c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if c.q_lora_rank else self.q_proj(x)
        q = q.view(B, T, H, dn + dr)
        q_nope, q_pe = q.split([dn, dr], dim=-1)
        q_pe = apply_rope(q_pe, cos, sin)                                  # [B, T, H, dr]
        kv = self.kv_a_proj_with_mqa(x)
        c_kv, k_pe = kv.split([c.kv_lora_rank, dr], dim=-1)
        k_pe = apply_rope(k_pe.unsqueeze(2), cos, sin)                     # [B, T, 1, dr]
        kv = self.kv_b_proj(self.kv_a_layernorm(c_kv)).view(B, T, H, dn + dv)
        k_nope, v = kv.split([dn, dv], dim=-1)
        scores = (torch.einsum("bshd,bthd->bhst", q_nope, k_nope) +
                  torch.einsum("bshd,btd->bhst", q_pe, k_pe[:, :, 0])) * self.scale
        mask = torch.full((T, T), float("-inf"), device=x.device).triu(1)
        p = (scores.float() + mask).softmax(dim=-1).type_as(x)
        o = torch.einsum("bhst,bthd->bshd", p, v).reshape(B, T, H * dv)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, h, inter):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = linear(h, inter), linear(h, inter), linear(inter, h)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.weight = nn.Parameter(torch.empty(c.n_routed_experts, c.hidden_size))
        # Selection only (aux-loss-free balancing); trained by the load rule, not by gradients.
        self.register_buffer("e_score_correction_bias", torch.zeros(c.n_routed_experts))

    def forward(self, x):  # x [N, hidden] -> weights [N, k], indices [N, k], scores [N, E]
        c = self.c
        logits = F.linear(x.float(), self.weight.float())
        scores = logits.sigmoid() if c.scoring_func == "sigmoid" else logits.softmax(dim=-1)
        choice = scores.detach() + self.e_score_correction_bias
        N, E, G = x.shape[0], c.n_routed_experts, c.n_group or 1
        if G > 1:
            grouped = choice.view(N, G, E // G)
            group_scores = grouped.topk(2, dim=-1)[0].sum(-1)              # [N, G]
            keep = group_scores.topk(c.topk_group, dim=-1)[1]
            dropped = torch.ones(N, G, dtype=torch.bool, device=x.device).scatter(1, keep, False)
            choice = grouped.masked_fill(dropped.unsqueeze(-1), float("-inf")).flatten(1)
        idx = choice.topk(c.num_experts_per_tok, dim=-1)[1]
        w = scores.gather(1, idx)
        if c.norm_topk_prob:
            w = w / w.sum(dim=-1, keepdim=True)
        return w * c.routed_scaling_factor, idx, scores


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.gate = Gate(c)
        self.experts = nn.ModuleList(MLP(c.hidden_size, c.moe_intermediate_size) for _ in range(c.n_routed_experts))
        if c.n_shared_experts:
            self.shared_experts = MLP(c.hidden_size, c.moe_intermediate_size * c.n_shared_experts)
        self.last = None  # (indices [B*T, k], scores [B*T, E], T) of the last forward: for balancing

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        w, idx, scores = self.gate(x)
        self.last = (idx, scores, shape[-2])
        y = torch.zeros_like(x)
        for e in range(self.c.n_routed_experts):
            rows, slot = torch.nonzero(idx == e, as_tuple=True)
            if rows.numel():
                y = y.index_add(0, rows, self.experts[e](x[rows]) * w[rows, slot, None].type_as(x))
        if self.c.n_shared_experts:
            y = y + self.shared_experts(x)
        return y.view(shape)


class Block(nn.Module):
    def __init__(self, c, il):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = MLA(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = MoE(c) if c.is_moe_layer(il) else MLP(c.hidden_size, c.intermediate_size)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class SharedHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class MTPLayer(Block):
    def __init__(self, c, il):
        super().__init__(c, il)
        self.enorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.hnorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.eh_proj = linear(2 * c.hidden_size, c.hidden_size)
        self.shared_head = SharedHead(c)


class Body(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        layers = [Block(c, il) for il in range(c.num_hidden_layers)]
        layers += [MTPLayer(c, c.num_hidden_layers + i) for i in range(c.num_nextn_predict_layers or 0)]
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class Transformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Body(c)
        self.lm_head = linear(c.hidden_size, c.vocab_size)
        self.register_buffer("inv_freq", rope_inv_freq(c), persistent=False)

    def rope(self, T, device):
        ang = torch.outer(torch.arange(T, dtype=torch.float32, device=device), self.inv_freq)
        return ang.cos(), ang.sin()

    def init_weights(self, seed, std=0.02):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("norm.weight") or "layernorm" in name:
                    p.fill_(1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=g) * std)

    def mtp_layers(self):
        return list(self.model.layers[self.c.num_hidden_layers:])

    def forward(self, ids, mtp=True):
        """ids [B, T] -> logits [B, T, V], and MTP logits [B, T-1, V] (row i predicts ids[i+2])."""
        c = self.c
        B, T = ids.shape
        cos, sin = self.rope(T, ids.device)
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers[:c.num_hidden_layers]:
            x = layer(x, cos, sin)
        h = self.model.norm(x)
        logits = self.lm_head(h)
        if not mtp or not self.mtp_layers() or T < 2:
            return logits, None
        m = self.mtp_layers()[0]
        e = self.model.embed_tokens(ids[:, 1:])
        x = m.eh_proj(torch.cat([m.enorm(e), m.hnorm(h[:, :-1])], dim=-1))
        cos, sin = cos[:T - 1], sin[:T - 1]
        x = m(x, cos, sin)
        return logits, self.lm_head(m.shared_head.norm(x))

    def moe_layers(self):
        return [l.mlp for l in self.model.layers if isinstance(l.mlp, MoE)]
