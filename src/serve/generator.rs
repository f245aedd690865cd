//! The generation engine seen by the server and the terminal chat: one model, one sequence,
//! one request at a time. [`CpuGenerator`] runs [`crate::generate::generate`] on a
//! [`CpuModel`]; other backends (GPU placement, speculative decoding) implement the same
//! trait and are built by their own [`GeneratorFactory`].

use crate::generate::{generate, GenParams, GenStats};
use crate::gguf::GgufFile;
use crate::model::qwen35::{Config, CpuModel, ForwardOutput, ModelError, Qwen35Weights, SeqState};
use crate::sample::Sampler;
use crate::spec::{
    generate_speculative, make_drafter, CpuTarget, DraftKind, SpecError, SpecParams,
};

use super::load::LoadProgress;

#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A backend's own failure (GPU, speculation), already rendered with its context.
    #[error("{0}")]
    Backend(String),
}

/// Builds a generator from the opened file, on the thread that will run it. The generator
/// may borrow the file (weights stay in the memory map), hence the higher-ranked lifetime.
pub type GeneratorFactory = Box<
    dyn for<'f> FnOnce(
            &'f GgufFile,
            &LoadProgress,
        ) -> Result<Box<dyn Generator + 'f>, GeneratorError>
        + Send,
>;

/// A model with one sequence slot.
pub trait Generator {
    /// Context length in tokens (prompt plus generated).
    fn n_ctx(&self) -> usize;

    /// Lines describing where each part of the model runs and what it costs, printed at
    /// startup ("placement plan").
    fn plan(&self) -> Vec<String>;

    /// Runs `prompt` and samples up to `n_predict` tokens, passing each to `on_token` (which
    /// returns false to stop; that token is then not run through the model). Stops before an
    /// end-of-generation token. Implementations may keep the sequence state between calls
    /// and skip a prompt prefix that is already in it; results must not depend on that.
    fn generate(
        &mut self,
        prompt: &[u32],
        n_predict: usize,
        sampler: &mut Sampler,
        is_eog: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<GenStats, GeneratorError>;
}

/// Speculative decoding settings of a generator.
#[derive(Clone, Debug)]
pub struct SpecConfig {
    /// Most drafts per step (1..=`crate::spec::MAX_DRAFT_N`).
    pub draft_n: usize,
    pub kind: DraftKind,
    /// Choose each step's draft length from the running acceptance rate.
    pub adaptive: bool,
    /// Also speculate for sampled (temperature > 0) requests, checked by rejection sampling
    /// (same distribution, a different random stream than plain decoding).
    pub with_temperature: bool,
}

/// The CPU engine: the whole model on the CPU, weights read from the memory map.
pub struct CpuGenerator<'a> {
    model: CpuModel<'a>,
    st: SeqState,
    n_batch: usize,
    /// The tokens whose effect is in `st` (`st.n_past` of them), for prefix reuse.
    cached: Vec<u32>,
    reuse_prefix: bool,
    /// Bytes of all tensors in the file (all of them are read by the CPU).
    weight_bytes: usize,
    spec: Option<SpecConfig>,
}

impl<'a> CpuGenerator<'a> {
    pub fn new(
        file: &'a GgufFile,
        n_threads: usize,
        n_ctx: usize,
        n_batch: usize,
    ) -> Result<CpuGenerator<'a>, GeneratorError> {
        if n_ctx == 0 {
            return Err(GeneratorError::Backend(
                "the context length must be at least 1".into(),
            ));
        }
        let cfg = Config::from_gguf(file)?;
        let weights = Qwen35Weights::load(file, &cfg)?;
        let st = SeqState::new(&cfg, n_ctx);
        let model = CpuModel::new(cfg, weights, n_threads.max(1));
        Ok(CpuGenerator {
            model,
            st,
            n_batch: n_batch.max(1),
            cached: Vec::new(),
            reuse_prefix: true,
            weight_bytes: file.tensors().iter().map(|t| t.n_bytes as usize).sum(),
            spec: None,
        })
    }

    pub fn has_mtp(&self) -> bool {
        self.model.has_mtp()
    }

    /// Turns speculative decoding on (`Some`) or off. Checks that the drafter exists.
    pub fn set_speculation(&mut self, spec: Option<SpecConfig>) -> Result<(), GeneratorError> {
        if let Some(s) = &spec {
            s.kind.resolve(self.model.has_mtp())?;
            if s.draft_n == 0 || s.draft_n > crate::spec::MAX_DRAFT_N {
                return Err(SpecError::BadDraftN {
                    n: s.draft_n,
                    slots: crate::spec::MAX_DRAFT_N,
                }
                .into());
            }
        }
        self.spec = spec;
        Ok(())
    }

    /// Off: every request starts from an empty state (prompt processing is never skipped).
    pub fn set_reuse_prefix(&mut self, on: bool) {
        self.reuse_prefix = on;
    }

    fn state_bytes(&self) -> usize {
        let cfg = &self.model.cfg;
        let kv = 2 * self.st.n_ctx * cfg.attn_kv_dim() * 2;
        let per_gdn = (cfg.gdn_conv_state_len() + cfg.gdn_ssm_state_len()) * 4;
        let mtp = if cfg.mtp_block().is_some() { kv } else { 0 };
        cfg.n_attention_layers() * kv + cfg.n_gdn_layers() * per_gdn + mtp
    }
}

