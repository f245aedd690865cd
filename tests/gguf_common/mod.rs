//! Helpers shared by the GGUF integration tests: a raw byte builder that does not use our
//! writer (so it can produce invalid files and check the writer's layout independently),
//! and sample metadata / tensors covering every value type and tensor type.
#![allow(dead_code)]

use hybrid_run::gguf::{Array, GgmlType, Value};

/// Hand-assembles GGUF bytes field by field.
#[derive(Default, Clone)]
pub struct Raw {
    pub b: Vec<u8>,
}

impl Raw {
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::default();
        r.b.extend_from_slice(b"GGUF");
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.b.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.b.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.b.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.b.extend_from_slice(s.as_bytes());
        self
    }
    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    pub fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.str(key).u32(8).str(v)
    }
    /// Tensor info with ggml type id `ty` and data offset `offset` (relative to the data section).
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    pub fn pad_to(&mut self, align: usize) -> &mut Self {
        while self.b.len() % align != 0 {
            self.b.push(0);
        }
        self
    }
    pub fn bytes(&mut self, data: &[u8]) -> &mut Self {
        self.b.extend_from_slice(data);
        self
    }
    pub fn pos(&self) -> u64 {
        self.b.len() as u64
    }
}

/// A small valid file: two metadata keys and two F32 tensors, `a` [4] (16 bytes) and
/// `b` [3, 2] (24 bytes), data section at a multiple of 32, `b` at data offset 32.
pub fn small_valid_file() -> Vec<u8> {
    let mut r = Raw::header(3, 2, 2);
    r.kv_str("general.architecture", "qwen35")
        .kv_u32("x.count", 7);
    r.tensor("a", &[4], 0, 0).tensor("b", &[3, 2], 0, 32);
    r.pad_to(32);
    r.bytes(&pattern(16, 1))
        .pad_to(32)
        .bytes(&pattern(24, 2))
        .pad_to(32);
    r.b
}

/// Deterministic, seed-dependent bytes.
pub fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// One metadata value of each of the 13 types, with edge values.
pub fn every_value_type() -> Vec<(String, Value)> {
    let kv = |k: &str, v: Value| (k.to_string(), v);
    vec![
        kv("t.u8", Value::U8(255)),
        kv("t.i8", Value::I8(-128)),
        kv("t.u16", Value::U16(65535)),
        kv("t.i16", Value::I16(-32768)),
        kv("t.u32", Value::U32(u32::MAX)),
        kv("t.i32", Value::I32(i32::MIN)),
        kv("t.f32", Value::F32(-1.5e-7)),
        kv("t.bool", Value::Bool(true)),
        kv("t.string", Value::String("héllo wörld ✓ <|im_end|>".into())),
        kv("t.u64", Value::U64(u64::MAX)),
        kv("t.i64", Value::I64(i64::MIN)),
        kv("t.f64", Value::F64(std::f64::consts::PI)),
        kv("t.empty_string", Value::String(String::new())),
        kv("a.u8", Value::Array(Array::U8(vec![0, 1, 255]))),
        kv("a.i8", Value::Array(Array::I8(vec![-1, 0, 127]))),
        kv("a.u16", Value::Array(Array::U16(vec![1, 65535]))),
        kv("a.i16", Value::Array(Array::I16(vec![-2, 300]))),
        kv("a.u32", Value::Array(Array::U32(vec![248044, 248046]))),
        kv("a.i32", Value::Array(Array::I32(vec![1, 3, 5, -6]))),
        kv("a.f32", Value::Array(Array::F32(vec![0.5, -0.0, f32::MAX]))),
        kv("a.bool", Value::Array(Array::Bool(vec![true, false, true]))),
        kv(
            "a.string",
            Value::Array(Array::String(vec!["Ġ".into(), String::new(), "a b".into()])),
        ),
        kv("a.u64", Value::Array(Array::U64(vec![u64::MAX, 0]))),
        kv("a.i64", Value::Array(Array::I64(vec![i64::MAX, -1]))),
        kv("a.f64", Value::Array(Array::F64(vec![1e300, -2.5]))),
        kv("a.empty", Value::Array(Array::F32(vec![]))),
    ]
}

/// Every tensor type, with a shape that is a whole number of blocks.
pub fn every_tensor_type() -> Vec<(String, GgmlType, Vec<u64>)> {
    let mut types = GgmlType::ALL_WEIGHT_TYPES.to_vec();
    types.push(GgmlType::Q8_K);
    types
        .into_iter()
        .enumerate()
        .map(|(i, ty)| {
            let row = 2 * ty.block_elems() as u64;
            let dims = match i % 3 {
                0 => vec![row],
                1 => vec![row, 3],
                _ => vec![row, 2, 3, 1],
            };
            (format!("blk.{i}.{ty}.weight"), ty, dims)
        })
        .collect()
}

/// Byte size a tensor should have, computed from the spec formula here rather than by the
/// code under test: `ne0 / block * block_bytes * ne1 * ne2 * ne3`.
pub fn expected_bytes(ty: GgmlType, dims: &[u64]) -> u64 {
    let block_bytes: u64 = match ty {
        GgmlType::F32 => 4,
        GgmlType::F16 | GgmlType::BF16 => 2,
        GgmlType::Q8_0 => 34,
        GgmlType::Q4_K => 144,
        GgmlType::Q5_K => 176,
        GgmlType::Q6_K => 210,
        GgmlType::Q8_K => 292,
    };
    let block_elems: u64 = match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
        GgmlType::Q8_0 => 32,
        _ => 256,
    };
    dims[0] / block_elems * block_bytes * dims[1..].iter().product::<u64>()
}
