#!/usr/bin/env python3
"""Trains the pystd qwen35 model (model.py) on the ids made by prepare_data.py, then
evaluates it on the held-out split and writes an fp16 checkpoint.

Schedule: AdamW, linear warm-up then cosine decay to 10%, driven by wall-clock progress
(elapsed / --budget-s) so that the run fits a fixed time; the step count reached is logged.
Loss = CE(trunk, next token) + --mtp-weight * CE(MTP, token after next w.r.t. its hidden).
The state with the best held-out loss (checked every --eval-every-s seconds) is kept.

Outputs in --out: ckpt-NN.safetensors (fp16, <= 15 MiB each), config.json, eval.json.
Usage (GPU): python3 scripts/train/train.py --data .train --out $OUT --budget-s 390
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import Config, Qwen35  # noqa: E402


def log(*a):
    print(*a, flush=True)


def windows(ids: torch.Tensor, T: int) -> torch.Tensor:
    n = (len(ids) - 1) // T
    return torch.stack([ids[i * T : i * T + T + 1] for i in range(n)])  # [n, T+1]


@torch.no_grad()
def evaluate(model, win: torch.Tensor, bs: int = 32) -> dict:
    model.eval()
    tot = dict(nll=0.0, n=0, mtp_nll=0.0, mtp_ok=0, mtp_acc=0, n_mtp=0)
    for i in range(0, len(win), bs):
        w = win[i : i + bs]
        x, y = w[:, :-1], w[:, 1:]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x.is_cuda):
            logits, mlog, _ = model(x)
        logits, mlog = logits.float(), mlog.float()
        tot["nll"] += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        tot["n"] += y.numel()
        # MTP at p>=1 (p=0 sees a zero hidden); target y[:, p] = x[p+1]
        ml, tl, yy = mlog[:, 1:], logits[:, 1:], y[:, 1:]
        tot["mtp_nll"] += F.cross_entropy(ml.flatten(0, 1), yy.flatten(), reduction="sum").item()
        d = ml.argmax(-1)
        tot["mtp_ok"] += (d == yy).sum().item()
        tot["mtp_acc"] += (d == tl.argmax(-1)).sum().item()
        tot["n_mtp"] += yy.numel()
    model.train()
    return {
        "loss": tot["nll"] / tot["n"],
        "ppl": math.exp(tot["nll"] / tot["n"]),
        "mtp_loss": tot["mtp_nll"] / tot["n_mtp"],
        "mtp_top1_vs_truth": tot["mtp_ok"] / tot["n_mtp"],
        "mtp_accept_teacher_forced": tot["mtp_acc"] / tot["n_mtp"],
        "tokens": tot["n"],
    }


@torch.no_grad()
def greedy_acceptance(model, prompts: torch.Tensor, n_new: int) -> dict:
    """Greedy generation from each prompt; then depth-1 MTP acceptance on the generated
    part: the draft at position p (from token s[p] and hidden H[p-1]) is accepted when it
    equals the trunk's greedy token s[p+1]."""
    model.eval()
    s = prompts.clone()
    P = s.shape[1]
    for _ in range(n_new):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=s.is_cuda):
            logits, _, _ = model(s)
        s = torch.cat([s, logits[:, -1].float().argmax(-1, keepdim=True)], dim=1)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=s.is_cuda):
        logits, mlog, _ = model(s)
    d = mlog[:, P:-1].float().argmax(-1)
    acc = (d == s[:, P + 1 :]).float().mean().item()
    # consistency: the trunk's teacher-forced argmax should reproduce the generated tokens
    agree = (logits[:, P - 1 : -1].float().argmax(-1) == s[:, P:]).float().mean().item()
    model.train()
    return {"mtp_accept_greedy": acc, "greedy_self_consistency": agree, "prompts": len(s), "new_tokens": n_new}, s


