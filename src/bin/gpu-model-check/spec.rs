//! Speculative decoding on the GPU placements (whole GPU and hybrid split) through
//! `GpuTarget`: greedy output with speculation equals plain greedy decoding on the same GPU
//! engine, token for token, for the MTP, lookup and oracle drafters (the oracle with its first
//! error cycling through every depth, so every rollback depth runs); and, with `--spec-bench`,
//! the verify step time T(k) and decode speed at simulated acceptance rates.

use std::path::Path;
use std::time::Instant;

use hybrid_run::generate::{GenParams, GenStats};
use hybrid_run::gguf::GgufFile;
use hybrid_run::gpu::{Gpu, GpuModel, GpuSnapshotRing};
use hybrid_run::model::qwen35::{Config, ForwardOutput, Logits, Qwen35Weights};
use hybrid_run::spec::{
    greedy_tokens, Drafter, ErrorPlan, GpuTarget, LookupDrafter, MtpDrafter, OracleDrafter,
    SpecParams, Target,
};

use super::{median, model_name, placements, tokens, Report, R};

const N_GEN: usize = 256;

/// Plain greedy decoding on the GPU engine (device argmax), the reference.
fn plain(gm: &mut GpuModel<'_>, prompt: &[u32], n: usize, n_ctx: usize) -> R<(Vec<u32>, GenStats)> {
    let mut st = gm.new_state(n_ctx)?;
    let params = GenParams {
        n_predict: n,
        n_batch: 64,
    };
    Ok(hybrid_run::generate::greedy_tokens(
        gm, &mut st, prompt, &params,
    )?)
}

#[derive(Clone, Copy, Debug)]
enum Which {
    Mtp,
    Lookup,
    Oracle,
    Rate(f64),
}

/// Speculative greedy decoding with `n_draft` drafts per step.
#[allow(clippy::too_many_arguments)]
fn speculative(
    gm: &mut GpuModel<'_>,
    cfg: &Config,
    prompt: &[u32],
    truth: &[u32],
    which: Which,
    n_draft: usize,
    adaptive: bool,
    n: usize,
    n_ctx: usize,
) -> R<(Vec<u32>, GenStats)> {
    let ring = GpuSnapshotRing::new(gm.gpu(), cfg, n_draft)?;
    let mut st = gm.new_state(n_ctx)?;
    let mut target = GpuTarget::new(gm, &mut st, ring, 1);
    let mut full = prompt.to_vec();
    full.extend_from_slice(truth);
    let mut drafter: Box<dyn Drafter> = match which {
        Which::Mtp => Box::new(MtpDrafter::new(&target)?),
        Which::Lookup => Box::new(LookupDrafter::new(1, 3, n_ctx)?),
        Which::Oracle => Box::new(OracleDrafter::new(full, cfg.n_vocab, ErrorPlan::Cycle)),
        Which::Rate(rate) => Box::new(OracleDrafter::new(
            full,
            cfg.n_vocab,
            ErrorPlan::Rate { rate, seed: 11 },
        )),
    };
    Ok(greedy_tokens(
        &mut target,
        drafter.as_mut(),
        prompt,
        &GenParams {
            n_predict: n,
            n_batch: 64,
        },
        &SpecParams::new(n_draft, adaptive),
    )?)
}

fn first_diff(a: &[u32], b: &[u32]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

pub(crate) fn open_model<'a>(
    gpu: Gpu,
    cfg: &Config,
    w: &Qwen35Weights<'a>,
    n_gpu_ffn: usize,
    threads: usize,
) -> R<GpuModel<'a>> {
    Ok(if n_gpu_ffn >= cfg.n_layer() {
        GpuModel::new(gpu, cfg.clone(), w)?
    } else {
        GpuModel::new_hybrid(gpu, cfg.clone(), w, n_gpu_ffn, threads)?
    })
}

