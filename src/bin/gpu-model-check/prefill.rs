//! The prefill GEMM path (`GpuModel` chunks of >= GEMM_MIN_TOKENS tokens through cuBLAS)
//! against the chunk-of-8 mat-vec path, both measured against the f32 reference model, and
//! its benchmark (`--prefill-bench PATH [--prefill-gpu-ffn N]`).
//!
//! Checks per model (skipped with a note when cuBLAS is unavailable):
//! - last-token logits after a 5-token call (mat-vec) and a 70-token call (one GEMM chunk,
//!   attention in groups of 8 at pos0 = 5), and after a 600-token call (GEMM chunks of 512 and
//!   88): rel L2 of the GEMM path vs the f32 reference <= max(1.5 x the mat-vec path's, 1e-2).
//!   The GEMM path rounds activations to f16 (2^-11 relative) where the mat-vec quantizes
//!   them to 8 bits per 32 values (~2^-8), so it should be the closer of the two; 1e-2 is the
//!   floor for F32-weight models, whose mat-vec path has no activation rounding at all;
//! - greedy decoding of 16 tokens after the 600-token prompt equals the reference's up to the
//!   first near tie. The decode steps after the prompt run through the 8-bit mat-vec in both
//!   the GEMM-prefilled and the chunk-of-8-prefilled model, so, as in the main greedy check, a
//!   divergence passes only where the reference's margin between its token and the GEMM
//!   model's is below 4x the largest |chunk-of-8 - reference| logit difference after the
//!   prompt (the decode path's own error scale). (A first device run with the rule "margin
//!   below 5% of the rms logit" failed on tiny-q4_k_m: divergence at step 11, margin 0.62,
//!   rms 2.07, where that model's mat-vec path is 6% (rel L2) off the reference.)

use std::path::Path;
use std::time::Instant;

use hybrid_run::gguf::GgufFile;
use hybrid_run::gpu::{Gpu, GpuModel};
use hybrid_run::model::qwen35::{Config, ForwardOutput, Logits, Qwen35Weights};
use hybrid_run::sample::argmax;

use super::{model_name, row_errors, tokens, Report, R};

/// Last-token logits of `calls` (each one forward call) from a fresh state.
fn last_logits(m: &mut GpuModel<'_>, calls: &[&[u32]], n_ctx: usize) -> R<Vec<f32>> {
    let mut st = m.new_state(n_ctx)?;
    let mut out = ForwardOutput::default();
    for c in calls {
        m.forward(&mut st, c, Logits::Last, &mut out)?;
    }
    Ok(out.logits)
}

/// Greedy continuation of `n` tokens after `prompt`, with the logits of each step.
fn greedy(m: &mut GpuModel<'_>, prompt: &[u32], n: usize, n_ctx: usize) -> R<Vec<(u32, Vec<f32>)>> {
    let mut st = m.new_state(n_ctx)?;
    let mut out = ForwardOutput::default();
    m.forward(&mut st, prompt, Logits::Last, &mut out)?;
    let mut res = Vec::new();
    for _ in 0..n {
        let tok = argmax(&out.logits) as u32;
        res.push((tok, out.logits.clone()));
        m.forward(&mut st, &[tok], Logits::Last, &mut out)?;
    }
    Ok(res)
}

