#!/usr/bin/env python3
"""llama.cpp as the reference for parity tests (llama-cpp-python 0.3.36, CPU, low-level API).

Given a GGUF model and prompt token ids, runs llama.cpp greedily for N tokens and writes
  OUT.json  {"tokens": generated ids, "margins": top-2 logit gap at each step, "n_vocab": V,
             "n_prompt": P, "rows": R}
  OUT.f32   R x V little-endian float32 logits: the P prompt positions, then one row per
            generated step except the last (row P-1+i produced token i).

Numerics mode. llama.cpp's CPU backend picks a different matmul kernel (so a different float
summation order) depending on the batch width and the weight buffer:
  * weights in the "repack" extra buffer (Q4_K/Q6_K/Q8_0 interleaved 8x8 gemv/gemm);
  * the "tiled" K-quant matmul for batches of >= 8 tokens (env GGML_CPU_TILED_MM);
  * llamafile sgemm (tinyBLAS) for F32/Q8_0 batches of >= 2 tokens;
  * ggml_vec_dot_* (one row, one token) otherwise -- the decode path.
hybrid-run computes every token the same way whatever the batch, following the decode path.
So by default this script turns repack and tiled off and feeds the prompt one token per
llama_decode call (--prompt-batch 1): every matmul then runs ggml_vec_dot_*, and llama.cpp's
per-token results are those of its own decode loop. --prompt-batch 0 (whole prompt in one
batch), --repack and --tiled together give llama.cpp's defaults, for measuring how far those
paths are (tests/parity_llamacpp.rs report_*, docs/parity.md).

--dump DIR writes the named f32 graph tensors llama.cpp computes (cb_eval) as
DIR/<step>-<seq>-<name>.f32 with DIR/index.json (step, file, name, ne, op), to localise
divergences op by op (tests/parity_ops_llamacpp.rs); --dump-all keeps views and unnamed nodes.
"""
import argparse, ctypes, json, os, sys

import numpy as np


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="comma-separated prompt token ids")
    ap.add_argument("--n-gen", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--prompt-batch", type=int, default=1,
                    help="prompt tokens per llama_decode call; 0 = the whole prompt at once")
    ap.add_argument("--repack", action="store_true",
                    help="keep llama.cpp's repacked weight buffers (CPU extra buffer types)")
    ap.add_argument("--tiled", action="store_true",
                    help="keep llama.cpp's tiled K-quant matmul for batches of >= 8 tokens")
    ap.add_argument("--dump", help="directory for cb_eval tensor dumps")
    ap.add_argument("--dump-all", action="store_true",
                    help="also dump views, reshapes, cache copies and unnamed nodes")
    ap.add_argument("--out", required=True, help="output path prefix")
    return ap.parse_args()


a = parse_args()
if not a.tiled:
    # Read once by ggml-cpu (std::call_once) at the first matmul: set before loading.
    os.environ["GGML_CPU_TILED_MM"] = "0"
import llama_cpp  # noqa: E402

GGML_TYPE_F32 = 0


class GgmlTensor(ctypes.Structure):
    """The head of `struct ggml_tensor` (ggml/include/ggml.h) up to `name`."""
    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * 10),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
    ]


SKIP_PREFIXES = ("node_", "cache_", "conv_state", "leaf_")
SKIP_PARTS = ("(view)", "(reshaped)", "(permuted)", "(copy", "(transposed)", "(cont)")


