//! The decoding loop: prompt processing in batches, then one token per step (or a verified
//! speculative batch per step, see `spec`), streaming each token to a callback.

use std::time::Instant;

use serde::Serialize;

use crate::model::qwen35::{CpuModel, ForwardOutput, Logits, ModelError, SeqState};
use crate::sample::Sampler;

/// What the decoding loop needs from a model: a forward pass over its own sequence state.
/// Implemented by [`CpuModel`] (state [`SeqState`]) and [`crate::gpu::GpuModel`] (state on
/// the device); where layers run is the engine's business, the loop never asks.
pub trait Engine {
    type State;

    /// Runs `tokens` at the state's next positions and advances it; `out` holds the logit
    /// rows asked for and every token's post-norm hidden state.
    fn forward(
        &mut self,
        st: &mut Self::State,
        tokens: &[u32],
        want: Logits,
        out: &mut ForwardOutput,
    ) -> Result<(), ModelError>;

    /// Runs `tokens` and returns the greedy pick for the last one (ties: lowest id). The
    /// default computes the logits into `out`; an engine may pick without them.
    fn forward_greedy(
        &mut self,
        st: &mut Self::State,
        tokens: &[u32],
        out: &mut ForwardOutput,
    ) -> Result<u32, ModelError> {
        self.forward(st, tokens, Logits::Last, out)?;
        Ok(crate::sample::argmax(&out.logits))
    }

    /// (tokens in the state, capacity).
    fn position(st: &Self::State) -> (usize, usize);

    fn n_threads(&self) -> usize;
}

impl Engine for CpuModel<'_> {
    type State = SeqState;

    fn forward(
        &mut self,
        st: &mut SeqState,
        tokens: &[u32],
        want: Logits,
        out: &mut ForwardOutput,
    ) -> Result<(), ModelError> {
        CpuModel::forward(self, st, tokens, want, out)
    }

    fn position(st: &SeqState) -> (usize, usize) {
        (st.n_past, st.n_ctx)
    }

    fn n_threads(&self) -> usize {
        CpuModel::n_threads(self)
    }
}

/// Statistics of one generation, printed at the end and written by `--stats-json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GenStats {
    pub n_prompt: usize,
    pub n_decode: usize,
    pub prompt_ms: f64,
    pub decode_ms: f64,
    pub prompt_tps: f64,
    pub decode_tps: f64,
    pub n_threads: usize,
    /// Why generation stopped: "eog", "n_predict", "context" or "callback".
    pub stop: String,
    /// Speculative decoding statistics; absent when speculation was off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<crate::spec::SpecStats>,
}

impl GenStats {
    pub(crate) fn finish(&mut self) {
        self.prompt_tps = rate(self.n_prompt, self.prompt_ms);
        self.decode_tps = rate(self.n_decode, self.decode_ms);
    }
}

fn rate(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

pub struct GenParams {
    /// Most tokens to generate.
    pub n_predict: usize,
    /// Prompt tokens per forward call.
    pub n_batch: usize,
}

/// The greedy sampler (temperature 0, no repetition penalty).
pub fn greedy_sampler() -> Sampler {
    Sampler::new(crate::sample::SamplerConfig {
        temperature: 0.0,
        ..Default::default()
    })
}

/// Greedy decoding of `n_predict` tokens with no end-of-generation token, the tokens
/// collected: the reference that speculative runs are compared with
/// (`crate::spec::greedy_tokens` is its speculative twin).
pub fn greedy_tokens<E: Engine>(
    model: &mut E,
    st: &mut E::State,
    prompt: &[u32],
    params: &GenParams,
) -> Result<(Vec<u32>, GenStats), ModelError> {
    let mut got = Vec::with_capacity(params.n_predict);
    let stats = generate(
        model,
        st,
        prompt,
        params,
        &mut greedy_sampler(),
        &|_| false,
        &mut |t| {
            got.push(t);
            true
        },
    )?;
    Ok((got, stats))
}

/// Feeds the prompt, then samples until an end-of-generation token, `n_predict` tokens, or
/// `on_token` returning false. The end-of-generation token itself is not passed on.
/// A greedy sampler takes [`Engine::forward_greedy`] (same tokens; the GPU then downloads
/// only the pick).
pub fn generate<E: Engine>(
    model: &mut E,
    st: &mut E::State,
    prompt: &[u32],
    params: &GenParams,
    sampler: &mut Sampler,
    is_eog: &dyn Fn(u32) -> bool,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<GenStats, ModelError> {
    if prompt.is_empty() {
        return Err(ModelError::EmptyInput);
    }
    let (n_past, n_ctx) = E::position(st);
    if n_past + prompt.len() > n_ctx {
        return Err(ModelError::ContextFull {
            n_ctx,
            needed: n_past + prompt.len(),
        });
    }
    let greedy = sampler.config().is_greedy();
    let mut stats = GenStats {
        n_prompt: prompt.len(),
        n_threads: model.n_threads(),
        ..Default::default()
    };
    let mut out = ForwardOutput::default();
    let t0 = Instant::now();
    let chunks: Vec<&[u32]> = prompt.chunks(params.n_batch.max(1)).collect();
    let mut next = None;
    for (i, chunk) in chunks.iter().enumerate() {
        if i + 1 < chunks.len() {
            model.forward(st, chunk, Logits::None, &mut out)?;
        } else if greedy {
            next = Some(model.forward_greedy(st, chunk, &mut out)?);
        } else {
            model.forward(st, chunk, Logits::Last, &mut out)?;
        }
    }
    stats.prompt_ms = t0.elapsed().as_secs_f64() * 1e3;

    let mut history: Vec<u32> = prompt.to_vec();
    let t1 = Instant::now();
    stats.stop = "n_predict".into();
    while stats.n_decode < params.n_predict {
        let tok = match next.take() {
            Some(t) => t,
            None => sampler.sample(&out.logits, &history),
        };
        if is_eog(tok) {
            stats.stop = "eog".into();
            break;
        }
        stats.n_decode += 1;
        history.push(tok);
        if !on_token(tok) {
            stats.stop = "callback".into();
            break;
        }
        if stats.n_decode == params.n_predict {
            break;
        }
        let (n_past, n_ctx) = E::position(st);
        if n_past + 1 > n_ctx {
            stats.stop = "context".into();
            break;
        }
        if greedy {
            next = Some(model.forward_greedy(st, &[tok], &mut out)?);
        } else {
            model.forward(st, &[tok], Logits::Last, &mut out)?;
        }
    }
    stats.decode_ms = t1.elapsed().as_secs_f64() * 1e3;
    stats.finish();
    Ok(stats)
}
