#!/usr/bin/env python3
"""Checks that the parallel (training) path of model.py equals its one-token inference path.

Runs in float64 on CPU (or the given device) with random weights, every norm weight
perturbed away from its initial value so that a missing or doubled +1 would show.
Usage: python3 scripts/train/test_model.py [--device cuda]
"""
from __future__ import annotations

import argparse
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from model import Config, Qwen35, gdn_chunked, gdn_recurrent, l2norm  # noqa: E402


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def check_gdn(device, dtype, tol):
    torch.manual_seed(1)
    B, T, H, dk, dv = 2, 45, 3, 8, 6
    q = l2norm(torch.randn(B, T, H, dk, dtype=dtype, device=device)) / dk**0.5
    k = l2norm(torch.randn(B, T, H, dk, dtype=dtype, device=device))
    v = torch.randn(B, T, H, dv, dtype=dtype, device=device)
    g = -torch.rand(B, T, H, dtype=dtype, device=device) * 2.0
    beta = torch.rand(B, T, H, dtype=dtype, device=device)
    o_ref, S_ref = gdn_recurrent(q, k, v, g, beta, torch.zeros(B, H, dk, dv, dtype=dtype, device=device))
    o, S = gdn_chunked(q, k, v, g, beta, chunk=16)
    e1, e2 = rel(o, o_ref), rel(S, S_ref)
    print(f"gdn chunked vs recurrent: out rel err {e1:.2e}, state rel err {e2:.2e}")
    return e1 < tol and e2 < tol


def check_model(device, dtype, tol):
    torch.manual_seed(2)
    c = Config(n_layer=4, chunk=16)  # layers: GDN GDN GDN ATT, plus MTP
    m = Qwen35(c).to(device=device, dtype=dtype).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    B, T = 2, 37
    idx = torch.randint(0, c.vocab, (B, T), device=device)
    with torch.no_grad():
        logits, mtp_logits, hN = m(idx)
    state = m.new_state(B, device)
    for st in state:
        for key in st:
            st[key] = st[key].to(dtype)
    mcache: dict = {}
    h_prev = torch.zeros(B, c.n_embd, dtype=dtype, device=device)
    step_logits, step_mtp = [], []
    for t in range(T):
        lg, h = m.step(idx[:, t], t, state)
        ml, _ = m.mtp_step(idx[:, t], h_prev, t, mcache)
        step_logits.append(lg)
        step_mtp.append(ml)
        h_prev = h
    e1 = rel(torch.stack(step_logits, 1), logits)
    e2 = rel(torch.stack(step_mtp, 1), mtp_logits)
    print(f"model parallel vs step: trunk logits rel err {e1:.2e}, MTP logits rel err {e2:.2e}")
    return e1 < tol and e2 < tol


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    ok = check_gdn(a.device, torch.float64, 1e-10)
    ok &= check_model(a.device, torch.float64, 1e-10)
    ok &= check_gdn(a.device, torch.float32, 1e-4)
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
