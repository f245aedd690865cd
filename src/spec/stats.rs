//! Speculation statistics, printed at the end of a run and written by `--stats-json`.

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct SpecStats {
    pub drafter: String,
    /// The most drafts per step (`--draft-n`).
    pub draft_n: usize,
    pub adaptive: bool,
    /// Verify steps (trunk forwards during decoding).
    pub steps: usize,
    pub drafted: usize,
    pub accepted: usize,
    /// accepted / drafted.
    pub acceptance: f64,
    /// Per depth j (index j−1): drafts proposed at depth j, checked at depth j (every draft
    /// before it was kept), kept at depth j, and kept / checked (the conditional rate).
    pub drafted_per_depth: Vec<usize>,
    pub checked_per_depth: Vec<usize>,
    pub accepted_per_depth: Vec<usize>,
    pub acceptance_per_depth: Vec<f64>,
    /// Steps whose first rejected draft was at depth j (index j−1): rollbacks by depth.
    pub rejected_at_depth: Vec<usize>,
    /// Tokens produced by verify steps per step (kept drafts + the correction/bonus token).
    pub tokens_per_step: f64,
    /// Steps per batch width k (index k−1) and their mean verify time.
    pub steps_per_k: Vec<usize>,
    pub verify_ms_per_k: Vec<f64>,
    /// Time per phase: drafting, the verify forward, restoring state after a rejection,
    /// and refreshing the drafter (MTP catch-up on kept tokens).
    pub draft_ms: f64,
    pub verify_ms: f64,
    pub rollback_ms: f64,
    pub catchup_ms: f64,
    /// Tokens emitted by verify steps.
    #[serde(skip)]
    pub step_tokens: usize,
}

impl SpecStats {
    pub fn new(drafter: &str, draft_n: usize, adaptive: bool) -> SpecStats {
        SpecStats {
            drafter: drafter.to_string(),
            draft_n,
            adaptive,
            drafted_per_depth: vec![0; draft_n],
            checked_per_depth: vec![0; draft_n],
            accepted_per_depth: vec![0; draft_n],
            rejected_at_depth: vec![0; draft_n],
            steps_per_k: vec![0; draft_n + 1],
            verify_ms_per_k: vec![0.0; draft_n + 1],
            ..Default::default()
        }
    }

    pub(crate) fn record_step(&mut self, drafted: usize, accepted: usize, verify_ms: f64) {
        self.steps += 1;
        self.drafted += drafted;
        self.accepted += accepted;
        for j in 0..drafted {
            self.drafted_per_depth[j] += 1;
            if j <= accepted {
                self.checked_per_depth[j] += 1;
            }
            if j < accepted {
                self.accepted_per_depth[j] += 1;
            }
        }
        if accepted < drafted {
            self.rejected_at_depth[accepted] += 1;
        }
        self.steps_per_k[drafted] += 1;
        self.verify_ms_per_k[drafted] += verify_ms;
        self.verify_ms += verify_ms;
    }

    pub(crate) fn finish(&mut self) {
        let ratio = |a: usize, b: usize| if b > 0 { a as f64 / b as f64 } else { 0.0 };
        self.acceptance = ratio(self.accepted, self.drafted);
        self.acceptance_per_depth = self
            .accepted_per_depth
            .iter()
            .zip(&self.checked_per_depth)
            .map(|(&a, &d)| ratio(a, d))
            .collect();
        for (ms, &n) in self.verify_ms_per_k.iter_mut().zip(&self.steps_per_k) {
            if n > 0 {
                *ms /= n as f64;
            }
        }
        self.tokens_per_step = ratio(self.step_tokens, self.steps);
    }

    /// One human-readable summary line block.
    pub fn summary(&self) -> String {
        let depth: Vec<String> = self
            .acceptance_per_depth
            .iter()
            .enumerate()
            .filter(|(j, _)| self.checked_per_depth[*j] > 0)
            .map(|(j, a)| format!("{}:{:.0}%", j + 1, a * 100.0))
            .collect();
        format!(
            "speculation ({}, n {}{}): {} steps, drafted {}, accepted {} ({:.1}%), {:.2} tokens/step | per depth {} | draft {:.1} ms, verify {:.1} ms, rollback {:.1} ms, catch-up {:.1} ms",
            self.drafter,
            self.draft_n,
            if self.adaptive { ", adaptive" } else { "" },
            self.steps,
            self.drafted,
            self.accepted,
            self.acceptance * 100.0,
            self.tokens_per_step,
            depth.join(" "),
            self.draft_ms,
            self.verify_ms,
            self.rollback_ms,
            self.catchup_ms
        )
    }
}
