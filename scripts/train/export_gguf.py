#!/usr/bin/env python3
"""Exports the fp16 checkpoint written by train.py to qwen35 GGUF files (f32, q8_0, q4_k_m).

Follows shared/spec/qwen35-architecture.md: metadata keys of §2, tensor names of §4, +1
folded into every zero-centred norm (not ssm_norm), ssm_a = -exp(A_log), conv as
{K, conv_dim}, the MTP block as blk.{n_layer} with nextn.* tensors. GDN value heads are
already in the GGUF tiled order in model.py, so no reordering happens here.
Quantization is done with `libgguf` (ggml's reference quantizers). Q4_K_M type choices
follow llama.cpp's llama-quant.cpp: norms, ssm_a, ssm_dt, ssm_conv1d stay F32; output is
Q6_K; attn_v / attn_qkv and ffn_down are Q6_K on the "more bits" layers; the rest Q4_K.

Usage: python3 scripts/train/export_gguf.py --ckpt DIR --tokenizer .train/tokenizer.json \
           --outdir DIR [--types f32,q8_0,q4_k_m] [--name qwen35-pystd]
Needs: gguf (gguf-py from llama.cpp, see scripts/setup-llamacpp.sh), libgguf, safetensors, numpy.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
CONTROL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def load_ckpt(d: Path) -> tuple[dict[str, np.ndarray], dict]:
    from safetensors.numpy import load_file

    sd: dict[str, np.ndarray] = {}
    shards = sorted(d.glob("ckpt-*.safetensors"))
    if not shards:
        sys.exit(f"no ckpt-*.safetensors in {d}")
    for f in shards:
        sd.update(load_file(str(f)))
    cfg = json.loads((d / "config.json").read_text())
    return {k: v.astype(np.float32) for k, v in sd.items()}, cfg


def use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def gguf_tensors(sd: dict[str, np.ndarray], cfg: dict) -> list[tuple[str, np.ndarray, str, int]]:
    """(gguf name, array in PyTorch [out, in] / 1-D layout, kind, block index or -1).
    kind: 'norm' (F32 always), 'f32' (F32 always), 'mat' (quantizable)."""
    out: list[tuple[str, np.ndarray, str, int]] = []
    used: set[str] = set()

    def take(k: str) -> np.ndarray:
        used.add(k)
        return sd[k]

    def znorm(k: str) -> np.ndarray:  # zero-centred -> stored 1 + w
        return (1.0 + take(k)).astype(np.float32)

    n_layer = cfg["n_layer"]
    out.append(("token_embd.weight", take("embed.weight"), "mat", -1))

    def attn_block(prefix: str, b: int):
        p = f"blk.{b}"
        out.extend([
            (f"{p}.attn_norm.weight", znorm(f"{prefix}.input_layernorm.weight"), "norm", b),
            (f"{p}.attn_q.weight", take(f"{prefix}.mixer.q_proj.weight"), "mat", b),
            (f"{p}.attn_k.weight", take(f"{prefix}.mixer.k_proj.weight"), "mat", b),
            (f"{p}.attn_v.weight", take(f"{prefix}.mixer.v_proj.weight"), "mat", b),
            (f"{p}.attn_q_norm.weight", znorm(f"{prefix}.mixer.q_norm.weight"), "norm", b),
            (f"{p}.attn_k_norm.weight", znorm(f"{prefix}.mixer.k_norm.weight"), "norm", b),
            (f"{p}.attn_output.weight", take(f"{prefix}.mixer.o_proj.weight"), "mat", b),
        ])

    def ffn(prefix: str, b: int):
        p = f"blk.{b}"
        out.extend([
            (f"{p}.post_attention_norm.weight", znorm(f"{prefix}.post_attention_layernorm.weight"), "norm", b),
            (f"{p}.ffn_gate.weight", take(f"{prefix}.mlp.gate_proj.weight"), "mat", b),
            (f"{p}.ffn_up.weight", take(f"{prefix}.mlp.up_proj.weight"), "mat", b),
            (f"{p}.ffn_down.weight", take(f"{prefix}.mlp.down_proj.weight"), "mat", b),
        ])

    for b in range(n_layer):
        pre = f"layers.{b}"
        recurrent = b < n_layer and (b + 1) % cfg["full_attention_interval"] != 0
        if recurrent:
            p, m = f"blk.{b}", f"{pre}.mixer"
            out.extend([
                (f"{p}.attn_norm.weight", znorm(f"{pre}.input_layernorm.weight"), "norm", b),
                (f"{p}.attn_qkv.weight", take(f"{m}.in_proj_qkv.weight"), "mat", b),
                (f"{p}.attn_gate.weight", take(f"{m}.in_proj_z.weight"), "mat", b),
                (f"{p}.ssm_beta.weight", take(f"{m}.in_proj_b.weight"), "mat", b),
                (f"{p}.ssm_alpha.weight", take(f"{m}.in_proj_a.weight"), "mat", b),
                (f"{p}.ssm_conv1d.weight", take(f"{m}.conv_weight"), "f32", b),  # [conv_dim, K] -> ne {K, conv_dim}
                (f"{p}.ssm_dt.bias", take(f"{m}.dt_bias"), "f32", b),
                (f"{p}.ssm_a", (-np.exp(take(f"{m}.A_log").astype(np.float64))).astype(np.float32), "f32", b),
                (f"{p}.ssm_norm.weight", take(f"{m}.norm_weight"), "norm", b),  # NOT +1 folded
                (f"{p}.ssm_out.weight", take(f"{m}.out_proj.weight"), "mat", b),
            ])
        else:
            attn_block(pre, b)
        ffn(pre, b)

    b = n_layer  # the MTP / NextN block
    p = f"blk.{b}"
    attn_block("mtp.block", b)
    ffn("mtp.block", b)
    out.extend([
        (f"{p}.nextn.eh_proj.weight", take("mtp.eh_proj.weight"), "mat", b),  # [D, 2D]: input = [enorm(e) | hnorm(h)]
        (f"{p}.nextn.enorm.weight", znorm("mtp.enorm.weight"), "norm", b),
        (f"{p}.nextn.hnorm.weight", znorm("mtp.hnorm.weight"), "norm", b),
        (f"{p}.nextn.shared_head_norm.weight", znorm("mtp.shared_head_norm.weight"), "norm", b),
    ])
    out.append(("output_norm.weight", znorm("norm.weight"), "norm", -1))
    out.append(("output.weight", take("lm_head.weight"), "mat", -1))
    missing = set(sd) - used
    if missing:
        sys.exit(f"checkpoint tensors not exported: {sorted(missing)}")
    return out


def choose_type(name: str, kind: str, block: int, n_blocks: int, ftype: str):
    from gguf import GGMLQuantizationType as Q

    if kind != "mat" or ftype == "f32":
        return Q.F32
    if ftype == "q8_0":
        return Q.Q8_0
    assert ftype == "q4_k_m"
    if name == "output.weight":
        return Q.Q6_K
    if name.endswith(("attn_v.weight", "attn_qkv.weight", "ffn_down.weight")) and use_more_bits(block, n_blocks):
        return Q.Q6_K
    return Q.Q4_K


def add_tokenizer(w, tok_path: Path) -> None:
    tj = json.loads(tok_path.read_text())
    vocab: dict[str, int] = tj["model"]["vocab"]
    added = {a["content"]: a["id"] for a in tj.get("added_tokens", [])}
    n = max(list(vocab.values()) + list(added.values())) + 1
    tokens: list[str | None] = [None] * n
    types = [1] * n  # NORMAL
    for t, i in vocab.items():
        tokens[i] = t
    for t, i in added.items():
        tokens[i] = t
        types[i] = 3  # CONTROL
    if any(t is None for t in tokens):
        sys.exit("tokenizer ids are not contiguous")
    merges = [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in tj["model"]["merges"]]
    eot = added["<|endoftext|>"]
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "qwen35")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_array("tokenizer.ggml.merges", merges)
    w.add_uint32("tokenizer.ggml.eos_token_id", eot)
    w.add_uint32("tokenizer.ggml.padding_token_id", eot)
    w.add_uint32("tokenizer.ggml.bos_token_id", eot)
    w.add_bool("tokenizer.ggml.add_bos_token", False)
    w.add_string("tokenizer.chat_template", CHAT_TEMPLATE)


def export(sd, cfg, tok_path: Path, path: Path, ftype: str, name: str) -> None:
    import gguf
    import libgguf

    arch = "qwen35"
    tensors = gguf_tensors(sd, cfg)
    n_blocks = cfg["n_layer"] + 1
    w = gguf.GGUFWriter(str(path), arch)
    w.add_string("general.name", name)
    w.add_string("general.license", "PSF-2.0 (training data); model weights: same terms as this repository")
    ft = {"f32": gguf.LlamaFileType.ALL_F32, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
          "q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M}[ftype]
    w.add_uint32("general.file_type", int(ft))
    if ftype != "f32":
        w.add_uint32("general.quantization_version", gguf.GGML_QUANT_VERSION)
    k = f"{arch}."
    w.add_uint32(k + "context_length", cfg["ctx"])
    w.add_uint32(k + "embedding_length", cfg["n_embd"])
    w.add_uint32(k + "block_count", n_blocks)
    w.add_uint32(k + "nextn_predict_layers", 1)
    w.add_uint32(k + "feed_forward_length", cfg["n_ff"])
    w.add_uint32(k + "attention.head_count", cfg["n_head"])
    w.add_uint32(k + "attention.head_count_kv", cfg["n_head_kv"])
    w.add_uint32(k + "attention.key_length", cfg["head_dim"])
    w.add_uint32(k + "attention.value_length", cfg["head_dim"])
    w.add_float32(k + "attention.layer_norm_rms_epsilon", cfg["eps"])
    w.add_uint32(k + "rope.dimension_count", cfg["n_rot"])
    half = cfg["n_rot"] // 2  # IMROPE sections over the n_rot/2 pairs; text-only it is plain NeoX
    sec = [half - 2 * (half // 3), half // 3, half // 3, 0]
    w.add_array(k + "rope.dimension_sections", sec)
    w.add_float32(k + "rope.freq_base", cfg["rope_base"])
    w.add_uint32(k + "ssm.conv_kernel", cfg["conv_k"])
    w.add_uint32(k + "ssm.state_size", cfg["ssm_d"])
    w.add_uint32(k + "ssm.group_count", cfg["ssm_h_k"])
    w.add_uint32(k + "ssm.time_step_rank", cfg["ssm_h_v"])
    w.add_uint32(k + "ssm.inner_size", cfg["ssm_h_v"] * cfg["ssm_d"])
    w.add_uint32(k + "full_attention_interval", cfg["full_attention_interval"])
    add_tokenizer(w, tok_path)

    counts: dict[str, int] = {}
    for tname, arr, kind, block in tensors:
        qt = choose_type(tname, kind, block, n_blocks, ftype)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if qt == gguf.GGMLQuantizationType.F32:
            w.add_tensor(tname, arr)
        else:
            if arr.ndim != 2 or arr.shape[1] % 256:
                sys.exit(f"{tname}: {arr.shape} cannot take {qt.name} without a fallback")
            w.add_tensor(tname, libgguf.quantize_rows(arr, int(qt)), raw_dtype=qt)
        counts[qt.name] = counts.get(qt.name, 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{path}: {path.stat().st_size} bytes, {len(tensors)} tensors, types {counts}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--tokenizer", default=".train/tokenizer.json")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--types", default="f32,q8_0,q4_k_m")
    ap.add_argument("--name", default="qwen35-pystd")
    a = ap.parse_args()
    sd, cfg = load_ckpt(Path(a.ckpt))
    outdir = Path(a.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for t in a.types.split(","):
        export(sd, cfg, Path(a.tokenizer), outdir / f"{a.name}-{t}.gguf", t, a.name)


if __name__ == "__main__":
    main()
