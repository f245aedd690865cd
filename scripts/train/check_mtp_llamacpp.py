#!/usr/bin/env python3
"""Runs llama.cpp's own MTP graph (LLAMA_CONTEXT_TYPE_MTP) on the exported GGUF through
ctypes, the way common/speculative.cpp's draft-mtp driver does its catch-up pass: the
target context is decoded with nextn embeddings on (all rows), then the MTP context
decodes the same tokens with the target's hN rows shifted right by one (zero row first).

Reports (a) llama.cpp MTP logits vs PyTorch MTP logits on one held-out window (f32 file),
(b) teacher-forced depth-1 acceptance (MTP argmax == trunk argmax) over held-out windows.
llama_set_embeddings_nextn / llama_get_embeddings_nextn are C++ staging symbols
(src/llama-ext.h), called here by their mangled names.
Usage: python3 scripts/train/check_mtp_llamacpp.py [--gguf FILE] [--windows 8]
       [--windows-json FILE (export_windows.py: score its "mtp" windows)] [--json-out FILE]
"""
from __future__ import annotations

import argparse
import ctypes as C
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


class Embd(C.Structure):
    _fields_ = [("data", C.POINTER(C.c_float)), ("n_rows", C.c_size_t), ("n_embd", C.c_size_t)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=".train/gguf/qwen35-pystd-f32.gguf")
    ap.add_argument("--ckpt", default="")
    ap.add_argument("--data", default=".train")
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--windows-json", default="", help="export_windows.py output: use its 'mtp' windows")
    ap.add_argument("--json-out", default="", help="write per-window accepted/total counts here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode-path", action="store_true",
                    help="llama.cpp's decode-path numerics (scripts/llamacpp-oracle.py): no repacked weights, "
                         "no tiled matmul, one token per call for trunk and MTP (bit-exact with hybrid-run)")
    a = ap.parse_args()

    if a.decode_path:
        import os

        os.environ["GGML_CPU_TILED_MM"] = "0"  # read once at the first matmul
    import llama_cpp
    import llama_cpp.llama_cpp as L

    lib = C.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libllama.so"))
    set_nextn = lib._Z26llama_set_embeddings_nextnP13llama_contextbb
    set_nextn.argtypes = [C.c_void_p, C.c_bool, C.c_bool]
    get_nextn = lib._Z26llama_get_embeddings_nextnP13llama_context
    get_nextn.argtypes = [C.c_void_p]
    get_nextn.restype = C.POINTER(C.c_float)
    lib.llama_batch_ext_init.argtypes = [C.c_void_p]
    lib.llama_batch_ext_init.restype = C.c_void_p
    lib.llama_batch_ext_clear.argtypes = [C.c_void_p]
    lib.llama_batch_ext_add_token.argtypes = [C.c_void_p, C.c_int32, C.c_int32]
    lib.llama_batch_ext_add_token.restype = C.c_int32
    lib.llama_batch_ext_set_pos.argtypes = [C.c_void_p, C.c_int32, C.POINTER(C.c_int32)]
    lib.llama_batch_ext_set_pos.restype = C.c_bool
    lib.llama_batch_ext_set_embd_token.argtypes = [C.c_void_p, C.c_int32, Embd]
    lib.llama_batch_ext_set_embd_token.restype = C.c_bool
    lib.llama_batch_ext_set_output_logits.argtypes = [C.c_void_p, C.c_int32, C.c_bool]
    lib.llama_batch_ext_set_output_logits.restype = C.c_bool
    lib.llama_process.argtypes = [C.c_void_p, C.c_int, C.c_void_p]
    lib.llama_process.restype = C.c_int32
    lib.llama_get_logits_ith.argtypes = [C.c_void_p, C.c_int32]
    lib.llama_get_logits_ith.restype = C.POINTER(C.c_float)

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mp.load_mtp = True
    if a.decode_path:
        mp.use_extra_bufts = False
    model = L.llama_model_load_from_file(a.gguf.encode(), mp)
    if not model:
        sys.exit("model load failed")
    n_embd = L.llama_model_n_embd(model)
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    T = a.T
    if a.windows_json:
        import json

        wj = json.loads(Path(a.windows_json).expanduser().read_text())["mtp"]
        T = wj["T"]

    def new_ctx(mtp: bool):
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = T, T, T, 1
        cp.n_threads = cp.n_threads_batch = a.threads
        if mtp:
            cp.ctx_type = L.LLAMA_CONTEXT_TYPE_MTP
        ctx = L.llama_init_from_model(model, cp)
        if not ctx:
            sys.exit("context creation failed")
        return ctx

    if a.windows_json:
        wins, n_all = wj["windows"], wj["n_all"]
    else:
        ids = np.load(Path(a.data) / "heldout.npy").astype(np.int64)
        n_all = len(ids) // T
        starts = np.linspace(0, n_all - 1, min(a.windows, n_all)).round().astype(int)  # spread over the split
        wins = [ids[st * T : st * T + T] for st in starts]
    res_logits = []
    acc_n = acc_ok = 0
    per_window = []
    for wi, w in enumerate(wins):
        toks = [int(t) for t in w]
        tgt, dft = new_ctx(False), new_ctx(True)
        set_nextn(tgt, True, False)
        set_nextn(dft, True, True)
        # target: full window, all logits (decode path: one token per call)
        step = 1 if a.decode_path else T
        b = L.llama_batch_init(T, 0, 1)
        trunk, H = [], []
        for s0 in range(0, T, step):
            for j, t in enumerate(toks[s0 : s0 + step]):
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = t, s0 + j, 1, 1
                b.seq_id[j][0] = 0
            n = min(step, T - s0)
            b.n_tokens = n
            if L.llama_decode(tgt, b) != 0:
                sys.exit("target decode failed")
            trunk += [np.ctypeslib.as_array(L.llama_get_logits_ith(tgt, j), (n_vocab,)).copy() for j in range(n)]
            H.append(np.ctypeslib.as_array(get_nextn(tgt), (n, n_embd)).copy())
        trunk, H = np.array(trunk), np.concatenate(H)
        # MTP catch-up: token x_p with hidden H_{p-1} (zeros at p = 0)
        Hs = np.ascontiguousarray(np.concatenate([np.zeros((1, n_embd), np.float32), H[:-1]]), dtype=np.float32)
        bx = lib.llama_batch_ext_init(dft)
        mtp = []
        for s0 in range(0, T, step):
            lib.llama_batch_ext_clear(bx)
            n = min(step, T - s0)
            for j, t in enumerate(toks[s0 : s0 + n]):
                i = s0 + j
                idx = lib.llama_batch_ext_add_token(bx, 0, t)
                pos = (C.c_int32 * 4)(i, i, i, 0)
                assert idx == j and lib.llama_batch_ext_set_pos(bx, idx, pos)
                row = Hs[i : i + 1]
                assert lib.llama_batch_ext_set_embd_token(bx, idx, Embd(row.ctypes.data_as(C.POINTER(C.c_float)), 1, n_embd))
                lib.llama_batch_ext_set_output_logits(bx, idx, True)
            rc = lib.llama_process(dft, 1, bx)  # LLAMA_PROCESS_TYPE_DECODE
            if rc != 0:
                sys.exit(f"MTP llama_process failed: {rc}")
            mtp += [np.ctypeslib.as_array(lib.llama_get_logits_ith(dft, j), (n_vocab,)).copy() for j in range(n)]
        mtp = np.array(mtp)
        d, tr = mtp[1:-1].argmax(-1), trunk[1:-1].argmax(-1)
        acc_ok += int((d == tr).sum())
        acc_n += len(d)
        per_window.append([int((d == tr).sum()), len(d)])
        if wi == 0:
            res_logits = (toks, trunk, mtp)
        L.llama_batch_free(b)
        L.llama_free(tgt)
        L.llama_free(dft)
    print(f"llama.cpp MTP depth-1 acceptance (teacher-forced, MTP argmax == trunk argmax), "
          f"{len(wins)} of {n_all} windows of {T}, evenly spaced: {acc_ok / acc_n:.4f} ({acc_ok}/{acc_n})")
    if a.json_out:
        import json

        Path(a.json_out).write_text(json.dumps({"gguf": a.gguf, "T": T, "accepted": acc_ok, "total": acc_n,
                                                "per_window": per_window}))

    if a.ckpt:
        import torch

        from export_gguf import load_ckpt
        from model import Config, Qwen35

        sd, cfg = load_ckpt(Path(a.ckpt))
        m = Qwen35(Config(**cfg))
        m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
        m.eval()
        toks, trunk, mtp = res_logits
        with torch.no_grad():
            lg, ml, _ = m(torch.tensor([toks]))
        lg, ml = lg[0].numpy(), ml[0].numpy()
        rel = lambda x, y: float(np.linalg.norm(x - y) / np.linalg.norm(y))  # noqa: E731
        print(f"window 0 vs PyTorch: trunk logits rel err {rel(trunk, lg):.2e}, MTP logits rel err {rel(mtp, ml):.2e}, "
              f"MTP argmax agree {(mtp.argmax(-1) == ml.argmax(-1)).mean():.4f}")


if __name__ == "__main__":
    main()
