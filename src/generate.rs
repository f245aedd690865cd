//! The decoding loop: prompt processing in batches, then one token per step (or a verified
//! speculative batch per step, see `spec`), streaming each token to a callback.

use std::time::Instant;

use serde::Serialize;

use crate::model::qwen35::{CpuModel, ForwardOutput, Logits, ModelError, SeqState};
use crate::sample::Sampler;

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

/// Feeds the prompt, then samples until an end-of-generation token, `n_predict` tokens, or
/// `on_token` returning false. The end-of-generation token itself is not passed on.
pub fn generate(
    model: &mut CpuModel<'_>,
    st: &mut SeqState,
    prompt: &[u32],
    params: &GenParams,
    sampler: &mut Sampler,
    is_eog: &dyn Fn(u32) -> bool,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<GenStats, ModelError> {
    if prompt.is_empty() {
        return Err(ModelError::EmptyInput);
    }
    if st.n_past + prompt.len() > st.n_ctx {
        return Err(ModelError::ContextFull {
            n_ctx: st.n_ctx,
            needed: st.n_past + prompt.len(),
        });
    }
    let mut stats = GenStats {
        n_prompt: prompt.len(),
        n_threads: model.n_threads(),
        ..Default::default()
    };
    let mut out = ForwardOutput::default();
    let t0 = Instant::now();
    let chunks: Vec<&[u32]> = prompt.chunks(params.n_batch.max(1)).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let want = if i + 1 == chunks.len() {
            Logits::Last
        } else {
            Logits::None
        };
        model.forward(st, chunk, want, &mut out)?;
    }
    stats.prompt_ms = t0.elapsed().as_secs_f64() * 1e3;

    let mut history: Vec<u32> = prompt.to_vec();
    let t1 = Instant::now();
    stats.stop = "n_predict".into();
    while stats.n_decode < params.n_predict {
        let tok = sampler.sample(&out.logits, &history);
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
        if st.n_past + 1 > st.n_ctx {
            stats.stop = "context".into();
            break;
        }
        model.forward(st, &[tok], Logits::Last, &mut out)?;
    }
    stats.decode_ms = t1.elapsed().as_secs_f64() * 1e3;
    stats.finish();
    Ok(stats)
}
