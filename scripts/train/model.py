"""A small qwen35 (Qwen3.5 dense) model in PyTorch: Gated DeltaNet + gated attention, 3:1,
with one MTP (NextN) block. Written to match llama.cpp's qwen35 graph (see
shared/spec/qwen35-forward.md) after the +1 folding done at export.

Conventions that differ from HF Qwen3.5 on purpose:
* GDN value heads are in the GGUF's *tiled* order natively: value head j uses key head
  j % H_k (HF uses j // r and the converter permutes). The export writes them as they are.
* The conv weight is stored as [conv_dim, K] (HF: [conv_dim, 1, K]).
Norms are zero-centred (y = norm(x) * (1 + w)) except the GDN gated norm (y = norm(x) * w),
exactly as in HF; the export adds 1 to the zero-centred ones.

Two paths: `forward` (parallel, teacher forcing; GDN in chunked WY form) and `step` /
`mtp_step` (one token with recurrent state and KV caches, as llama.cpp decodes). A test
(test_model.py) checks they agree.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab: int = 4096
    n_embd: int = 512
    n_layer: int = 8  # trunk layers; the MTP block is extra
    full_attention_interval: int = 4
    n_ff: int = 768
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 128
    n_rot: int = 32  # 25% of head_dim
    rope_base: float = 1.0e7
    ssm_h_k: int = 2  # GDN key heads (ssm.group_count)
    ssm_h_v: int = 4  # GDN value heads (ssm.time_step_rank)
    ssm_d: int = 128  # d_k = d_v (ssm.state_size)
    conv_k: int = 4
    eps: float = 1e-6
    ctx: int = 512
    chunk: int = 64

    def is_recurrent(self, il: int) -> bool:
        return il < self.n_layer and (il + 1) % self.full_attention_interval != 0

    def to_dict(self) -> dict:
        return asdict(self)


def _cdt(x: torch.Tensor) -> torch.dtype:
    """Compute dtype: float32, or float64 when the input is float64 (used by the tests)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.to(_cdt(x))
    return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)


class ZNorm(nn.Module):
    """Zero-centred RMSNorm: y = norm(x) * (1 + w). Exported as 1 + w."""

    def __init__(self, n: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(n))

    def forward(self, x):
        return (rms(x, self.eps) * (1.0 + self.weight.to(_cdt(x)))).to(x.dtype)


def rope(x: torch.Tensor, pos: torch.Tensor, n_rot: int, base: float) -> torch.Tensor:
    """NeoX rotate-half over the first n_rot dims. x: [B, T, H, hd], pos: [T]."""
    half = n_rot // 2
    inv = base ** (-torch.arange(half, dtype=torch.float64, device=x.device) * 2.0 / n_rot)
    ang = pos.to(torch.float64)[:, None] * inv[None, :]
    cos = ang.cos().to(_cdt(x))[None, :, None, :]
    sin = ang.sin().to(_cdt(x))[None, :, None, :]
    xf = x.to(_cdt(x))
    x0, x1, rest = xf[..., :half], xf[..., half:n_rot], xf[..., n_rot:]
    out = torch.cat([x0 * cos - x1 * sin, x0 * sin + x1 * cos, rest], dim=-1)
    return out.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.q_proj = nn.Linear(c.n_embd, 2 * c.n_head * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.n_embd, c.n_head_kv * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.n_embd, c.n_head_kv * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.n_head * c.head_dim, c.n_embd, bias=False)
        self.q_norm = ZNorm(c.head_dim, c.eps)
        self.k_norm = ZNorm(c.head_dim, c.eps)

    def forward(self, x, pos0: int = 0, cache: dict | None = None):
        c = self.c
        B, T, _ = x.shape
        qg = self.q_proj(x).view(B, T, c.n_head, 2 * c.head_dim)
        q, gate = qg[..., : c.head_dim], qg[..., c.head_dim :]
        k = self.k_proj(x).view(B, T, c.n_head_kv, c.head_dim)
        v = self.v_proj(x).view(B, T, c.n_head_kv, c.head_dim)
        q, k = self.q_norm(q), self.k_norm(k)
        pos = torch.arange(pos0, pos0 + T, device=x.device)
        q, k = rope(q, pos, c.n_rot, c.rope_base), rope(k, pos, c.n_rot, c.rope_base)
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=1)
                v = torch.cat([cache["v"], v], dim=1)
            cache["k"], cache["v"] = k, v
        grp = c.n_head // c.n_head_kv
        qh = q.transpose(1, 2)
        kh = k.transpose(1, 2).repeat_interleave(grp, dim=1)  # query head h uses kv head h // grp
        vh = v.transpose(1, 2).repeat_interleave(grp, dim=1)
        causal = T > 1
        if cache is not None and T > 1 and kh.shape[2] != T:
            raise ValueError("cached attention supports one token at a time after the first call")
        o = F.scaled_dot_product_attention(qh, kh, vh, is_causal=causal, scale=1.0 / math.sqrt(c.head_dim))
        o = o.transpose(1, 2) * torch.sigmoid(gate)
        return self.o_proj(o.reshape(B, T, c.n_head * c.head_dim))


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


