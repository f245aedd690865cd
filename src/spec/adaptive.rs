//! Choosing the draft length for the next step.
//!
//! Fixed mode always asks for the maximum. Adaptive mode keeps running estimates of the
//! acceptance rate at each depth j (the chance draft j is kept given drafts 1..j−1 were)
//! and of the cost of a step of each width, and picks the N that maximises expected tokens
//! per millisecond: E[tokens | N] = 1 + Σ_{j≤N} Π_{i≤j} a_i, cost = verify(N+1) + N·draft.
//! Every `PROBE_EVERY` steps it tries one draft more than its choice, so a rate that has
//! recovered is noticed; a probe whose extra draft is reached and refused doubles the wait for
//! the next (up to `PROBE_MAX`), a kept one resets it, so a drafter that is never right costs
//! one probe in `PROBE_MAX` steps, not one in `PROBE_EVERY`. The depth-1 acceptance starts as
//! a plain mean of the prior and the first observations (weight `1/(n + 2)` after n of them,
//! never below `EMA`), so a drafter that is never right is given up after four steps (with the
//! prior step costs) rather than the ten and more an `EMA` of 0.1 from the prior takes; deeper
//! depths move by the `EMA` alone.

/// Weight of a new observation in the running averages.
const EMA: f64 = 0.1;
/// Acceptance assumed before any evidence (optimistic, so drafting starts).
const PRIOR_ACCEPT: f64 = 0.7;
/// Relative extra cost of each batch token over a 1-token step, before measurements.
const PRIOR_EXTRA_COST: f64 = 0.15;
const PROBE_EVERY: usize = 16;
const PROBE_MAX: usize = 128;

pub struct DraftLength {
    max: usize,
    adaptive: bool,
    /// accept[j]: running acceptance at depth j+1.
    accept: Vec<f64>,
    /// How many first drafts (depth 1) have been checked: the warm start's count.
    checked_first: u32,
    /// verify_ms[k−1]: running verify time of a k-token batch (None until measured).
    verify_ms: Vec<Option<f64>>,
    /// Running drafting time per draft token.
    draft_ms: Option<f64>,
    /// seen[k−1]: whether a k-token verify has run once. The first run of each width pays
    /// one-time costs (buffers grown to the width, first kernel launches, graph capture on
    /// the GPU) and is not recorded: a cold first measurement of a wide batch would otherwise
    /// stay as its cost estimate, since a width the policy thinks too dear is never run again.
    seen: Vec<bool>,
    /// Whether a drafting step has been seen (its first one is not recorded, likewise).
    draft_seen: bool,
    steps: usize,
    /// The step (count of observed steps) that probes next, and the current wait between
    /// probes.
    next_probe: usize,
    probe_every: usize,
}

fn ema(old: Option<f64>, new: f64) -> f64 {
    old.map_or(new, |o| o + EMA * (new - o))
}

impl DraftLength {
    pub fn new(max: usize, adaptive: bool) -> DraftLength {
        DraftLength {
            max,
            adaptive,
            accept: vec![PRIOR_ACCEPT; max],
            checked_first: 0,
            verify_ms: vec![None; max + 1],
            draft_ms: None,
            seen: vec![false; max + 1],
            draft_seen: false,
            steps: 0,
            next_probe: PROBE_EVERY - 1,
            probe_every: PROBE_EVERY,
        }
    }

    /// The draft length to ask for now (0..=max).
    pub fn choose(&self) -> usize {
        if !self.adaptive || self.max == 0 {
            return self.max;
        }
        let base = self.verify_cost(1);
        let (mut best, mut best_score) = (0, 1.0 / base);
        let (mut expect, mut run) = (1.0, 1.0);
        for n in 1..=self.max {
            run *= self.accept[n - 1];
            expect += run;
            let cost = self.verify_cost(n + 1) + n as f64 * self.draft_ms.unwrap_or(0.0);
            let score = expect / cost;
            if score > best_score {
                (best, best_score) = (n, score);
            }
        }
        if self.steps == self.next_probe {
            (best + 1).min(self.max)
        } else {
            best
        }
    }

    /// Measured cost of a k-token verify, or an estimate from the nearest measured width.
    fn verify_cost(&self, k: usize) -> f64 {
        if let Some(ms) = self.verify_ms[k - 1] {
            return ms;
        }
        let prior = |k0: usize, ms: f64| {
            ms * (1.0 + PRIOR_EXTRA_COST * (k as f64 - 1.0))
                / (1.0 + PRIOR_EXTRA_COST * (k0 as f64 - 1.0))
        };
        (0..self.verify_ms.len())
            .filter_map(|i| self.verify_ms[i].map(|ms| ((i + 1).abs_diff(k), prior(i + 1, ms))))
            .min_by_key(|e| e.0)
            .map_or(1.0 + PRIOR_EXTRA_COST * (k as f64 - 1.0), |e| e.1)
    }

