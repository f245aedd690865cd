#!/usr/bin/env python3
"""Times llama.cpp's CPU prefill (ppN) and decode (tgN) on a GGUF through llama-cpp-python's
low-level API, the way llama-bench does: random tokens, one warm-up run, then `--reps` timed
runs; the prefill batch is decoded in one llama_decode call (n_batch = n_ubatch = N), decode
generates N tokens one at a time from an empty context, or, with --depth D (llama-bench's -d),
from a context already holding D random tokens (filled untimed before each run). Prints one
JSON object:

    {"model": ..., "threads": T, "system_info": ..., "pp": N, "pp_tps": [...], "pp_tps_median": x,
     "tg": M, "tg_tps": [...], "tg_tps_median": y}

Install the bindings first: `bash scripts/setup-llamacpp.sh`. Compare with
`hybrid-run bench -m MODEL -t T -p N -n M` on the same file and thread count.
"""
import argparse
import json
import random
import statistics
import sys
import time

import llama_cpp


@llama_cpp.llama_log_callback
def _quiet_log(_level, _text, _user):
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True, help="GGUF model file")
    ap.add_argument("-t", "--threads", type=int, required=True, help="CPU threads (prefill and decode)")
    ap.add_argument("-p", "--n-prompt", type=int, default=512, help="prompt tokens (0 skips prefill)")
    ap.add_argument("-n", "--n-gen", type=int, default=32, help="generated tokens (0 skips decode)")
    ap.add_argument("-r", "--reps", type=int, default=3, help="timed repetitions (median reported)")
    ap.add_argument("--no-repack", action="store_true",
                    help="disable llama.cpp's repacked CPU weight buffers (llama-bench uses them)")
    ap.add_argument("--no-fa", action="store_true", help="disable flash attention (default: on, as -fa 1)")
    ap.add_argument("-d", "--depth", type=int, default=0,
                    help="context tokens filled (untimed) before each prefill and decode run")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.threads < 1 or a.reps < 1 or a.n_prompt < 0 or a.n_gen < 0 or a.depth < 0:
        sys.exit("--threads and --reps must be >= 1, -p, -n and -d >= 0")

    llama_cpp.llama_log_set(_quiet_log, None)
    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = 0
    mp.use_extra_bufts = not a.no_repack
    model = llama_cpp.llama_model_load_from_file(a.model.encode(), mp)
    if not model:
        sys.exit(f"llama.cpp could not load {a.model}")
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))

    cp = llama_cpp.llama_context_default_params()
    nb = max(a.n_prompt, min(a.depth, 512), 1)
    cp.n_ctx = a.depth + a.n_prompt + a.n_gen + 16
    cp.n_batch = nb
    cp.n_ubatch = nb
    cp.n_threads = a.threads
    cp.n_threads_batch = a.threads
    cp.flash_attn_type = 0 if a.no_fa else 1
    cp.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, cp)
    if not ctx:
        sys.exit("llama.cpp could not create a context")
    mem = llama_cpp.llama_get_memory(ctx)
    batch = llama_cpp.llama_batch_init(nb, 0, 1)
    rng = random.Random(a.seed)

    def decode(toks, pos0):
        batch.n_tokens = len(toks)
        for i, t in enumerate(toks):
            batch.token[i] = t
            batch.pos[i] = pos0 + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i == len(toks) - 1
        rc = llama_cpp.llama_decode(ctx, batch)
        if rc != 0:
            sys.exit(f"llama_decode failed ({rc}) at position {pos0}")

    def fill_depth():
        llama_cpp.llama_memory_clear(mem, True)
        for p0 in range(0, a.depth, nb):
            decode([rng.randrange(n_vocab) for _ in range(min(nb, a.depth - p0))], p0)
        llama_cpp.llama_synchronize(ctx)

    def run_pp():
        fill_depth()
        toks = [rng.randrange(n_vocab) for _ in range(a.n_prompt)]
        t = time.perf_counter()
        decode(toks, a.depth)
        llama_cpp.llama_synchronize(ctx)
        return a.n_prompt / (time.perf_counter() - t)

    def run_tg():
        fill_depth()
        tok = rng.randrange(n_vocab)
        t = time.perf_counter()
        for i in range(a.n_gen):
            decode([tok], a.depth + i)
            llama_cpp.llama_synchronize(ctx)
            tok = rng.randrange(n_vocab)
        return a.n_gen / (time.perf_counter() - t)

    out = {
        "model": a.model,
        "threads": a.threads,
        "repack": not a.no_repack,
        "flash_attn": not a.no_fa,
        "depth": a.depth,
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
    }
    for name, n, fn in (("pp", a.n_prompt, run_pp), ("tg", a.n_gen, run_tg)):
        if n == 0:
            continue
        fn()  # warm-up
        tps = [fn() for _ in range(a.reps)]
        out[name] = n
        out[f"{name}_tps"] = [round(v, 2) for v in tps]
        out[f"{name}_tps_median"] = round(statistics.median(tps), 2)
    print(json.dumps(out))
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)


if __name__ == "__main__":
    sys.exit(main())
