//! [`GgufFile`]: one GGUF model, made of one or more memory-mapped shards, with zero-copy
//! tensor views.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use super::error::GgufError;
use super::parse::{parse_shard, ParsedShard};
use super::split::{SplitName, SPLIT_COUNT, SPLIT_NO, SPLIT_TENSORS_COUNT};
use super::value::Value;
use super::{TensorInfo, TensorView};

/// Name used in errors for files made with [`GgufFile::from_bytes`].
pub const MEMORY_FILE: &str = "<memory>";

enum Backing {
    Mmap(Mmap),
    Bytes(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Bytes(b) => b,
        }
    }
}

struct Shard {
    path: PathBuf,
    backing: Backing,
    /// Absolute offset of the data section; set once the shard is parsed.
    data_start: u64,
}

/// A parsed GGUF model. Metadata, version and alignment come from shard 0; tensors from
/// all shards, in shard order then file order.
pub struct GgufFile {
    shards: Vec<Shard>,
    version: u32,
    alignment: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

/// Maps a whole file read-only.
fn map_file(path: &Path) -> Result<Mmap, GgufError> {
    let io = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    // SAFETY: the map is read-only and lives as long as the GgufFile that owns it. If
    // another process truncates or rewrites the file while it is mapped, reads may see
    // changed bytes or fault (SIGBUS); this is inherent to memory-mapping model files and
    // is the same contract llama.cpp has. We never write through the map.
    unsafe { Mmap::map(&file) }.map_err(io)
}

/// Reads a whole file into anonymous memory advised for transparent huge pages (2 MiB
/// pages on x86-64 Linux), read-only afterwards.
///
/// Why: the CPU engine streams every weight byte once per token. From the page cache the
/// weights sit in 4 KiB pages, and on the 2-core dev VM a 6144×2048 Q4_K mat-vec streamed
/// at ~22.6 GB/s from 4 KiB pages against ~25.5 GB/s from 2 MiB pages (fewer TLB misses
/// and page walks per byte; the read loop's roofline is ~27 GB/s).
///
/// Files of 256 MiB and more show a progress bar on stderr (drawn only on a terminal): a 27B
/// model is ~17 GB of reading.
fn read_file_huge(path: &Path, len: usize) -> std::io::Result<Mmap> {
    use std::io::Read;
    const CHUNK: usize = 64 << 20;
    let mut file = File::open(path)?;
    let mut map = MmapMut::map_anon(len.max(1))?;
    #[cfg(target_os = "linux")]
    if let Err(e) = map.advise(memmap2::Advice::HugePage) {
        tracing::debug!(error = %e, "madvise(MADV_HUGEPAGE) failed; 4 KiB pages");
    }
    let bar = if len >= 256 << 20 {
        indicatif::ProgressBar::with_draw_target(
            Some(len as u64),
            indicatif::ProgressDrawTarget::stderr(),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "reading the model into memory {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    for chunk in map[..len].chunks_mut(CHUNK) {
        file.read_exact(chunk)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    map.make_read_only()
}

/// `MemAvailable` from /proc/meminfo, in bytes (None where there is no such file).
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Reads `path` into huge-page memory when that is allowed and fits (at most half the
/// available memory, so the page cache and the rest of the process keep room), else maps
/// it. `HYBRID_WEIGHTS=mmap` forces the map.
fn load_file(path: &Path, resident: bool) -> Result<Mmap, GgufError> {
    if !resident || std::env::var("HYBRID_WEIGHTS").is_ok_and(|v| v == "mmap") {
        return map_file(path);
    }
    let io = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    let fits = mem_available().is_some_and(|avail| len <= avail / 2);
    if !fits || usize::try_from(len).is_err() {
        tracing::debug!(path = %path.display(), len, "model does not fit in half the available memory: mapped");
        return map_file(path);
    }
    let t = std::time::Instant::now();
    let map = read_file_huge(path, len as usize).map_err(io)?;
    tracing::debug!(path = %path.display(), len, ms = t.elapsed().as_millis() as u64, "model read into huge-page memory");
    Ok(map)
}

impl GgufFile {
    /// Opens a GGUF file for the CPU engine: like [`GgufFile::open`], but each shard is read
    /// into anonymous memory backed by transparent huge pages when it fits in half the
    /// available memory (else it is mapped as by `open`). The bytes are the same; the CPU
    /// mat-vecs stream them faster (see `read_file_huge`). Costs one read of the file at
    /// load time and the file's size in anonymous memory.
    pub fn open_resident(path: &Path) -> Result<Self, GgufError> {
        Self::open_with(path, true)
    }

    /// Opens a GGUF file. A `<prefix>-NNNNN-of-MMMMM.gguf` path (any shard) opens all
    /// `MMMMM` shards and checks their `split.no` / `split.count` keys.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, resident: bool) -> Result<Self, GgufError> {
        match SplitName::parse(path) {
            Some(split) if split.count > 1 => Self::open_split(&split, resident),
            _ => {
                let backing = Backing::Mmap(load_file(path, resident)?);
                let file = Self::from_shards(vec![Shard {
                    path: path.to_path_buf(),
                    backing,
                    data_start: 0,
                }])?;
                if let Some(count) = file.get(SPLIT_COUNT).and_then(Value::as_u64) {
                    if count > 1 {
                        return Err(GgufError::SplitNameUnknown {
                            file: path.to_path_buf(),
                            count,
                        });
                    }
                }
                Ok(file)
            }
        }
    }

    /// Parses a GGUF image held in memory (tests, fuzzing). Errors name the file `<memory>`.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::from_shards(vec![Shard {
            path: PathBuf::from(MEMORY_FILE),
            backing: Backing::Bytes(bytes),
            data_start: 0,
        }])
    }

    fn open_split(split: &SplitName, resident: bool) -> Result<Self, GgufError> {
        let mut shards = Vec::with_capacity(split.count as usize);
        for no in 1..=split.count {
            let path = split.shard(no);
            if !path.exists() {
                return Err(GgufError::MissingShard {
                    path,
                    no,
                    count: split.count,
                });
            }
            let backing = Backing::Mmap(load_file(&path, resident)?);
            shards.push(Shard {
                path,
                backing,
                data_start: 0,
            });
        }
        tracing::debug!(count = split.count, prefix = %split.prefix.display(), "opening split GGUF");
        Self::from_shards(shards)
    }

    fn from_shards(mut shards: Vec<Shard>) -> Result<Self, GgufError> {
        let count = shards.len();
        let mut parsed: Vec<ParsedShard> = Vec::with_capacity(count);
        for (i, s) in shards.iter().enumerate() {
            let p = parse_shard(s.backing.bytes(), &s.path, i)?;
            if count > 1 {
                check_split_key(&p, &s.path, SPLIT_NO, i as u64)?;
                check_split_key(&p, &s.path, SPLIT_COUNT, count as u64)?;
            }
            parsed.push(p);
        }
        for (s, p) in shards.iter_mut().zip(&parsed) {
            s.data_start = p.data_start;
        }

        let mut tensors = Vec::new();
        let mut tensor_index: HashMap<String, usize> = HashMap::new();
        for p in parsed.iter_mut() {
            for t in p.tensors.drain(..) {
                if let Some(&prev) = tensor_index.get(&t.name) {
                    let prev: &TensorInfo = &tensors[prev];
                    return Err(GgufError::DuplicateTensorAcrossShards {
                        file: shards[t.shard].path.clone(),
                        other: shards[prev.shard].path.clone(),
                        tensor: t.name,
                    });
                }
                tensor_index.insert(t.name.clone(), tensors.len());
                tensors.push(t);
            }
        }

        // Shard 0 exists: callers pass at least one shard.
        let head = parsed.swap_remove(0);
        if count > 1 {
            if let Some(v) = head
                .key_index
                .get(SPLIT_TENSORS_COUNT)
                .map(|&i| &head.metadata[i].1)
            {
                if v.as_u64() != Some(tensors.len() as u64) {
                    return Err(GgufError::SplitMismatch {
                        file: shards[0].path.clone(),
                        key: SPLIT_TENSORS_COUNT,
                        expected: tensors.len() as u64,
                        found: format!("{v:?}"),
                    });
                }
            }
        }
        Ok(GgufFile {
            shards,
            version: head.version,
            alignment: head.alignment,
            metadata: head.metadata,
            key_index: head.key_index,
            tensors,
            tensor_index,
        })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of shard 0's data section.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Shard 0's metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            file: self.path().to_path_buf(),
            key: key.to_string(),
        })
    }

    fn wrong_type(&self, key: &str, expected: &'static str, v: &Value) -> GgufError {
        GgufError::WrongType {
            file: self.path().to_path_buf(),
            key: key.to_string(),
            expected,
            found: v.type_name(),
        }
    }

    /// Any non-negative integer value.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.require(key)?;
        v.as_u64().ok_or_else(|| match v.as_i64() {
            Some(_) => GgufError::OutOfRange {
                file: self.path().to_path_buf(),
                key: key.to_string(),
                value: format!("{v:?}"),
                target: "u64",
            },
            None => self.wrong_type(key, "a non-negative integer", v),
        })
    }

    /// Any integer value in `0..=u32::MAX`.
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        let n = self.get_u64(key)?;
        u32::try_from(n).map_err(|_| GgufError::OutOfRange {
            file: self.path().to_path_buf(),
            key: key.to_string(),
            value: n.to_string(),
            target: "u32",
        })
    }

    /// An f32 or f64 value.
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.require(key)?;
        v.as_f32().ok_or_else(|| self.wrong_type(key, "f32", v))
    }

    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.wrong_type(key, "string", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| self.wrong_type(key, "bool", v))
    }

    /// All tensors of all shards, in shard order then file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// Zero-copy view of a tensor's bytes inside its shard's map.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        let info = self.tensor_info(name)?;
        self.view(info)
    }

    /// View of a tensor given its info (which must come from this file).
    pub fn view<'a>(&'a self, info: &'a TensorInfo) -> Option<TensorView<'a>> {
        let bytes = self.shards.get(info.shard)?.backing.bytes();
        // Bounds were validated at parse time; `get` keeps this safe for foreign infos too.
        let start = usize::try_from(info.offset).ok()?;
        let end = start.checked_add(usize::try_from(info.n_bytes).ok()?)?;
        Some(TensorView {
            info,
            data: bytes.get(start..end)?,
        })
    }

    /// Sum of all shard sizes in bytes.
    pub fn file_size(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.backing.bytes().len() as u64)
            .sum()
    }

    /// Path of shard 0 (`<memory>` for [`from_bytes`](Self::from_bytes)).
    pub fn path(&self) -> &Path {
        // from_shards always has at least one shard.
        &self.shards[0].path
    }

    /// Paths of all shards, in order.
    pub fn shard_paths(&self) -> impl Iterator<Item = &Path> {
        self.shards.iter().map(|s| s.path.as_path())
    }

    /// Absolute offset of the data section of shard `shard`.
    pub fn data_start(&self, shard: usize) -> Option<u64> {
        self.shards.get(shard).map(|s| s.data_start)
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }
}