def save_fp16(model, cfg: Config, out: Path, max_bytes: int = 15 * 1024 * 1024):
    from safetensors.torch import save_file

    sd = {k: v.detach().to(torch.float16).cpu().contiguous() for k, v in model.state_dict().items()}
    shards, cur, size = [], {}, 0
    for k, v in sd.items():
        nb = v.numel() * 2
        if cur and size + nb > max_bytes - 64 * 1024:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v
        size += nb
    shards.append(cur)
    for i, sh in enumerate(shards):
        save_file(sh, str(out / f"ckpt-{i:02d}.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    return len(shards)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".train")
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=390.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup-frac", type=float, default=0.03)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--mtp-weight", type=float, default=0.3)
    ap.add_argument("--eval-every-s", type=float, default=45.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device("cuda")
    torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = True

    data = Path(a.data)
    train_ids = torch.from_numpy(np.load(data / "train.npy").astype(np.int64)).to(dev)
    held_ids = torch.from_numpy(np.load(data / "heldout.npy").astype(np.int64)).to(dev)
    cfg = Config(ctx=a.seq)
    model = Qwen35(cfg).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    n_mtp = sum(p.numel() for p in model.mtp.parameters())
    log(f"params: total {n_params}, MTP block {n_mtp}, trunk+emb+head {n_params - n_mtp}")
    log(f"data: train {len(train_ids)} tokens, held-out {len(held_ids)} tokens")
    log(f"args: {vars(a)}")
    log(f"config: {cfg.to_dict()}")

    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and not n.endswith("conv_weight")]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and not n.endswith("conv_weight"))]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}],
        lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=True,
    )
    held_win = windows(held_ids, a.seq)
    g = torch.Generator(device="cpu").manual_seed(a.seed)
    quick = held_win[torch.randperm(len(held_win), generator=g)[:96]]

    def lr_at(prog: float) -> float:
        if prog < a.warmup_frac:
            return a.lr * prog / a.warmup_frac
        q = min(1.0, (prog - a.warmup_frac) / (1 - a.warmup_frac))
        return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * q)))

    best = (float("inf"), None, 0)
    step, t0, last_eval, tokens = 0, None, 0.0, 0
    N = len(train_ids) - a.seq - 1
    model.train()
    while True:
        if t0 is None and step == 3:  # exclude CUDA warm-up from the budget
            torch.cuda.synchronize()
            t0 = time.time()
        el = 0.0 if t0 is None else time.time() - t0
        prog = el / a.budget_s
        if prog >= 1.0:
            break
        for gr in opt.param_groups:
            gr["lr"] = lr_at(prog)
        off = torch.randint(0, N, (a.batch,), device=dev)
        w = train_ids[off[:, None] + torch.arange(a.seq + 1, device=dev)[None]]
        x, y = w[:, :-1], w[:, 1:]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits, mlog, _ = model(x)
        loss_t = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss_m = F.cross_entropy(mlog[:, 1:].float().flatten(0, 1), y[:, 1:].flatten())
        loss = loss_t + a.mtp_weight * loss_m
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += x.numel()
        if step % 50 == 0:
            log(f"step {step} t={el:.0f}s lr={lr_at(prog):.2e} loss {loss_t.item():.4f} mtp {loss_m.item():.4f} gnorm {gn.item():.2f} tok/s {tokens / max(el, 1e-9):.0f}")
        if t0 is not None and (el - last_eval >= a.eval_every_s or prog >= 0.999):
            last_eval = el
            ev = evaluate(model, quick)
            log(f"eval step {step} t={el:.0f}s held-out(quick) loss {ev['loss']:.4f} ppl {ev['ppl']:.2f} mtp_acc {ev['mtp_accept_teacher_forced']:.3f}")
            if ev["loss"] < best[0]:
                best = (ev["loss"], {k: v.detach().clone() for k, v in model.state_dict().items()}, step)
    torch.cuda.synchronize()
    train_s = time.time() - t0
    ev = evaluate(model, quick)
    if ev["loss"] < best[0]:
        best = (ev["loss"], {k: v.detach().clone() for k, v in model.state_dict().items()}, step)
    log(f"trained {step} steps, {tokens} tokens in {train_s:.1f}s (+ warm-up steps); best quick held-out loss {best[0]:.4f} at step {best[2]}")
    model.load_state_dict(best[1])

    # round to fp16 like the checkpoint so that the numbers describe the shipped weights
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).to(p.dtype))
    full = evaluate(model, held_win)
    log(f"held-out (all {len(held_win)} windows of {a.seq}): {json.dumps(full)}")
    prompts = held_win[torch.randperm(len(held_win), generator=g)[:64], :64]
    ga, gen = greedy_acceptance(model, prompts, 128)
    log(f"greedy generation: {json.dumps(ga)}")
    n_sh = save_fp16(model, cfg, out)
    res = {"params": n_params, "params_mtp": n_mtp, "steps": step, "train_tokens_seen": tokens,
           "train_seconds": train_s, "best_step": best[2], "heldout": full, "greedy": ga,
           "shards": n_sh, "args": vars(a)}
    (out / "eval.json").write_text(json.dumps(res, indent=1))
    np.save(out / "greedy_samples.npy", gen.cpu().numpy().astype(np.uint16))
    log("done")


if __name__ == "__main__":
    main()
