#!/usr/bin/env python3
"""llama.cpp as the reference for parity tests (llama-cpp-python 0.3.36, CPU).

Given a GGUF model and prompt token ids, runs llama.cpp greedily for N tokens: the prompt in
one batch, then one token per step. Writes
  OUT.json  {"tokens": generated ids, "margins": top-2 logit gap at each step, "n_vocab": V,
             "n_prompt": P, "rows": R}
  OUT.f32   R x V little-endian float32 logits: the P prompt positions, then one row per
            generated step except the last (row P-1+i produced token i).
"""
import argparse, json, sys

import numpy as np
import llama_cpp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="comma-separated prompt token ids")
    ap.add_argument("--n-gen", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--out", required=True, help="output path prefix")
    a = ap.parse_args()

    prompt = [int(t) for t in a.tokens.split(",") if t]
    llm = llama_cpp.Llama(
        model_path=a.model, n_ctx=a.ctx, n_batch=a.ctx, n_ubatch=a.ctx, n_threads=a.threads,
        n_threads_batch=a.threads, logits_all=True, flash_attn=True, verbose=False, seed=0,
    )
    V = llm.n_vocab()
    llm.reset()
    llm.eval(prompt)
    rows = [np.array(llm.scores[i], dtype=np.float32) for i in range(len(prompt))]
    gen, margins = [], []
    for step in range(a.n_gen):
        last = rows[-1]
        tok = int(np.argmax(last))  # first maximum: lowest id on ties, like llama.cpp greedy
        top2 = np.partition(last, -2)[-2:]
        margins.append(float(abs(top2[1] - top2[0])))
        gen.append(tok)
        if step + 1 == a.n_gen:
            break
        llm.eval([tok])
        rows.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
    np.stack(rows).astype("<f4").tofile(a.out + ".f32")
    with open(a.out + ".json", "w") as f:
        json.dump({"tokens": gen, "margins": margins, "n_vocab": V, "n_prompt": len(prompt),
                   "rows": len(rows)}, f)


if __name__ == "__main__":
    sys.exit(main())
