//! Teacher-forced MTP depth-1 acceptance and held-out perplexity of a qwen35 model on the
//! CPU, on the windows `scripts/train/export_windows.py` writes, so that the numbers sit next
//! to llama.cpp's on identical token ids (`scripts/train/check_mtp_llamacpp.py
//! --windows-json`, `scripts/train/check_llamacpp.py`).
//!
//! Acceptance, per window of T ids (the protocol of check_mtp_llamacpp.py): the trunk runs
//! the window once (all logits, post-final-norm hidden rows H); the MTP block runs the same
//! tokens with H shifted right by one (zero row first), so its row p sees token x_p and H_{p-1}
//! (forward spec §7.2) and predicts x_{p+1}, as the trunk's row p does. A draft counts as
//! accepted at p = 1..T-2 when the two argmaxes agree.
//!
//! Perplexity: exp(mean NLL) of targets w[1..] given inputs w[..T] per window of T+1 ids,
//! fresh state per window (as check_llamacpp.py).
//!
//! `cargo run --release --example mtp_acceptance -- MODEL.gguf WINDOWS.json [THREADS] [OUT.json]`

use std::time::Instant;

use anyhow::{bail, Context};
use hybrid_run::gguf::GgufFile;
use hybrid_run::model::qwen35::{Config, CpuModel, ForwardOutput, Logits, Qwen35Weights, SeqState};
use hybrid_run::sample::argmax;

/// One window set of the JSON file.
fn windows(doc: &serde_json::Value, key: &str) -> anyhow::Result<Vec<Vec<u32>>> {
    let arr = doc[key]["windows"]
        .as_array()
        .with_context(|| format!("windows file has no \"{key}\".windows array"))?;
    arr.iter()
        .map(|w| {
            w.as_array()
                .context("a window is not an array")?
                .iter()
                .map(|t| {
                    t.as_u64()
                        .and_then(|t| u32::try_from(t).ok())
                        .context("a token id is not a u32")
                })
                .collect()
        })
        .collect()
}

/// -log softmax(row)[target], in f64.
fn nll(row: &[f32], target: u32) -> f64 {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    lse - row[target as usize] as f64
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: mtp_acceptance MODEL.gguf WINDOWS.json [THREADS] [OUT.json]");
    }
    let threads: usize = args.get(3).map_or(Ok(2), |s| s.parse())?;
    let file = GgufFile::open(std::path::Path::new(&args[1]))?;
    let cfg = Config::from_gguf(&file)?;
    let w = Qwen35Weights::load(&file, &cfg)?;
    let mut model = CpuModel::new(cfg.clone(), w, threads);
    if !model.has_mtp() {
        bail!("{} has no MTP block", args[1]);
    }
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&args[2]).with_context(|| format!("reading {}", args[2]))?,
    )?;
    let (d, nv) = (cfg.n_embd, cfg.n_vocab);
    let mut out = ForwardOutput::default();
    let mut mout = ForwardOutput::default();

    // Teacher-forced MTP acceptance.
    let t0 = Instant::now();
    let mtp_wins = windows(&doc, "mtp")?;
    let (mut ok, mut n) = (0usize, 0usize);
    let mut per_window = Vec::new();
    for win in &mtp_wins {
        let t_n = win.len();
        if t_n < 3 {
            bail!("MTP window of {t_n} tokens: need at least 3");
        }
        let mut st = SeqState::new(&cfg, t_n);
        model.forward(&mut st, win, Logits::All, &mut out)?;
        let trunk: Vec<u32> = out.logits.chunks_exact(nv).map(argmax).collect();
        let mut shifted = vec![0.0f32; t_n * d];
        shifted[d..].copy_from_slice(&out.hidden[..(t_n - 1) * d]);
        model.mtp_forward(&mut st, win, &shifted, &mut mout)?;
        let drafts: Vec<u32> = mout.logits.chunks_exact(nv).map(argmax).collect();
        let k = (1..t_n - 1).filter(|&p| drafts[p] == trunk[p]).count();
        per_window.push([k, t_n - 2]);
        ok += k;
        n += t_n - 2;
    }
    let acc_s = t0.elapsed().as_secs_f64();
    println!(
        "hybrid-run MTP depth-1 acceptance (teacher-forced, MTP argmax == trunk argmax), {} windows of {}: {:.4} ({ok}/{n}) [{acc_s:.1} s, {threads} threads]",
        mtp_wins.len(),
        mtp_wins.first().map_or(0, Vec::len),
        ok as f64 / n.max(1) as f64
    );

    // Held-out perplexity.
    let t0 = Instant::now();
    let ppl_wins = windows(&doc, "ppl")?;
    let (mut sum, mut n_tok) = (0.0f64, 0usize);
    for win in &ppl_wins {
        let t_n = win.len() - 1;
        let mut st = SeqState::new(&cfg, t_n);
        model.forward(&mut st, &win[..t_n], Logits::All, &mut out)?;
        for (row, &tgt) in out.logits.chunks_exact(nv).zip(&win[1..]) {
            sum += nll(row, tgt);
        }
        n_tok += t_n;
    }
    let ppl = (sum / n_tok.max(1) as f64).exp();
    let ppl_s = t0.elapsed().as_secs_f64();
    println!(
        "hybrid-run held-out perplexity, {} windows of {}: {ppl:.4} ({n_tok} tokens) [{ppl_s:.1} s]",
        ppl_wins.len(),
        ppl_wins.first().map_or(0, |w| w.len() - 1)
    );
    if let Some(p) = args.get(4) {
        let j = serde_json::json!({
            "model": args[1], "threads": threads,
            "mtp": {"accepted": ok, "total": n, "per_window": per_window, "seconds": acc_s},
            "ppl": {"ppl": ppl, "tokens": n_tok, "seconds": ppl_s},
        });
        std::fs::write(p, serde_json::to_vec_pretty(&j)?)?;
    }
    Ok(())
}
