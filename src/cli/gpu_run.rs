//! `--gpu-layers`: where the model runs, and the generation loop on the GPU engine.
//!
//! `0` keeps everything on the CPU. `all` (or any count >= the number of layers) runs the
//! whole model on the first CUDA device. `N` in between is the hybrid split: every mixer
//! (attention, GDN), the KV caches and GDN states, the LM head and the dense FFN of the first
//! N layers on the GPU; the dense FFN of the other layers on the CPU (simd kernels, weights
//! read from the mmap). Without a usable device (no driver, no libnvrtc, an old GPU) one
//! warning says so and the CPU engine runs instead. Speculative decoding (`--draft-n`,
//! `--draft`) runs on every placement through [`GpuTarget`]; its GDN snapshot ring is
//! allocated on the device before the weights.

use std::io::Write;

use anyhow::Context;

use crate::generate::{generate, GenParams};
use crate::gpu::{Gpu, GpuModel, GpuSnapshotRing, MAX_K};
use crate::model::qwen35::{Config, Qwen35Weights};
use crate::sample::{Sampler, SamplerConfig};
use crate::spec::{generate_speculative, make_drafter, GpuTarget, SpecParams};
use crate::tokenizer::{StreamDecoder, Tokenizer};

use super::run::Args;

/// The opened GPU and how many layers' dense FFN it holds.
pub struct GpuPlacement {
    pub gpu: Gpu,
    pub n_gpu_ffn: usize,
}

/// Parses `--gpu-layers` and opens the GPU when any layer should run there.
/// `Ok(None)`: run on the CPU (asked for, or no usable GPU, which is logged).
pub fn open_gpu(spec: &str, n_layer: usize) -> anyhow::Result<Option<GpuPlacement>> {
    let s = spec.trim();
    let n = if s.eq_ignore_ascii_case("all") {
        n_layer
    } else {
        s.parse::<usize>().with_context(|| {
            format!("--gpu-layers {spec:?}: expected `all` or a number of layers")
        })?
    };
    if n == 0 {
        return Ok(None);
    }
    match Gpu::new(0) {
        Ok(gpu) => Ok(Some(GpuPlacement {
            gpu,
            n_gpu_ffn: n.min(n_layer),
        })),
        Err(e) => {
            tracing::warn!("--gpu-layers {spec}: no usable GPU ({e}); running on the CPU");
            Ok(None)
        }
    }
}

/// What a GPU run hands back for `--stats-json`.
pub struct GpuRunDone {
    pub stats: crate::generate::GenStats,
    pub gpu_name: String,
    /// Device memory in use (all processes) after decoding; `None` if it could not be read.
    pub gpu_mem_used_bytes: Option<u64>,
    /// The generated token ids.
    pub tokens: Vec<u32>,
}

