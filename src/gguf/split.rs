//! Split-file names, `<prefix>-00001-of-0000N.gguf` as llama.cpp writes them
//! (`llama_split_path`: `"%s-%05d-of-%05d.gguf"`, shard numbers 1-based).

use std::path::{Path, PathBuf};

/// Metadata keys every shard of a split model carries.
pub const SPLIT_NO: &str = "split.no";
pub const SPLIT_COUNT: &str = "split.count";
pub const SPLIT_TENSORS_COUNT: &str = "split.tensors.count";

/// A path recognised as one shard of a split model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitName {
    /// Everything before `-NNNNN-of-NNNNN.gguf`, directory included.
    pub prefix: PathBuf,
    /// 1-based shard number from the name.
    pub no: u32,
    pub count: u32,
}

impl SplitName {
    /// Recognises `<prefix>-NNNNN-of-MMMMM.gguf` (at least 5 digits each, 1 <= NNNNN <= MMMMM).
    pub fn parse(path: &Path) -> Option<SplitName> {
        let name = path.file_name()?.to_str()?;
        let stem = name.strip_suffix(".gguf")?;
        let (rest, count) = stem.rsplit_once("-of-")?;
        let (prefix, no) = rest.rsplit_once('-')?;
        let digits = |s: &str| s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit());
        if prefix.is_empty() || !digits(no) || !digits(count) {
            return None;
        }
        let no: u32 = no.parse().ok()?;
        let count: u32 = count.parse().ok()?;
        if no == 0 || no > count {
            return None;
        }
        Some(SplitName {
            prefix: path.with_file_name(prefix),
            no,
            count,
        })
    }

    /// Path of shard `no` (1-based) of this split.
    pub fn shard(&self, no: u32) -> PathBuf {
        shard_path(&self.prefix, no, self.count)
    }
}

/// `<prefix>-{no:05}-of-{count:05}.gguf` with `no` 1-based; `prefix` may contain a directory.
pub fn shard_path(prefix: &Path, no: u32, count: u32) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(format!("-{no:05}-of-{count:05}.gguf"));
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_are_recognised_and_regenerated() {
        let p = Path::new("/m/Qwen3.5-27B-Q4_K_M-00002-of-00003.gguf");
        let s = SplitName::parse(p).expect("a split name");
        assert_eq!(s.prefix, Path::new("/m/Qwen3.5-27B-Q4_K_M"));
        assert_eq!((s.no, s.count), (2, 3));
        assert_eq!(
            s.shard(1),
            Path::new("/m/Qwen3.5-27B-Q4_K_M-00001-of-00003.gguf")
        );
        assert_eq!(s.shard(2), p);
    }

    #[test]
    fn ordinary_names_are_not_split_names() {
        for n in [
            "model.gguf",
            "model-0001-of-0003.gguf",
            "model-00004-of-00003.gguf",
            "model-00000-of-00003.gguf",
            "-00001-of-00003.gguf",
            "model-00001-of-00003.bin",
            "model-0000a-of-00003.gguf",
        ] {
            assert_eq!(SplitName::parse(Path::new(n)), None, "{n}");
        }
    }
}
