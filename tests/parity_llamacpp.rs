//! Parity with llama.cpp (the oracle) on synthetic tiny models at every quant mix.
//!
//! The oracle runs in its decode-path mode (`scripts/llamacpp-oracle.py`: weights not
//! repacked, tiled K-quant matmul off, one token per `llama_decode`), in which llama.cpp
//! computes every token with `ggml_vec_dot_*`, exactly the order hybrid-run's kernels use for
//! any batch. In that mode the logits must be bit-identical: prompt rows, teacher-forced
//! decode rows and free-running greedy tokens, at every mix, for fixed seeds plus a fresh one
//! per run, several prompts each. `parity_ops_llamacpp.rs` checks the same op by op.
//! docs/parity.md records how far llama.cpp's own batched paths are from its decode path.
//!
//! Also here: our bits do not depend on the thread count (1, 2, 4) nor on how a prompt is
//! split into batches.

mod common;

use common::*;
use hybrid_run::gguf::GgufFile;
use hybrid_run::model::qwen35::{Config, CpuModel, ForwardOutput, Logits, Qwen35Weights, SeqState};
use hybrid_run::synth::{Preset, QuantMix};

/// Generated tokens per prompt. Prompt + generation stay below 256 positions: llama.cpp's
/// KV view is then < 512 cells and it keeps the one-chunk flash-attention path we mirror
/// (it splits the KV over threads from 512 cells on).
const N_GEN: usize = 40;

/// Prompts of one seed: a single token, a short and a longer one, different ids each.
fn prompts(seed: u64, n_vocab: usize) -> Vec<Vec<u32>> {
    [1usize, 9, 27]
        .iter()
        .enumerate()
        .map(|(i, &n)| prompt_ids(seed ^ (0x5eed + i as u64), n, 256, n_vocab as u32 / 2))
        .collect()
}

fn seeds() -> Vec<u64> {
    vec![1, 2, 3, fresh_seed()]
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn check_mix(mix: QuantMix) {
    if !have_llamacpp() {
        eprintln!(
            "skipped: llama-cpp-python is not installed (scripts/setup-llamacpp.sh installs it)"
        );
        return;
    }
    for seed in seeds() {
        let dir = tempfile::tempdir().unwrap();
        let path = synth(dir.path(), Preset::Tiny, mix, seed);
        let file = GgufFile::open(&path).unwrap();
        let cfg = Config::from_gguf(&file).unwrap();
        let w = Qwen35Weights::load(&file, &cfg).unwrap();
        let mut model = CpuModel::new(cfg.clone(), w, 2);
        for (pi, prompt) in prompts(seed, cfg.n_vocab).iter().enumerate() {
            let oracle = run_oracle(prompt, &path, dir.path(), pi);
            assert_eq!(oracle.n_vocab, cfg.n_vocab);
            let rows = our_rows(&mut model, prompt, &oracle.tokens[..N_GEN - 1]);
            let n_rows = prompt.len() + N_GEN - 1;
            assert_eq!(rows.len(), n_rows);
            let max_rel = (0..n_rows)
                .map(|i| rel_err(&rows[i], oracle.row(i)))
                .fold(0.0f32, f32::max);
            let first_diff = (0..n_rows).find(|&i| !same_bits(&rows[i], oracle.row(i)));
            let greedy = our_greedy(&mut model, prompt, N_GEN);
            eprintln!(
                "{:7} seed {seed:>20} prompt {pi} ({:2} tokens): {n_rows} logit rows, max rel err {max_rel:.1e}, first differing row {first_diff:?}, greedy {}",
                mix.name(),
                prompt.len(),
                if greedy == oracle.tokens { "identical" } else { "DIFFERS" }
            );
            assert_eq!(
                first_diff,
                None,
                "{} seed {seed} prompt {pi}: logits differ from llama.cpp's from row {} on \
                 (prompt has {} rows); max rel err {max_rel:e}. tests/parity_ops_llamacpp.rs \
                 tells which op",
                mix.name(),
                first_diff.unwrap_or(0),
                prompt.len()
            );
            assert_eq!(
                greedy,
                oracle.tokens,
                "{} seed {seed} prompt {pi}: greedy tokens",
                mix.name()
            );
        }
    }
}

fn run_oracle(prompt: &[u32], model: &std::path::Path, dir: &std::path::Path, i: usize) -> Oracle {
    common::run_oracle(model, prompt, N_GEN, &dir.join(format!("oracle{i}")))
}

#[test]
fn f32_logits_are_bit_identical_to_llamacpp() {
    check_mix(QuantMix::F32);
}

#[test]
fn q8_0_logits_are_bit_identical_to_llamacpp() {
    check_mix(QuantMix::Q8_0);
}

#[test]
fn q4_k_m_logits_are_bit_identical_to_llamacpp() {
    check_mix(QuantMix::Q4KM);
}

#[test]
fn q5_k_m_logits_are_bit_identical_to_llamacpp() {
    check_mix(QuantMix::Q5KM);
}

#[test]
fn q6_k_logits_are_bit_identical_to_llamacpp() {
    check_mix(QuantMix::Q6K);
}

/// Every logit row of `prompt` fed in batches of the given sizes, then of `tail` one by one.
fn rows_with_split(
    model: &mut CpuModel<'_>,
    prompt: &[u32],
    split: &[usize],
    tail: &[u32],
) -> Vec<f32> {
    assert_eq!(split.iter().sum::<usize>(), prompt.len());
    let cfg = model.cfg.clone();
    let mut st = SeqState::new(&cfg, 256);
    let mut out = ForwardOutput::default();
    let mut all = Vec::new();
    let mut at = 0;
    for &n in split {
        model
            .forward(&mut st, &prompt[at..at + n], Logits::All, &mut out)
            .unwrap();
        all.extend_from_slice(&out.logits);
        at += n;
    }
    for &t in tail {
        model
            .forward(&mut st, &[t], Logits::Last, &mut out)
            .unwrap();
        all.extend_from_slice(&out.logits);
    }
    all
}

#[test]
fn token_bits_do_not_depend_on_how_the_prompt_is_split_into_batches() {
    let seed = fresh_seed();
    for mix in QuantMix::ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = synth(dir.path(), Preset::Tiny, mix, seed);
        let file = GgufFile::open(&path).unwrap();
        let cfg = Config::from_gguf(&file).unwrap();
        let w = Qwen35Weights::load(&file, &cfg).unwrap();
        let mut model = CpuModel::new(cfg.clone(), w, 2);
        let prompt = prompt_ids(seed, 37, 256, cfg.n_vocab as u32 / 2);
        let tail = prompt_ids(seed ^ 1, 6, 256, cfg.n_vocab as u32 / 2);
        let whole = rows_with_split(&mut model, &prompt, &[37], &tail);
        for split in [
            vec![1; 37],
            vec![3, 8, 1, 17, 8],
            vec![16, 16, 5],
            vec![36, 1],
        ] {
            let got = rows_with_split(&mut model, &prompt, &split, &tail);
            assert!(
                same_bits(&got, &whole),
                "{} seed {seed}: split {split:?} changes the logits (max rel err {:e})",
                mix.name(),
                rel_err(&got, &whole)
            );
        }
        eprintln!("{:7} seed {seed}: 4 batch splits bit-identical", mix.name());
    }
}

