//! Helpers shared by the integration tests: synthetic models and the llama.cpp oracle.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hybrid_run::model::qwen35::{CpuModel, ForwardOutput, Logits, SeqState};
use hybrid_run::sample::argmax;
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

/// How to run the oracle (`scripts/llamacpp-oracle.py` documents the numerics modes).
#[derive(Clone, Debug, Default)]
pub struct OracleOpts {
    /// llama.cpp threads (default 1: its results do not depend on the thread count in the
    /// default mode, and one thread is several times faster on a busy 2-core machine).
    pub threads: Option<usize>,
    /// Prompt tokens per `llama_decode` call; `Some(0)` = whole prompt, default 1.
    pub prompt_batch: Option<usize>,
    /// Keep llama.cpp's repacked weights (its default).
    pub repack: bool,
    /// Keep llama.cpp's tiled K-quant matmul for batches of >= 8 tokens (its default).
    pub tiled: bool,
    /// Dump every f32 graph tensor (`cb_eval`) into this directory.
    pub dump: Option<PathBuf>,
}

/// llama.cpp in its decode-path numerics mode (one token per call, no repack): the mode in
/// which it computes every token the way hybrid-run does.
pub fn run_oracle(model: &Path, prompt: &[u32], n_gen: usize, out_prefix: &Path) -> Oracle {
    run_oracle_with(model, prompt, n_gen, out_prefix, &OracleOpts::default())
}

pub fn run_oracle_with(
    model: &Path,
    prompt: &[u32],
    n_gen: usize,
    out_prefix: &Path,
    opts: &OracleOpts,
) -> Oracle {
    let toks: Vec<String> = prompt.iter().map(|t| t.to_string()).collect();
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("scripts/llamacpp-oracle.py"))
        .arg("--model")
        .arg(model)
        .arg("--tokens")
        .arg(toks.join(","))
        .arg("--n-gen")
        .arg(n_gen.to_string())
        .arg("--out")
        .arg(out_prefix);
    cmd.arg("--threads")
        .arg(opts.threads.unwrap_or(1).to_string());
    if let Some(b) = opts.prompt_batch {
        cmd.arg("--prompt-batch").arg(b.to_string());
    }
    if opts.repack {
        cmd.arg("--repack");
    }
    if opts.tiled {
        cmd.arg("--tiled");
    }
    if let Some(d) = &opts.dump {
        cmd.arg("--dump").arg(d);
    }
    let status = cmd.status().expect("running scripts/llamacpp-oracle.py");
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

/// A seed that differs on every run (printed by the tests), so parity is never tuned to
/// fixed fixtures.
pub fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5eed)
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

/// Bits of every logit row we compute for `prompt` then `forced` (teacher forcing): the
/// prompt as one batch with all rows, then one token per call.
pub fn our_rows(model: &mut CpuModel<'_>, prompt: &[u32], forced: &[u32]) -> Vec<Vec<f32>> {
    let cfg = model.cfg.clone();
    let nv = cfg.n_vocab;
    let mut st = SeqState::new(&cfg, 256);
    let mut out = ForwardOutput::default();
    model
        .forward(&mut st, prompt, Logits::All, &mut out)
        .unwrap();
    let mut rows: Vec<Vec<f32>> = out.logits.chunks_exact(nv).map(|r| r.to_vec()).collect();
    for &t in forced {
        model
            .forward(&mut st, &[t], Logits::Last, &mut out)
            .unwrap();
        rows.push(out.logits.clone());
    }
    rows
}

/// Free-running greedy from `prompt` for `n` tokens.
pub fn our_greedy(model: &mut CpuModel<'_>, prompt: &[u32], n: usize) -> Vec<u32> {
    let cfg = model.cfg.clone();
    let mut st = SeqState::new(&cfg, 256);
    let mut out = ForwardOutput::default();
    model
        .forward(&mut st, prompt, Logits::Last, &mut out)
        .unwrap();
    let mut toks = vec![argmax(&out.logits)];
    while toks.len() < n {
        let t = *toks.last().unwrap();
        model
            .forward(&mut st, &[t], Logits::Last, &mut out)
            .unwrap();
        toks.push(argmax(&out.logits));
    }
    toks
}
