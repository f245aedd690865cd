//! Parity with llama.cpp on the shipped trained model `models/qwen35-pystd-q8_0.gguf`
//! (issue 9): the same checks as `parity_llamacpp.rs` does on synthetic models, on real
//! trained weights and real Python prompts.
//!
//! * Our tokenizer gives llama.cpp's ids (vocab-only `llama_tokenize`, no special tokens) on
//!   every prompt text.
//! * llama.cpp in its decode-path mode (`scripts/llamacpp-oracle.py`: no repack, no tiled
//!   matmul, one token per `llama_decode`, one thread) and our CPU forward give bit-identical
//!   logits for every prompt row and 63 teacher-forced decode rows, and the same 64 greedy
//!   tokens.
//!
//! Prompts: short Python snippets written for this test (always), plus the first lines of a
//! few files of the model's held-out split (`scripts/train/runs/heldout_files.txt`) when the
//! CPython 3.11.7 standard library the model was trained on is on this machine.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use hybrid_run::gguf::GgufFile;
use hybrid_run::model::qwen35::{Config, CpuModel, Qwen35Weights};
use hybrid_run::tokenizer::Tokenizer;

/// Greedy tokens compared per prompt.
const N_GEN: usize = 64;
/// Prompt tokens kept at most. Prompt + generation stay below 256 positions, so llama.cpp
/// keeps the one-chunk flash-attention path we mirror (see `parity_llamacpp.rs`).
const MAX_PROMPT: usize = 150;
/// Where the model's training corpus (CPython 3.11.7 standard library) lives on the build
/// machine; the held-out prompts are taken from it when present.
const STDLIB: &str = "/root/.pyenv/versions/3.11.7/lib/python3.11";
/// Held-out files used as prompt sources (first lines of each).
const N_HELDOUT_FILES: usize = 4;

/// Python in the style of the standard library, written for this test (not from the corpus).
const SNIPPETS: &[&str] = &[
    "import os\n\ndef read_lines(path):\n",
    "class Stack:\n    \"\"\"A last-in, first-out container.\"\"\"\n\n    def __init__(self):\n        self._items = []\n\n    def push(self, item):\n",
    "def parse_header(line):\n    \"\"\"Split a header line into a (name, value) pair.\"\"\"\n    name, sep, value = line.partition(':')\n    if not sep:\n        raise ValueError('bad header: %r' % (line,))\n",
    "    def test_empty_input(self):\n        self.assertEqual(self.module.loads(''), [])\n\n    def test_",
    "# Copyright 2001 by the example authors.\n\"\"\"Helpers for reading configuration files.\"\"\"\n\nimport re\nimport sys\n\n__all__ = [",
    "for key, value in sorted(mapping.items()):\n    if isinstance(value, (list, tuple)):\n        for item in value:\n            print(key, item)\n    else:\n",
];

fn model_path() -> PathBuf {
    repo_root().join("models/qwen35-pystd-q8_0.gguf")
}

/// The test's prompt texts: the fixed snippets, then held-out file heads when available.
fn prompt_texts() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = SNIPPETS
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("snippet {i}"), s.to_string()))
        .collect();
    let list = repo_root().join("scripts/train/runs/heldout_files.txt");
    let lib = Path::new(STDLIB);
    let Ok(list) = std::fs::read_to_string(list) else {
        return out;
    };
    let files: Vec<&str> = list.split_whitespace().collect();
    // Evenly spaced over the list, so the pick is fixed but not just the first directory.
    let step = (files.len() / N_HELDOUT_FILES).max(1);
    for rel in files.iter().step_by(step).take(N_HELDOUT_FILES) {
        let Ok(text) = std::fs::read_to_string(lib.join(rel)) else {
            continue;
        };
        let head: String = text.lines().take(24).flat_map(|l| [l, "\n"]).collect();
        out.push((format!("held-out {rel}"), head));
    }
    out
}

