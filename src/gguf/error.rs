//! Errors of the GGUF reader and writer. Every variant names the file (`<memory>` for
//! [`GgufFile::from_bytes`](super::GgufFile::from_bytes), the writer's target for writer
//! errors), and where it applies the byte offset and the key or tensor concerned.

use std::io;
use std::path::PathBuf;

/// How a tensor's data offset breaks llama.cpp's rule that offsets are exactly the
/// running sum of the previous tensors' sizes, each padded up to the alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetProblem {
    /// Not a multiple of the alignment.
    Misaligned,
    /// Aligned but smaller than the end of the previous tensor: the data overlaps.
    Overlap,
    /// Aligned but leaves unused bytes after the previous tensor.
    Gap,
}

impl std::fmt::Display for OffsetProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OffsetProblem::Misaligned => "misaligned",
            OffsetProblem::Overlap => "overlaps the previous tensor",
            OffsetProblem::Gap => "leaves a gap after the previous tensor",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "{}: truncated at byte {offset} reading {what}{}: need {needed} bytes, {available} available",
        file.display(), for_item(item)
    )]
    Truncated {
        file: PathBuf,
        offset: u64,
        what: &'static str,
        /// Key or tensor being read, empty if not yet known.
        item: String,
        needed: u64,
        available: u64,
    },

    #[error("{}: not a GGUF file (magic {found:02x?} at byte 0, expected \"GGUF\")", file.display())]
    BadMagic { file: PathBuf, found: [u8; 4] },

    #[error("{}: unsupported GGUF version {version} at byte 4{}", file.display(), version_hint(*version))]
    UnsupportedVersion { file: PathBuf, version: u32 },

    #[error(
        "{}: header at byte {offset} claims {count} {what}, but a file of {file_size} bytes can hold at most {max}",
        file.display()
    )]
    TooManyEntries {
        file: PathBuf,
        offset: u64,
        what: &'static str,
        count: u64,
        max: u64,
        file_size: u64,
    },

    #[error("{}: string at byte {offset}{} is not valid UTF-8", file.display(), for_item(item))]
    InvalidUtf8 {
        file: PathBuf,
        offset: u64,
        item: String,
    },

    #[error("{}: empty metadata key at byte {offset}", file.display())]
    EmptyKey { file: PathBuf, offset: u64 },

    #[error("{}: duplicate metadata key `{key}` at byte {offset}", file.display())]
    DuplicateKey {
        file: PathBuf,
        offset: u64,
        key: String,
    },

    #[error("{}: unknown value type id {type_id} at byte {offset} for key `{key}`", file.display())]
    UnknownValueType {
        file: PathBuf,
        offset: u64,
        key: String,
        type_id: u32,
    },

    #[error("{}: nested array at byte {offset} for key `{key}` (GGUF readers reject them)", file.display())]
    NestedArray {
        file: PathBuf,
        offset: u64,
        key: String,
    },

    #[error(
        "{}: array of key `{key}` at byte {offset} claims {count} elements, but only {available} bytes remain",
        file.display()
    )]
    ArrayTooLong {
        file: PathBuf,
        offset: u64,
        key: String,
        count: u64,
        available: u64,
    },

    #[error("{}: bool value {byte} at byte {offset} for key `{key}` is neither 0 nor 1", file.display())]
    InvalidBool {
        file: PathBuf,
        offset: u64,
        key: String,
        byte: u8,
    },

    #[error("{}: general.alignment = {value} is not a non-zero power of two", file.display())]
    BadAlignment { file: PathBuf, value: String },

    #[error("{}: duplicate tensor name `{tensor}` at byte {offset}", file.display())]
    DuplicateTensor {
        file: PathBuf,
        offset: u64,
        tensor: String,
    },

    #[error("{}: tensor `{tensor}` at byte {offset} has {n_dims} dimensions (at most 4)", file.display())]
    TooManyDims {
        file: PathBuf,
        offset: u64,
        tensor: String,
        n_dims: u32,
    },

    #[error("{}: tensor `{tensor}` at byte {offset}: dimension {index} is {value} (must be >= 1)", file.display())]
    BadDim {
        file: PathBuf,
        offset: u64,
        tensor: String,
        index: usize,
        value: i64,
    },

    #[error(
        "{}: unsupported tensor type {type_name} (ggml id {type_id}) in tensor `{tensor}` at byte {offset}",
        file.display()
    )]
    UnsupportedTensorType {
        file: PathBuf,
        offset: u64,
        tensor: String,
        type_id: u32,
        type_name: &'static str,
    },

    #[error(
        "{}: tensor `{tensor}` at byte {offset}: row length {row_len} is not a multiple of the {ty} block size {block}",
        file.display()
    )]
    RowNotBlockMultiple {
        file: PathBuf,
        offset: u64,
        tensor: String,
        ty: simd::GgmlType,
        row_len: u64,
        block: u64,
    },

    #[error("{}: tensor `{tensor}` at byte {offset}: dimensions {dims:?} overflow the size computation", file.display())]
    SizeOverflow {
        file: PathBuf,
        offset: u64,
        tensor: String,
        dims: Vec<u64>,
    },

    #[error(
        "{}: tensor `{tensor}` (info offset field at byte {offset}) has data offset {found}, expected {expected}: {problem}",
        file.display()
    )]
    TensorOffset {
        file: PathBuf,
        offset: u64,
        tensor: String,
        found: u64,
        expected: u64,
        problem: OffsetProblem,
    },

    #[error(
        "{}: data of tensor `{tensor}` runs past the end of the file: it starts at byte {offset} and needs the file to be {needed} bytes, but it has {available}",
        file.display()
    )]
    DataPastEof {
        file: PathBuf,
        offset: u64,
        tensor: String,
        needed: u64,
        available: u64,
    },

    #[error("{}: missing metadata key `{key}`", file.display())]
    MissingKey { file: PathBuf, key: String },

    #[error("{}: metadata key `{key}` is {found}, expected {expected}", file.display())]
    WrongType {
        file: PathBuf,
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("{}: metadata key `{key}` = {value} does not fit in {target}", file.display())]
    OutOfRange {
        file: PathBuf,
        key: String,
        value: String,
        target: &'static str,
    },

    #[error("{}: shard {no} of {count} is missing", path.display())]
    MissingShard { path: PathBuf, no: u32, count: u32 },

    #[error("{}: split key `{key}` is {found}, expected {expected}", file.display())]
    SplitMismatch {
        file: PathBuf,
        key: &'static str,
        expected: u64,
        found: String,
    },

    #[error(
        "{}: split.count = {count} but the file name does not follow <prefix>-NNNNN-of-NNNNN.gguf, so the other shards cannot be found",
        file.display()
    )]
    SplitNameUnknown { file: PathBuf, count: u64 },

    #[error("{}: tensor `{tensor}` also appears in {}", file.display(), other.display())]
    DuplicateTensorAcrossShards {
        file: PathBuf,
        other: PathBuf,
        tensor: String,
    },

    // --- writer ---
    #[error("{}: write failed at byte {offset}: {source}", file.display())]
    WriteIo {
        file: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },

    #[error("{}: writer misuse: {message}", file.display())]
    WriterState { file: PathBuf, message: String },

    #[error("{}: tensor data written out of order: expected `{expected}`, got `{got}`", file.display())]
    WriterOrder {
        file: PathBuf,
        expected: String,
        got: String,
    },

    #[error("{}: tensor `{tensor}` takes {expected} bytes, but {got} were written", file.display())]
    WriterDataSize {
        file: PathBuf,
        tensor: String,
        expected: u64,
        got: u64,
    },

    #[error("{}: invalid tensor `{tensor}` for the writer: {message}", file.display())]
    WriterTensor {
        file: PathBuf,
        tensor: String,
        message: String,
    },
}

fn for_item(item: &str) -> String {
    if item.is_empty() {
        String::new()
    } else {
        format!(" of `{item}`")
    }
}

fn version_hint(version: u32) -> &'static str {
    if version == 1 {
        " (GGUF v1 is obsolete; only versions 2 and 3 are read)"
    } else if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
        " (looks like a byte-swapped big-endian file, which is not supported)"
    } else {
        " (only versions 2 and 3 are read)"
    }
}