/// Speculation on == off, token for token, over [`N_GEN`] tokens: whole GPU and a hybrid
/// split (half the FFNs on the CPU), MTP (when the model has it), lookup and the cycling
/// oracle, N = 1..4.
pub fn check(path: &Path, threads: usize, rep: &mut Report) -> R<()> {
    let file = GgufFile::open(path)?;
    let cfg = Config::from_gguf(&file)?;
    let w = Qwen35Weights::load(&file, &cfg)?;
    let name = model_name(path);
    let n_ctx = 512;
    // A prompt with a repeated stretch, so lookup has something to find.
    let mut prompt = tokens(24, cfg.n_vocab, 3);
    prompt.extend_from_within(4..16);
    for (place, n_gpu_ffn) in placements(&cfg) {
        let mut gm = open_model(Gpu::new(0)?, &cfg, &w, n_gpu_ffn, threads)?;
        let (want, _) = plain(&mut gm, &prompt, N_GEN, n_ctx)?;
        let mut kinds = vec![("lookup", Which::Lookup), ("oracle-cycle", Which::Oracle)];
        if cfg.mtp_block().is_some() {
            kinds.insert(0, ("mtp", Which::Mtp));
        }
        for (kname, which) in kinds {
            for n in 1..=4 {
                let (got, stats) =
                    speculative(&mut gm, &cfg, &prompt, &want, which, n, false, N_GEN, n_ctx)?;
                let ss = stats.spec.as_ref();
                let detail = format!(
                    "{} tokens, acc {:.2}, rej@depth {:?}",
                    got.len(),
                    ss.map_or(0.0, |s| s.acceptance),
                    ss.map_or(vec![], |s| s.rejected_at_depth.clone())
                );
                let ok = got == want;
                rep.truth(
                    &format!("{name} spec {place} {kname} N={n}: == plain greedy"),
                    ok,
                    &detail,
                );
                if !ok {
                    println!("   first difference at token {:?}", first_diff(&got, &want));
                }
                if let (Which::Oracle, Some(s)) = (which, ss) {
                    // The cycling plan must have rejected at every depth 0..n (rollback to
                    // every slot) and accepted full batches too.
                    let every = s.rejected_at_depth.iter().take(n).all(|&c| c > 0);
                    rep.truth(
                        &format!("{name} spec {place} oracle N={n}: rollback at every depth"),
                        every && s.rejected_at_depth.len() >= n,
                        &format!("{:?}", s.rejected_at_depth),
                    );
                }
            }
        }
    }
    // Bad input: a batch wider than the ring is a typed error, keep() without a batch too.
    let mut gm = open_model(Gpu::new(0)?, &cfg, &w, cfg.n_layer(), threads)?;
    let ring = GpuSnapshotRing::new(gm.gpu(), &cfg, 2)?;
    let mut st = gm.new_state(64)?;
    let mut t = GpuTarget::new(&mut gm, &mut st, ring, 1);
    let mut out = ForwardOutput::default();
    t.forward(&prompt[..4], Logits::Last, &mut out)?;
    let wide = t.verify(&prompt[..4], &mut out).is_err();
    let nobatch = t.keep(1).is_err();
    t.verify(&prompt[..3], &mut out)?;
    let badkeep = t.keep(4).is_err();
    rep.truth(
        &format!("{name} GpuTarget: too-wide batch / keep without batch / bad keep are errors"),
        wide && nobatch && badkeep,
        &format!("{wide} {nobatch} {badkeep}"),
    );
    Ok(())
}