class Dumper:
    def __init__(self, directory, dump_all):
        self.dir = directory
        self.step = 0
        self.seq = 0
        self.index = []
        os.makedirs(directory, exist_ok=True)

        @llama_cpp.ggml_backend_sched_eval_callback
        def cb(t, ask, _user):
            tt = ctypes.cast(t, ctypes.POINTER(GgmlTensor)).contents
            if ask:
                return True
            if tt.type != GGML_TYPE_F32 or not tt.data:
                return True
            ne = [tt.ne[i] for i in range(4)]
            if min(ne) <= 0:
                return True
            nb = [tt.nb[i] for i in range(4)]
            n = ne[0] * ne[1] * ne[2] * ne[3]
            span = sum((ne[i] - 1) * nb[i] for i in range(4)) + 4
            buf = (ctypes.c_char * span).from_address(tt.data)
            arr = np.lib.stride_tricks.as_strided(
                np.frombuffer(buf, dtype=np.float32), shape=ne[::-1], strides=nb[::-1])
            name = tt.name.decode(errors="replace").replace("/", "_").replace(" ", "_")
            if not dump_all and (name.startswith(SKIP_PREFIXES) or any(p in name for p in SKIP_PARTS)):
                return True
            fname = f"{self.step:04d}-{self.seq:05d}-{name}.f32"
            self.seq += 1
            np.ascontiguousarray(arr).reshape(n).astype("<f4").tofile(
                os.path.join(self.dir, fname))
            self.index.append({"step": self.step, "file": fname, "name": name, "ne": ne,
                               "op": tt.op})
            return True

        self.cb = cb  # keep the ctypes callback alive


@llama_cpp.llama_log_callback
def _QUIET_LOG(_level, _text, _user):
    pass


def main():
    prompt = [int(t) for t in a.tokens.split(",") if t]
    if not prompt:
        sys.exit("empty prompt")
    llama_cpp.llama_log_set(_QUIET_LOG, None)
    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    mp.n_gpu_layers = 0
    mp.use_extra_bufts = a.repack
    model = llama_cpp.llama_model_load_from_file(a.model.encode(), mp)
    if not model:
        sys.exit(f"llama.cpp could not load {a.model}")
    V = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))

    cp = llama_cpp.llama_context_default_params()
    nb = len(prompt) if a.prompt_batch <= 0 else a.prompt_batch
    cp.n_ctx = a.ctx
    cp.n_batch = max(nb, 1)
    cp.n_ubatch = max(nb, 1)
    cp.n_threads = a.threads
    cp.n_threads_batch = a.threads
    cp.flash_attn_type = 1  # LLAMA_FLASH_ATTN_TYPE_ENABLED
    cp.no_perf = True
    dumper = None
    if a.dump:
        dumper = Dumper(a.dump, a.dump_all)
        cp.cb_eval = dumper.cb
        cp.cb_eval_user_data = None
    ctx = llama_cpp.llama_init_from_model(model, cp)
    if not ctx:
        sys.exit("llama.cpp could not create a context")

    batch = llama_cpp.llama_batch_init(max(nb, 1), 0, 1)
    n_past = 0

    def decode(toks):
        """Decodes `toks` at positions n_past.., all with logits; returns them [len][V]."""
        nonlocal n_past
        batch.n_tokens = len(toks)
        for i, t in enumerate(toks):
            batch.token[i] = t
            batch.pos[i] = n_past + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = True
        rc = llama_cpp.llama_decode(ctx, batch)
        if rc != 0:
            sys.exit(f"llama_decode failed ({rc}) at position {n_past}")
        n_past += len(toks)
        if dumper:
            dumper.step += 1
            dumper.seq = 0
        out = []
        for i in range(len(toks)):
            p = llama_cpp.llama_get_logits_ith(ctx, i)
            out.append(np.ctypeslib.as_array(p, shape=(V,)).astype(np.float32).copy())
        return out

    rows = []
    for s in range(0, len(prompt), nb):
        rows.extend(decode(prompt[s:s + nb]))
    gen, margins = [], []
    for step in range(a.n_gen):
        last = rows[-1]
        tok = int(np.argmax(last))  # first maximum: lowest id on ties, like llama.cpp greedy
        top2 = np.partition(last, -2)[-2:]
        margins.append(float(abs(top2[1] - top2[0])))
        gen.append(tok)
        if step + 1 == a.n_gen:
            break
        rows.extend(decode([tok]))
    np.stack(rows).astype("<f4").tofile(a.out + ".f32")
    with open(a.out + ".json", "w") as f:
        json.dump({"tokens": gen, "margins": margins, "n_vocab": V, "n_prompt": len(prompt),
                   "rows": len(rows)}, f)
    if dumper:
        with open(os.path.join(a.dump, "index.json"), "w") as f:
            json.dump(dumper.index, f)
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)


if __name__ == "__main__":
    sys.exit(main())