#[test]
fn tokens_and_logits_do_not_depend_on_the_thread_count() {
    let seed = fresh_seed();
    for mix in QuantMix::ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = synth(dir.path(), Preset::Tiny, mix, seed);
        let file = GgufFile::open(&path).unwrap();
        let cfg = Config::from_gguf(&file).unwrap();
        let prompt = prompt_ids(seed, 19, 256, cfg.n_vocab as u32 / 2);
        let mut reference: Option<(Vec<Vec<f32>>, Vec<u32>)> = None;
        for threads in [1, 2, 4] {
            let w = Qwen35Weights::load(&file, &cfg).unwrap();
            let mut model = CpuModel::new(cfg.clone(), w, threads);
            let greedy = our_greedy(&mut model, &prompt, 24);
            let rows = our_rows(&mut model, &prompt, &greedy[..23]);
            match &reference {
                None => reference = Some((rows, greedy)),
                Some((r, g)) => {
                    assert_eq!(
                        &greedy,
                        g,
                        "{} seed {seed}: {threads} threads, tokens",
                        mix.name()
                    );
                    for (i, (a, b)) in rows.iter().zip(r).enumerate() {
                        assert!(
                            same_bits(a, b),
                            "{} seed {seed}: {threads} threads change logit row {i}",
                            mix.name()
                        );
                    }
                }
            }
        }
        eprintln!(
            "{:7} seed {seed}: 1, 2, 4 threads bit-identical",
            mix.name()
        );
    }
}

/// llama.cpp's own results must not depend on its thread count either, in the mode the
/// tests use (they run it on one thread because that is several times faster here).
#[test]
fn the_oracle_does_not_depend_on_its_thread_count() {
    if !have_llamacpp() {
        eprintln!("skipped: llama-cpp-python is not installed");
        return;
    }
    let seed = fresh_seed();
    let dir = tempfile::tempdir().unwrap();
    let path = synth(dir.path(), Preset::Tiny, QuantMix::Q4KM, seed);
    let prompt = prompt_ids(seed, 11, 256, 512);
    let mut runs = Vec::new();
    for threads in [1, 2] {
        let opts = OracleOpts {
            threads: Some(threads),
            ..OracleOpts::default()
        };
        runs.push(run_oracle_with(
            &path,
            &prompt,
            12,
            &dir.path().join(format!("t{threads}")),
            &opts,
        ));
    }
    assert_eq!(runs[0].tokens, runs[1].tokens);
    assert!(same_bits(&runs[0].logits, &runs[1].logits), "seed {seed}");
}

