//! Streaming GGUF v3 writer. The header (metadata and tensor infos) is built in memory;
//! tensor data goes straight to the output in the caller's chunks, so memory use does not
//! depend on tensor sizes.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::error::GgufError;
use super::parse::{align_up, tensor_bytes, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use super::value::{Array, Value};
use simd::GgmlType;

/// Name used in writer errors when the output is not a file made by [`GgufWriter::create`].
const STREAM_NAME: &str = "<writer>";
const OUT_BUFFER_BYTES: usize = 1 << 20;

struct PendingTensor {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    n_bytes: u64,
}

/// Writes one GGUF v3 file: [`add_kv`](Self::add_kv) and [`add_tensor`](Self::add_tensor)
/// first, then [`write_header`](Self::write_header), then the tensor data in `add_tensor`
/// order with [`write_tensor_data`](Self::write_tensor_data), then [`finish`](Self::finish).
pub struct GgufWriter<W: Write> {
    out: W,
    file: PathBuf,
    /// Bytes written so far.
    pos: u64,
    kvs: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<PendingTensor>,
    names: HashSet<String>,
    /// First misuse seen by `add_kv` (which cannot return an error); reported by `write_header`.
    deferred: Option<GgufError>,
    header_written: bool,
    alignment: u64,
    /// Index of the tensor whose data is being written, and its bytes written so far.
    cur: usize,
    cur_written: u64,
}

impl GgufWriter<BufWriter<File>> {
    /// Creates (truncates) `path` and writes to it through a 1 MiB buffer.
    pub fn create(path: &Path) -> io::Result<Self> {
        let f = File::create(path)?;
        let mut w = GgufWriter::new(BufWriter::with_capacity(OUT_BUFFER_BYTES, f));
        w.file = path.to_path_buf();
        Ok(w)
    }
}

impl<W: Write> GgufWriter<W> {
    /// A writer with alignment 32 unless a `general.alignment` key is added.
    pub fn new(out: W) -> Self {
        GgufWriter {
            out,
            file: PathBuf::from(STREAM_NAME),
            pos: 0,
            kvs: Vec::new(),
            keys: HashSet::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
            deferred: None,
            header_written: false,
            alignment: DEFAULT_ALIGNMENT,
            cur: 0,
            cur_written: 0,
        }
    }

    fn state_error(&self, message: impl Into<String>) -> GgufError {
        GgufError::WriterState {
            file: self.file.clone(),
            message: message.into(),
        }
    }

    /// Adds a metadata entry. An empty or duplicate key, or a key added after the header
    /// was written, makes [`write_header`](Self::write_header) / [`finish`](Self::finish) fail.
    pub fn add_kv(&mut self, key: &str, value: Value) {
        let problem = if self.header_written {
            Some(format!("key `{key}` added after the header was written"))
        } else if key.is_empty() {
            Some("empty metadata key".to_string())
        } else if !self.keys.insert(key.to_string()) {
            Some(format!("duplicate metadata key `{key}`"))
        } else {
            None
        };
        match problem {
            Some(msg) => {
                if self.deferred.is_none() {
                    self.deferred = Some(self.state_error(msg));
                }
            }
            None => self.kvs.push((key.to_string(), value)),
        }
    }

    /// Declares a tensor; `dims` are ggml's `ne`, fastest first. Checks 1..=4 dims, each
    /// >= 1, a row length that is a whole number of blocks, and a size that fits in u64.
    pub fn add_tensor(&mut self, name: &str, ty: GgmlType, dims: &[u64]) -> Result<(), GgufError> {
        let bad = |message: String| GgufError::WriterTensor {
            file: self.file.clone(),
            tensor: name.to_string(),
            message,
        };
        if self.header_written {
            return Err(bad("added after the header was written".into()));
        }
        if name.is_empty() {
            return Err(bad("empty tensor name".into()));
        }
        if self.names.contains(name) {
            return Err(bad("duplicate tensor name".into()));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS as usize {
            return Err(bad(format!("{} dimensions (1 to 4 allowed)", dims.len())));
        }
        if let Some(i) = dims.iter().position(|&d| d == 0 || d > i64::MAX as u64) {
            return Err(bad(format!(
                "dimension {i} is {} (must be 1..=i64::MAX)",
                dims[i]
            )));
        }
        let n_bytes =
            tensor_bytes(ty, dims).map_err(|e| e.into_error(&self.file, 0, name, ty, dims))?;
        self.names.insert(name.to_string());
        self.tensors.push(PendingTensor {
            name: name.to_string(),
            ty,
            dims: dims.to_vec(),
            n_bytes,
        });
        Ok(())
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), GgufError> {
        self.out
            .write_all(bytes)
            .map_err(|source| GgufError::WriteIo {
                file: self.file.clone(),
                offset: self.pos,
                source,
            })?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> Result<(), GgufError> {
        const ZEROS: [u8; 4096] = [0; 4096];
        let target = align_up(self.pos, self.alignment)
            .ok_or_else(|| self.state_error("file size overflows u64"))?;
        while self.pos < target {
            let n = (target - self.pos).min(ZEROS.len() as u64) as usize;
            self.write_raw(&ZEROS[..n])?;
        }
        Ok(())
    }

    /// Writes magic, version, counts, metadata, tensor infos and the padding before the
    /// data section.
    pub fn write_header(&mut self) -> Result<(), GgufError> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        if self.header_written {
            return Err(self.state_error("write_header called twice"));
        }
        if let Some((_, v)) = self.kvs.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
            self.alignment = match v.as_u64() {
                Some(a) if a.is_power_of_two() => a,
                _ => {
                    return Err(GgufError::BadAlignment {
                        file: self.file.clone(),
                        value: format!("{v:?}"),
                    })
                }
            };
        }

        let mut h = Vec::new();
        h.extend_from_slice(&MAGIC);
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut h, k);
            h.extend_from_slice(&v.type_id().to_le_bytes());
            put_value(&mut h, v);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut h, &t.name);
            h.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&t.ty.ggml_id().to_le_bytes());
            h.extend_from_slice(&offset.to_le_bytes());
            offset = offset
                .checked_add(t.n_bytes)
                .and_then(|end| align_up(end, self.alignment))
                .ok_or_else(|| self.state_error("total tensor data size overflows u64"))?;
        }
        self.write_raw(&h)?;
        if !self.tensors.is_empty() {
            self.pad()?;
        }
        self.header_written = true;
        tracing::debug!(
            file = %self.file.display(),
            n_kv = self.kvs.len(),
            n_tensors = self.tensors.len(),
            header_bytes = self.pos,
            data_bytes = offset,
            "GGUF header written"
        );
        Ok(())
    }

    /// Writes the next chunk of tensor data. Tensors must come in `add_tensor` order; a
    /// tensor may be written in several consecutive chunks. Padding follows each tensor
    /// once its last byte is written.
    pub fn write_tensor_data(&mut self, name: &str, data: &[u8]) -> Result<(), GgufError> {
        if !self.header_written {
            return Err(self.state_error(format!("data of `{name}` written before write_header")));
        }
        let Some(t) = self.tensors.get(self.cur) else {
            return Err(self.state_error(format!(
                "data of `{name}` written after all tensors were complete"
            )));
        };
        if t.name != name {
            return Err(GgufError::WriterOrder {
                file: self.file.clone(),
                expected: t.name.clone(),
                got: name.to_string(),
            });
        }
        let total = self.cur_written + data.len() as u64;
        if total > t.n_bytes {
            return Err(GgufError::WriterDataSize {
                file: self.file.clone(),
                tensor: name.to_string(),
                expected: t.n_bytes,
                got: total,
            });
        }
        let complete = total == t.n_bytes;
        self.write_raw(data)?;
        self.cur_written = total;
        if complete {
            self.pad()?;
            self.cur += 1;
            self.cur_written = 0;
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.pos
    }

    /// Checks that every tensor's data is complete, flushes, and returns the output.
    /// Writes the header first if it was not written (a file without tensors).
    pub fn finish(mut self) -> Result<W, GgufError> {
        if !self.header_written {
            self.write_header()?;
        }
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        if let Some(t) = self.tensors.get(self.cur) {
            return Err(GgufError::WriterDataSize {
                file: self.file.clone(),
                tensor: t.name.clone(),
                expected: t.n_bytes,
                got: self.cur_written,
            });
        }
        self.out.flush().map_err(|source| GgufError::WriteIo {
            file: self.file.clone(),
            offset: self.pos,
            source,
        })?;
        Ok(self.out)
    }
}

fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => h.push(*x),
        Value::I8(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => h.push(u8::from(*x)),
        Value::String(s) => put_str(h, s),
        Value::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Array(a) => put_array(h, a),
    }
}

fn put_array(h: &mut Vec<u8>, a: &Array) {
    h.extend_from_slice(&a.elem_type_id().to_le_bytes());
    h.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                h.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => h.extend_from_slice(v),
        Array::I8(v) => le!(v),
        Array::U16(v) => le!(v),
        Array::I16(v) => le!(v),
        Array::U32(v) => le!(v),
        Array::I32(v) => le!(v),
        Array::F32(v) => le!(v),
        Array::Bool(v) => h.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => {
            for s in v {
                put_str(h, s);
            }
        }
        Array::U64(v) => le!(v),
        Array::I64(v) => le!(v),
        Array::F64(v) => le!(v),
    }
}
