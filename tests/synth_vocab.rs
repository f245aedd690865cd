//! `--vocab-from`: tokenizer keys copied from another GGUF and padded to the preset's size.

use hybrid_run::gguf::{Array, GgufFile, GgufWriter, Value};
use hybrid_run::model::qwen35::Config;
use hybrid_run::synth::vocab::{tokenizer_metadata_from, VocabError, TOKEN_UNUSED};
use hybrid_run::synth::{Preset, QuantMix, SynthError, SynthOptions, SynthPlan};

fn vocab_file(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let mut w = GgufWriter::new(Vec::new());
    w.add_kv("general.architecture", Value::String("qwen35".into()));
    w.add_kv("tokenizer.ggml.model", Value::String("gpt2".into()));
    w.add_kv("tokenizer.ggml.pre", Value::String("qwen35".into()));
    w.add_kv(
        "tokenizer.ggml.tokens",
        Value::Array(Array::String((0..n).map(|i| format!("tok{i}")).collect())),
    );
    w.add_kv(
        "tokenizer.ggml.token_type",
        Value::Array(Array::I32(vec![1; n])),
    );
    w.add_kv(
        "tokenizer.ggml.merges",
        Value::Array(Array::String(vec!["t o".into()])),
    );
    w.add_kv("tokenizer.ggml.eos_token_id", Value::U32(7));
    let path = dir.join(format!("vocab{n}.gguf"));
    std::fs::write(&path, w.finish().expect("finish")).expect("write");
    path
}

fn tiny_with_vocab(path: std::path::PathBuf) -> Result<SynthPlan, SynthError> {
    SynthPlan::new(&SynthOptions {
        preset: Preset::Tiny,
        mix: QuantMix::Q8_0,
        seed: 0,
        vocab_from: Some(path),
    })
}

#[test]
fn a_shorter_vocabulary_is_padded_with_unused_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = tiny_with_vocab(vocab_file(dir.path(), 300)).expect("300 tokens fit in 1024");
    let file =
        GgufFile::from_bytes(plan.write_to(Vec::new(), &|_| {}).expect("write")).expect("read");
    let Some(Value::Array(Array::String(tokens))) = file.get("tokenizer.ggml.tokens") else {
        panic!("tokens missing");
    };
    assert_eq!(tokens.len(), 1024);
    assert_eq!(tokens[299], "tok299");
    assert_eq!(tokens[300], "[PAD300]");
    let Some(Value::Array(Array::I32(types))) = file.get("tokenizer.ggml.token_type") else {
        panic!("token types missing");
    };
    assert_eq!((types[299], types[1023]), (1, TOKEN_UNUSED));
    assert_eq!(
        file.get("tokenizer.ggml.eos_token_id"),
        Some(&Value::U32(7))
    );
    assert_eq!(
        file.get("tokenizer.ggml.merges"),
        Some(&Value::Array(Array::String(vec!["t o".into()])))
    );
    assert_eq!(Config::from_gguf(&file).expect("config").n_vocab, 1024);
}

#[test]
fn a_longer_vocabulary_or_a_file_without_tokens_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    match tiny_with_vocab(vocab_file(dir.path(), 2000)) {
        Err(SynthError::Vocab(VocabError::TooLarge {
            n_tokens: 2000,
            n_vocab: 1024,
            ..
        })) => {}
        other => panic!("expected TooLarge, got {:?}", other.err()),
    }
    let empty = dir.path().join("empty.gguf");
    std::fs::write(
        &empty,
        GgufWriter::new(Vec::new()).finish().expect("finish"),
    )
    .expect("write");
    let file = GgufFile::open(&empty).expect("empty GGUF reads");
    assert!(matches!(
        tokenizer_metadata_from(&file, "empty.gguf", 1024),
        Err(VocabError::NoTokens { .. })
    ));
    assert!(matches!(
        tiny_with_vocab(dir.path().join("does-not-exist.gguf")),
        Err(SynthError::Gguf(_))
    ));
}
