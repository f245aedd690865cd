//! Per-tensor types of llama.cpp's quantization mixes, as `llama-quantize` assigns them
//! (llama.cpp `src/llama-quant.cpp`: `tensor_allows_quantization`, `tensor_get_category`,
//! `llama_tensor_get_type_impl`, `use_more_bits`; read at the commit inside
//! llama-cpp-python 0.3.36). Only the rules that can fire for a dense qwen35 model under
//! the five mixes below are reproduced:
//!
//! - a tensor is quantized only if it has >= 2 dims, its name ends in `weight`, it is not a
//!   `_norm.weight` and not `ssm_conv1d`; everything else stays F32;
//! - `output.weight` (and `token_embd.weight` when there is no `output.weight`) becomes Q6_K
//!   unless the mix's base type is Q8_0 (or the row is not a multiple of 256: Q8_0);
//! - "attn_v-like" tensors (`attn_v`, `attn_qkv`) and `ffn_down` get Q6_K under Q4_K_M and
//!   Q5_K_M when `use_more_bits(i, n)`: `i < n/8 || i >= 7n/8 || (i − n/8) % 3 == 2`. For
//!   `ffn_down`, `i` counts `ffn_down` tensors and `n` is `block_count` (MTP block
//!   included); for attn_v-like tensors `i` counts them and `n` is their total. Tensors are
//!   visited in llama.cpp's loader order (global tensors first, then by block index, then by
//!   name), so in a qwen35 file both counters equal the block index.
//! - everything else quantizable gets the base type.

use crate::gguf::GgmlType;

/// The file types `hybrid-run synth` can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantMix {
    F32,
    Q8_0,
    Q4KM,
    Q5KM,
    Q6K,
}

#[derive(Debug, thiserror::Error)]
pub enum MixError {
    #[error(
        "tensor {name}: row length {row_len} is not a multiple of {block} ({ty} blocks); \
         llama.cpp would fall back to a type hybrid-run does not support"
    )]
    RowNotBlockMultiple {
        name: String,
        row_len: u64,
        block: u64,
        ty: GgmlType,
    },
}

impl QuantMix {
    pub const ALL: [QuantMix; 5] = [
        QuantMix::F32,
        QuantMix::Q8_0,
        QuantMix::Q4KM,
        QuantMix::Q5KM,
        QuantMix::Q6K,
    ];

    /// CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            QuantMix::F32 => "f32",
            QuantMix::Q8_0 => "q8_0",
            QuantMix::Q4KM => "q4_k_m",
            QuantMix::Q5KM => "q5_k_m",
            QuantMix::Q6K => "q6_k",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        QuantMix::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
    }

    /// `general.file_type` (`enum llama_ftype` in llama.h).
    pub fn file_type(self) -> u32 {
        match self {
            QuantMix::F32 => 0,
            QuantMix::Q8_0 => 7,
            QuantMix::Q4KM => 15,
            QuantMix::Q5KM => 17,
            QuantMix::Q6K => 18,
        }
    }

    /// The mix's base type (`llama_ftype_get_default_type`).
    pub fn base_type(self) -> GgmlType {
        match self {
            QuantMix::F32 => GgmlType::F32,
            QuantMix::Q8_0 => GgmlType::Q8_0,
            QuantMix::Q4KM => GgmlType::Q4_K,
            QuantMix::Q5KM => GgmlType::Q5_K,
            QuantMix::Q6K => GgmlType::Q6_K,
        }
    }
}

impl std::fmt::Display for QuantMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// llama.cpp `use_more_bits` (integer division as in C++).
pub fn use_more_bits(i_layer: i64, n_layers: i64) -> bool {
    i_layer < n_layers / 8
        || i_layer >= 7 * n_layers / 8
        || (i_layer - n_layers / 8).rem_euclid(3) == 2
}

/// `tensor_allows_quantization` for the names a qwen35 model has.
pub fn allows_quantization(name: &str, dims: &[u64]) -> bool {
    dims.len() >= 2
        && name.ends_with("weight")
        && !name.contains("_norm.weight")
        && !name.contains("ssm_conv1d")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnVLike,
    FfnDown,
    Other,
}