def gdn_recurrent(q, k, v, g, beta, S):
    """Reference recurrence, token by token. q,k: [B,T,H,dk] (normed, q pre-scaled), v: [B,T,H,dv],
    g, beta: [B,T,H], S: [B,H,dk,dv]. Returns o [B,T,H,dv] and the final S."""
    outs = []
    for t in range(q.shape[1]):
        S = S * g[:, t].exp()[..., None, None]
        kv = torch.einsum("zhab,zha->zhb", S, k[:, t])
        delta = beta[:, t][..., None] * (v[:, t] - kv)
        S = S + k[:, t][..., :, None] * delta[..., None, :]
        outs.append(torch.einsum("zhab,zha->zhb", S, q[:, t]))
    return torch.stack(outs, dim=1), S


def gdn_chunked(q, k, v, g, beta, chunk: int):
    """Chunked WY form of the gated delta rule (zero initial state). Same shapes as
    gdn_recurrent. Computed in the dtype of the inputs (call it with float32)."""
    B, T, H, dk = q.shape
    dv = v.shape[-1]
    pad = (-T) % chunk
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (q, k, v))
        g, beta = (F.pad(t, (0, 0, 0, pad)) for t in (g, beta))
    N = (T + pad) // chunk
    # -> [B, H, N, C, d]
    q, k, v = (t.transpose(1, 2).reshape(B, H, N, chunk, t.shape[-1]) for t in (q, k, v))
    g = g.transpose(1, 2).reshape(B, H, N, chunk).cumsum(-1)
    beta = beta.transpose(1, 2).reshape(B, H, N, chunk)
    diff = g[..., :, None] - g[..., None, :]
    low = torch.tril(torch.ones(chunk, chunk, dtype=torch.bool, device=q.device))
    decay = torch.where(low, diff, torch.zeros_like(diff)).exp() * low  # e^{G_i-G_j}, i >= j
    kk = k @ k.transpose(-1, -2)
    strict = torch.tril(torch.ones(chunk, chunk, dtype=torch.bool, device=q.device), -1)
    L = beta[..., :, None] * kk * decay * strict
    A = L + torch.eye(chunk, dtype=q.dtype, device=q.device)
    rhs = torch.cat([v * beta[..., None], k * (beta * g.exp())[..., None]], dim=-1)
    sol = torch.linalg.solve_triangular(A, rhs, upper=False, unitriangular=True)
    value, k_cumdecay = sol[..., :dv], sol[..., dv:]
    qk = (q @ k.transpose(-1, -2)) * decay  # lower incl. diagonal
    S = q.new_zeros(B, H, dk, dv)
    outs = []
    for n in range(N):
        v_new = value[:, :, n] - k_cumdecay[:, :, n] @ S
        o = (q[:, :, n] * g[:, :, n, :, None].exp()) @ S + qk[:, :, n] @ v_new
        outs.append(o)
        gl = g[:, :, n, -1]
        S = S * gl.exp()[..., None, None] + (k[:, :, n] * (gl[..., None] - g[:, :, n]).exp()[..., None]).transpose(-1, -2) @ v_new
    o = torch.stack(outs, dim=2).reshape(B, H, N * chunk, dv)[:, :, :T]
    return o.transpose(1, 2), S


