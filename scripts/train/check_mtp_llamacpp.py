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
    a = ap.parse_args()

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
    model = L.llama_model_load_from_file(a.gguf.encode(), mp)
    if not model:
        sys.exit("model load failed")
    n_embd = L.llama_model_n_embd(model)
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(model))
    T = a.T

    def new_ctx(mtp: bool):
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = T, T, T, 1
        cp.n_threads = cp.n_threads_batch = 2
        if mtp:
            cp.ctx_type = L.LLAMA_CONTEXT_TYPE_MTP
        ctx = L.llama_init_from_model(model, cp)
        if not ctx:
            sys.exit("context creation failed")
        return ctx

    ids = np.load(Path(a.data) / "heldout.npy").astype(np.int64)
    res_logits = []
    acc_n = acc_ok = 0
    n_all = len(ids) // T
    starts = np.linspace(0, n_all - 1, min(a.windows, n_all)).round().astype(int)  # spread over the split
    for wi, st in enumerate(starts):
        toks = [int(t) for t in ids[st * T : st * T + T]]
        tgt, dft = new_ctx(False), new_ctx(True)
        set_nextn(tgt, True, False)
        set_nextn(dft, True, True)
        # target: full window, all logits
        b = L.llama_batch_init(T, 0, 1)
        for i, t in enumerate(toks):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = t, i, 1, 1
            b.seq_id[i][0] = 0
        b.n_tokens = T
        if L.llama_decode(tgt, b) != 0:
            sys.exit("target decode failed")
        trunk = np.array([np.ctypeslib.as_array(L.llama_get_logits_ith(tgt, i), (n_vocab,)) for i in range(T)])
        H = np.ctypeslib.as_array(get_nextn(tgt), (T, n_embd)).copy()
        # MTP catch-up: token x_p with hidden H_{p-1} (zeros at p = 0)
        Hs = np.ascontiguousarray(np.concatenate([np.zeros((1, n_embd), np.float32), H[:-1]]), dtype=np.float32)
        bx = lib.llama_batch_ext_init(dft)
        for i, t in enumerate(toks):
            idx = lib.llama_batch_ext_add_token(bx, 0, t)
            pos = (C.c_int32 * 4)(i, i, i, 0)
            assert idx == i and lib.llama_batch_ext_set_pos(bx, idx, pos)
            row = Hs[i : i + 1]
            assert lib.llama_batch_ext_set_embd_token(bx, idx, Embd(row.ctypes.data_as(C.POINTER(C.c_float)), 1, n_embd))
            lib.llama_batch_ext_set_output_logits(bx, idx, True)
        rc = lib.llama_process(dft, 1, bx)  # LLAMA_PROCESS_TYPE_DECODE
        if rc != 0:
            sys.exit(f"MTP llama_process failed: {rc}")
        mtp = np.array([np.ctypeslib.as_array(lib.llama_get_logits_ith(dft, i), (n_vocab,)) for i in range(T)])
        d, tr = mtp[1:-1].argmax(-1), trunk[1:-1].argmax(-1)
        acc_ok += int((d == tr).sum())
        acc_n += len(d)
        if wi == 0:
            res_logits = (toks, trunk, mtp)
        L.llama_batch_free(b)
        L.llama_free(tgt)
        L.llama_free(dft)
    print(f"llama.cpp MTP depth-1 acceptance (teacher-forced, MTP argmax == trunk argmax), "
          f"{len(starts)} of {n_all} windows of {T}, evenly spaced: {acc_ok / acc_n:.4f} ({acc_ok}/{acc_n})")

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
