//! Deciding which drafts to keep, given the verify batch's logits.
//!
//! Row i of the batch's logits is the trunk's prediction after batch token i (row 0 follows
//! the certain token; row i follows draft i). Draft i+1 is checked against row i.
//! - Deterministic sampling (temperature 0, greedy or with a repetition penalty): the token
//!   the sampler picks from row i is the output; the draft is kept while it agrees. The
//!   output is exactly what plain decoding produces.
//! - Temperature sampling: standard speculative rejection sampling for a deterministic draft
//!   (a point mass q): keep draft d with probability p(d); on rejection draw from p with d
//!   removed, renormalised. Every output token is then distributed exactly as p.

use crate::sample::Sampler;

/// The outcome of verifying one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Drafts kept (0..=drafts.len()).
    pub accepted: usize,
    /// The token after the kept drafts: the correction at the first rejection, or the bonus
    /// token from the last row when every draft was kept. It starts the next batch.
    pub next: u32,
}

/// Verifies `drafts` against `logits` ([drafts.len() + 1][n_vocab]). Kept drafts are pushed
/// onto `history` (the penalty sees them); `next` is not.
pub fn verify(
    sampler: &mut Sampler,
    logits: &[f32],
    n_vocab: usize,
    drafts: &[u32],
    history: &mut Vec<u32>,
) -> Verdict {
    debug_assert_eq!(logits.len(), (drafts.len() + 1) * n_vocab);
    let row = |i: usize| &logits[i * n_vocab..(i + 1) * n_vocab];
    for (i, &d) in drafts.iter().enumerate() {
        let choice = if sampler.is_deterministic() {
            let t = sampler.sample(row(i), history);
            if t == d {
                Ok(())
            } else {
                Err(t)
            }
        } else {
            let (u1, u2) = (sampler.uniform(), sampler.uniform());
            accept_or_resample(sampler.distribution(row(i), history), d, u1, u2)
        };
        match choice {
            Ok(()) => history.push(d),
            Err(next) => {
                return Verdict { accepted: i, next };
            }
        }
    }
    let k = drafts.len();
    Verdict {
        accepted: k,
        next: sampler.sample(row(k), history),
    }
}

/// [`verify`] for a greedy sampler given each row's argmax (`argmax[i]` = argmax of row i,
/// `drafts.len() + 1` of them): the same verdict, without the logits.
pub fn verify_greedy(argmax: &[u32], drafts: &[u32], history: &mut Vec<u32>) -> Verdict {
    debug_assert_eq!(argmax.len(), drafts.len() + 1);
    for (i, &d) in drafts.iter().enumerate() {
        if argmax[i] != d {
            return Verdict {
                accepted: i,
                next: argmax[i],
            };
        }
        history.push(d);
    }
    Verdict {
        accepted: drafts.len(),
        next: argmax[drafts.len()],
    }
}

/// One rejection-sampling test of a deterministic draft `d` against the target
/// distribution `dist` ((token, p) pairs summing to 1): keeps `d` when `u1 < p(d)`,
/// otherwise draws from `dist` without `d` using `u2`. `u1`, `u2` are uniform in [0, 1).
pub fn accept_or_resample(dist: &[(u32, f32)], d: u32, u1: f64, u2: f64) -> Result<(), u32> {
    let pd = dist.iter().find(|e| e.0 == d).map_or(0.0, |e| e.1 as f64);
    if u1 < pd {
        return Ok(());
    }
    let rest = (1.0 - pd).max(0.0);
    let r = u2 * rest;
    let mut cum = 0.0f64;
    let mut last = None;
    for &(t, p) in dist.iter().filter(|e| e.0 != d) {
        cum += p as f64;
        last = Some(t);
        if r < cum {
            return Err(t);
        }
    }
    // Rounding left r at the very top: the last candidate; a dist of only `d` (p(d) = 1
    // up to rounding) cannot reject, so keep the draft.
    last.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Drafting token `d` and keeping or replacing it must reproduce `dist` exactly.
    fn check_marginal(dist: &[(u32, f32)], d: u32) {
        let mut rng = ChaCha8Rng::seed_from_u64(d as u64 + 11);
        let n = 200_000;
        let mut counts = [0usize; 8];
        for _ in 0..n {
            let t = match accept_or_resample(dist, d, rng.gen(), rng.gen()) {
                Ok(()) => d,
                Err(t) => t,
            };
            counts[t as usize] += 1;
        }
        for t in 0..8u32 {
            let p = dist.iter().find(|e| e.0 == t).map_or(0.0, |e| e.1 as f64);
            let f = counts[t as usize] as f64 / n as f64;
            // 5 standard deviations of a binomial frequency.
            let tol = 5.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-9;
            assert!(
                (f - p).abs() <= tol,
                "token {t}: frequency {f:.4}, p {p:.4} (draft {d})"
            );
        }
    }

    #[test]
    fn greedy_verdicts_from_row_argmaxes_equal_those_from_the_logits() {
        use crate::sample::{argmax, Sampler, SamplerConfig};
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let nv = 7;
        let mut sampler = Sampler::new(SamplerConfig {
            temperature: 0.0,
            repeat_penalty: 1.0,
            ..SamplerConfig::default()
        });
        assert!(sampler.is_greedy());
        for case in 0..500 {
            let n = case % 6;
            let logits: Vec<f32> = (0..(n + 1) * nv)
                .map(|_| rng.gen_range(-3.0..3.0))
                .collect();
            let rows: Vec<u32> = logits.chunks_exact(nv).map(argmax).collect();
            // Drafts that agree with the argmax for a random prefix, then differ.
            let agree = rng.gen_range(0..=n);
            let drafts: Vec<u32> = (0..n)
                .map(|i| {
                    if i < agree {
                        rows[i]
                    } else {
                        (rows[i] + 1) % nv as u32
                    }
                })
                .collect();
            let (mut h1, mut h2) = (vec![1u32], vec![1u32]);
            let a = verify(&mut sampler, &logits, nv, &drafts, &mut h1);
            let b = verify_greedy(&rows, &drafts, &mut h2);
            assert_eq!(a, b, "case {case}");
            assert_eq!(a.accepted, agree, "case {case}");
            assert_eq!(h1, h2, "case {case}");
        }
    }

    #[test]
    fn rejection_sampling_reproduces_the_target_distribution_for_any_draft() {
        let dist = [(3u32, 0.5f32), (1, 0.25), (6, 0.15), (0, 0.1)];
        for d in [3, 1, 0, 7] {
            check_marginal(&dist, d);
        }
    }

    #[test]
    fn a_certain_draft_is_always_kept_and_an_impossible_one_never() {
        assert_eq!(accept_or_resample(&[(5, 1.0)], 5, 0.999, 0.3), Ok(()));
        assert_eq!(accept_or_resample(&[(5, 1.0)], 2, 0.0, 0.3), Err(5));
    }
}