class GatedDeltaNet(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.key_dim = c.ssm_h_k * c.ssm_d
        self.value_dim = c.ssm_h_v * c.ssm_d
        self.conv_dim = 2 * self.key_dim + self.value_dim
        self.in_proj_qkv = nn.Linear(c.n_embd, self.conv_dim, bias=False)
        self.in_proj_z = nn.Linear(c.n_embd, self.value_dim, bias=False)
        self.in_proj_b = nn.Linear(c.n_embd, c.ssm_h_v, bias=False)
        self.in_proj_a = nn.Linear(c.n_embd, c.ssm_h_v, bias=False)
        bound = 1.0 / math.sqrt(c.conv_k)
        self.conv_weight = nn.Parameter(torch.empty(self.conv_dim, c.conv_k).uniform_(-bound, bound))
        self.dt_bias = nn.Parameter(torch.ones(c.ssm_h_v))
        self.A_log = nn.Parameter(torch.log(torch.empty(c.ssm_h_v).uniform_(1.0, 16.0)))
        self.norm_weight = nn.Parameter(torch.ones(c.ssm_d))  # gated norm, NOT zero-centred
        self.out_proj = nn.Linear(self.value_dim, c.n_embd, bias=False)

    def _qkv_gb(self, conv_out, x):
        c = self.c
        B, T, _ = conv_out.shape
        u = F.silu(conv_out.to(_cdt(x)))
        q = u[..., : self.key_dim].view(B, T, c.ssm_h_k, c.ssm_d)
        k = u[..., self.key_dim : 2 * self.key_dim].view(B, T, c.ssm_h_k, c.ssm_d)
        v = u[..., 2 * self.key_dim :].view(B, T, c.ssm_h_v, c.ssm_d)
        r = c.ssm_h_v // c.ssm_h_k
        q = l2norm(q).repeat(1, 1, r, 1) / math.sqrt(c.ssm_d)  # tiled: value head j <- key head j % H_k
        k = l2norm(k).repeat(1, 1, r, 1)
        beta = torch.sigmoid(self.in_proj_b(x).to(_cdt(x)))
        g = -self.A_log.to(_cdt(x)).exp() * F.softplus(self.in_proj_a(x).to(_cdt(x)) + self.dt_bias.to(_cdt(x)))
        return q, k, v, g, beta

    def _out(self, o, x):
        c = self.c
        B, T = o.shape[:2]
        z = self.in_proj_z(x).to(_cdt(x)).view(B, T, c.ssm_h_v, c.ssm_d)
        y = rms(o, c.eps) * self.norm_weight.to(_cdt(x)) * F.silu(z)
        return self.out_proj(y.reshape(B, T, self.value_dim).to(x.dtype))

    def forward(self, x, state: dict | None = None):
        c = self.c
        B, T, _ = x.shape
        mixed = self.in_proj_qkv(x)
        if state is None:
            w = self.conv_weight.to(mixed.dtype)[:, None, :]
            conv = F.conv1d(F.pad(mixed.transpose(1, 2), (c.conv_k - 1, 0)), w, groups=self.conv_dim).transpose(1, 2)
            q, k, v, g, beta = self._qkv_gb(conv, x)
            with torch.autocast(device_type=x.device.type, enabled=False):
                o, _ = gdn_chunked(q.to(_cdt(x)), k.to(_cdt(x)), v.to(_cdt(x)), g.to(_cdt(x)), beta.to(_cdt(x)), c.chunk)
            return self._out(o, x)
        # one or more tokens with carried state (sequential, as llama.cpp)
        outs = []
        for t in range(T):
            win = torch.cat([state["conv"], mixed[:, t : t + 1].to(_cdt(x))], dim=1)  # [B, K, C], oldest first
            conv = (win * self.conv_weight.to(_cdt(x)).t()[None]).sum(1, keepdim=True)
            state["conv"] = win[:, 1:]
            q, k, v, g, beta = self._qkv_gb(conv, x[:, t : t + 1])
            o, state["S"] = gdn_recurrent(q, k, v, g, beta, state["S"])
            outs.append(self._out(o, x[:, t : t + 1]))
        return torch.cat(outs, dim=1)

    def new_state(self, B: int, device, dtype=torch.float32) -> dict:
        c = self.c
        return {
            "conv": torch.zeros(B, c.conv_k - 1, self.conv_dim, device=device, dtype=dtype),
            "S": torch.zeros(B, c.ssm_h_v, c.ssm_d, c.ssm_d, device=device, dtype=dtype),
        }


class MLP(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.gate_proj = nn.Linear(c.n_embd, c.n_ff, bias=False)
        self.up_proj = nn.Linear(c.n_embd, c.n_ff, bias=False)
        self.down_proj = nn.Linear(c.n_ff, c.n_embd, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c: Config, recurrent: bool):
        super().__init__()
        self.recurrent = recurrent
        self.input_layernorm = ZNorm(c.n_embd, c.eps)
        self.mixer = GatedDeltaNet(c) if recurrent else Attention(c)
        self.post_attention_layernorm = ZNorm(c.n_embd, c.eps)
        self.mlp = MLP(c)

    def forward(self, h, pos0: int = 0, state: dict | None = None):
        x = self.input_layernorm(h)
        m = self.mixer(x, state) if self.recurrent else self.mixer(x, pos0, state)
        h = h + m
        return h + self.mlp(self.post_attention_layernorm(h))


class MTP(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.enorm = ZNorm(c.n_embd, c.eps)
        self.hnorm = ZNorm(c.n_embd, c.eps)
        self.eh_proj = nn.Linear(2 * c.n_embd, c.n_embd, bias=False)
        self.block = Block(c, recurrent=False)
        self.shared_head_norm = ZNorm(c.n_embd, c.eps)


class Qwen35(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.vocab, c.n_embd)
        self.layers = nn.ModuleList([Block(c, c.is_recurrent(i)) for i in range(c.n_layer)])
        self.norm = ZNorm(c.n_embd, c.eps)
        self.lm_head = nn.Linear(c.n_embd, c.vocab, bias=False)
        self.mtp = MTP(c)
        self._init()

    def _init(self):
        std = 0.02
        n_res = 2 * (self.c.n_layer + 1)
        for name, p in self.named_parameters():
            if p.dim() == 2 and not name.endswith("conv_weight"):
                s = std / math.sqrt(n_res) if name.endswith(("o_proj.weight", "out_proj.weight", "down_proj.weight")) else std
                nn.init.normal_(p, 0.0, s)

    def trunk(self, idx):
        h = self.embed(idx)
        for layer in self.layers:
            h = layer(h)
        return self.norm(h)  # hN: post-final-norm hidden (what MTP consumes)

    def mtp_forward(self, idx, h_prev):
        """MTP at position p sees token idx[p] and trunk hidden h_prev[p] = hN[p-1] (zeros at p=0);
        predicts idx[p+1]."""
        m = self.mtp
        e = self.embed(idx)
        u = m.eh_proj(torch.cat([m.enorm(e), m.hnorm(h_prev)], dim=-1))
        u = m.block(u)
        return self.lm_head(m.shared_head_norm(u))

    def forward(self, idx):
        hN = self.trunk(idx)
        logits = self.lm_head(hN)
        h_prev = torch.cat([torch.zeros_like(hN[:, :1]), hN[:, :-1]], dim=1)
        return logits, self.mtp_forward(idx, h_prev), hN

    # ---- single-token inference path (llama.cpp style) ----
    def new_state(self, B: int, device) -> list[dict]:
        return [l.mixer.new_state(B, device) if l.recurrent else {} for l in self.layers]

    @torch.no_grad()
    def step(self, tok, pos: int, state: list[dict]):
        """tok: [B] one token per sequence at position pos. Returns logits [B,V], hN [B,D]."""
        h = self.embed(tok)[:, None]
        for layer, st in zip(self.layers, state):
            h = layer(h, pos, st)
        hN = self.norm(h)
        return self.lm_head(hN)[:, 0], hN[:, 0]

    @torch.no_grad()
    def mtp_step(self, tok, h_prev, pos: int, cache: dict):
        m = self.mtp
        e = self.embed(tok)[:, None]
        u = m.eh_proj(torch.cat([m.enorm(e), m.hnorm(h_prev[:, None])], dim=-1))
        u = m.block(u, pos, cache)
        hM = m.shared_head_norm(u)
        return self.lm_head(hM)[:, 0], hM[:, 0]
