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

use anyhow::Context;

use crate::generate::{generate, GenParams};
use crate::gpu::{Gpu, GpuModel, GpuSnapshotRing, MAX_K};
use crate::model::qwen35::{Config, Qwen35Weights, SizeBreakdown};
use crate::placement::{parse_size, Plan, PlanRequest, ScratchModel};
use crate::sample::Sampler;
use crate::spec::{generate_speculative, make_drafter, GpuTarget, SpecParams};
use crate::tokenizer::Tokenizer;

use super::run::Args;
use super::text_sink::TextSink;

/// `--gpu-layers` and `--vram-budget`, the same for `hybrid-run` and `hybrid-run serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct PlacementArgs {
    /// Layers on the GPU: `all` runs the whole model on the first CUDA device (falling back to
    /// the CPU, with a log line, when there is none); N keeps the dense FFN of layers N.. on
    /// the CPU; `auto` lets the placement planner pick N under --vram-budget; 0 (default)
    /// runs on the CPU.
    #[arg(long = "gpu-layers", default_value = "0")]
    pub gpu_layers: String,
    /// Device memory the GPU placement may use, e.g. 16G, 15.5GiB, 12000M (binary units).
    /// Default: the free device memory. Given with --gpu-layers 0 or auto, the planner picks
    /// the number of GPU FFN layers; with N or all, it checks that they fit.
    #[arg(long = "vram-budget")]
    pub vram_budget: Option<String>,
}

impl PlacementArgs {
    /// Whether the placement planner runs (a budget was given, or `--gpu-layers auto`).
    pub fn wants_plan(&self) -> bool {
        self.vram_budget.is_some() || self.gpu_layers.trim().eq_ignore_ascii_case("auto")
    }

    /// Whether `--gpu-layers` / `--vram-budget` ask for a GPU placement at all (`all`,
    /// `auto`, N > 0 or a budget); a malformed value of either is an error naming the flag.
    pub fn wants_gpu(&self) -> anyhow::Result<bool> {
        let spec = &self.gpu_layers;
        if let Some(b) = &self.vram_budget {
            parse_size(b).with_context(|| format!("--vram-budget {b:?}"))?;
        }
        let trimmed = spec.trim();
        Ok(trimmed.eq_ignore_ascii_case("all")
            || self.wants_plan()
            || trimmed.parse::<usize>().map_err(|_| {
                anyhow::anyhow!(
                    "--gpu-layers {spec:?}: expected `auto`, `all` or a number of layers"
                )
            })? > 0)
    }
}

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

