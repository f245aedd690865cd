//! Where a decode token's time goes: `HYBRID_OPPROF=1 decode_prof MODEL [THREADS] [TOKENS]`.
use std::time::Instant;

use hybrid_run::gguf::GgufFile;
use hybrid_run::model::qwen35::{Config, CpuModel, ForwardOutput, Logits, Qwen35Weights, SeqState};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let threads: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let n: usize = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let file = if std::env::var_os("MMAP").is_some() {
        GgufFile::open(std::path::Path::new(path))
    } else {
        GgufFile::open_resident(std::path::Path::new(path))
    }?;
    let cfg = Config::from_gguf(&file)?;
    let w = Qwen35Weights::load(&file, &cfg)?;
    let mut model = CpuModel::new(cfg.clone(), w, threads);
    let nv = cfg.n_vocab as u32;
    let mut st = SeqState::new(&cfg, 64 + n + 16);
    let mut out = ForwardOutput::default();
    let toks: Vec<u32> = (0..16u32).map(|i| (i * 7919 + 13) % nv).collect();
    model.forward(&mut st, &toks, Logits::Last, &mut out)?;
    for i in 0..8u32 {
        model.forward(&mut st, &[(i * 31 + 5) % nv], Logits::Last, &mut out)?;
    }
    simd::prof::reset();
    let t = Instant::now();
    for i in 0..n as u32 {
        model.forward(&mut st, &[(i * 131 + 7) % nv], Logits::Last, &mut out)?;
    }
    let step = t.elapsed().as_secs_f64() * 1e3 / n as f64;
    println!(
        "{n} tokens, {threads} threads: {step:.2} ms/token = {:.2} t/s",
        1e3 / step
    );
    let mut tot = simd::prof::totals();
    tot.sort_by_key(|e| std::cmp::Reverse(e.2));
    println!(
        "{:<34} {:>8} {:>10} {:>7}",
        "scope", "n/token", "ms/token", "% step"
    );
    for (l, c, d) in tot {
        let ms = d.as_secs_f64() * 1e3 / n as f64;
        println!(
            "{l:<34} {:>8.1} {ms:>10.3} {:>6.1}%",
            c as f64 / n as f64,
            100.0 * ms / step
        );
    }
    Ok(())
}
