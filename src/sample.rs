//! Token sampling: greedy, and the llama.cpp-style chain repetition penalty → top-k →
//! top-p → min-p → temperature → draw (`common/sampling.cpp` order), seeded.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 (or below) means greedy.
    pub temperature: f32,
    /// 0 keeps every token.
    pub top_k: usize,
    /// 1.0 keeps every token.
    pub top_p: f32,
    /// 0.0 keeps every token.
    pub min_p: f32,
    /// 1.0 disables the penalty.
    pub repeat_penalty: f32,
    /// How many of the most recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 && self.repeat_penalty == 1.0
    }
}

/// The index of the largest logit; ties go to the lowest token id, as in llama.cpp's greedy
/// sampler (it keeps the first strictly greater value). NaN logits are never chosen.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

/// The best two logits' gap, used by parity tests to recognise near ties.
pub fn top2_margin(logits: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &v in logits {
        if v > a {
            b = a;
            a = v;
        } else if v > b {
            b = v;
        }
    }
    a - b
}

pub struct Sampler {
    cfg: SamplerConfig,
    rng: ChaCha8Rng,
    cand: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Sampler {
            cfg,
            rng,
            cand: Vec::new(),
        }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks the next token from `logits`, given the tokens so far (for the penalty).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        if self.cfg.is_greedy() {
            return argmax(logits);
        }
        if self.is_deterministic() {
            return self.distribution(logits, history)[0].0;
        }
        // The distribution uses no random numbers, so drawing first keeps the stream as before.
        let r: f64 = self.rng.gen();
        let dist = self.distribution(logits, history);
        let mut cum = 0.0f64;
        for &(t, p) in dist {
            cum += p as f64;
            if r < cum {
                return t;
            }
        }
        dist.last().map(|e| e.0).unwrap_or(0)
    }

    /// True when [`Sampler::sample`] is plain argmax (temperature 0, no penalty).
    pub fn is_greedy(&self) -> bool {
        self.cfg.is_greedy()
    }

    /// True when [`Sampler::sample`] draws no random numbers (temperature 0, with or without
    /// the repetition penalty): the chosen token is a function of the logits and history.
    pub fn is_deterministic(&self) -> bool {
        self.cfg.temperature <= 0.0
    }

    /// One uniform number in [0, 1) from the sampler's seeded stream (speculative rejection
    /// sampling draws its acceptance tests from here, so a seed reproduces a run).
    pub fn uniform(&mut self) -> f64 {
        self.rng.gen()
    }

    /// The distribution [`Sampler::sample`] draws from: (token, probability) pairs after the
    /// penalty → top-k → top-p → min-p → temperature chain, most likely first, summing to 1.
    /// A deterministic sampler returns its one chosen token with probability 1. Never empty
    /// for non-empty `logits`.
    pub fn distribution(&mut self, logits: &[f32], history: &[u32]) -> &[(u32, f32)] {
        let c = &self.cfg;
        self.cand.clear();
        if c.is_greedy() {
            self.cand.push((argmax(logits), 1.0));
            return &self.cand;
        }
        self.cand
            .extend(logits.iter().enumerate().map(|(i, &v)| (i as u32, v)));
        if c.repeat_penalty != 1.0 && c.repeat_last_n > 0 {
            let start = history.len().saturating_sub(c.repeat_last_n);
            let mut seen = std::collections::HashSet::new();
            for &t in &history[start..] {
                if seen.insert(t) {
                    if let Some(e) = self.cand.get_mut(t as usize) {
                        e.1 = if e.1 > 0.0 {
                            e.1 / c.repeat_penalty
                        } else {
                            e.1 * c.repeat_penalty
                        };
                    }
                }
            }
        }
        if c.temperature <= 0.0 {
            let best = self
                .cand
                .iter()
                .fold(
                    (0u32, f32::NEG_INFINITY),
                    |b, &e| if e.1 > b.1 { e } else { b },
                )
                .0;
            self.cand.clear();
            self.cand.push((best, 1.0));
            return &self.cand;
        }
        // Sorted by logit, descending; ties by id so the draw is reproducible.
        self.cand
            .sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if c.top_k > 0 && c.top_k < self.cand.len() {
            self.cand.truncate(c.top_k);
        }
        let probs = softmax(&self.cand);
        let mut keep = probs.len();
        if c.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= c.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        if c.min_p > 0.0 {
            let floor = probs[0] * c.min_p;
            keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
        }
        self.cand.truncate(keep);
        for e in &mut self.cand {
            e.1 /= c.temperature;
        }
        let probs = softmax(&self.cand);
        for (e, p) in self.cand.iter_mut().zip(probs) {
            e.1 = p;
        }
        &self.cand
    }
}

fn softmax(c: &[(u32, f32)]) -> Vec<f32> {
    let m = c.iter().map(|e| e.1).fold(f32::NEG_INFINITY, f32::max);
    let mut p: Vec<f32> = c.iter().map(|e| (e.1 - m).exp()).collect();
    let s: f32 = p.iter().sum();
    for v in &mut p {
        *v /= s;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_prefers_the_lowest_id_on_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.5]), 1);
        assert_eq!(top2_margin(&[1.0, 4.0, 2.5]), 1.5);
    }

    #[test]
    fn sampling_is_reproducible_for_a_seed_and_respects_top_k() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37 % 11) as f32) * 0.3).collect();
        let cfg = SamplerConfig {
            temperature: 0.8,
            top_k: 3,
            top_p: 1.0,
            min_p: 0.0,
            seed: 7,
            ..Default::default()
        };
        let mut s1 = Sampler::new(cfg.clone());
        let mut s2 = Sampler::new(cfg);
        let a: Vec<u32> = (0..100).map(|_| s1.sample(&logits, &[])).collect();
        let b: Vec<u32> = (0..100).map(|_| s2.sample(&logits, &[])).collect();
        assert_eq!(a, b);
        let mut sorted: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, v))
            .collect();
        sorted.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        let top: Vec<u32> = sorted[..3].iter().map(|e| e.0).collect();
        assert!(a.iter().all(|t| top.contains(t)));
        assert!(
            a.iter().collect::<std::collections::HashSet<_>>().len() > 1,
            "temperature sampling should vary"
        );
    }

    #[test]
    fn repetition_penalty_pushes_a_seen_token_down() {
        let logits = vec![2.0, 1.9, -1.0];
        let cfg = SamplerConfig {
            temperature: 0.0,
            repeat_penalty: 1.5,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg);
        assert_eq!(s.sample(&logits, &[0]), 1);
        assert_eq!(s.sample(&logits, &[]), 0);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let logits = vec![5.0, 4.9, -10.0, -10.0];
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.5,
            seed: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg);
        for _ in 0..200 {
            assert!(s.sample(&logits, &[]) < 2);
        }
    }
}