/// The MTP drafter needs MTP cache entries for every position before the first new token,
/// but entries exist only where earlier speculative steps wrote them (plain decoding writes
/// none, and the last position of a run is never committed). The missing ones are written
/// with zero trunk-hidden input: that only makes the first drafts of the continuation worse,
/// never the output (every draft is verified by the trunk). `cached` holds the tokens of
/// positions `0..st.n_past`.
fn fill_mtp_gap(
    model: &mut CpuModel<'_>,
    st: &mut SeqState,
    cached: &[u32],
) -> Result<(), GeneratorError> {
    const CHUNK: usize = 32;
    let d = model.cfg.n_embd;
    let mut out = ForwardOutput::default();
    let zeros = vec![0.0f32; CHUNK * d];
    while st.mtp_n_past < st.n_past {
        let from = st.mtp_n_past;
        let to = (from + CHUNK).min(st.n_past);
        let Some(toks) = cached.get(from..to) else {
            return Err(GeneratorError::Backend(format!(
                "prefix cache holds {} tokens, state {}",
                cached.len(),
                st.n_past
            )));
        };
        model.mtp_forward(st, toks, &zeros[..toks.len() * d], &mut out)?;
    }
    Ok(())
}

fn mib(b: usize) -> f64 {
    b as f64 / (1u64 << 20) as f64
}

impl Generator for CpuGenerator<'_> {
    fn n_ctx(&self) -> usize {
        self.st.n_ctx
    }

    fn plan(&self) -> Vec<String> {
        let cfg = &self.model.cfg;
        vec![
            format!(
                "CPU: all {} layers ({} Gated-DeltaNet, {} attention){}, embeddings and output head: {:.1} MiB of weights, {} threads",
                cfg.n_layer(),
                cfg.n_gdn_layers(),
                cfg.n_attention_layers(),
                if cfg.mtp_block().is_some() { " + MTP block" } else { "" },
                mib(self.weight_bytes),
                self.model.n_threads()
            ),
            format!(
                "CPU: sequence state for {} tokens: {:.1} MiB (f16 KV cache + GDN state)",
                self.st.n_ctx,
                mib(self.state_bytes())
            ),
            "GPU: none (CPU engine)".to_string(),
            match &self.spec {
                Some(s) => format!(
                    "speculative decoding: {:?} drafter, up to {} drafts per step{}{}",
                    s.kind.resolve(self.model.has_mtp()).unwrap_or(s.kind),
                    s.draft_n,
                    if s.adaptive { ", adaptive" } else { "" },
                    if s.with_temperature {
                        ", also for sampled requests"
                    } else {
                        ", greedy requests only"
                    }
                ),
                None => "speculative decoding: off".to_string(),
            },
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
        // The recurrent (GDN) state cannot be rolled back, so only an exact continuation of
        // what is in the state can skip work: everything cached must be a strict prefix.
        let skip = if self.reuse_prefix
            && !self.cached.is_empty()
            && self.cached.len() == self.st.n_past
            && prompt.len() > self.cached.len()
            && prompt.starts_with(&self.cached)
        {
            self.cached.len()
        } else {
            self.st.reset();
            self.cached.clear();
            0
        };
        let params = GenParams {
            n_predict,
            n_batch: self.n_batch,
        };
        let mut generated: Vec<u32> = Vec::new();
        let mut cb = |t| {
            generated.push(t);
            on_token(t)
        };
        let spec = self
            .spec
            .clone()
            .filter(|s| sampler.is_deterministic() || s.with_temperature);
        let res: Result<GenStats, GeneratorError> = match spec {
            None => generate(
                &mut self.model,
                &mut self.st,
                &prompt[skip..],
                &params,
                sampler,
                is_eog,
                &mut cb,
            )
            .map_err(Into::into),
            Some(sc) => {
                if skip > 0 && sc.kind.resolve(self.model.has_mtp())? == DraftKind::Mtp {
                    fill_mtp_gap(&mut self.model, &mut self.st, &self.cached)?;
                }
                let mut target = CpuTarget::new(&mut self.model, &mut self.st, sc.draft_n);
                make_drafter(sc.kind, &target)
                    .and_then(|mut drafter| {
                        generate_speculative(
                            &mut target,
                            drafter.as_mut(),
                            &prompt[skip..],
                            &params,
                            &SpecParams::new(sc.draft_n, sc.adaptive),
                            sampler,
                            is_eog,
                            &mut cb,
                        )
                    })
                    .map_err(Into::into)
            }
        };
        match res {
            Ok(stats) => {
                self.cached.extend_from_slice(&prompt[skip..]);
                self.cached.extend_from_slice(&generated);
                // The last sampled token is not run when generation stops on a limit or the
                // callback; keep exactly what the state holds.
                self.cached.truncate(self.st.n_past);
                if self.cached.len() != self.st.n_past {
                    self.st.reset();
                    self.cached.clear();
                }
                if skip > 0 {
                    tracing::debug!(
                        reused = skip,
                        fed = prompt.len() - skip,
                        "prompt prefix reused"
                    );
                }
                Ok(stats)
            }
            Err(e) => {
                self.st.reset();
                self.cached.clear();
                Err(e)
            }
        }
    }
}