/// Measurement for docs/parity.md (run with `--ignored --nocapture`): how far llama.cpp's
/// other paths are from its decode path, which hybrid-run matches bit for bit: the whole
/// prompt in one batch (llamafile sgemm for F32/Q8_0), plus the tiled K-quant matmul,
/// repacked weights (8x8 interleaved gemv/gemm), and all three (llama.cpp's defaults). Decode rows are compared up to
/// the first greedy token that differs (after it the two runs decode different tokens).
#[test]
#[ignore]
fn report_llamacpp_batched_paths_against_its_decode_path() {
    let modes = [
        ("batched prompt", Some(0), false, false),
        ("batched + tiled", Some(0), false, true),
        ("repacked weights", None, true, false),
        ("defaults (all 3)", Some(0), true, true),
    ];
    for mix in QuantMix::ALL {
        for (label, prompt_batch, repack, tiled) in modes {
            let mut worst_prompt = 0.0f32;
            let mut worst_decode = 0.0f32;
            let mut identical_rows = 0;
            let mut rows = 0;
            let mut first_greedy_diff = Vec::new();
            for seed in seeds() {
                let dir = tempfile::tempdir().unwrap();
                let path = synth(dir.path(), Preset::Tiny, mix, seed);
                let prompt = prompt_ids(seed, 27, 256, 512);
                let exact = common::run_oracle(&path, &prompt, N_GEN, &dir.path().join("exact"));
                let opts = OracleOpts {
                    prompt_batch,
                    repack,
                    tiled,
                    ..OracleOpts::default()
                };
                let other = run_oracle_with(&path, &prompt, N_GEN, &dir.path().join("o"), &opts);
                let diff = other
                    .tokens
                    .iter()
                    .zip(&exact.tokens)
                    .position(|(a, b)| a != b);
                first_greedy_diff.push(diff);
                let n_rows = prompt.len() + diff.unwrap_or(N_GEN - 1);
                for i in 0..n_rows {
                    let e = rel_err(other.row(i), exact.row(i));
                    identical_rows += same_bits(other.row(i), exact.row(i)) as usize;
                    rows += 1;
                    if i < prompt.len() {
                        worst_prompt = worst_prompt.max(e);
                    } else {
                        worst_decode = worst_decode.max(e);
                    }
                }
            }
            eprintln!(
                "{:7} {label:17}: {identical_rows}/{rows} rows bit-identical, max rel err \
                 prompt {worst_prompt:.1e} decode {worst_decode:.1e}; first greedy \
                 difference per seed {first_greedy_diff:?}",
                mix.name()
            );
        }
    }
}

/// Spot check on the larger `small` preset (head dims 128, 24 layers, 32K vocab; ~1 GB
/// written to a temp dir), run with `--ignored`: other shapes than the tiny preset's.
#[test]
#[ignore]
fn small_preset_logits_are_bit_identical_to_llamacpp() {
    let mix = std::env::var("PARITY_MIX")
        .ok()
        .and_then(|m| QuantMix::from_name(&m))
        .unwrap_or(QuantMix::Q4KM);
    let seed = fresh_seed();
    let dir = tempfile::tempdir().unwrap();
    let path = synth(dir.path(), Preset::Small, mix, seed);
    let file = GgufFile::open(&path).unwrap();
    let cfg = Config::from_gguf(&file).unwrap();
    let w = Qwen35Weights::load(&file, &cfg).unwrap();
    let mut model = CpuModel::new(cfg.clone(), w, 2);
    let prompt = prompt_ids(seed, 7, 256, cfg.n_vocab as u32 / 2);
    let n_gen = 8;
    let oracle = common::run_oracle(&path, &prompt, n_gen, &dir.path().join("o"));
    let rows = our_rows(&mut model, &prompt, &oracle.tokens[..n_gen - 1]);
    for (i, r) in rows.iter().enumerate() {
        assert!(
            same_bits(r, oracle.row(i)),
            "{} seed {seed}: row {i} differs, rel err {:e}",
            mix.name(),
            rel_err(r, oracle.row(i))
        );
    }
    eprintln!(
        "small {} seed {seed}: {} rows bit-identical",
        mix.name(),
        rows.len()
    );
}