/// The generation loop of `hybrid-run` on the GPU engine (whole model or hybrid split).
pub fn run(
    a: &Args,
    place: GpuPlacement,
    cfg: &Config,
    weights: &Qwen35Weights<'_>,
    tok: &Tokenizer,
    rendered: &str,
    prompt: &[u32],
) -> anyhow::Result<GpuRunDone> {
    let threads = a.threads.unwrap_or_else(simd::pool::physical_cores).max(1);
    let sampler_cfg = SamplerConfig {
        temperature: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: a.repeat_last_n,
        seed: a.seed,
    };
    let n_draft = super::run::draft_n(a, cfg.mtp_block().is_some(), &sampler_cfg)?;
    if n_draft >= MAX_K {
        anyhow::bail!(
            "--draft-n {n_draft} is too large on the GPU: a verify batch is one pass of at most {MAX_K} tokens, so at most {} drafts",
            MAX_K - 1
        );
    }
    // The snapshot ring first, before the weights: its slots are the memory speculation
    // cannot do without, and running out shows now rather than mid-decode.
    let ring = if n_draft > 0 {
        let r = GpuSnapshotRing::new(&place.gpu, cfg, n_draft)?;
        tracing::info!(
            "GDN snapshot ring on the GPU: {n_draft} slots, {:.1} MiB",
            r.bytes() as f64 / (1u64 << 20) as f64
        );
        Some(r)
    } else {
        None
    };
    let placement_threads = if place.n_gpu_ffn >= cfg.n_layer() {
        1
    } else {
        threads
    };
    let mut model = if place.n_gpu_ffn >= cfg.n_layer() {
        GpuModel::new(place.gpu, cfg.clone(), weights)?
    } else {
        GpuModel::new_hybrid(place.gpu, cfg.clone(), weights, place.n_gpu_ffn, threads)?
    };
    let mut st = model.new_state(a.ctx)?;
    tracing::info!(
        "GPU sequence state for {} tokens: {:.1} MiB (f16 KV cache + GDN state)",
        a.ctx,
        st.bytes as f64 / (1u64 << 20) as f64
    );
    let mut sampler = Sampler::new(sampler_cfg);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !a.no_display_prompt {
        write!(out, "{rendered}")?;
        out.flush()?;
    }
    let mut dec = StreamDecoder::new();
    let mut io_err = None;
    let mut tokens: Vec<u32> = Vec::new();
    let params = GenParams {
        n_predict: a.n_predict.min(a.ctx - prompt.len()),
        n_batch: a.batch,
    };
    let mut on_token = |t: u32| {
        tokens.push(t);
        let piece = tok.token_to_piece(t, false).unwrap_or(&[]);
        let s = dec.push(piece);
        if let Err(e) = out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
            io_err = Some(e);
            return false;
        }
        true
    };
    let stats = match ring {
        None => generate(
            &mut model,
            &mut st,
            prompt,
            &params,
            &mut sampler,
            &|t| tok.is_eog(t),
            &mut on_token,
        )?,
        Some(ring) => {
            let mut target = GpuTarget::new(&mut model, &mut st, ring, placement_threads);
            let mut drafter = make_drafter(a.draft, &target)?;
            tracing::info!(
                drafter = drafter.name(),
                draft_n = n_draft,
                adaptive = a.draft_adaptive,
                "speculative decoding on the GPU"
            );
            generate_speculative(
                &mut target,
                drafter.as_mut(),
                prompt,
                &params,
                &SpecParams {
                    draft_n: n_draft,
                    adaptive: a.draft_adaptive,
                },
                &mut sampler,
                &|t| tok.is_eog(t),
                &mut on_token,
            )?
        }
    };
    write!(out, "{}", dec.finish())?;
    writeln!(out)?;
    if let Some(e) = io_err {
        return Err(e.into());
    }
    eprintln!(
        "prompt: {} tokens, {:.1} t/s | decode: {} tokens, {:.2} t/s | GPU {} | stop: {}",
        stats.n_prompt,
        stats.prompt_tps,
        stats.n_decode,
        stats.decode_tps,
        model.gpu().info().name,
        stats.stop
    );
    if let Some(spec) = &stats.spec {
        eprintln!("{}", spec.summary());
    }
    let gpu_mem_used_bytes = model
        .gpu()
        .mem_info()
        .ok()
        .map(|(free, total)| total.saturating_sub(free) as u64);
    Ok(GpuRunDone {
        stats,
        gpu_name: model.gpu().info().name.clone(),
        gpu_mem_used_bytes,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_layers_zero_means_the_cpu_and_nonsense_is_an_error() {
        assert!(open_gpu("0", 8).expect("0 parses").is_none());
        let e = open_gpu("most", 8).err().expect("`most` is rejected");
        assert!(e.to_string().contains("expected `all` or a number"), "{e}");
    }

    #[test]
    fn without_a_usable_gpu_all_falls_back_to_the_cpu_without_panicking() {
        // On a machine with a GPU this opens it instead; either way no panic and no error.
        let r = open_gpu("all", 8).expect("no error either way");
        if let Some(p) = r {
            assert_eq!(p.n_gpu_ffn, 8);
        }
        let r = open_gpu("3", 8).expect("no error either way");
        if let Some(p) = r {
            assert_eq!(p.n_gpu_ffn, 3);
        }
    }
}
