#!/usr/bin/env python3
"""Oracle for tests/gguf_oracle.rs, using llama.cpp's gguf-py (pip package `gguf`).

  gguf_oracle.py dump <file.gguf>   JSON of what gguf-py's GGUFReader sees
  gguf_oracle.py write <file.gguf>  a file written by gguf-py's GGUFWriter with every
                                    value type and every tensor type hybrid-run supports

Floats are dumped as their IEEE bit patterns so the comparison is exact. Tensor data is
summarised by FNV-1a 64.
"""
import json
import struct
import sys

import numpy as np
import gguf
from gguf import GGUFValueType as VT, GGMLQuantizationType as QT

FLOAT_BITS = {VT.FLOAT32: ("<f", "<I"), VT.FLOAT64: ("<d", "<Q")}


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def bits(vtype, x):
    if vtype in FLOAT_BITS:
        f, i = FLOAT_BITS[vtype]
        return struct.unpack(i, struct.pack(f, x))[0]
    return x


def dump(path):
    r = gguf.GGUFReader(path)
    kv = []
    version = None
    for name, field in r.fields.items():
        if name == "GGUF.version":
            version = field.contents()
        if name.startswith("GGUF."):
            continue
        types = [int(t) for t in field.types]
        value = field.contents()
        elem = field.types[-1]
        if isinstance(value, list):
            value = [bits(elem, x) for x in value]
        else:
            value = bits(elem, value)
        kv.append([name, types, value])
    tensors = []
    for t in r.tensors:
        data = bytes(np.asarray(t.data).reshape(-1).view(np.uint8))
        tensors.append([t.name, int(t.tensor_type), [int(d) for d in t.shape], int(t.data_offset), int(t.n_bytes), fnv1a64(data)])
    json.dump({"version": version, "alignment": r.alignment, "kv": kv, "tensors": tensors}, sys.stdout)


def write(path):
    w = gguf.GGUFWriter(path, arch="qwen35")
    w.add_key_value("t.u8", 200, VT.UINT8)
    w.add_key_value("t.i8", -100, VT.INT8)
    w.add_key_value("t.u16", 60000, VT.UINT16)
    w.add_key_value("t.i16", -30000, VT.INT16)
    w.add_key_value("t.u32", 4000000000, VT.UINT32)
    w.add_key_value("t.i32", -2000000000, VT.INT32)
    w.add_key_value("t.f32", 1e-6, VT.FLOAT32)
    w.add_key_value("t.bool", True, VT.BOOL)
    w.add_key_value("t.string", "héllo ✓", VT.STRING)
    w.add_key_value("t.u64", 2**64 - 1, VT.UINT64)
    w.add_key_value("t.i64", -(2**63), VT.INT64)
    w.add_key_value("t.f64", 0.1, VT.FLOAT64)
    w.add_key_value("a.i32", [1, -2, 3], VT.ARRAY, VT.INT32)
    w.add_key_value("a.f32", [0.5, 1e10], VT.ARRAY, VT.FLOAT32)
    w.add_key_value("a.string", ["Ġthe", "", "<|im_end|>"], VT.ARRAY, VT.STRING)
    w.add_key_value("a.bool", [True, False], VT.ARRAY, VT.BOOL)
    w.add_key_value("a.u64", [2**64 - 1, 0], VT.ARRAY, VT.UINT64)
    rng = np.random.default_rng(7)
    w.add_tensor("f32", rng.standard_normal((3, 5), dtype=np.float32))
    w.add_tensor("f16", rng.standard_normal((2, 7)).astype(np.float16))
    # Quantized and BF16 tensors as raw bytes: (rows, bytes per row).
    for name, qt, row_bytes in [("bf16", QT.BF16, 2 * 9), ("q8_0", QT.Q8_0, 34 * 2), ("q4_k", QT.Q4_K, 144),
                                ("q5_k", QT.Q5_K, 176 * 2), ("q6_k", QT.Q6_K, 210)]:
        w.add_tensor(name, rng.integers(0, 256, size=(3, row_bytes), dtype=np.uint8), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    {"dump": dump, "write": write}[sys.argv[1]](sys.argv[2])
