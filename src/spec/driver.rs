//! The speculative decoding loop. Each step runs one trunk batch `[c, d₁..d_N]`: the certain
//! token c (sampled last step, not yet run) and N drafts. The kept drafts and the token after
//! them are emitted; that last token is the next step's c, so there is no separate commit
//! forward. Rejected drafts are undone by restoring the GDN snapshot of the last kept
//! position; attention KV rows past it are overwritten by later batches.

use std::time::Instant;

use crate::generate::{GenParams, GenStats};
use crate::model::qwen35::{ForwardOutput, Logits, ModelError};
use crate::sample::Sampler;

use super::adaptive::DraftLength;
use super::drafter::Drafter;
use super::stats::SpecStats;
use super::target::Target;
use super::verify::{verify, verify_greedy};
use super::SpecError;

#[derive(Clone, Debug)]
pub struct SpecParams {
    /// The most drafts per step (>= 1; the target's ring must hold this many).
    pub draft_n: usize,
    /// Pick the length per step from the running acceptance rate (see [`DraftLength`]).
    pub adaptive: bool,
    /// Step costs the adaptive policy is told instead of the measured times (tests and
    /// simulations whose choices must not depend on how busy the machine is); None measures.
    pub fixed_costs: Option<StepCosts>,
}

impl SpecParams {
    /// At most `draft_n` drafts per step, adaptive or fixed, with measured step costs.
    pub fn new(draft_n: usize, adaptive: bool) -> SpecParams {
        SpecParams {
            draft_n,
            adaptive,
            fixed_costs: None,
        }
    }
}

