//! Helpers shared by the integration tests: synthetic models and the llama.cpp oracle.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hybrid_run::synth::{Preset, QuantMix, SynthOptions, SynthPlan};

/// True when the llama.cpp oracle (llama-cpp-python) can be imported. Tests that need it
/// print "skipped: ..." and return when it is absent; `scripts/test.sh` installs it.
pub fn have_llamacpp() -> bool {
    Command::new("python3")
        .args(["-c", "import llama_cpp"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes a synthetic model into `dir` and returns its path.
pub fn synth(dir: &Path, preset: Preset, mix: QuantMix, seed: u64) -> PathBuf {
    let path = dir.join(format!("{}-{}-{seed}.gguf", preset.name(), mix.name()));
    let plan = SynthPlan::new(&SynthOptions {
        preset,
        mix,
        seed,
        vocab_from: None,
    })
    .expect("synth plan");
    plan.write(&path, &|_| {}).expect("synth write");
    path
}

/// What llama.cpp computed for a prompt: greedy tokens, top-2 margins and logits rows
/// (the prompt positions, then one row per generated step but the last).
pub struct Oracle {
    pub tokens: Vec<u32>,
    pub margins: Vec<f32>,
    pub n_vocab: usize,
    pub n_prompt: usize,
    pub logits: Vec<f32>,
}

impl Oracle {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.logits[i * self.n_vocab..(i + 1) * self.n_vocab]
    }
}

pub fn run_oracle(model: &Path, prompt: &[u32], n_gen: usize, out_prefix: &Path) -> Oracle {
    let toks: Vec<String> = prompt.iter().map(|t| t.to_string()).collect();
    let status = Command::new("python3")
        .arg(repo_root().join("scripts/llamacpp-oracle.py"))
        .arg("--model")
        .arg(model)
        .arg("--tokens")
        .arg(toks.join(","))
        .arg("--n-gen")
        .arg(n_gen.to_string())
        .arg("--out")
        .arg(out_prefix)
        .status()
        .expect("running scripts/llamacpp-oracle.py");
    assert!(
        status.success(),
        "llama.cpp oracle failed on {}",
        model.display()
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_prefix.with_extension("json")).unwrap()).unwrap();
    let raw = std::fs::read(out_prefix.with_extension("f32")).unwrap();
    let logits: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let arr = |k: &str| meta[k].as_array().unwrap().clone();
    Oracle {
        tokens: arr("tokens")
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect(),
        margins: arr("margins")
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect(),
        n_vocab: meta["n_vocab"].as_u64().unwrap() as usize,
        n_prompt: meta["n_prompt"].as_u64().unwrap() as usize,
        logits,
    }
}

/// ‖a − b‖∞ / ‖b‖∞.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let num = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let den = b.iter().map(|y| y.abs()).fold(0.0f32, f32::max);
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

/// Deterministic pseudo-random prompt of `n` ids in `lo..hi`.
pub fn prompt_ids(seed: u64, n: usize, lo: u32, hi: u32) -> Vec<u32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + ((s >> 33) as u32) % (hi - lo)
        })
        .collect()
}