pub fn check(path: &Path, rep: &mut Report) -> R<()> {
    let file = GgufFile::open(path)?;
    let cfg = Config::from_gguf(&file)?;
    let name = model_name(path);
    let nv = cfg.n_vocab;
    let n_ctx = 640;
    let wq = Qwen35Weights::load(&file, &cfg)?;
    let mut gm = GpuModel::new(Gpu::new(0)?, cfg.clone(), &wq)?;
    if !gm.gemm_available() {
        println!("{name}: prefill GEMM path unavailable (no cuBLAS?): GEMM checks skipped");
        return Ok(());
    }
    let wr = Qwen35Weights::load(&file, &cfg)?;
    let mut rm = GpuModel::new_f32_reference(Gpu::new(0)?, cfg.clone(), &wr)?;
    let a = tokens(5, nv, 11);
    let b = tokens(70, nv, 12);
    let long = tokens(600, nv, 13);
    let cases: [(&str, Vec<&[u32]>); 2] = [
        ("5 + 70 tokens", vec![&a[..], &b[..]]),
        ("600 tokens", vec![&long[..]]),
    ];
    let mut decode_err = 0.0f64;
    for (what, calls) in &cases {
        let r = last_logits(&mut rm, calls, n_ctx)?;
        gm.set_gemm_min_tokens(usize::MAX);
        let m8 = last_logits(&mut gm, calls, n_ctx)?;
        gm.set_gemm_min_tokens(hybrid_run::gpu::GEMM_MIN_TOKENS);
        let gg = last_logits(&mut gm, calls, n_ctx)?;
        let (e8, max8) = row_errors(&m8, &r, nv);
        decode_err = decode_err.max(max8);
        let (eg, _) = row_errors(&gg, &r, nv);
        let (egm, _) = row_errors(&gg, &m8, nv);
        println!(
            "{name}: {what}: last logits rel L2 vs f32 reference: GEMM {eg:.3e}, chunk-of-8 {e8:.3e}; GEMM vs chunk-of-8 {egm:.3e}"
        );
        rep.check(
            &format!("{name}: {what}: GEMM-ref <= max(1.5 x mat-vec-ref, 1e-2)"),
            eg,
            (1.5 * e8).max(1e-2),
        );
    }
    let want = greedy(&mut rm, &long, 16, n_ctx)?;
    let got = greedy(&mut gm, &long, 16, n_ctx)?;
    let mut detail = format!("{} tokens equal", want.len());
    let mut ok = true;
    if let Some(i) = (0..want.len()).find(|&i| want[i].0 != got[i].0) {
        let l = &want[i].1;
        let margin = (l[want[i].0 as usize] - l[got[i].0 as usize]) as f64;
        ok = margin <= 4.0 * decode_err;
        detail = format!("diverge at {i}: margin {margin:.2e}, 4 x {decode_err:.2e}");
    }
    rep.truth(
        &format!("{name}: greedy after 600-token GEMM prefill == reference"),
        ok,
        &detail,
    );
    // Hybrid split with prefill weight streaming: the CPU-placed FFN layers of a GEMM chunk
    // run on the GPU from streamed copies of the same bytes, through the same kernels and
    // cuBLAS call as the full-GPU model, so the prefill logits must be bit-identical to the
    // full-GPU GEMM path's (and only close to the CPU-FFN path's).
    let n_gpu = cfg.n_layer() / 2;
    let wh = Qwen35Weights::load(&file, &cfg)?;
    let mut hm = GpuModel::new_hybrid(Gpu::new(0)?, cfg.clone(), &wh, n_gpu, 4)?;
    if !hm.streaming_available() {
        rep.truth(
            &format!("{name}: hybrid weight streaming available"),
            false,
            "no streamer",
        );
        return Ok(());
    }
    // Only the single 600-token call: in "5 + 70" the 5-token call runs the hybrid's
    // CPU-placed FFN on the CPU (below the streaming threshold), so the states differ.
    for (what, calls) in &cases[1..] {
        let full = last_logits(&mut gm, calls, n_ctx)?;
        hm.set_stream_min_tokens(hybrid_run::gpu::STREAM_MIN_TOKENS);
        hm.take_stream_stats();
        let streamed = last_logits(&mut hm, calls, n_ctx)?;
        let (bytes, _) = hm.take_stream_stats();
        hm.set_stream_min_tokens(usize::MAX);
        let cpu = last_logits(&mut hm, calls, n_ctx)?;
        let max_diff = full
            .iter()
            .zip(&streamed)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let (ec, _) = row_errors(&cpu, &full, nv);
        println!(
            "{name}: {what}: hybrid {n_gpu}/{} streamed ({:.1} MiB) vs full GPU max |diff| {max_diff:.3e}; CPU-FFN hybrid vs full GPU rel L2 {ec:.3e}",
            cfg.n_layer(),
            bytes as f64 / (1u64 << 20) as f64
        );
        rep.truth(
            &format!("{name}: {what}: streamed hybrid prefill == full-GPU GEMM path bit for bit"),
            max_diff == 0.0 && bytes > 0 && streamed.len() == full.len(),
            &format!("max |diff| {max_diff:e}, {bytes} bytes streamed"),
        );
    }
    Ok(())
}

