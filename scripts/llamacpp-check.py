#!/usr/bin/env python3
"""Loads a GGUF with llama.cpp (llama-cpp-python), evaluates a short prompt and checks that
the logits of every position are finite and not flat. Prints one JSON line with what it saw.

Exit status: 0 ok, 1 check failed, 2 llama.cpp could not load the model.
Usage: scripts/llamacpp-check.py MODEL.gguf [--n-ctx 256] [--prompt TEXT] [--threads N]
"""
import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--prompt", default="The quick brown fox jumps over the lazy dog.")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--min-std", type=float, default=0.05,
                    help="smallest accepted standard deviation of one position's logits")
    args = ap.parse_args()

    import numpy as np
    from llama_cpp import Llama

    try:
        llm = Llama(model_path=args.model, n_ctx=args.n_ctx, logits_all=True,
                    n_threads=args.threads, verbose=False)
    except Exception as e:  # llama-cpp-python raises ValueError on load failure
        print(json.dumps({"ok": False, "error": f"load failed: {e}"}))
        return 2

    tokens = llm.tokenize(args.prompt.encode(), add_bos=False, special=False)
    specials = llm.tokenize(b"<|im_start|>user\nhi<|im_end|>", add_bos=False, special=True)
    tokens = tokens[:16]
    llm.eval(tokens)
    logits = np.array(llm.scores[: llm.n_tokens], dtype=np.float64)
    n_vocab = llm.n_vocab()
    problems = []
    if logits.shape != (len(tokens), n_vocab):
        problems.append(f"logits shape {logits.shape}, expected {(len(tokens), n_vocab)}")
    if not np.isfinite(logits).all():
        problems.append("non-finite logits")
    stds = logits.std(axis=1) if logits.size else np.zeros(0)
    if (stds < args.min_std).any():
        problems.append(f"flat logits: per-position std {stds.tolist()}")
    argmax = logits.argmax(axis=1).tolist() if logits.size else []
    out = {
        "ok": not problems,
        "problems": problems,
        "n_vocab": n_vocab,
        "n_tokens": len(tokens),
        "tokens": tokens,
        "special_prompt_tokens": specials,
        "eos": llm.token_eos(),
        "logit_std": [round(float(s), 4) for s in stds],
        "logit_absmax": round(float(np.abs(logits).max()), 4) if logits.size else None,
        "argmax": argmax,
    }
    print(json.dumps(out))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
