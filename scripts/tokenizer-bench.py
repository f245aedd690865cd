#!/usr/bin/env python3
"""Tokenizer speed reference: llama.cpp (llama-cpp-python, vocab_only) on ~1 MB of mixed text.

    tokenizer-bench.py --vocab qwen36-vocab.gguf --text-out bench.txt --ids-out bench-ids.json

Writes the text (seeded: English-like prose, code, CJK, Cyrillic, emoji, digits, whitespace)
and llama.cpp's ids for it, and prints llama.cpp's best-of-3 tokens/s. The Rust bench
(tests/tokenizer_bench.rs, --ignored) tokenizes the same file and checks the same ids.
"""
import argparse
import json
import random
import sys
import time

import llama_cpp

sys.path.insert(0, __import__("os").path.dirname(__file__))
oracle = __import__("tokenizer-oracle")


def make_text(r, size):
    parts, n = [], 0
    words = oracle.WORDS + ["model", "token", "layer", "the", "of", "and", "to", "in", "is", "for"]
    while n < size:
        k = r.random()
        if k < 0.55:
            s = " ".join(r.choice(words) for _ in range(r.randrange(5, 30))) + r.choice([". ", ".\n", ", ", "!\n\n"])
        elif k < 0.75:
            s = r.choice(oracle.CODE)
        elif k < 0.85:
            s = oracle.rand_script(r, "cjk", r.randrange(5, 40)) + "。"
        elif k < 0.92:
            s = " " + oracle.rand_script(r, "cyrillic", r.randrange(3, 12)) + " "
        else:
            s = oracle.fragment(r)
        parts.append(s)
        n += len(s.encode())
    return "".join(parts).encode()[:size].decode("utf-8", "ignore").encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--text-out", required=True)
    ap.add_argument("--ids-out", required=True)
    ap.add_argument("--size", type=int, default=1 << 20)
    a = ap.parse_args()
    text = make_text(random.Random(7), a.size)
    open(a.text_out, "wb").write(text)
    llm = llama_cpp.Llama(model_path=a.vocab, vocab_only=True, verbose=False)
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        ids = llm.tokenize(text, add_bos=False, special=True)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    json.dump(ids, open(a.ids_out, "w"))
    print(f"llama.cpp: {len(text)} bytes -> {len(ids)} tokens in {best*1e3:.1f} ms "
          f"= {len(ids)/best:,.0f} tokens/s ({len(text)/best/1e6:.2f} MB/s), best of 3")


if __name__ == "__main__":
    main()
