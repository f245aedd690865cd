//! Shared helpers for the tokenizer tests: locating the cached test data and loading vocabs.
#![allow(dead_code)]

use std::path::PathBuf;

use hybrid_run::gguf::GgufFile;
use hybrid_run::tokenizer::Tokenizer;

/// `${HYBRID_CACHE:-$HOME/.cache/hybrid-run}/testdata` (filled by scripts/fetch-test-data.sh).
pub fn testdata_dir() -> PathBuf {
    let cache = std::env::var_os("HYBRID_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/hybrid-run")
        });
    cache.join("testdata")
}

/// The path of a test-data file, or `None` after printing a "skipped:" line.
pub fn data_file(test: &str, name: &str) -> Option<PathBuf> {
    let p = testdata_dir().join(name);
    if p.exists() {
        Some(p)
    } else {
        println!(
            "skipped: {test}: {} is missing (run scripts/fetch-test-data.sh)",
            p.display()
        );
        None
    }
}

pub fn load_tokenizer(path: &std::path::Path) -> Tokenizer {
    let f = GgufFile::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    Tokenizer::from_gguf(&f).unwrap_or_else(|e| panic!("tokenizer from {}: {e}", path.display()))
}

pub fn b64decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 byte {c}"),
        }
    }
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c) << (18 - 6 * i);
        }
        let n = chunk.len() - 1;
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
    }
    out
}

/// Splits a llama.cpp `.inp` file into its cases.
pub fn split_inp(text: &str) -> Vec<String> {
    let mut cases: Vec<String> = text
        .split("\n__ggml_vocab_test__\n")
        .map(str::to_owned)
        .collect();
    if cases.last().is_some_and(|c| c.is_empty()) {
        cases.pop();
    }
    cases
}
