//! The GPU engine behind the server: the whole model on the GPU (`--gpu-layers all`) or the
//! hybrid split (`--gpu-layers N`: dense FFN of layers N.. on the CPU). Every request starts
//! from an empty sequence state. Speculative decoding (when configured) verifies drafts on
//! the GPU with a device snapshot ring allocated once, before the weights, and reused.

use crate::generate::{generate, GenParams, GenStats};
use crate::gguf::GgufFile;
use crate::gpu::model::GpuSnapshotRing;
use crate::gpu::{Gpu, GpuModel, GpuSeqState, MAX_K};
use crate::model::qwen35::{Config, Qwen35Weights};
use crate::sample::Sampler;
use crate::spec::{generate_speculative, make_drafter, GpuTarget, SpecParams};

use super::generator::{Generator, GeneratorError, SpecConfig};

pub struct GpuGenerator<'a> {
    model: GpuModel<'a>,
    st: GpuSeqState,
    n_ctx: usize,
    n_batch: usize,
    n_gpu_ffn: usize,
    n_layer: usize,
    /// Speculation settings and the device ring they use (taken while a request runs).
    spec: Option<SpecConfig>,
    ring: Option<GpuSnapshotRing>,
    threads: usize,
}

impl<'a> GpuGenerator<'a> {
    /// Uploads the model to `gpu`; `n_gpu_ffn` layers keep their dense FFN on the GPU.
    pub fn new(
        file: &'a GgufFile,
        gpu: Gpu,
        n_gpu_ffn: usize,
        n_threads: usize,
        n_ctx: usize,
        n_batch: usize,
        spec: Option<SpecConfig>,
    ) -> Result<GpuGenerator<'a>, GeneratorError> {
        let cfg = Config::from_gguf(file)?;
        let weights = Qwen35Weights::load(file, &cfg)?;
        let n_layer = cfg.n_layer();
        if let Some(sc) = &spec {
            if sc.draft_n >= MAX_K {
                return Err(GeneratorError::Backend(format!(
                    "--draft-n {} is too large on the GPU: a verify batch is one pass of at most {MAX_K} tokens",
                    sc.draft_n
                )));
            }
        }
        // The ring before the weights: speculation cannot run without it.
        let ring = match &spec {
            Some(sc) => Some(
                GpuSnapshotRing::new(&gpu, &cfg, sc.draft_n)
                    .map_err(|e| GeneratorError::Backend(format!("GPU snapshot ring: {e}")))?,
            ),
            None => None,
        };
        let model = if n_gpu_ffn >= n_layer {
            GpuModel::new(gpu, cfg, &weights)?
        } else {
            GpuModel::new_hybrid(gpu, cfg, &weights, n_gpu_ffn, n_threads.max(1))?
        };
        let st = model.new_state(n_ctx)?;
        Ok(GpuGenerator {
            model,
            st,
            n_ctx,
            n_batch: n_batch.max(1),
            n_gpu_ffn: n_gpu_ffn.min(n_layer),
            n_layer,
            spec,
            ring,
            threads: if n_gpu_ffn >= n_layer {
                1
            } else {
                n_threads.max(1)
            },
        })
    }
}

impl Generator for GpuGenerator<'_> {
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn plan(&self) -> Vec<String> {
        let name = self.model.gpu().info().name.clone();
        vec![
            format!(
                "GPU {name}: every attention/GDN layer, KV cache, recurrent state, LM head and MTP block; dense FFN of {} of {} layers",
                self.n_gpu_ffn, self.n_layer
            ),
            format!(
                "CPU: dense FFN of {} layers from the memory map; {:.1} MiB of weights on the GPU",
                self.n_layer - self.n_gpu_ffn,
                self.model.weight_bytes() as f64 / (1u64 << 20) as f64
            ),
        ]
    }

    fn generate(
        &mut self,
        prompt: &[u32],
        n_predict: usize,
        sampler: &mut Sampler,
        is_eog: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenStats, GeneratorError> {
        self.st
            .reset(self.model.gpu())
            .map_err(|e| GeneratorError::Backend(format!("resetting the GPU state: {e}")))?;
        let params = GenParams {
            n_predict,
            n_batch: self.n_batch,
        };
        let spec = self
            .spec
            .clone()
            .filter(|s| sampler.is_deterministic() || s.with_temperature);
        match (spec, self.ring.take()) {
            (Some(sc), Some(ring)) => {
                let mut target = GpuTarget::new(&mut self.model, &mut self.st, ring, self.threads);
                let res = make_drafter(sc.kind, &target).and_then(|mut drafter| {
                    generate_speculative(
                        &mut target,
                        drafter.as_mut(),
                        prompt,
                        &params,
                        &SpecParams::new(sc.draft_n, sc.adaptive),
                        sampler,
                        is_eog,
                        on_token,
                    )
                });
                self.ring = Some(target.into_ring());
                Ok(res?)
            }
            (_, ring) => {
                self.ring = ring;
                Ok(generate(
                    &mut self.model,
                    &mut self.st,
                    prompt,
                    &params,
                    sampler,
                    is_eog,
                    on_token,
                )?)
            }
        }
    }
}