    /// Records a step: `drafted` drafts of which the first `accepted` were kept, a verify of
    /// `drafted + 1` tokens that took `verify_ms`, and `draft_ms` spent drafting.
    pub fn observe(&mut self, drafted: usize, accepted: usize, verify_ms: f64, draft_ms: f64) {
        if self.adaptive && self.steps == self.next_probe {
            // This step was a probe. Its deepest draft kept: probe often again; reached and
            // refused: wait twice as long; not reached (an earlier draft was refused): the
            // probe says nothing about the extra depth, so the wait stays.
            if drafted > 0 && accepted == drafted {
                self.probe_every = PROBE_EVERY;
            } else if accepted + 1 == drafted || drafted == 0 {
                self.probe_every = (2 * self.probe_every).min(PROBE_MAX);
            }
            self.next_probe = self.steps + self.probe_every;
        }
        self.steps += 1;
        // Depths 1..=accepted were kept; depth accepted+1 (if drafted) was reached and refused.
        for j in 0..drafted.min(accepted + 1).min(self.max) {
            let kept = if j < accepted { 1.0 } else { 0.0 };
            // Depth 1 (checked at every drafting step): the prior counts as one observation,
            // a plain mean while that weighs more, so junk drafts are dropped fast. Deeper
            // depths are checked only when every draft before them was kept, a few times
            // early on: a plain mean there lets two early refusals stop drafting that deep
            // for good (the tiny model at 80% simulated acceptance: 3.2 -> 1.5 drafts per
            // step), so they move by the EMA alone.
            let w = if j == 0 {
                self.checked_first += 1;
                EMA.max(1.0 / (self.checked_first as f64 + 1.0))
            } else {
                EMA
            };
            self.accept[j] += w * (kept - self.accept[j]);
        }
        if let (Some(slot), Some(seen)) =
            (self.verify_ms.get_mut(drafted), self.seen.get_mut(drafted))
        {
            if *seen {
                *slot = Some(ema(*slot, verify_ms));
            }
            *seen = true;
        }
        if drafted > 0 {
            if self.draft_seen {
                self.draft_ms = Some(ema(self.draft_ms, draft_ms / drafted as f64));
            }
            self.draft_seen = true;
        }
    }

    /// Current acceptance estimates per depth (for statistics and tests).
    pub fn acceptance_estimates(&self) -> &[f64] {
        &self.accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_mode_always_asks_for_the_maximum() {
        let mut d = DraftLength::new(5, false);
        d.observe(5, 0, 10.0, 1.0);
        assert_eq!(d.choose(), 5);
    }

    /// A cold first run of a wide verify (one-time costs: 40x a warm one here) must not
    /// become that width's cost estimate, or the policy never drafts again.
    #[test]
    fn a_cold_first_verify_of_a_width_is_not_its_cost() {
        let mut d = DraftLength::new(3, true);
        d.observe(0, 0, 1.0, 0.0);
        d.observe(0, 0, 1.0, 0.0);
        d.observe(3, 3, 40.0, 0.3);
        assert_eq!(
            d.choose(),
            3,
            "the cold 40 ms run was taken as the cost of width 4"
        );
        // A second run of the same width is recorded: a width that stays dear is avoided.
        d.observe(3, 3, 40.0, 0.3);
        assert!(
            d.choose() < 3,
            "a measured 40 ms width-4 verify is still chosen"
        );
    }

    /// Drafts that are never right (junk, a random-weight MTP head) are given up after four
    /// steps on a machine where a wider verify costs 30% more per token (a plain EMA of 0.1
    /// from the prior drafted in all ten). Four: the acceptance mean after m rejections is
    /// 0.7 / (m + 1), and one draft pays while it beats the prior's 15% per extra token.
    #[test]
    fn a_drafter_that_is_never_right_is_given_up_quickly() {
        let mut d = DraftLength::new(3, true);
        let mut drafting = 0;
        for _ in 0..10 {
            let n = d.choose();
            if n > 0 {
                drafting += 1;
            }
            d.observe(n, 0, 1.0 + 0.3 * n as f64, 0.0);
        }
        assert!(drafting <= 4, "{drafting} of the first 10 steps drafted");
    }

    /// Probes back off while they fail (one in 16, 32, 64, then 128 steps) and the policy
    /// still finds drafts that have turned good: after 600 steps of rejections, all-kept
    /// drafts bring the length back to the maximum within PROBE_MAX + 16 steps.
    #[test]
    fn failed_probes_back_off_and_a_recovered_drafter_is_found() {
        let mut d = DraftLength::new(3, true);
        let mut drafting = 0;
        for _ in 0..600 {
            let n = d.choose();
            if n > 0 {
                drafting += 1;
            }
            d.observe(n, 0, 1.0 + 0.3 * n as f64, 0.0);
        }
        // Four steps to give up, then probes at 15, 47, 111, 239, 367, 495 at the most.
        assert!(drafting <= 10, "{drafting} of 600 junk steps drafted");
        let mut back = None;
        for i in 0..PROBE_MAX + 16 {
            let n = d.choose();
            d.observe(n, n, 1.0 + 0.3 * n as f64, 0.0);
            if n == 3 {
                back = Some(i);
                break;
            }
        }
        assert!(back.is_some(), "good drafts not found again");
    }

    #[test]
    fn constant_rejection_drives_the_length_down_and_constant_acceptance_up() {
        let mut d = DraftLength::new(6, true);
        for _ in 0..200 {
            let n = d.choose();
            // Step cost grows 10% per extra token; drafts cost 0.05 of a step each.
            d.observe(n, 0, 1.0 + 0.1 * n as f64, 0.05 * n as f64);
        }
        let low: Vec<usize> = (0..15).map(|_| d.choose()).collect();
        assert!(low.iter().all(|&n| n <= 1), "after rejections: {low:?}");

        let mut d = DraftLength::new(6, true);
        for _ in 0..200 {
            let n = d.choose();
            d.observe(n, n, 1.0 + 0.1 * n as f64, 0.05 * n as f64);
        }
        assert_eq!(d.choose(), 6);
    }
}
