//! Helpers for the speculative decoding tests: one synthetic model per (mix, seed) per test
//! binary, plain and speculative greedy runs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use hybrid_run::generate::{generate, GenParams, GenStats};
use hybrid_run::model::qwen35::CpuModel;
use hybrid_run::model::qwen35::SeqState;
use hybrid_run::sample::{Sampler, SamplerConfig};
use hybrid_run::spec::{generate_speculative, CpuTarget, Drafter, SpecParams, Target};
use hybrid_run::synth::{Preset, QuantMix};

use crate::common::synth;

/// The synthetic tiny model for `mix`, written once per test binary.
pub fn tiny(mix: QuantMix) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"));
    let _g = LOCK.lock().unwrap();
    let path = dir
        .path()
        .join(format!("{}-{}-{}.gguf", Preset::Tiny.name(), mix.name(), 3));
    if !path.exists() {
        synth(dir.path(), Preset::Tiny, mix, 3);
    }
    path
}

pub fn greedy() -> Sampler {
    Sampler::new(SamplerConfig {
        temperature: 0.0,
        ..Default::default()
    })
}

pub fn params(n: usize) -> GenParams {
    GenParams {
        n_predict: n,
        n_batch: 16,
    }
}

/// Plain greedy decoding: the reference.
pub fn plain(model: &mut CpuModel<'_>, n_ctx: usize, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut st = SeqState::new(&model.cfg, n_ctx);
    let mut toks = Vec::new();
    generate(
        model,
        &mut st,
        prompt,
        &params(n),
        &mut greedy(),
        &|_| false,
        &mut |t| {
            toks.push(t);
            true
        },
    )
    .expect("plain generate");
    toks
}

/// Speculative decoding with the drafter `make` builds for the target.
#[allow(clippy::too_many_arguments)]
pub fn speculative(
    model: &mut CpuModel<'_>,
    n_ctx: usize,
    prompt: &[u32],
    n: usize,
    draft_n: usize,
    adaptive: bool,
    sampler: &mut Sampler,
    make: &dyn Fn(&dyn Target) -> Box<dyn Drafter>,
) -> (Vec<u32>, GenStats) {
    let spec = SpecParams::new(draft_n, adaptive);
    speculative_with(model, n_ctx, prompt, n, &spec, sampler, make)
}

/// [`speculative`] with all of the speculation parameters.
pub fn speculative_with(
    model: &mut CpuModel<'_>,
    n_ctx: usize,
    prompt: &[u32],
    n: usize,
    spec: &SpecParams,
    sampler: &mut Sampler,
    make: &dyn Fn(&dyn Target) -> Box<dyn Drafter>,
) -> (Vec<u32>, GenStats) {
    let mut st = SeqState::new(&model.cfg, n_ctx);
    let mut target = CpuTarget::new(model, &mut st, spec.draft_n);
    let mut drafter = make(&target);
    let mut toks = Vec::new();
    let stats = generate_speculative(
        &mut target,
        drafter.as_mut(),
        prompt,
        &params(n),
        spec,
        sampler,
        &|_| false,
        &mut |t| {
            toks.push(t);
            true
        },
    )
    .expect("speculative generate");
    (toks, stats)
}

/// Index of the first difference, for failure messages.
pub fn first_diff(a: &[u32], b: &[u32]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}