fn check_split_key(
    p: &ParsedShard,
    path: &Path,
    key: &'static str,
    expected: u64,
) -> Result<(), GgufError> {
    let v = p.key_index.get(key).map(|&i| &p.metadata[i].1);
    match v.and_then(Value::as_u64) {
        Some(found) if found == expected => Ok(()),
        _ => Err(GgufError::SplitMismatch {
            file: path.to_path_buf(),
            key,
            expected,
            found: v.map_or_else(|| "missing".to_string(), |v| format!("{v:?}")),
        }),
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field(
                "paths",
                &self.shards.iter().map(|s| &s.path).collect::<Vec<_>>(),
            )
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunked huge-page read returns the file's bytes exactly, across chunk boundaries
    /// and with a short last chunk (70 MiB + 13 bytes: one full 64 MiB chunk and a partial one).
    #[test]
    fn read_file_huge_returns_every_byte_across_chunks() {
        let len = (70 << 20) + 13;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let path =
            std::env::temp_dir().join(format!("hybrid-huge-read-{}.bin", std::process::id()));
        std::fs::write(&path, &bytes).expect("write the test file");
        let map = read_file_huge(&path, len).expect("read");
        let _ = std::fs::remove_file(&path);
        assert_eq!(map.len(), len);
        assert!(map[..] == bytes[..], "bytes differ");
    }
}
