//! GGUF container: a validating, zero-copy reader over memory-mapped files (split models
//! included) and a streaming writer. Format: `shared/spec/gguf-file-format.md` §1.
//!
//! The reader follows llama.cpp's `gguf_init_from_file_impl` checks (version 2 or 3, no
//! nested arrays, power-of-two alignment, whole blocks per row, offsets exactly the padded
//! running sum of tensor sizes) and adds bounds checks so that hostile input yields a
//! [`GgufError`] naming file, byte offset and key or tensor, never a panic or a huge
//! allocation.

mod error;
mod file;
mod parse;
pub mod split;
mod value;
mod writer;

pub use error::{GgufError, OffsetProblem};
pub use file::{GgufFile, MEMORY_FILE};
pub use parse::DEFAULT_ALIGNMENT;
pub use simd::GgmlType;
pub use value::{type_id, Array, Value};
pub use writer::GgufWriter;

/// One tensor's description. `offset` is absolute in the file of shard `shard`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub ty: GgmlType,
    /// ggml `ne`, fastest-varying first; 0 to 4 entries, each >= 1.
    pub dims: Vec<u64>,
    /// Bytes of data (without alignment padding).
    pub n_bytes: u64,
    /// Index of the shard holding the data.
    pub shard: usize,
    /// Absolute byte offset of the data in its shard file.
    pub offset: u64,
}

impl TensorInfo {
    /// Product of all dims (fits in i64, checked at parse time).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Number of rows: the product of `dims[1..]` (1 for a vector).
    pub fn rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }

    /// Elements per row: `dims[0]` (1 for a scalar).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Bytes of one row (`row_len` is a whole number of blocks, checked at parse time).
    pub fn row_bytes(&self) -> u64 {
        self.ty.row_bytes(self.row_len()).unwrap_or(0)
    }
}

/// A tensor's bytes, borrowed from the memory map (or the `from_bytes` buffer).
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// The values of an F32 tensor (`None` for other types). A copy, so that it works
    /// whatever the alignment of the backing buffer.
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        if self.info.ty != GgmlType::F32 {
            return None;
        }
        Some(
            self.data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }

    /// Bytes of row `i` (`None` if out of range).
    pub fn row(&self, i: u64) -> Option<&'a [u8]> {
        let rb = self.info.row_bytes();
        let start = usize::try_from(i.checked_mul(rb)?).ok()?;
        let end = start.checked_add(usize::try_from(rb).ok()?)?;
        self.data.get(start..end)
    }
}
