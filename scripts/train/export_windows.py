#!/usr/bin/env python3
"""Writes the held-out windows of the llama.cpp checks as JSON, so that hybrid-run
(examples/mtp_acceptance.rs) and llama.cpp (check_mtp_llamacpp.py --windows-json) score
exactly the same token ids.

  "mtp": windows of 256 ids, evenly spaced over the held-out ids, as check_mtp_llamacpp.py
         picks them (teacher-forced MTP depth-1 acceptance);
  "ppl": windows of 513 ids (512 inputs + the last target), as check_llamacpp.py picks them
         (held-out perplexity: inputs w[:-1], targets w[1:]).

Usage: python3 scripts/train/export_windows.py [--data .train] [--mtp-windows 32]
       [--ppl-windows 40] --out ~/.cache/hybrid-run/heldout-windows.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def mtp_windows(ids: np.ndarray, n: int, T: int = 256) -> dict:
    # check_mtp_llamacpp.py: n_all = len // T, windows ids[s*T : s*T+T]
    n_all = len(ids) // T
    starts = np.linspace(0, n_all - 1, min(n, n_all)).round().astype(int)
    return {"T": T, "n_all": n_all, "starts": starts.tolist(),
            "windows": [ids[s * T : s * T + T].tolist() for s in starts]}


def ppl_windows(ids: np.ndarray, n: int, T: int = 512) -> dict:
    # check_llamacpp.py: n_all = (len - 1) // T, windows ids[s*T : s*T+T+1]
    n_all = (len(ids) - 1) // T
    starts = np.linspace(0, n_all - 1, min(n, n_all)).round().astype(int)
    return {"T": T, "n_all": n_all, "starts": starts.tolist(),
            "windows": [ids[s * T : s * T + T + 1].tolist() for s in starts]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".train")
    ap.add_argument("--mtp-windows", type=int, default=32)
    ap.add_argument("--ppl-windows", type=int, default=40)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    ids = np.load(Path(a.data) / "heldout.npy").astype(np.int64)
    doc = {"source": "heldout.npy (scripts/train/prepare_data.py held-out split)",
           "n_ids": int(len(ids)),
           "mtp": mtp_windows(ids, a.mtp_windows),
           "ppl": ppl_windows(ids, a.ppl_windows)}
    out = Path(a.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc))
    print(f"wrote {out}: {len(doc['mtp']['windows'])} MTP windows of {doc['mtp']['T']}, "
          f"{len(doc['ppl']['windows'])} perplexity windows of {doc['ppl']['T']} + 1")


if __name__ == "__main__":
    main()
