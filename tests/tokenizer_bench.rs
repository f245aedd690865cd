//! Tokenizer speed on ~1 MB of mixed text, next to llama.cpp's (scripts/tokenizer-bench.py
//! writes the text, llama.cpp's ids and its time). Run with:
//! `cargo test --release --test tokenizer_bench -- --ignored --nocapture`

mod tokenizer_common;

use std::time::Instant;

use tokenizer_common::{data_file, load_tokenizer};

#[test]
#[ignore = "benchmark; run with --ignored --nocapture in release mode"]
fn tokenize_one_megabyte_and_report_tokens_per_second() {
    let test = "tokenize_one_megabyte_and_report_tokens_per_second";
    let (Some(g), Some(t), Some(ids)) = (
        data_file(test, "qwen36-vocab.gguf"),
        data_file(test, "bench-1mb.txt"),
        data_file(test, "bench-1mb.ids.json"),
    ) else {
        return;
    };
    let t0 = Instant::now();
    let tok = load_tokenizer(&g);
    println!("load: {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
    let text = std::fs::read(t).unwrap();
    let want: Vec<u32> = serde_json::from_slice(&std::fs::read(ids).unwrap()).unwrap();
    let mut best = f64::MAX;
    let mut got = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        got = tok.tokenize_bytes(&text, false, true).unwrap();
        best = best.min(t0.elapsed().as_secs_f64());
    }
    assert_eq!(got, want, "ids differ from llama.cpp on the 1 MB text");
    println!(
        "hybrid-run: {} bytes -> {} tokens in {:.1} ms = {:.0} tokens/s ({:.2} MB/s), best of 3",
        text.len(),
        got.len(),
        best * 1e3,
        got.len() as f64 / best,
        text.len() as f64 / best / 1e6
    );
    let t0 = Instant::now();
    let bytes = tok.detokenize(&got, true).unwrap();
    println!("detokenize: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    assert_eq!(bytes, text);
}
