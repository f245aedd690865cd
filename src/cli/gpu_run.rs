//! `--gpu-layers`: where the model runs, and the generation loop on the GPU engine.
//!
//! `0` keeps everything on the CPU. `all` (or any count >= the number of layers) runs the
//! whole model on the first CUDA device; without a usable device (no driver, no libnvrtc,
//! an old GPU) one warning says so and the CPU engine runs instead. A partial split is not
//! implemented yet and is refused with a clear message.

use std::io::Write;

use anyhow::{bail, Context};

use crate::generate::{generate, GenParams};
use crate::gpu::{Gpu, GpuModel};
use crate::model::qwen35::{Config, Qwen35Weights};
use crate::sample::{Sampler, SamplerConfig};
use crate::tokenizer::{StreamDecoder, Tokenizer};

use super::run::Args;

/// Parses `--gpu-layers` and opens the GPU when the whole model should run there.
/// `Ok(None)`: run on the CPU (asked for, or no usable GPU, which is logged).
pub fn open_gpu(spec: &str, n_layer: usize) -> anyhow::Result<Option<Gpu>> {
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
    if n < n_layer {
        bail!(
            "--gpu-layers {n}: splitting the layers between the GPU and the CPU is not \
             implemented yet; use --gpu-layers all (the model has {n_layer}) or 0"
        );
    }
    match Gpu::new(0) {
        Ok(g) => Ok(Some(g)),
        Err(e) => {
            tracing::warn!("--gpu-layers {spec}: no usable GPU ({e}); running on the CPU");
            Ok(None)
        }
    }
}

/// The generation loop of `hybrid-run` with the whole model on `gpu`.
pub fn run(
    a: &Args,
    gpu: Gpu,
    cfg: &Config,
    weights: &Qwen35Weights<'_>,
    tok: &Tokenizer,
    rendered: &str,
    prompt: &[u32],
) -> anyhow::Result<()> {
    if a.draft_n.unwrap_or(0) > 0 {
        tracing::warn!("speculative decoding runs on the CPU engine only for now; decoding on the GPU without it");
    }
    let mut model = GpuModel::new(gpu, cfg.clone(), weights)?;
    let mut st = model.new_state(a.ctx)?;
    tracing::info!(
        "GPU sequence state for {} tokens: {:.1} MiB (f16 KV cache + GDN state)",
        a.ctx,
        st.bytes as f64 / (1u64 << 20) as f64
    );
    let mut sampler = Sampler::new(SamplerConfig {
        temperature: a.temp,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        repeat_penalty: a.repeat_penalty,
        repeat_last_n: a.repeat_last_n,
        seed: a.seed,
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if !a.no_display_prompt {
        write!(out, "{rendered}")?;
        out.flush()?;
    }
    let mut dec = StreamDecoder::new();
    let mut io_err = None;
    let params = GenParams {
        n_predict: a.n_predict.min(a.ctx - prompt.len()),
        n_batch: a.batch,
    };
    let stats = generate(
        &mut model,
        &mut st,
        prompt,
        &params,
        &mut sampler,
        &|t| tok.is_eog(t),
        &mut |t| {
            let piece = tok.token_to_piece(t, false).unwrap_or(&[]);
            let s = dec.push(piece);
            if let Err(e) = out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
                io_err = Some(e);
                return false;
            }
            true
        },
    )?;
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
    if let Some(p) = &a.stats_json {
        std::fs::write(p, serde_json::to_string_pretty(&stats)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