/// `tensor_get_category`, reduced to the categories that matter for these mixes.
fn category(name: &str) -> Category {
    if name == "output.weight" {
        Category::Output
    } else if name == "token_embd.weight" {
        Category::TokenEmbd
    } else if name.contains("attn_qkv.weight")
        || name.contains("attn_kv_b.weight")
        || name.contains("attn_v.weight")
    {
        Category::AttnVLike
    } else if name.contains("ffn_down") {
        Category::FfnDown
    } else {
        Category::Other
    }
}

/// Block index as llama.cpp's `weight_name_comparer` reads it (`blk.%d.`), −1 otherwise.
fn block_of(name: &str) -> i64 {
    name.strip_prefix("blk.")
        .and_then(|r| r.split_once('.'))
        .and_then(|(i, _)| i.parse().ok())
        .unwrap_or(-1)
}

/// Types for `tensors` (name, dims) under `mix`, in the input order. `n_block` is
/// `block_count`.
pub fn assign_types(
    mix: QuantMix,
    tensors: &[(&str, &[u64])],
    n_block: usize,
) -> Result<Vec<GgmlType>, MixError> {
    let base = mix.base_type();
    let mut out = vec![GgmlType::F32; tensors.len()];
    if !base.is_quantized() {
        return Ok(out);
    }
    // llama.cpp visits tensors in loader order; the counters depend on it.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        let (na, nb) = (tensors[a].0, tensors[b].0);
        (block_of(na), na).cmp(&(block_of(nb), nb))
    });
    let tied = !tensors.iter().any(|(n, _)| *n == "output.weight");
    let n_attn_wv = tensors
        .iter()
        .filter(|(n, _)| category(n) == Category::AttnVLike)
        .count() as i64;
    let n_ffn_down = n_block as i64;
    let (mut i_attn_wv, mut i_ffn_down) = (0i64, 0i64);

    for idx in order {
        let (name, dims) = tensors[idx];
        if !allows_quantization(name, dims) {
            continue; // F32
        }
        let row_len = dims[0];
        let mut ty = base;
        let cat = category(name);
        match cat {
            Category::Output | Category::TokenEmbd if cat == Category::Output || tied => {
                if row_len % 256 != 0 {
                    ty = GgmlType::Q8_0;
                } else if base != GgmlType::Q8_0 {
                    ty = GgmlType::Q6_K;
                }
            }
            Category::AttnVLike => {
                if matches!(mix, QuantMix::Q4KM | QuantMix::Q5KM)
                    && use_more_bits(i_attn_wv, n_attn_wv)
                {
                    ty = GgmlType::Q6_K;
                }
                i_attn_wv += 1;
            }
            Category::FfnDown => {
                if matches!(mix, QuantMix::Q4KM | QuantMix::Q5KM)
                    && use_more_bits(i_ffn_down, n_ffn_down)
                {
                    ty = GgmlType::Q6_K;
                }
                i_ffn_down += 1;
            }
            _ => {}
        }
        let block = ty.block_elems() as u64;
        if row_len % block != 0 {
            return Err(MixError::RowNotBlockMultiple {
                name: name.to_owned(),
                row_len,
                block,
                ty,
            });
        }
        out[idx] = ty;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names and dims of a qwen35 model with `n_layer` trunk blocks (interval 4) and one
    /// MTP block, widths from the 27B.
    fn qwen35_names(n_layer: usize, tied: bool) -> Vec<(String, Vec<u64>)> {
        let mut v = vec![("token_embd.weight".to_string(), vec![5120, 248320])];
        for i in 0..=n_layer {
            let b = |s: &str| format!("blk.{i}.{s}");
            v.push((b("attn_norm.weight"), vec![5120]));
            if i < n_layer && (i + 1) % 4 != 0 {
                v.push((b("attn_qkv.weight"), vec![5120, 10240]));
                v.push((b("attn_gate.weight"), vec![5120, 6144]));
                v.push((b("ssm_conv1d.weight"), vec![4, 10240]));
                v.push((b("ssm_a"), vec![48]));
                v.push((b("ssm_dt.bias"), vec![48]));
                v.push((b("ssm_out.weight"), vec![6144, 5120]));
                v.push((b("ssm_alpha.weight"), vec![5120, 48]));
            } else {
                v.push((b("attn_q.weight"), vec![5120, 12288]));
                v.push((b("attn_v.weight"), vec![5120, 1024]));
                v.push((b("attn_q_norm.weight"), vec![256]));
            }
            if i == n_layer {
                v.push((b("nextn.eh_proj.weight"), vec![10240, 5120]));
            }
            v.push((b("ffn_down.weight"), vec![17408, 5120]));
            v.push((b("ffn_up.weight"), vec![5120, 17408]));
        }
        v.push(("output_norm.weight".into(), vec![5120]));
        if !tied {
            v.push(("output.weight".into(), vec![5120, 248320]));
        }
        v
    }

    fn types_of(mix: QuantMix, tied: bool) -> Vec<(String, GgmlType)> {
        let t = qwen35_names(64, tied);
        let refs: Vec<(&str, &[u64])> = t.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let ty = assign_types(mix, &refs, 65).expect("27B rows are multiples of 256");
        t.into_iter().map(|(n, _)| n).zip(ty).collect()
    }

    fn ty(types: &[(String, GgmlType)], name: &str) -> GgmlType {
        types.iter().find(|(n, _)| n == name).expect(name).1
    }

    /// Blocks whose attn_qkv / attn_v and ffn_down are Q6_K in llama.cpp's Q4_K_M and
    /// Q5_K_M snapshot for Qwen3.5-27B (`tests/snapshots/qwen3.6-27b.schema`), plus the
    /// MTP block 64 (7·65/8 = 56, so block 64 is in the top eighth).
    const SCHEMA_MORE_BITS: [usize; 33] = [
        0, 1, 2, 3, 4, 5, 6, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 37, 40, 43, 46, 49, 52, 55, 56,
        57, 58, 59, 60, 61, 62, 63, 64,
    ];

    #[test]
    fn use_more_bits_matches_the_formula_for_64_and_65_layers() {
        let got64: Vec<usize> = (0..64).filter(|&i| use_more_bits(i as i64, 64)).collect();
        assert_eq!(got64, SCHEMA_MORE_BITS[..32]);
        let got65: Vec<usize> = (0..65).filter(|&i| use_more_bits(i as i64, 65)).collect();
        assert_eq!(got65, SCHEMA_MORE_BITS);
    }

    #[test]
    fn q4_k_m_gives_the_27b_the_schema_mix() {
        let t = types_of(QuantMix::Q4KM, false);
        for i in 0..=64 {
            let more = SCHEMA_MORE_BITS.contains(&i);
            let want = if more { GgmlType::Q6_K } else { GgmlType::Q4_K };
            assert_eq!(
                ty(&t, &format!("blk.{i}.ffn_down.weight")),
                want,
                "ffn_down {i}"
            );
            let wv = if i < 64 && (i + 1) % 4 != 0 {
                format!("blk.{i}.attn_qkv.weight")
            } else {
                format!("blk.{i}.attn_v.weight")
            };
            assert_eq!(ty(&t, &wv), want, "{wv}");
            assert_eq!(ty(&t, &format!("blk.{i}.ffn_up.weight")), GgmlType::Q4_K);
            assert_eq!(ty(&t, &format!("blk.{i}.attn_norm.weight")), GgmlType::F32);
        }
        assert_eq!(ty(&t, "output.weight"), GgmlType::Q6_K);
        assert_eq!(ty(&t, "token_embd.weight"), GgmlType::Q4_K);
        assert_eq!(ty(&t, "output_norm.weight"), GgmlType::F32);
        assert_eq!(ty(&t, "blk.0.ssm_conv1d.weight"), GgmlType::F32);
        assert_eq!(ty(&t, "blk.0.ssm_a"), GgmlType::F32);
        assert_eq!(ty(&t, "blk.0.ssm_dt.bias"), GgmlType::F32);
        assert_eq!(ty(&t, "blk.0.ssm_alpha.weight"), GgmlType::Q4_K);
        assert_eq!(ty(&t, "blk.0.attn_gate.weight"), GgmlType::Q4_K);
        assert_eq!(ty(&t, "blk.3.attn_q.weight"), GgmlType::Q4_K);
        assert_eq!(ty(&t, "blk.3.attn_q_norm.weight"), GgmlType::F32);
        assert_eq!(ty(&t, "blk.64.nextn.eh_proj.weight"), GgmlType::Q4_K);
    }

    #[test]
    fn q5_k_m_bumps_the_same_tensors_from_q5_k() {
        let t = types_of(QuantMix::Q5KM, false);
        assert_eq!(ty(&t, "blk.8.ffn_down.weight"), GgmlType::Q5_K);
        assert_eq!(ty(&t, "blk.10.ffn_down.weight"), GgmlType::Q6_K);
        assert_eq!(ty(&t, "blk.8.attn_qkv.weight"), GgmlType::Q5_K);
        assert_eq!(ty(&t, "blk.7.attn_v.weight"), GgmlType::Q6_K);
        assert_eq!(ty(&t, "output.weight"), GgmlType::Q6_K);
        assert_eq!(ty(&t, "token_embd.weight"), GgmlType::Q5_K);
    }

    #[test]
    fn q6_k_and_q8_0_are_uniform_apart_from_the_f32_tensors() {
        let names = qwen35_names(64, false);
        let t = types_of(QuantMix::Q6K, false);
        for ((n, dims), (_, ty)) in names.iter().zip(&t) {
            let want = if allows_quantization(n, dims) {
                GgmlType::Q6_K
            } else {
                GgmlType::F32
            };
            assert_eq!(*ty, want, "{n}");
        }
        assert_eq!(ty(&t, "blk.0.ssm_conv1d.weight"), GgmlType::F32);
        assert_eq!(ty(&t, "token_embd.weight"), GgmlType::Q6_K);
        let t = types_of(QuantMix::Q8_0, false);
        assert_eq!(ty(&t, "output.weight"), GgmlType::Q8_0);
        assert_eq!(ty(&t, "blk.0.ffn_down.weight"), GgmlType::Q8_0);
        assert_eq!(ty(&t, "blk.3.attn_v.weight"), GgmlType::Q8_0);
        assert_eq!(ty(&t, "blk.0.attn_norm.weight"), GgmlType::F32);
    }

    #[test]
    fn tied_embeddings_get_the_output_type() {
        let t = types_of(QuantMix::Q4KM, true);
        assert_eq!(ty(&t, "token_embd.weight"), GgmlType::Q6_K);
        let t = types_of(QuantMix::Q8_0, true);
        assert_eq!(ty(&t, "token_embd.weight"), GgmlType::Q8_0);
    }

    #[test]
    fn f32_mix_keeps_everything_f32() {
        let t = types_of(QuantMix::F32, false);
        assert!(t.iter().all(|(_, ty)| *ty == GgmlType::F32));
    }

    #[test]
    fn file_order_does_not_change_the_counters() {
        let mut t = qwen35_names(64, false);
        t.reverse();
        let refs: Vec<(&str, &[u64])> = t.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let types = assign_types(QuantMix::Q4KM, &refs, 65).expect("valid rows");
        let got: Vec<(String, GgmlType)> = t.iter().map(|(n, _)| n.clone()).zip(types).collect();
        assert_eq!(ty(&got, "blk.10.ffn_down.weight"), GgmlType::Q6_K);
        assert_eq!(ty(&got, "blk.11.ffn_down.weight"), GgmlType::Q4_K);
        assert_eq!(ty(&got, "blk.64.attn_v.weight"), GgmlType::Q6_K);
    }

    #[test]
    fn rows_that_are_not_whole_k_blocks_are_an_error() {
        let dims = [100u64, 8];
        let err = assign_types(QuantMix::Q4KM, &[("blk.0.ffn_up.weight", &dims)], 1);
        assert!(matches!(
            err,
            Err(MixError::RowNotBlockMultiple { row_len: 100, .. })
        ));
    }

    #[test]
    fn mix_names_round_trip() {
        for m in QuantMix::ALL {
            assert_eq!(QuantMix::from_name(m.name()), Some(m));
        }
        assert_eq!(QuantMix::from_name("Q4_K_M"), Some(QuantMix::Q4KM));
        assert_eq!(QuantMix::from_name("q3_k"), None);
    }
}
