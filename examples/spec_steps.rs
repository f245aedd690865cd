//! Times one speculative step per batch width k on the CPU: the verify forward (k tokens,
//! all logits, GDN snapshots), the same forward without snapshots, and the rollback.
//!
//! `cargo run --release --example spec_steps -- MODEL.gguf [THREADS] [REPS] [KMAX]`

use std::time::Instant;

use hybrid_run::gguf::GgufFile;
use hybrid_run::model::qwen35::{Config, CpuModel, ForwardOutput, Logits, Qwen35Weights, SeqState};
use hybrid_run::spec::{CpuTarget, Target};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: spec_steps MODEL.gguf [THREADS] [REPS] [KMAX]");
    let threads: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let reps: usize = args.get(3).map_or(Ok(7), |s| s.parse())?;
    let kmax: usize = args.get(4).map_or(Ok(6), |s| s.parse())?;
    let file = GgufFile::open(std::path::Path::new(path))?;
    let cfg = Config::from_gguf(&file)?;
    let w = Qwen35Weights::load(&file, &cfg)?;
    let mut model = CpuModel::new(cfg.clone(), w, threads);
    let nv = cfg.n_vocab as u32;
    let toks: Vec<u32> = (0..64u32).map(|i| (i * 7919 + 13) % nv).collect();
    let mut out = ForwardOutput::default();
    let mut st = SeqState::new(&cfg, 64);
    let mut target = CpuTarget::new(&mut model, &mut st, kmax.max(2) - 1);
    target.forward(&toks[..32], Logits::None, &mut out)?;
    let p0 = target.n_past();
    println!("model {path}, threads {threads}, reps {reps} (median; ring allocated once)");
    println!("k | verify ms | T(k)/T(1) | no-snapshot ms | T(k)/T(1) | rollback ms");
    let (mut t1, mut t1p) = (0.0, 0.0);
    for k in 1..=kmax {
        let batch = &toks[32..32 + k];
        let (mut tv, mut tp, mut tr) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            // Attention rows are overwritten; the GDN state drifts, which timing ignores.
            target.st.n_past = p0;
            let t = Instant::now();
            target.forward(batch, Logits::All, &mut out)?;
            tp.push(t.elapsed().as_secs_f64() * 1e3);
            target.st.n_past = p0;
            let t = Instant::now();
            target.verify(batch, &mut out)?;
            tv.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            target.keep(1)?;
            tr.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (v, p) = (median(tv), median(tp));
        if k == 1 {
            (t1, t1p) = (v, p);
        }
        println!(
            "{k} | {v:.2} | {:.2} | {p:.2} | {:.2} | {:.3}",
            v / t1,
            p / t1p,
            median(tr)
        );
    }
    Ok(())
}