/// `--gpu-layers auto|all|N|0` with `--vram-budget`: without `auto` and without a budget
/// this is [`open_gpu`]. Otherwise the placement planner fits the trunk, the state for
/// `n_ctx` tokens and `draft_slots` snapshot slots under the budget (given, else the free
/// device memory) and picks N (`auto`, or `0` with a budget) or checks the N asked for; the
/// plan is logged before anything is loaded, and a plan that does not fit is an error that
/// says what would.
pub fn open_planned(
    spec: &str,
    vram_budget: Option<&str>,
    sizes: &SizeBreakdown,
    cfg: &Config,
    n_ctx: usize,
    draft_slots: usize,
) -> anyhow::Result<Option<GpuPlacement>> {
    let s = spec.trim();
    let auto = s.eq_ignore_ascii_case("auto");
    if !auto && vram_budget.is_none() {
        return open_gpu(spec, cfg.n_layer());
    }
    let budget = vram_budget
        .map(|b| parse_size(b).with_context(|| format!("--vram-budget {b:?}")))
        .transpose()?;
    let forced = if auto {
        None
    } else if s.eq_ignore_ascii_case("all") {
        Some(cfg.n_layer())
    } else {
        match s.parse::<usize>().with_context(|| {
            format!("--gpu-layers {spec:?}: expected `auto`, `all` or a number of layers")
        })? {
            0 => None, // the default, with a budget: let the planner choose
            n => Some(n),
        }
    };
    let gpu = match Gpu::new(0) {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!("--gpu-layers {spec}: no usable GPU ({e}); running on the CPU");
            return Ok(None);
        }
    };
    let free = gpu.mem_info().ok().map(|(free, _)| free as u64);
    let (budget_bytes, runtime_reserve_bytes) = match (budget, free) {
        (Some(b), Some(free)) => {
            if b > free + PlanRequest::CARD_RUNTIME_RESERVE {
                tracing::warn!(
                    "--vram-budget {:.2} GiB is more than the {:.2} GiB free on the device; loading may run out of memory",
                    b as f64 / (1u64 << 30) as f64,
                    free as f64 / (1u64 << 30) as f64
                );
            }
            (b, PlanRequest::CARD_RUNTIME_RESERVE)
        }
        (Some(b), None) => (b, PlanRequest::CARD_RUNTIME_RESERVE),
        (None, Some(free)) => (free, PlanRequest::FREE_MEMORY_MARGIN),
        (None, None) => anyhow::bail!(
            "--gpu-layers auto: could not read the device's free memory; give --vram-budget SIZE or a number of layers"
        ),
    };
    let plan = Plan::compute(
        sizes,
        &PlanRequest {
            n_ctx: n_ctx as u64,
            draft_slots: draft_slots as u64,
            budget_bytes,
            runtime_reserve_bytes,
            forced_gpu_layers: forced,
            scratch: ScratchModel::from_config(cfg),
            bandwidths: Default::default(),
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!("{plan}");
    Ok(Some(GpuPlacement {
        gpu,
        n_gpu_ffn: plan.n_gpu_ffn,
    }))
}

/// What a GPU run hands back for `--stats-json`.
pub struct GpuRunDone {
    pub stats: crate::generate::GenStats,
    pub gpu_name: String,
    /// Device memory in use (all processes) after decoding; `None` if it could not be read.
    pub gpu_mem_used_bytes: Option<u64>,
    /// The generated token ids.
    pub tokens: Vec<u32>,
    /// The GPU's PCIe share of CPU-placed FFN rows over the run (hybrid split, where set up).
    pub pcie_share: Option<crate::gpu::share::ShareStats>,
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
    let sampler_cfg = a.sampler_config();
    let (n_draft, adaptive) = super::run::draft_n(a, cfg.mtp_block().is_some(), &sampler_cfg)?;
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
    let mut sink = TextSink::new(tok, rendered, !a.no_display_prompt)?;
    let params = GenParams {
        n_predict: a.n_predict.min(a.ctx - prompt.len()),
        n_batch: a.batch,
    };
    let mut on_token = |t: u32| sink.push(t);
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
                adaptive,
                "speculative decoding on the GPU"
            );
            generate_speculative(
                &mut target,
                drafter.as_mut(),
                prompt,
                &params,
                &SpecParams::new(n_draft, adaptive),
                &mut sampler,
                &|t| tok.is_eog(t),
                &mut on_token,
            )?
        }
    };
    let tokens = sink.finish()?;
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
    let pcie_share = model.take_share_stats().map(|(s, _)| s);
    if let Some(s) = pcie_share.filter(|s| s.calls > 0) {
        eprintln!("{}", s.summary());
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
        pcie_share,
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
    fn the_planner_path_rejects_bad_budgets_and_layer_counts_before_touching_a_gpu() {
        let plan = crate::synth::SynthPlan::new(&crate::synth::SynthOptions {
            preset: crate::synth::Preset::Tiny,
            mix: crate::synth::QuantMix::Q8_0,
            seed: 1,
            vocab_from: None,
        })
        .expect("tiny plan");
        let (cfg, sizes) = (plan.config().clone(), plan.size_breakdown());
        let e = open_planned("auto", Some("12 bananas"), &sizes, &cfg, 256, 0)
            .err()
            .expect("bad unit");
        assert!(format!("{e:#}").contains("unknown unit"), "{e:#}");
        let e = open_planned("most", Some("1G"), &sizes, &cfg, 256, 0)
            .err()
            .expect("bad layer count");
        assert!(e.to_string().contains("expected `auto`, `all`"), "{e}");
        // Without a GPU this falls back to the CPU; with one, the tiny model fits in 1 GiB.
        if let Some(p) = open_planned("auto", Some("1G"), &sizes, &cfg, 256, 2).expect("fits") {
            assert_eq!(p.n_gpu_ffn, cfg.n_layer());
        }
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
