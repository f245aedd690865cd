//! `hybrid-run bench`: llama-bench-style prefill and decode throughput on random tokens,
//! printed as a table row and (with --json) as JSON for scripts.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::gguf::GgufFile;
use crate::model::qwen35::{Config, CpuModel, ForwardOutput, Logits, Qwen35Weights, SeqState};
use crate::sample::argmax;
use simd::prof::median;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Prompt tokens to process (0 skips the prefill test).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens to generate one at a time (0 skips the decode test).
    #[arg(short = 'n', long = "n-gen", default_value_t = 64)]
    pub n_gen: usize,
    /// Prompt tokens per forward call.
    #[arg(short = 'b', long = "batch-size", default_value_t = 256)]
    pub batch: usize,
    /// CPU threads (default: physical cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Repetitions; the median is reported.
    #[arg(short = 'r', long = "repetitions", default_value_t = 3)]
    pub reps: usize,
    /// Context depth: fill the context with this many tokens (untimed) before each prefill
    /// and decode test, like llama-bench's `-d`.
    #[arg(short = 'd', long = "depth", default_value_t = 0)]
    pub depth: usize,
    /// Also time k-token verify steps for these k (comma list, e.g. 1,2,4,8).
    #[arg(long = "verify-k", value_delimiter = ',')]
    pub verify_k: Vec<usize>,
    /// Simulated acceptance: decode -n tokens with speculation, drafts from an oracle that
    /// knows the greedy continuation and is right with each of these probabilities (comma
    /// list, e.g. 0.75,0.84,0.95), next to plain decoding, after a 16-token prompt (no
    /// --depth). Random weights make the model's own MTP head useless, so this is how
    /// speculation is measured on synthetic models.
    #[arg(long = "sim-accept", value_delimiter = ',')]
    pub sim_accept: Vec<f64>,
    /// With --sim-accept: drafts per step to try (comma list).
    #[arg(long = "draft-n", value_delimiter = ',', default_values_t = [3usize, 4])]
    pub draft_n: Vec<usize>,
    /// With --sim-accept: also the adaptive draft length (at most the largest --draft-n).
    #[arg(long = "draft-adaptive")]
    pub draft_adaptive: bool,
    /// Write the results as JSON to this file.
    #[arg(long = "json")]
    pub json: Option<PathBuf>,
}

#[derive(Serialize, Debug, Default)]
pub struct BenchResult {
    pub model: String,
    pub file_bytes: u64,
    pub threads: usize,
    pub isa: String,
    pub n_prompt: usize,
    pub depth: usize,
    pub prefill_tps: f64,
    pub n_gen: usize,
    pub decode_tps: f64,
    /// (k, median ms per k-token step, ratio to k = 1)
    pub verify: Vec<(usize, f64, f64)>,
    /// Plain greedy decode t/s of the simulated-acceptance test (its baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim_plain_tps: Option<f64>,
    pub sim: Vec<SimRow>,
}

/// One simulated-acceptance run (medians over the repetitions).
#[derive(Serialize, Debug)]
pub struct SimRow {
    pub rate: f64,
    pub draft_n: usize,
    pub adaptive: bool,
    pub decode_tps: f64,
    pub speedup: f64,
    pub acceptance: f64,
    pub tokens_per_step: f64,
    /// The last repetition's verify steps per batch width k (index k - 1) and their mean ms.
    pub steps_per_k: Vec<usize>,
    pub verify_ms_per_k: Vec<f64>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.reps == 0 {
        bail!("--repetitions must be at least 1");
    }
    if let Some(r) = a.sim_accept.iter().find(|r| !(0.0..=1.0).contains(*r)) {
        bail!("--sim-accept {r}: a rate is between 0 and 1");
    }
    if !a.sim_accept.is_empty() {
        if a.n_gen == 0 {
            bail!("--sim-accept needs -n > 0 tokens to decode");
        }
        if let Some(n) = a
            .draft_n
            .iter()
            .find(|&&n| n == 0 || n > crate::spec::MAX_DRAFT_N)
        {
            bail!(
                "--draft-n {n}: drafts per step are 1..={}",
                crate::spec::MAX_DRAFT_N
            );
        }
    }
    let file = GgufFile::open_resident(&a.model)
        .with_context(|| format!("opening {}", a.model.display()))?;
    let cfg = Config::from_gguf(&file)?;
    let w = Qwen35Weights::load(&file, &cfg)?;
    let threads = a.threads.unwrap_or_else(simd::pool::physical_cores).max(1);
    let mut model = CpuModel::new(cfg.clone(), w, threads);
    let n_ctx = a.depth
        + a.n_prompt
        + a.n_gen
        + a.verify_k.iter().copied().max().unwrap_or(0)
        + a.draft_n.iter().copied().max().unwrap_or(0)
        + 16;
    let mut st = SeqState::new(&cfg, n_ctx);
    let mut out = ForwardOutput::default();
    let vocab = cfg.n_vocab as u32;
    let tokens: Vec<u32> = (0..a.n_prompt.max(1) as u32)
        .map(|i| (i * 7919 + 13) % vocab)
        .collect();
    // The depth's tokens: another sequence than the prompt's.
    let fill: Vec<u32> = (0..a.depth as u32)
        .map(|i| (i * 104_729 + 7) % vocab)
        .collect();
    let mut res = BenchResult {
        model: a.model.display().to_string(),
        file_bytes: file.file_size(),
        threads,
        isa: format!("{:?}", simd::Isa::detect()),
        n_prompt: a.n_prompt,
        depth: a.depth,
        n_gen: a.n_gen,
        ..Default::default()
    };
    // Warm-up: page the weights in and size every buffer.
    model.forward(
        &mut st,
        &tokens[..tokens.len().min(a.batch.max(1))],
        Logits::Last,
        &mut out,
    )?;