/// T(k) for k = 1..=6 (verify forward of k tokens with snapshots, then keep(1)), and decode
/// t/s with the oracle at simulated acceptance rates next to plain decoding.
pub fn bench(path: &Path, n_gpu_ffn: Option<usize>, threads: usize, n_gen: usize) -> R<()> {
    let file = GgufFile::open(path)?;
    let cfg = Config::from_gguf(&file)?;
    let w = Qwen35Weights::load(&file, &cfg)?;
    let n_ffn = n_gpu_ffn.unwrap_or(cfg.n_layer()).min(cfg.n_layer());
    let place = if n_ffn >= cfg.n_layer() {
        "full GPU".to_string()
    } else {
        format!("hybrid, {n_ffn} GPU FFN layers, {threads} CPU threads")
    };
    let t0 = Instant::now();
    // Ring first (before the weights), as the CLI does.
    let gpu = Gpu::new(0)?;
    let ring = GpuSnapshotRing::new(&gpu, &cfg, 7)?;
    let mut gm = open_model(gpu, &cfg, &w, n_ffn, threads)?;
    println!(
        "spec-bench: {} ({place}) on {}: loaded in {:.1} s; snapshot ring 7 slots, {:.1} MiB",
        path.display(),
        gm.gpu().info().name,
        t0.elapsed().as_secs_f64(),
        ring.bytes() as f64 / (1u64 << 20) as f64
    );
    let n_ctx = 1024;
    let prompt = tokens(16, cfg.n_vocab, 5);
    {
        let mut st = gm.new_state(n_ctx)?;
        let mut t = GpuTarget::new(&mut gm, &mut st, ring, threads);
        let mut out = ForwardOutput::default();
        t.forward(&prompt, Logits::Last, &mut out)?;
        let batch = tokens(7, cfg.n_vocab, 9);
        println!("| k | T(k) ms, logits downloaded | T(k)/T(1) | T(k) ms, device argmax (greedy) | T(k)/T(1) | keep(1) rollback ms |");
        println!("|---|---|---|---|---|---|");
        let mut argmax = Vec::new();
        // Rounds over k = 1..6 (the k values interleaved, so a drift of the host's speed
        // during the run moves every k alike instead of the ratios); two warm-up rounds.
        const ROUNDS: usize = 16;
        let mut ts = vec![Vec::new(); 7];
        let mut ta = vec![Vec::new(); 7];
        let mut rs = vec![Vec::new(); 7];
        for round in 0..ROUNDS {
            for k in 1..=6 {
                for greedy in [false, true] {
                    let a = Instant::now();
                    if greedy {
                        argmax.clear();
                        t.verify_argmax(&batch[..k], &mut out, &mut argmax)?; // synchronous
                    } else {
                        t.verify(&batch[..k], &mut out)?; // downloads logits: synchronous
                    }
                    let b = Instant::now();
                    t.keep(1)?;
                    t.model.gpu().synchronize()?;
                    if round >= 2 {
                        let ms = b.duration_since(a).as_secs_f64() * 1e3;
                        if greedy { &mut ta[k] } else { &mut ts[k] }.push(ms);
                        rs[k].push(b.elapsed().as_secs_f64() * 1e3);
                    }
                    // keep(1) leaves the first token: step back to the same position each time.
                    let p = t.st.n_past - 1;
                    t.st.n_past = p;
                }
            }
        }
        // The greedy path's T(4)/T(1) within each round: its spread says how much to trust
        // the ratio of the medians.
        let mut per_round: Vec<f64> = ta[4].iter().zip(&ta[1]).map(|(a, b)| a / b).collect();
        per_round.sort_by(f64::total_cmp);
        let (t1, t1a) = (median(ts[1].clone()), median(ta[1].clone()));
        for k in 1..=6 {
            let (tk, tak) = (median(ts[k].clone()), median(ta[k].clone()));
            println!(
                "| {k} | {tk:.2} | {:.2} | {tak:.2} | {:.2} | {:.3} |",
                tk / t1,
                tak / t1a,
                median(rs[k].clone())
            );
        }
        if let (Some(lo), Some(hi)) = (per_round.first(), per_round.last()) {
            println!(
                "greedy T(4)/T(1) within each of {} rounds: median {:.2}, range {lo:.2}-{hi:.2}",
                per_round.len(),
                median(per_round.clone())
            );
        }
        // Where a verify step's time goes at k = 1 and 4 (hybrid): the `--profile` split.
        if n_ffn < cfg.n_layer() {
            use hybrid_run::placement::profile;
            for k in [1usize, 4] {
                profile::enable();
                profile::reset();
                for _ in 0..10 {
                    argmax.clear();
                    t.verify_argmax(&batch[..k], &mut out, &mut argmax)?;
                    t.keep(1)?;
                    t.model.gpu().synchronize()?;
                    let p = t.st.n_past - 1;
                    t.st.n_past = p;
                }
                let r = profile::report();
                println!("profile k = {k}: {}", r.lines().next().unwrap_or(""));
                for l in r.lines().filter(|l| l.contains("PCIe share")) {
                    println!("profile k = {k}: {}", l.trim());
                }
                profile::reset();
            }
            profile::disable();
        }
    }
    if let Some((s, fr)) = gm.take_share_stats() {
        let f = |j: usize| {
            (1..=6)
                .map(|k| format!("{:.2}", fr[j][k]))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "PCIe share during T(k): {} calls, GPU rows {} vs CPU rows {}, GPU {:.1} ms, CPU waited {:.1} ms, queuing {:.1} ms; GPU fraction by k = 1..6: gate/up {}, down {}",
            s.calls,
            s.gpu_rows,
            s.cpu_rows,
            s.gpu_ms,
            s.wait_ms,
            s.launch_ms,
            f(0),
            f(1)
        );
    }
    let (truth, base) = plain(&mut gm, &prompt, n_gen, n_ctx)?;
    println!(
        "decode, {n_gen} tokens, greedy: MTP off {:.2} t/s",
        base.decode_tps
    );
    println!("| simulated acceptance | N | t/s | vs off | measured acceptance | tokens/step |");
    println!("|---|---|---|---|---|---|");
    // The hybrid split decodes ~10x slower: fewer draft lengths there. The last row of each
    // rate is the adaptive policy with at most 6 drafts (`--draft-adaptive`), so the default
    // can be judged against the best fixed N.
    let ns: &[(usize, bool)] = if n_ffn >= cfg.n_layer() {
        &[(2, false), (3, false), (4, false), (6, false), (6, true)]
    } else {
        &[(3, false), (4, false), (5, false), (6, true)]
    };
    for rate in [0.75, 0.84, 0.95] {
        for &(n, adaptive) in ns {
            let (got, s) = speculative(
                &mut gm,
                &cfg,
                &prompt,
                &truth,
                Which::Rate(rate),
                n,
                adaptive,
                n_gen,
                n_ctx,
            )?;
            let ss = s.spec.as_ref();
            println!(
                "| {rate:.2} | {n}{} | {:.2} | {:.2}x | {:.3} | {:.2} |{}",
                if adaptive { " adaptive" } else { "" },
                s.decode_tps,
                s.decode_tps / base.decode_tps,
                ss.map_or(0.0, |x| x.acceptance),
                ss.map_or(0.0, |x| x.tokens_per_step),
                if got == truth { "" } else { " OUTPUT DIFFERS" }
            );
        }
    }
    Ok(())
}
