//! The oracle drafter, for tests and for "simulated acceptance" benchmarks: it knows the
//! sequence the model will produce (recorded from a plain run) and proposes it, with wrong
//! tokens injected by a plan, so every accept, reject and rollback path can be driven on
//! purpose, even with random weights whose own MTP head never guesses right.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::drafter::Drafter;
use super::target::Target;
use super::SpecError;

/// Where the oracle lies.
#[derive(Clone, Debug)]
pub enum ErrorPlan {
    /// Never: every draft is the true continuation.
    None,
    /// Step s puts its first wrong token at depth `s mod (n + 1)` (depth n: none), so over
    /// any n + 1 consecutive steps the first rejection happens at every depth once.
    Cycle,
    /// Each draft is right with probability `rate`, independently (simulated acceptance).
    Rate { rate: f64, seed: u64 },
    /// Every draft is a random token (junk; almost never right).
    Junk { seed: u64 },
}

pub struct OracleDrafter {
    /// The whole expected sequence: prompt, then the continuation.
    truth: Vec<u32>,
    n_vocab: u32,
    plan: ErrorPlan,
    rng: ChaCha8Rng,
    step: usize,
}

impl OracleDrafter {
    pub fn new(truth: Vec<u32>, n_vocab: usize, plan: ErrorPlan) -> OracleDrafter {
        let seed = match plan {
            ErrorPlan::Rate { seed, .. } | ErrorPlan::Junk { seed } => seed,
            _ => 0,
        };
        OracleDrafter {
            truth,
            n_vocab: n_vocab.max(2) as u32,
            plan,
            rng: ChaCha8Rng::seed_from_u64(seed),
            step: 0,
        }
    }

    /// A token that is not `t`.
    fn wrong(&mut self, t: u32) -> u32 {
        let r = self.rng.gen_range(1..self.n_vocab);
        (t + r) % self.n_vocab
    }
}

impl Drafter for OracleDrafter {
    fn name(&self) -> &'static str {
        "oracle"
    }

    fn draft(
        &mut self,
        _: &mut dyn Target,
        history: &[u32],
        n: usize,
        out: &mut Vec<u32>,
    ) -> Result<(), SpecError> {
        out.clear();
        if let ErrorPlan::Junk { .. } = self.plan {
            out.extend((0..n).map(|_| self.rng.gen_range(0..self.n_vocab)));
            return Ok(());
        }
        let at = history.len();
        let avail = self.truth.len().saturating_sub(at).min(n);
        let step = self.step;
        self.step += 1;
        for i in 0..avail {
            let t = self.truth[at + i];
            let right = match self.plan {
                ErrorPlan::None => true,
                ErrorPlan::Cycle => i < step % (n + 1),
                ErrorPlan::Rate { rate, .. } => self.rng.gen::<f64>() < rate,
                ErrorPlan::Junk { .. } => false,
            };
            out.push(if right { t } else { self.wrong(t) });
        }
        Ok(())
    }
}
