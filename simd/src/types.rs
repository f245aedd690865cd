//! Tensor element types as ggml numbers them (`ggml/include/ggml.h`, `enum ggml_type`).
//! See `../shared/spec/gguf-quant-formats.md` §1 for the size table.

use std::fmt;

/// The weight types hybrid-run can compute with. Every other ggml type id is
/// rejected by the loader with a message naming the tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q8_0,
    Q4_K,
    Q5_K,
    Q6_K,
    /// Activation-only format for K-quant dot products; never a weight.
    Q8_K,
    BF16,
}

impl GgmlType {
    pub const ALL_WEIGHT_TYPES: [GgmlType; 7] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];

    /// The ggml type id written in GGUF tensor infos.
    pub const fn ggml_id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::Q8_K => 15,
            GgmlType::BF16 => 30,
        }
    }

    /// Maps a ggml type id to a supported type; `None` for ids we cannot compute with.
    pub const fn from_ggml_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4_K,
            13 => GgmlType::Q5_K,
            14 => GgmlType::Q6_K,
            15 => GgmlType::Q8_K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// ggml's name for a type id, including ids we do not support (for error messages).
    pub fn ggml_name(id: u32) -> &'static str {
        const NAMES: [&str; 40] = [
            "F32",
            "F16",
            "Q4_0",
            "Q4_1",
            "Q4_2",
            "Q4_3",
            "Q5_0",
            "Q5_1",
            "Q8_0",
            "Q8_1",
            "Q2_K",
            "Q3_K",
            "Q4_K",
            "Q5_K",
            "Q6_K",
            "Q8_K",
            "IQ2_XXS",
            "IQ2_XS",
            "IQ3_XXS",
            "IQ1_S",
            "IQ4_NL",
            "IQ3_S",
            "IQ2_S",
            "IQ4_XS",
            "I8",
            "I16",
            "I32",
            "I64",
            "F64",
            "IQ1_M",
            "BF16",
            "Q4_0_4_4",
            "Q4_0_4_8",
            "Q4_0_8_8",
            "TQ1_0",
            "TQ2_0",
            "IQ4_NL_4_4",
            "IQ4_NL_4_8",
            "IQ4_NL_8_8",
            "MXFP4",
        ];
        NAMES.get(id as usize).copied().unwrap_or("unknown")
    }

    /// Elements per block (1 for float types).
    pub const fn block_elems(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q8_0 => 32,
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K | GgmlType::Q8_K => 256,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4_K => 144,
            GgmlType::Q5_K => 176,
            GgmlType::Q6_K => 210,
            GgmlType::Q8_K => 292,
        }
    }

    /// Bytes of one row of `n` elements, or `None` if `n` is not a whole number of blocks
    /// or the size overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        let be = self.block_elems() as u64;
        if !n.is_multiple_of(be) {
            return None;
        }
        (n / be).checked_mul(self.block_bytes() as u64)
    }

    pub const fn is_quantized(self) -> bool {
        !matches!(self, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(GgmlType::ggml_name(self.ggml_id()))
    }
}

impl std::str::FromStr for GgmlType {
    type Err = String;

    /// A weight type by its ggml name, case-insensitive ("Q4_K", "q6_k", "bf16").
    fn from_str(s: &str) -> Result<GgmlType, String> {
        GgmlType::ALL_WEIGHT_TYPES
            .into_iter()
            .find(|t| t.to_string().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown weight type {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_types_parse_from_their_names_in_any_case() {
        for t in GgmlType::ALL_WEIGHT_TYPES {
            assert_eq!(t.to_string().to_lowercase().parse::<GgmlType>(), Ok(t));
        }
        assert!("Q8_K".parse::<GgmlType>().is_err());
        assert!("q4_0".parse::<GgmlType>().is_err());
    }

    #[test]
    fn ids_round_trip_and_names_match_ggml() {
        for t in GgmlType::ALL_WEIGHT_TYPES {
            assert_eq!(GgmlType::from_ggml_id(t.ggml_id()), Some(t));
        }
        assert_eq!(GgmlType::Q4_K.to_string(), "Q4_K");
        assert_eq!(GgmlType::BF16.to_string(), "BF16");
        assert_eq!(GgmlType::ggml_name(2), "Q4_0");
        assert_eq!(GgmlType::from_ggml_id(2), None);
    }

    #[test]
    fn row_bytes_rejects_partial_blocks() {
        assert_eq!(GgmlType::Q4_K.row_bytes(5120), Some(20 * 144));
        assert_eq!(GgmlType::Q4_K.row_bytes(100), None);
        assert_eq!(GgmlType::Q8_0.row_bytes(64), Some(68));
        assert_eq!(GgmlType::F32.row_bytes(3), Some(12));
    }
}