/// A linear step-cost model: a k-token verify takes `verify_ms + (k − 1) · per_token_ms`,
/// drafting `draft_ms` per draft token.
#[derive(Clone, Copy, Debug)]
pub struct StepCosts {
    pub verify_ms: f64,
    pub per_token_ms: f64,
    pub draft_ms: f64,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// What emitting one token decided.
enum Emit {
    Go,
    Stop(&'static str),
}

/// Like [`crate::generate::generate`], with speculative steps. For a deterministic sampler the
/// tokens are exactly those of plain decoding; with temperature they follow the same
/// distribution (rejection sampling), though not the same random stream.
#[allow(clippy::too_many_arguments)]
pub fn generate_speculative(
    target: &mut dyn Target,
    drafter: &mut dyn Drafter,
    prompt: &[u32],
    params: &GenParams,
    spec: &SpecParams,
    sampler: &mut Sampler,
    is_eog: &dyn Fn(u32) -> bool,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<GenStats, SpecError> {
    if prompt.is_empty() {
        return Err(ModelError::EmptyInput.into());
    }
    if spec.draft_n == 0 || spec.draft_n > target.max_drafts() {
        return Err(SpecError::BadDraftN {
            n: spec.draft_n,
            slots: target.max_drafts(),
        });
    }
    let (n_ctx, nv, d) = (target.n_ctx(), target.n_vocab(), target.n_embd());
    if target.n_past() + prompt.len() > n_ctx {
        return Err(ModelError::ContextFull {
            n_ctx,
            needed: target.n_past() + prompt.len(),
        }
        .into());
    }
    let mut stats = GenStats {
        n_prompt: prompt.len(),
        n_threads: target.n_threads(),
        ..Default::default()
    };
    let mut ss = SpecStats::new(drafter.name(), spec.draft_n, spec.adaptive);
    let mut out = ForwardOutput::default();
    let k_max = spec.draft_n + 1;
    out.logits.reserve(k_max * nv);
    out.hidden.reserve(d * k_max.max(params.n_batch.max(1)));

    let t0 = Instant::now();
    let chunks: Vec<&[u32]> = prompt.chunks(params.n_batch.max(1)).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let want = if i + 1 == chunks.len() {
            Logits::Last
        } else {
            Logits::None
        };
        target.forward(chunk, want, &mut out)?;
        drafter.commit(target, chunk, &out.hidden)?;
    }
    stats.prompt_ms = ms(t0);

    // Everything below is sized once: no allocation per step.
    let mut history: Vec<u32> = Vec::with_capacity(prompt.len() + params.n_predict + k_max + 1);
    history.extend_from_slice(prompt);
    let mut drafts: Vec<u32> = Vec::with_capacity(k_max);
    let mut batch: Vec<u32> = Vec::with_capacity(k_max);
    let mut row_argmax: Vec<u32> = Vec::with_capacity(k_max);
    let mut length = DraftLength::new(spec.draft_n, spec.adaptive);

    let t1 = Instant::now();
    stats.stop = "n_predict".into();
    let mut emit = |stats: &mut GenStats, history: &mut Vec<u32>, tok: u32, pushed: bool| {
        if is_eog(tok) {
            return Emit::Stop("eog");
        }
        stats.n_decode += 1;
        if !pushed {
            history.push(tok);
        }
        if !on_token(tok) {
            return Emit::Stop("callback");
        }
        if stats.n_decode >= params.n_predict {
            return Emit::Stop("n_predict");
        }
        Emit::Go
    };

    let mut certain = sampler.sample(&out.logits, &history);
    let mut stop = if params.n_predict == 0 {
        Some("n_predict")
    } else {
        match emit(&mut stats, &mut history, certain, false) {
            Emit::Go => None,
            Emit::Stop(why) => Some(why),
        }
    };
    while stop.is_none() {
        let n_past = target.n_past();
        if n_past + 1 > n_ctx {
            stop = Some("context");
            break;
        }
        // Drafts beyond the tokens still wanted, or past the context, would be wasted.
        let want = params.n_predict - stats.n_decode;
        let n = length.choose().min(want - 1).min(n_ctx - n_past - 1);

        if n > 0 {
            let tc = Instant::now();
            drafter.flush(target)?;
            ss.catchup_ms += ms(tc);
        }
        let td = Instant::now();
        drafter.draft(target, &history, n, &mut drafts)?;
        drafts.truncate(n);
        let draft_ms = ms(td);
        ss.draft_ms += draft_ms;

        batch.clear();
        batch.push(certain);
        batch.extend_from_slice(&drafts);
        let tv = Instant::now();
        let verdict = if sampler.is_greedy() {
            // Plain argmax decoding: only each row's argmax is needed, and GPU placements
            // take it on the device (k indices come back, not k vocabulary-sized rows).
            row_argmax.clear();
            target.verify_argmax(&batch, &mut out, &mut row_argmax)?;
            verify_greedy(&row_argmax, &drafts, &mut history)
        } else {
            target.verify(&batch, &mut out)?;
            verify(sampler, &out.logits, nv, &drafts, &mut history)
        };
        let verify_ms = ms(tv);
        let m = verdict.accepted;
        ss.record_step(drafts.len(), m, verify_ms);
        match spec.fixed_costs {
            None => length.observe(drafts.len(), m, verify_ms, draft_ms),
            Some(c) => {
                let n = drafts.len() as f64;
                length.observe(
                    drafts.len(),
                    m,
                    c.verify_ms + n * c.per_token_ms,
                    n * c.draft_ms,
                )
            }
        }

        // Emit the kept drafts (already on `history`), then the next certain token.
        for &tok in &drafts[..m] {
            ss.step_tokens += 1;
            if let Emit::Stop(why) = emit(&mut stats, &mut history, tok, true) {
                stop = Some(why);
                break;
            }
        }
        if stop.is_some() {
            break;
        }
        certain = verdict.next;
        ss.step_tokens += 1;
        if let Emit::Stop(why) = emit(&mut stats, &mut history, certain, false) {
            stop = Some(why);
            break;
        }

        let tr = Instant::now();
        target.keep(m + 1)?;
        ss.rollback_ms += ms(tr);
        let tc = Instant::now();
        drafter.commit(target, &batch[..=m], &out.hidden[..(m + 1) * d])?;
        ss.catchup_ms += ms(tc);
    }
    if let Some(why) = stop {
        stats.stop = why.into();
    }
    // The drafter's deferred catch-up, so a state kept for the next request is complete.
    let tc = Instant::now();
    drafter.flush(target)?;
    ss.catchup_ms += ms(tc);
    stats.decode_ms = ms(t1);
    ss.finish();
    stats.spec = Some(ss);
    stats.finish();
    Ok(stats)
}

/// Greedy speculative decoding of `n_predict` tokens with no end-of-generation token, the
/// tokens collected: the speculative twin of [`crate::generate::greedy_tokens`].
pub fn greedy_tokens(
    target: &mut dyn Target,
    drafter: &mut dyn Drafter,
    prompt: &[u32],
    params: &GenParams,
    spec: &SpecParams,
) -> Result<(Vec<u32>, GenStats), SpecError> {
    let mut sampler = crate::generate::greedy_sampler();
    let mut got = Vec::with_capacity(params.n_predict);
    let stats = generate_speculative(
        target,
        drafter,
        prompt,
        params,
        spec,
        &mut sampler,
        &|_| false,
        &mut |t| {
            got.push(t);
            true
        },
    )?;
    Ok((got, stats))
}