/// llama.cpp's ids for each text (vocab-only model, `add_bos=False, special=False`).
fn llamacpp_tokenize(model: &Path, texts: &[String], dir: &Path) -> Vec<Vec<u32>> {
    let inp = dir.join("texts.json");
    let outp = dir.join("ids.json");
    std::fs::write(&inp, serde_json::to_vec(texts).unwrap()).unwrap();
    let script = "import json, sys, llama_cpp\n\
        llm = llama_cpp.Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)\n\
        texts = json.load(open(sys.argv[2], encoding='utf-8'))\n\
        ids = [llm.tokenize(t.encode('utf-8'), add_bos=False, special=False) for t in texts]\n\
        json.dump(ids, open(sys.argv[3], 'w'))\n";
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(model)
        .arg(&inp)
        .arg(&outp)
        .status()
        .expect("running python3 for llama.cpp tokenization");
    assert!(status.success(), "llama.cpp tokenization failed");
    serde_json::from_slice(&std::fs::read(outp).unwrap()).unwrap()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn the_trained_models_tokens_logits_and_greedy_output_match_llamacpp_bit_for_bit() {
    let path = model_path();
    if !path.exists() {
        eprintln!("skipped: {} is missing", path.display());
        return;
    }
    if !have_llamacpp() {
        eprintln!(
            "skipped: llama-cpp-python is not installed (scripts/setup-llamacpp.sh installs it)"
        );
        return;
    }
    let file = GgufFile::open(&path).unwrap();
    let cfg = Config::from_gguf(&file).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let w = Qwen35Weights::load(&file, &cfg).unwrap();
    let mut model = CpuModel::new(cfg.clone(), w, 2);
    let dir = tempfile::tempdir().unwrap();

    let prompts = prompt_texts();
    assert!(prompts.len() >= SNIPPETS.len());
    let texts: Vec<String> = prompts.iter().map(|(_, t)| t.clone()).collect();
    let theirs = llamacpp_tokenize(&path, &texts, dir.path());
    assert_eq!(theirs.len(), texts.len());

    let mut n_rows_total = 0;
    for (i, ((name, text), want_ids)) in prompts.iter().zip(&theirs).enumerate() {
        let ids = tok.tokenize(text, false, false).unwrap();
        assert_eq!(
            &ids, want_ids,
            "{name}: our tokenizer differs from llama.cpp's"
        );
        assert!(
            ids.len() > 4,
            "{name}: prompt too short ({} tokens)",
            ids.len()
        );
        let prompt = &ids[..ids.len().min(MAX_PROMPT)];

        let oracle = common::run_oracle(&path, prompt, N_GEN, &dir.path().join(format!("o{i}")));
        assert_eq!(oracle.n_vocab, cfg.n_vocab);
        assert_eq!(oracle.n_prompt, prompt.len());
        assert_eq!(oracle.tokens.len(), N_GEN);
        let rows = our_rows(&mut model, prompt, &oracle.tokens[..N_GEN - 1]);
        let n_rows = prompt.len() + N_GEN - 1;
        assert_eq!(rows.len(), n_rows);
        let max_rel = (0..n_rows)
            .map(|r| rel_err(&rows[r], oracle.row(r)))
            .fold(0.0f32, f32::max);
        let first_diff = (0..n_rows).find(|&r| !same_bits(&rows[r], oracle.row(r)));
        let greedy = our_greedy(&mut model, prompt, N_GEN);
        let min_margin = oracle.margins.iter().copied().fold(f32::INFINITY, f32::min);
        eprintln!(
            "{name} ({} tokens, {} used): {n_rows} logit rows, max rel err {max_rel:.1e}, \
             first differing row {first_diff:?}, greedy {} (smallest top-2 margin {min_margin:.3})",
            ids.len(),
            prompt.len(),
            if greedy == oracle.tokens {
                "identical"
            } else {
                "DIFFERS"
            }
        );
        assert_eq!(
            first_diff,
            None,
            "{name}: logits differ from llama.cpp's from row {} on (prompt has {} rows); max \
             rel err {max_rel:e}. tests/parity_ops_llamacpp.rs tells which op",
            first_diff.unwrap_or(0),
            prompt.len()
        );
        assert_eq!(greedy, oracle.tokens, "{name}: greedy tokens");
        n_rows_total += n_rows;
    }
    eprintln!(
        "{} prompts, {n_rows_total} logit rows bit-identical, {} greedy tokens each",
        prompts.len(),
        N_GEN
    );
}
