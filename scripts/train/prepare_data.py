#!/usr/bin/env python3
"""Corpus, vocabulary and token ids for the built-in pystd model.

Corpus: the .py sources of a CPython standard library (PSF licence). Included: every
`*.py` under the library root, test packages included. Excluded: `site-packages/`
(third-party code), `pydoc_data/topics.py` (a generated 700 kB string table), and any
file that is not valid UTF-8. The held-out split is by file: a file is held out when
the first 8 hex digits of sha256(relative path) modulo 100 are < HELDOUT_PERCENT.

Vocabulary: a byte-level BPE trained with HF `tokenizers`, using the qwen35
pre-tokenizer regex (Split, behaviour isolated) followed by
ByteLevel(add_prefix_space=False, use_regex=False), with five control tokens
appended at the end of the vocabulary.

Outputs (in --out, default .train/):
  tokenizer.json       the HF tokenizer
  train.npy, heldout.npy   uint16 token ids; documents are separated by <|endoftext|>
  heldout_files.txt, train_files.txt   the split (relative paths)
  heldout_docs.npy     start offsets of the held-out documents inside heldout.npy

Usage: python3 scripts/train/prepare_data.py [--lib DIR] [--out DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

QWEN35_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
    r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CONTROL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
VOCAB_SIZE = 4096
HELDOUT_PERCENT = 3
EXCLUDED = {"pydoc_data/topics.py"}


def is_heldout(rel: str) -> bool:
    return int(hashlib.sha256(rel.encode()).hexdigest()[:8], 16) % 100 < HELDOUT_PERCENT


def collect(lib: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    train, held = [], []
    for p in sorted(lib.rglob("*.py")):
        rel = p.relative_to(lib).as_posix()
        if rel.startswith("site-packages/") or rel in EXCLUDED or "__pycache__" in rel:
            continue
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not text.strip():
            continue
        (held if is_heldout(rel) else train).append((rel, text))
    return train, held


def build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE(ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN35_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(texts: list[str]):
    from tokenizers import pre_tokenizers, trainers

    tok = build_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(CONTROL_TOKENS),
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    n = tok.get_vocab_size()
    if n != VOCAB_SIZE - len(CONTROL_TOKENS):
        sys.exit(f"BPE trainer produced {n} tokens, expected {VOCAB_SIZE - len(CONTROL_TOKENS)}")
    tok.add_special_tokens(CONTROL_TOKENS)
    assert tok.get_vocab_size() == VOCAB_SIZE
    return tok


def encode_docs(tok, docs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    eot = tok.token_to_id("<|endoftext|>")
    encs = tok.encode_batch([t for _, t in docs], add_special_tokens=False)
    ids, starts, pos = [], [], 0
    for e in encs:
        starts.append(pos)
        ids.extend(e.ids)
        ids.append(eot)
        pos += len(e.ids) + 1
    return np.asarray(ids, dtype=np.uint16), np.asarray(starts, dtype=np.int64)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default="/root/.pyenv/versions/3.11.7/lib/python3.11")
    ap.add_argument("--out", default=".train")
    args = ap.parse_args()
    lib, out = Path(args.lib), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train, held = collect(lib)
    print(f"files: train {len(train)}, held-out {len(held)}")
    print(f"bytes: train {sum(len(t.encode()) for _, t in train)}, held-out {sum(len(t.encode()) for _, t in held)}")
    (out / "train_files.txt").write_text("".join(r + "\n" for r, _ in train))
    (out / "heldout_files.txt").write_text("".join(r + "\n" for r, _ in held))

    tok = train_tokenizer([t for _, t in train])
    tok.save(str(out / "tokenizer.json"))

    tr_ids, _ = encode_docs(tok, train)
    he_ids, he_starts = encode_docs(tok, held)
    np.save(out / "train.npy", tr_ids)
    np.save(out / "heldout.npy", he_ids)
    np.save(out / "heldout_docs.npy", he_starts)
    print(f"tokens: train {len(tr_ids)}, held-out {len(he_ids)}")
    meta = {"train_tokens": int(len(tr_ids)), "heldout_tokens": int(len(he_ids)),
            "train_files": len(train), "heldout_files": len(held), "vocab": VOCAB_SIZE}
    (out / "data_meta.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