/// Seconds of one prefill of `n` tokens from a fresh state (greedy pick of the last).
fn time_prefill(m: &mut GpuModel<'_>, toks: &[u32], n_ctx: usize) -> R<f64> {
    let mut st = m.new_state(n_ctx)?;
    let t0 = Instant::now();
    m.forward_greedy(&mut st, toks)?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Best of `reps` prefills.
fn best(m: &mut GpuModel<'_>, toks: &[u32], n_ctx: usize, reps: usize) -> R<f64> {
    let mut b = f64::INFINITY;
    for _ in 0..reps {
        b = b.min(time_prefill(m, toks, n_ctx)?);
    }
    Ok(b)
}

pub fn bench(path: &Path, gpu_ffn: Option<usize>, threads: usize) -> R<()> {
    let file = GgufFile::open(path)?;
    let cfg = Config::from_gguf(&file)?;
    let w = Qwen35Weights::load(&file, &cfg)?;
    let nv = cfg.n_vocab;
    let n_ctx = 2048 + 64;
    let full = gpu_ffn.is_none_or(|n| n >= cfg.n_layer());
    let mut m = match gpu_ffn {
        Some(n) if n < cfg.n_layer() => {
            GpuModel::new_hybrid(Gpu::new(0)?, cfg.clone(), &w, n, threads)?
        }
        _ => GpuModel::new(Gpu::new(0)?, cfg.clone(), &w)?,
    };
    let place = if full {
        "full GPU".to_string()
    } else {
        format!("hybrid --gpu-layers {}", gpu_ffn.unwrap_or(0))
    };
    println!(
        "prefill bench: {place}, GEMM path available: {}",
        m.gemm_available()
    );
    let toks = tokens(2048, nv, 5);
    m.forward_greedy(&mut m.new_state(n_ctx)?, &toks[..64])?; // warm-up (cuBLAS, caches)
    if full {
        // Threshold: chunk-of-8 vs one GEMM chunk at small prompt lengths.
        for n in [16, 24, 32, 48, 64, 128] {
            m.set_gemm_min_tokens(usize::MAX);
            let t8 = best(&mut m, &toks[..n], n_ctx, 3)?;
            m.set_gemm_min_tokens(9);
            let tg = best(&mut m, &toks[..n], n_ctx, 3)?;
            println!(
                "pp{n}: chunk-of-8 {:.1} t/s, GEMM {:.1} t/s",
                n as f64 / t8,
                n as f64 / tg
            );
        }
        m.set_gemm_min_tokens(hybrid_run::gpu::GEMM_MIN_TOKENS);
    }
    if !full {
        // Weight streaming vs the CPU FFN for the GEMM chunks, by prompt length.
        println!("weight streaming available: {}", m.streaming_available());
        for n in [48, 64, 128, 256, 512, 2048] {
            m.set_stream_min_tokens(hybrid_run::gpu::STREAM_MIN_TOKENS);
            m.take_stream_stats();
            let ts = best(&mut m, &toks[..n], n_ctx, 2)?;
            let (bytes, host_s) = m.take_stream_stats();
            let (bytes, host_s) = (bytes as f64 / 2.0, host_s / 2.0);
            let cpu = if n <= 128 {
                m.set_stream_min_tokens(usize::MAX);
                m.take_cpu_ffn_secs();
                let t = best(&mut m, &toks[..n], n_ctx, 1)?;
                format!("{:.1} t/s", n as f64 / t)
            } else {
                "not run (CPU-bound, see pp128)".into()
            };
            println!(
                "{place}: pp{n} streamed {:.1} t/s ({ts:.3} s; {:.2} GB streamed, {:.1} GB/s over the whole prefill, host copy {:.3} s = {:.1} GB/s) | CPU FFN {cpu}",
                n as f64 / ts,
                bytes / 1e9,
                bytes / ts / 1e9,
                host_s,
                bytes / host_s.max(1e-9) / 1e9
            );
        }
        m.set_stream_min_tokens(hybrid_run::gpu::STREAM_MIN_TOKENS);
    }
    let lens: &[usize] = if full { &[512, 2048] } else { &[512] };
    for &n in lens {
        if !full {
            m.set_stream_min_tokens(usize::MAX);
        }
        m.take_cpu_ffn_secs();
        let t = best(&mut m, &toks[..n], n_ctx, if full { 2 } else { 1 })?;
        let cpu = m.take_cpu_ffn_secs();
        println!(
            "{place}: pp{n} GEMM path, FFN on the CPU where placed {:.1} t/s ({:.3} s; CPU FFN about {:.3} s of it)",
            n as f64 / t,
            t,
            cpu
        );
        m.set_stream_min_tokens(hybrid_run::gpu::STREAM_MIN_TOKENS);
    }
    m.set_gemm_min_tokens(usize::MAX);
    m.take_cpu_ffn_secs();
    let t = best(&mut m, &toks[..512], n_ctx, 1)?;
    let cpu = m.take_cpu_ffn_secs();
    println!(
        "{place}: pp512 chunk-of-8 path {:.1} t/s ({t:.3} s; CPU FFN {cpu:.3} s)",
        512.0 / t
    );
    // Decode after a 512-token prompt: the path is unchanged (1-token mat-vec).
    m.set_gemm_min_tokens(hybrid_run::gpu::GEMM_MIN_TOKENS);
    let mut st = m.new_state(n_ctx)?;
    let (mut tok, _) = m.forward_greedy(&mut st, &toks[..512])?;
    let t0 = Instant::now();
    for _ in 0..32 {
        tok = m.forward_greedy(&mut st, &[tok])?.0;
    }
    println!(
        "{place}: decode tg32 after pp512 {:.2} t/s",
        32.0 / t0.elapsed().as_secs_f64()
    );
    Ok(())
}
