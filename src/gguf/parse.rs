//! Parsing one GGUF file (one shard) from a byte slice: header, metadata, tensor infos,
//! and llama.cpp's validation of sizes and offsets (spec/gguf-file-format.md §1).
//!
//! Every length or count read from the file is checked against the bytes that remain
//! before anything is allocated for it, so a hostile count cannot make us allocate more
//! than a small multiple of the file size.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::error::{GgufError, OffsetProblem};
use super::value::{type_id, Array, Value};
use super::TensorInfo;
use simd::GgmlType;

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
pub const ALIGNMENT_KEY: &str = "general.alignment";
pub const MAX_DIMS: u32 = 4;

/// Smallest possible KV entry: key length (8) + 1 key byte + type (4) + 1 value byte.
const MIN_KV_BYTES: u64 = 14;
/// Smallest possible tensor info: name length (8) + 1 name byte + n_dims (4) + type (4) + offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 25;
/// Upper bound for pre-allocating vectors from counts we have already bounded by the file size.
const MAX_PREALLOC: usize = 4096;

/// One parsed shard. Tensor offsets are absolute in the shard's bytes.
pub struct ParsedShard {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, Value)>,
    pub key_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub data_start: u64,
}

pub fn align_up(x: u64, align: u64) -> Option<u64> {
    // align is a non-zero power of two (checked when it is read).
    Some(x.checked_add(align - 1)? & !(align - 1))
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    file: &'a Path,
}

impl<'a> Cursor<'a> {
    fn pos(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn truncated(&self, what: &'static str, item: &str, needed: u64) -> GgufError {
        GgufError::Truncated {
            file: self.file.to_path_buf(),
            offset: self.pos(),
            what,
            item: item.to_string(),
            needed,
            available: self.remaining(),
        }
    }

    fn take(&mut self, n: u64, what: &'static str, item: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(self.truncated(what, item, n));
        }
        // n <= remaining, which fits in usize.
        let n = n as usize;
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(
        &mut self,
        what: &'static str,
        item: &str,
    ) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what, item)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str, item: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what, item)?))
    }

    fn u64(&mut self, what: &'static str, item: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what, item)?))
    }

    fn string(&mut self, what: &'static str, item: &str) -> Result<String, GgufError> {
        let len = self.u64(what, item)?;
        let start = self.pos();
        let bytes = self.take(len, what, item)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 {
            file: self.file.to_path_buf(),
            offset: start,
            item: item.to_string(),
        })
    }
}