    // Resets the state and fills `depth` tokens of context (untimed).
    let at_depth = |model: &mut CpuModel, st: &mut SeqState, out: &mut ForwardOutput| {
        st.reset();
        for chunk in fill.chunks(a.batch.max(1)) {
            model.forward(st, chunk, Logits::Last, out)?;
        }
        anyhow::Ok(())
    };
    if a.n_prompt > 0 {
        let mut times = Vec::new();
        for _ in 0..a.reps {
            at_depth(&mut model, &mut st, &mut out)?;
            let t0 = Instant::now();
            for chunk in tokens.chunks(a.batch.max(1)) {
                model.forward(&mut st, chunk, Logits::Last, &mut out)?;
            }
            times.push(t0.elapsed().as_secs_f64());
        }
        res.prefill_tps = a.n_prompt as f64 / median(times);
    }
    if a.n_gen > 0 {
        let mut times = Vec::new();
        for _ in 0..a.reps {
            at_depth(&mut model, &mut st, &mut out)?;
            model.forward(&mut st, &tokens[..1], Logits::Last, &mut out)?;
            let t0 = Instant::now();
            for _ in 0..a.n_gen {
                let t = argmax(&out.logits);
                model.forward(&mut st, &[t], Logits::Last, &mut out)?;
            }
            times.push(t0.elapsed().as_secs_f64());
        }
        res.decode_tps = a.n_gen as f64 / median(times);
    }
    let mut t1 = 0.0;
    for &k in &a.verify_k {
        if k == 0 {
            continue;
        }
        let mut times = Vec::new();
        // With HYBRID_OPPROF=1: where the timed steps' time went, by op (a development aid).
        let mut ops: Vec<(&'static str, std::time::Duration)> = Vec::new();
        for _ in 0..a.reps.max(5) {
            st.reset();
            model.forward(
                &mut st,
                &tokens[..8.min(tokens.len())],
                Logits::Last,
                &mut out,
            )?;
            let batch: Vec<u32> = (0..k as u32).map(|i| (i * 31 + 5) % vocab).collect();
            simd::prof::reset();
            let t0 = Instant::now();
            model.forward(&mut st, &batch, Logits::All, &mut out)?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
            for (label, _, d) in simd::prof::totals() {
                match ops.iter_mut().find(|(l, _)| *l == label) {
                    Some(o) => o.1 += d,
                    None => ops.push((label, d)),
                }
            }
        }
        if !ops.is_empty() {
            let n = a.reps.max(5) as f64;
            ops.sort_by_key(|y| std::cmp::Reverse(y.1));
            let list: Vec<String> = ops
                .iter()
                .map(|(l, d)| format!("{l} {:.2}", d.as_secs_f64() * 1e3 / n))
                .collect();
            println!("ops at k = {k}, ms per step: {}", list.join(" | "));
        }
        let ms = median(times);
        if k == 1 || t1 == 0.0 {
            t1 = ms;
        }
        res.verify.push((k, ms, ms / t1));
    }

    if !a.sim_accept.is_empty() {
        simulated(
            &a,
            &mut model,
            &tokens[..SIM_PROMPT.min(tokens.len())],
            n_ctx,
            &mut res,
        )?;
    }

    let at = if a.depth > 0 {
        format!(" @ d{}", a.depth)
    } else {
        String::new()
    };
    println!(
        "| model | size | threads | isa | pp{}{at} t/s | tg{}{at} t/s |",
        a.n_prompt, a.n_gen
    );
    println!("|---|---:|---:|---|---:|---:|");
    println!(
        "| {} | {:.2} GiB | {} | {} | {:.2} | {:.2} |",
        a.model
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        res.file_bytes as f64 / (1u64 << 30) as f64,
        threads,
        res.isa,
        res.prefill_tps,
        res.decode_tps
    );
    if !res.verify.is_empty() {
        println!("\n| k | step ms | T(k)/T(1) |\n|---:|---:|---:|");
        for (k, ms, r) in &res.verify {
            println!("| {k} | {ms:.2} | {r:.3} |");
        }
    }
    if let Some(base) = res.sim_plain_tps {
        println!(
            "\n| simulated acceptance | N | t/s | vs off | measured acceptance | tokens/step |\n|---:|---|---:|---:|---:|---:|"
        );
        println!("| off | 0 | {base:.2} | 1.00x | | |");
        for r in &res.sim {
            println!(
                "| {:.2} | {}{} | {:.2} | {:.2}x | {:.3} | {:.2} |",
                r.rate,
                r.draft_n,
                if r.adaptive { " adaptive" } else { "" },
                r.decode_tps,
                r.speedup,
                r.acceptance,
                r.tokens_per_step
            );
        }
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&res)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// Prompt tokens of the simulated-acceptance runs.
const SIM_PROMPT: usize = 16;

/// Plain greedy decoding of -n tokens, then speculative decoding of the same tokens with the
/// oracle drafter at each rate and draft length; each run must give the plain run's tokens.
fn simulated(
    a: &Args,
    model: &mut CpuModel<'_>,
    prompt: &[u32],
    n_ctx: usize,
    res: &mut BenchResult,
) -> anyhow::Result<()> {
    use crate::generate::GenParams;
    use crate::spec::{greedy_tokens, CpuTarget, ErrorPlan, OracleDrafter, SpecParams};

    let params = GenParams {
        n_predict: a.n_gen,
        n_batch: a.batch.max(1),
    };
    let mut truth = Vec::new();
    let mut plain_tps = Vec::new();
    for _ in 0..a.reps {
        let mut st = SeqState::new(&model.cfg, n_ctx);
        let (toks, s) = crate::generate::greedy_tokens(model, &mut st, prompt, &params)?;
        plain_tps.push(s.decode_tps);
        truth = toks;
    }
    let base = median(plain_tps);
    res.sim_plain_tps = Some(base);
    let mut full = prompt.to_vec();
    full.extend_from_slice(&truth);
    let nv = model.cfg.n_vocab;
    let max_n = a.draft_n.iter().copied().max().unwrap_or(1);
    let mut configs: Vec<(usize, bool)> = a.draft_n.iter().map(|&n| (n, false)).collect();
    if a.draft_adaptive {
        configs.push((max_n, true));
    }
    for &rate in &a.sim_accept {
        for &(n, adaptive) in &configs {
            let (mut tps, mut acc, mut tps_step) = (Vec::new(), Vec::new(), Vec::new());
            let (mut per_k, mut ms_k) = (Vec::new(), Vec::new());
            for rep in 0..a.reps {
                let mut st = SeqState::new(&model.cfg, n_ctx);
                let mut target = CpuTarget::new(model, &mut st, n);
                let mut drafter = OracleDrafter::new(
                    full.clone(),
                    nv,
                    ErrorPlan::Rate {
                        rate,
                        seed: 11 + rep as u64,
                    },
                );
                let (got, s) = greedy_tokens(
                    &mut target,
                    &mut drafter,
                    prompt,
                    &params,
                    &SpecParams::new(n, adaptive),
                )?;
                if got != truth {
                    let at = got.iter().zip(&truth).position(|(x, y)| x != y);
                    bail!(
                        "speculation changed the greedy output (rate {rate}, N = {n}{}): first difference at token {at:?}",
                        if adaptive { ", adaptive" } else { "" }
                    );
                }
                tps.push(s.decode_tps);
                if let Some(sp) = &s.spec {
                    acc.push(sp.acceptance);
                    tps_step.push(sp.tokens_per_step);
                    per_k = sp.steps_per_k.clone();
                    ms_k = sp.verify_ms_per_k.clone();
                }
            }
            let t = median(tps);
            res.sim.push(SimRow {
                rate,
                draft_n: n,
                adaptive,
                decode_tps: t,
                speedup: t / base,
                acceptance: if acc.is_empty() { 0.0 } else { median(acc) },
                tokens_per_step: if tps_step.is_empty() {
                    0.0
                } else {
                    median(tps_step)
                },
                steps_per_k: per_k,
                verify_ms_per_k: ms_k,
            });
        }
    }
    Ok(())
}
