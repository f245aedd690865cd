//! CUDA graphs (with programmatic dependent launch where the device has it) against eager
//! launches in plain stream order: replaying a captured decode step must give the same bits
//! as launching its kernels one by one, at every position (the position is read from
//! device memory), whole GPU and hybrid (graphs between the CPU FFN layers), for plain
//! decode steps, short prompt chunks and verify batches with snapshots. Likewise the fused
//! norm kernels against the separate kernels they replace.

use std::path::Path;

use hybrid_run::gguf::GgufFile;
use hybrid_run::gpu::{Gpu, GpuModel, GpuSnapshotRing};
use hybrid_run::model::qwen35::{Config, ForwardOutput, Logits, Qwen35Weights};
use hybrid_run::sample::argmax;

use super::{model_name, placements, spec::open_model, tokens, Report, R};

/// Everything one run produced: the logit and hidden rows of every call, bit for bit.
fn run(gm: &mut GpuModel<'_>, cfg: &Config, prompt: &[u32], graphs: bool) -> R<Vec<Vec<u32>>> {
    gm.set_graphs(graphs);
    // 1024 positions: four attention splits, of which the steps below use one or two (the
    // graph launches all four).
    let mut st = gm.new_state(1024)?;
    let mut ring = GpuSnapshotRing::new(gm.gpu(), cfg, 3)?;
    let mut out = ForwardOutput::default();
    let mut rows: Vec<Vec<u32>> = Vec::new();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    // The prompt in chunks of 5 (a shape seen more than once, so it is captured too).
    for c in prompt.chunks(5) {
        gm.forward(&mut st, c, Logits::All, &mut out)?;
        rows.push(bits(&out.logits));
        rows.push(bits(&out.hidden));
    }
    let mut tok = argmax(&out.logits[out.logits.len() - cfg.n_vocab..]) as u32;
    for step in 0..48 {
        if step % 6 == 5 {
            // A verify batch of 4 with snapshots, rolled back to its second token.
            let batch = [tok, (tok + 1) % cfg.n_vocab as u32, tok, 7];
            let n_past = st.n_past;
            ring.begin(batch.len());
            gm.forward_with_snapshots(&mut st, &batch, &mut out, &mut ring)?;
            rows.push(bits(&out.logits));
            rows.push(bits(&out.hidden));
            gm.restore_snapshot(&ring, 1, &mut st, n_past + 2)?;
            tok = argmax(&out.logits[cfg.n_vocab..2 * cfg.n_vocab]) as u32;
        } else {
            gm.forward(&mut st, &[tok], Logits::Last, &mut out)?;
            rows.push(bits(&out.logits));
            tok = argmax(&out.logits) as u32;
        }
    }
    let (g, _) = gm.forward_greedy(&mut st, &[tok])?;
    rows.push(vec![g]);
    Ok(rows)
}

pub fn check(path: &Path, threads: usize, rep: &mut Report) -> R<()> {
    let file = GgufFile::open(path)?;
    let cfg = Config::from_gguf(&file)?;
    let w = Qwen35Weights::load(&file, &cfg)?;
    let name = model_name(path);
    // Crosses position 256, the first attention split boundary.
    let prompt = tokens(250, cfg.n_vocab, 17);
    for (place, n_gpu_ffn) in placements(&cfg) {
        let mut gm = open_model(Gpu::new(0)?, &cfg, &w, n_gpu_ffn, threads)?;
        // Chunks of 5 tokens: keep the GEMM path out of the prompt, so both runs take the
        // graph-able path everywhere.
        gm.set_gemm_min_tokens(usize::MAX);
        // The reference: eager launches, plain stream order (no programmatic dependent
        // launch); then graphs with PDL where the device has it.
        let pdl = gm.gpu().pdl();
        gm.set_pdl(false);
        let eager = run(&mut gm, &cfg, &prompt, false)?;
        gm.set_pdl(pdl);
        let (r0, c0) = gm.graph_stats();
        let graphed = run(&mut gm, &cfg, &prompt, true)?;
        let (r1, c1) = gm.graph_stats();
        let same = eager == graphed;
        let first = eager.iter().zip(&graphed).position(|(a, b)| a != b);
        rep.truth(
            &format!("{name} graphs+PDL {place}: every logit/hidden bit == eager"),
            same && r1 - r0 > 40 && c1 > c0 && r0 == 0,
            &format!(
                "{} replays, {} captures{}",
                r1 - r0,
                c1 - c0,
                first.map_or(String::new(), |i| format!(", first diff in call {i}"))
            ),
        );
        // The fused norm kernels (residual add + RMSNorm + quantization, gated norm and
        // SwiGLU + quantization) against the separate kernels, graphs on in both runs.
        gm.set_fused(false);
        let unfused = run(&mut gm, &cfg, &prompt, true)?;
        gm.set_fused(true);
        let first = unfused.iter().zip(&graphed).position(|(a, b)| a != b);
        rep.truth(
            &format!("{name} fused norms {place}: every logit/hidden bit == separate kernels"),
            unfused == graphed,
            &first.map_or("bit-exact".into(), |i| format!("first diff in call {i}")),
        );
    }
    Ok(())
}