/// Parses the header, metadata and tensor infos of one shard and validates tensor
/// sizes, offsets and bounds against `bytes.len()`.
pub fn parse_shard(bytes: &[u8], file: &Path, shard: usize) -> Result<ParsedShard, GgufError> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        file,
    };
    let file_size = bytes.len() as u64;

    let magic: [u8; 4] = c.array("magic", "")?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic {
            file: file.to_path_buf(),
            found: magic,
        });
    }
    let version = c.u32("version", "")?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion {
            file: file.to_path_buf(),
            version,
        });
    }
    let n_tensors = c.u64("tensor count", "")?;
    let n_kv = c.u64("metadata key count", "")?;
    check_count(&c, 8, "tensors", n_tensors, MIN_TENSOR_INFO_BYTES, 0)?;
    let kv_budget = n_tensors * MIN_TENSOR_INFO_BYTES; // bounded by the check above
    check_count(&c, 16, "metadata keys", n_kv, MIN_KV_BYTES, kv_budget)?;

    let mut metadata = Vec::with_capacity((n_kv as usize).min(MAX_PREALLOC));
    let mut key_index = HashMap::with_capacity((n_kv as usize).min(MAX_PREALLOC));
    for _ in 0..n_kv {
        let key_offset = c.pos();
        let key = c.string("metadata key", "")?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey {
                file: file.to_path_buf(),
                offset: key_offset,
            });
        }
        if key_index.contains_key(&key) {
            return Err(GgufError::DuplicateKey {
                file: file.to_path_buf(),
                offset: key_offset,
                key,
            });
        }
        let ty = c.u32("value type", &key)?;
        let value = read_value(&mut c, ty, &key)?;
        key_index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }

    let alignment = match key_index.get(ALIGNMENT_KEY).map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => {
                return Err(GgufError::BadAlignment {
                    file: file.to_path_buf(),
                    value: format!("{v:?}"),
                })
            }
        },
    };

    let mut tensors: Vec<TensorInfo> = Vec::with_capacity((n_tensors as usize).min(MAX_PREALLOC));
    let mut tensor_names: HashSet<String> =
        HashSet::with_capacity((n_tensors as usize).min(MAX_PREALLOC));
    let mut offset_fields = Vec::with_capacity((n_tensors as usize).min(MAX_PREALLOC));
    for _ in 0..n_tensors {
        let info_offset = c.pos();
        let name = c.string("tensor name", "")?;
        if tensor_names.contains(&name) {
            return Err(GgufError::DuplicateTensor {
                file: file.to_path_buf(),
                offset: info_offset,
                tensor: name,
            });
        }
        let dims_offset = c.pos();
        let n_dims = c.u32("tensor n_dims", &name)?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                file: file.to_path_buf(),
                offset: dims_offset,
                tensor: name,
                n_dims,
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for index in 0..n_dims as usize {
            let dim_offset = c.pos();
            let d = c.u64("tensor dimension", &name)? as i64;
            if d < 1 {
                return Err(GgufError::BadDim {
                    file: file.to_path_buf(),
                    offset: dim_offset,
                    tensor: name,
                    index,
                    value: d,
                });
            }
            dims.push(d as u64);
        }
        let type_offset = c.pos();
        let type_id = c.u32("tensor type", &name)?;
        let ty =
            GgmlType::from_ggml_id(type_id).ok_or_else(|| GgufError::UnsupportedTensorType {
                file: file.to_path_buf(),
                offset: type_offset,
                tensor: name.clone(),
                type_id,
                type_name: GgmlType::ggml_name(type_id),
            })?;
        let n_bytes = tensor_bytes(ty, &dims)
            .map_err(|e| e.into_error(file, info_offset, &name, ty, &dims))?;
        offset_fields.push(c.pos());
        let offset = c.u64("tensor data offset", &name)?;
        tensor_names.insert(name.clone());
        tensors.push(TensorInfo {
            name,
            ty,
            dims,
            n_bytes,
            shard,
            offset,
        });
    }

    // The data section starts at the next multiple of the alignment (only if there are
    // tensors; a file without tensors may end right after its metadata).
    let data_start = if tensors.is_empty() {
        c.pos()
    } else {
        align_up(c.pos(), alignment).ok_or_else(|| GgufError::BadAlignment {
            file: file.to_path_buf(),
            value: alignment.to_string(),
        })?
    };

    let mut expected = 0u64;
    for (t, &field) in tensors.iter_mut().zip(&offset_fields) {
        if t.offset != expected {
            let problem = if t.offset % alignment != 0 {
                OffsetProblem::Misaligned
            } else if t.offset < expected {
                OffsetProblem::Overlap
            } else {
                OffsetProblem::Gap
            };
            return Err(GgufError::TensorOffset {
                file: file.to_path_buf(),
                offset: field,
                tensor: t.name.clone(),
                found: t.offset,
                expected,
                problem,
            });
        }
        // expected <= file_size is checked below for the previous tensor, and n_bytes and
        // alignment are bounded, but stay checked: a hostile size must not wrap.
        let start = data_start.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(start), Some(end)) if end <= file_size => t.offset = start,
            (start, end) => {
                return Err(GgufError::DataPastEof {
                    file: file.to_path_buf(),
                    offset: start.unwrap_or(u64::MAX),
                    tensor: t.name.clone(),
                    needed: end.unwrap_or(u64::MAX),
                    available: file_size,
                })
            }
        }
        expected = align_up(expected + t.n_bytes, alignment).unwrap_or(u64::MAX);
    }

    Ok(ParsedShard {
        version,
        alignment,
        metadata,
        key_index,
        tensors,
        data_start,
    })
}

fn check_count(
    c: &Cursor<'_>,
    offset: u64,
    what: &'static str,
    count: u64,
    min_bytes: u64,
    reserved: u64,
) -> Result<(), GgufError> {
    let max = c.remaining().saturating_sub(reserved) / min_bytes;
    if count > max {
        return Err(GgufError::TooManyEntries {
            file: c.file.to_path_buf(),
            offset,
            what,
            count,
            max,
            file_size: c.bytes.len() as u64,
        });
    }
    Ok(())
}

/// Why a tensor's byte size could not be computed.
pub(crate) enum SizeError {
    RowNotBlockMultiple,
    Overflow,
}

impl SizeError {
    pub(crate) fn into_error(
        self,
        file: &Path,
        offset: u64,
        tensor: &str,
        ty: GgmlType,
        dims: &[u64],
    ) -> GgufError {
        match self {
            SizeError::RowNotBlockMultiple => GgufError::RowNotBlockMultiple {
                file: PathBuf::from(file),
                offset,
                tensor: tensor.to_string(),
                ty,
                row_len: dims.first().copied().unwrap_or(1),
                block: ty.block_elems() as u64,
            },
            SizeError::Overflow => GgufError::SizeOverflow {
                file: PathBuf::from(file),
                offset,
                tensor: tensor.to_string(),
                dims: dims.to_vec(),
            },
        }
    }
}

/// Byte size `ne0/blck·type_size·ne1·ne2·ne3`; the element count must also fit in i64
/// (as ggml requires).
pub(crate) fn tensor_bytes(ty: GgmlType, dims: &[u64]) -> Result<u64, SizeError> {
    let mut elems: u64 = 1;
    for &d in dims {
        elems = elems.checked_mul(d).ok_or(SizeError::Overflow)?;
    }
    if elems > i64::MAX as u64 {
        return Err(SizeError::Overflow);
    }
    let row_len = dims.first().copied().unwrap_or(1);
    if row_len % ty.block_elems() as u64 != 0 {
        return Err(SizeError::RowNotBlockMultiple);
    }
    let row = ty.row_bytes(row_len).ok_or(SizeError::Overflow)?;
    let rows = elems / row_len; // row_len >= 1
    row.checked_mul(rows).ok_or(SizeError::Overflow)
}

