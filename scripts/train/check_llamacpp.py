#!/usr/bin/env python3
"""Checks the exported GGUF files against llama.cpp (llama-cpp-python) and the PyTorch model.

1. llama.cpp loads each file (f32, q8_0, q4_k_m) and reports n_layer_nextn.
2. Its tokenizer gives exactly the HF tokenizer's ids on held-out snippets.
3. Held-out perplexity from llama.cpp (fresh state per 512-token window), next to the
   PyTorch perplexity on the same windows (fp32 CPU, fp16 checkpoint).
4. llama.cpp f32 logits vs PyTorch logits on one window.
5. Greedy generation from "def ".
Usage: python3 scripts/train/check_llamacpp.py --gguf-dir .train/gguf --ckpt .train/ckpt
       [--windows 40] [--snippets 200]   (windows are evenly spaced over the held-out ids)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def snippets(lib: Path, files: list[str], n: int) -> list[str]:
    out = []
    for rel in files:
        text = (lib / rel).read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        for i in range(0, len(lines), 25):
            s = "".join(lines[i : i + 25])
            if s.strip():
                out.append(s)
    out.sort(key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    return out[:n]


def llama_logits(llm, toks: list[int]) -> np.ndarray:
    llm._ctx.kv_cache_clear()
    llm.reset()
    llm.eval(toks)
    return np.array(llm.scores[: len(toks)], dtype=np.float32)


def ce(logits: np.ndarray, targets: np.ndarray) -> float:
    m = logits.max(-1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(logits - m).sum(-1)))
    return float((lse - logits[np.arange(len(targets)), targets]).sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf-dir", default=".train/gguf")
    ap.add_argument("--name", default="qwen35-pystd")
    ap.add_argument("--ckpt", default=".train/ckpt")
    ap.add_argument("--data", default=".train")
    ap.add_argument("--lib", default="/root/.pyenv/versions/3.11.7/lib/python3.11")
    ap.add_argument("--windows", type=int, default=40)
    ap.add_argument("--snippets", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    import llama_cpp
    import torch
    from tokenizers import Tokenizer

    from export_gguf import load_ckpt
    from model import Config, Qwen35

    data = Path(a.data)
    hf = Tokenizer.from_file(str(data / "tokenizer.json"))
    held_files = (data / "heldout_files.txt").read_text().split()
    snips = snippets(Path(a.lib), held_files, a.snippets)
    ids = np.load(data / "heldout.npy").astype(np.int64)
    T = 512
    n_all = (len(ids) - 1) // T
    nwin = min(a.windows, n_all)
    starts = np.linspace(0, n_all - 1, nwin).round().astype(int)  # spread over the whole held-out split
    wins = [ids[i * T : i * T + T + 1] for i in starts]
    report: dict = {}

    # PyTorch reference on the same windows
    sd, cfg = load_ckpt(Path(a.ckpt))
    model = Qwen35(Config(**cfg))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    model.eval()
    torch.set_num_threads(a.threads)
    nll_pt, pt_logits0 = 0.0, None
    with torch.no_grad():
        for i, w in enumerate(wins):
            lg, _, _ = model(torch.from_numpy(w[None, :-1]))
            lg = lg[0].numpy()
            if i == 0:
                pt_logits0 = lg
            nll_pt += ce(lg, w[1:])
    n_tok = nwin * T
    report["pytorch_ppl"] = math.exp(nll_pt / n_tok)
    print(f"PyTorch fp32 (fp16 weights): held-out ppl {report['pytorch_ppl']:.4f} over {nwin} of {n_all} windows of {T} (evenly spaced)", flush=True)

    for ft in ["f32", "q8_0", "q4_k_m"]:
        path = Path(a.gguf_dir) / f"{a.name}-{ft}.gguf"
        llm = llama_cpp.Llama(str(path), n_ctx=T, n_batch=T, n_ubatch=T, logits_all=True,
                              n_threads=a.threads, n_threads_batch=a.threads, verbose=False)
        r: dict = {"n_layer_nextn": llama_cpp.llama_model_n_layer_nextn(llm.model),
                   "n_vocab": llm.n_vocab(), "bytes": path.stat().st_size}
        # tokenizer equality
        bad = 0
        for s in snips:
            want = hf.encode(s, add_special_tokens=False).ids
            got = llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)
            if want != got:
                bad += 1
                if bad <= 2:
                    print(f"  tokenizer mismatch on {s[:60]!r}: hf {want[:20]} llama {got[:20]}")
        r["tokenizer_equal"] = f"{len(snips) - bad}/{len(snips)}"
        # perplexity
        nll = 0.0
        for i, w in enumerate(wins):
            lg = llama_logits(llm, [int(t) for t in w[:-1]])
            if i == 0 and ft == "f32":
                d = lg - pt_logits0
                r["logits_vs_pytorch_rel_err"] = float(np.linalg.norm(d) / np.linalg.norm(pt_logits0))
                r["logits_vs_pytorch_max_abs"] = float(np.abs(d).max())
                r["argmax_agree"] = float((lg.argmax(-1) == pt_logits0.argmax(-1)).mean())
            nll += ce(lg, w[1:])
        r["ppl"] = math.exp(nll / n_tok)
        # greedy generation
        llm._ctx.kv_cache_clear()
        llm.reset()
        out = llm.create_completion("def ", max_tokens=80, temperature=0.0, top_k=1)
        r["sample_def"] = "def " + out["choices"][0]["text"]
        report[ft] = r
        print(f"{ft}: {json.dumps({k: v for k, v in r.items() if k != 'sample_def'})}")
        print("---- greedy from 'def ' ----\n" + r["sample_def"] + "\n----", flush=True)
        llm.close()
    (data / "llamacpp_check.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