fn read_value(c: &mut Cursor<'_>, ty: u32, key: &str) -> Result<Value, GgufError> {
    let offset = c.pos();
    Ok(match ty {
        type_id::U8 => Value::U8(c.array::<1>("u8 value", key)?[0]),
        type_id::I8 => Value::I8(i8::from_le_bytes(c.array("i8 value", key)?)),
        type_id::U16 => Value::U16(u16::from_le_bytes(c.array("u16 value", key)?)),
        type_id::I16 => Value::I16(i16::from_le_bytes(c.array("i16 value", key)?)),
        type_id::U32 => Value::U32(c.u32("u32 value", key)?),
        type_id::I32 => Value::I32(i32::from_le_bytes(c.array("i32 value", key)?)),
        type_id::F32 => Value::F32(f32::from_le_bytes(c.array("f32 value", key)?)),
        type_id::BOOL => Value::Bool(read_bool(c, key)?),
        type_id::STRING => Value::String(c.string("string value", key)?),
        type_id::U64 => Value::U64(c.u64("u64 value", key)?),
        type_id::I64 => Value::I64(i64::from_le_bytes(c.array("i64 value", key)?)),
        type_id::F64 => Value::F64(f64::from_le_bytes(c.array("f64 value", key)?)),
        type_id::ARRAY => Value::Array(read_array(c, key)?),
        _ => {
            return Err(GgufError::UnknownValueType {
                file: c.file.to_path_buf(),
                offset: offset.saturating_sub(4),
                key: key.to_string(),
                type_id: ty,
            })
        }
    })
}

fn read_bool(c: &mut Cursor<'_>, key: &str) -> Result<bool, GgufError> {
    let offset = c.pos();
    match c.array::<1>("bool value", key)?[0] {
        0 => Ok(false),
        1 => Ok(true),
        byte => Err(GgufError::InvalidBool {
            file: c.file.to_path_buf(),
            offset,
            key: key.to_string(),
            byte,
        }),
    }
}

fn read_array(c: &mut Cursor<'_>, key: &str) -> Result<Array, GgufError> {
    let type_offset = c.pos();
    let elem = c.u32("array element type", key)?;
    if elem == type_id::ARRAY {
        return Err(GgufError::NestedArray {
            file: c.file.to_path_buf(),
            offset: type_offset,
            key: key.to_string(),
        });
    }
    let Some(min_size) = type_id::min_encoded_size(elem) else {
        return Err(GgufError::UnknownValueType {
            file: c.file.to_path_buf(),
            offset: type_offset,
            key: key.to_string(),
            type_id: elem,
        });
    };
    let count_offset = c.pos();
    let count = c.u64("array count", key)?;
    if count
        .checked_mul(min_size)
        .is_none_or(|b| b > c.remaining())
    {
        return Err(GgufError::ArrayTooLong {
            file: c.file.to_path_buf(),
            offset: count_offset,
            key: key.to_string(),
            count,
            available: c.remaining(),
        });
    }
    // count * min_size <= remaining, so count fits in usize. Variable-size elements are not
    // pre-allocated beyond MAX_PREALLOC: memory then grows only with elements actually read.
    let n = count as usize;

    macro_rules! fixed {
        ($variant:ident, $t:ty, $what:literal) => {{
            const SZ: usize = std::mem::size_of::<$t>();
            let bytes = c.take(count * SZ as u64, $what, key)?;
            Array::$variant(
                bytes
                    .chunks_exact(SZ)
                    .map(|b| {
                        let mut a = [0u8; SZ];
                        a.copy_from_slice(b);
                        <$t>::from_le_bytes(a)
                    })
                    .collect(),
            )
        }};
    }

    Ok(match elem {
        type_id::U8 => Array::U8(c.take(count, "u8 array", key)?.to_vec()),
        type_id::I8 => fixed!(I8, i8, "i8 array"),
        type_id::U16 => fixed!(U16, u16, "u16 array"),
        type_id::I16 => fixed!(I16, i16, "i16 array"),
        type_id::U32 => fixed!(U32, u32, "u32 array"),
        type_id::I32 => fixed!(I32, i32, "i32 array"),
        type_id::F32 => fixed!(F32, f32, "f32 array"),
        type_id::U64 => fixed!(U64, u64, "u64 array"),
        type_id::I64 => fixed!(I64, i64, "i64 array"),
        type_id::F64 => fixed!(F64, f64, "f64 array"),
        type_id::BOOL => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(read_bool(c, key)?);
            }
            Array::Bool(v)
        }
        type_id::STRING => {
            let mut v = Vec::with_capacity(n.min(MAX_PREALLOC));
            for _ in 0..n {
                v.push(c.string("string array element", key)?);
            }
            Array::String(v)
        }
        _ => {
            return Err(GgufError::UnknownValueType {
                file: c.file.to_path_buf(),
                offset: type_offset,
                key: key.to_string(),
                type_id: elem,
            })
        }
    })
}
