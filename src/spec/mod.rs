//! Speculative decoding: cheap guesses for the next tokens, checked by the trunk in one
//! batch per step (spec §7, issue 8).
//!
//! - [`drafter`]: the [`Drafter`] interface; [`mtp`] (the model's MTP head, chained drafts),
//!   [`lookup`] (n-gram prompt lookup), [`oracle`] (known continuation with planned errors,
//!   for tests and simulated-acceptance benchmarks);
//! - [`target`]: what a placement provides ([`Target`]), and the CPU one ([`CpuTarget`]);
//!   [`gpu_target`]: the whole-GPU and hybrid placements ([`GpuTarget`]);
//! - [`ring`]: the GDN snapshot ring used for rollback;
//! - [`verify`]: which drafts to keep (exact for deterministic sampling, rejection sampling
//!   with temperature);
//! - [`adaptive`]: the draft length per step; [`driver`]: the loop; [`stats`]: statistics.

pub mod adaptive;
pub mod drafter;
pub mod driver;
pub mod gpu_target;
pub mod lookup;
pub mod mtp;
pub mod oracle;
pub mod ring;
pub mod stats;
pub mod target;
pub mod verify;

pub use adaptive::DraftLength;
pub use drafter::Drafter;
pub use driver::{generate_speculative, greedy_tokens, SpecParams, StepCosts};
pub use gpu_target::GpuTarget;
pub use lookup::LookupDrafter;
pub use mtp::MtpDrafter;
pub use oracle::{ErrorPlan, OracleDrafter};
pub use ring::SnapshotRing;
pub use stats::SpecStats;
pub use target::{CpuTarget, Target};

use crate::model::qwen35::ModelError;

/// The most drafts per step the CLI accepts (each costs one snapshot slot, ~150 MB for 27B).
pub const MAX_DRAFT_N: usize = 16;

/// Which drafter `--draft` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DraftKind {
    /// The MTP head when the model has one, prompt lookup otherwise.
    Auto,
    /// The model's MTP head.
    Mtp,
    /// N-gram lookup in the prompt and output so far.
    Lookup,
}

impl DraftKind {
    /// The concrete drafter for a model with or without an MTP head.
    pub fn resolve(self, has_mtp: bool) -> Result<DraftKind, SpecError> {
        match (self, has_mtp) {
            (DraftKind::Auto, true) => Ok(DraftKind::Mtp),
            (DraftKind::Auto, false) => Ok(DraftKind::Lookup),
            (DraftKind::Mtp, false) => Err(SpecError::NoMtp),
            (k, _) => Ok(k),
        }
    }
}

/// Builds the drafter for a resolved kind (`Auto` resolves against `target`).
pub fn make_drafter(kind: DraftKind, target: &dyn Target) -> Result<Box<dyn Drafter>, SpecError> {
    Ok(match kind.resolve(target.has_mtp())? {
        DraftKind::Mtp => Box::new(MtpDrafter::new(target)?),
        _ => Box::new(LookupDrafter::new(1, 3, target.n_ctx())?),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Model(#[from] ModelError),

    #[error("MTP drafting asked for, but this model has no MTP head (use --draft lookup)")]
    NoMtp,

    #[error("draft length {n} is out of range: 1..={slots} (snapshot slots allocated)")]
    BadDraftN { n: usize, slots: usize },

    #[error("a verify batch of {k} tokens needs {} snapshot slots, only {slots} allocated", k - 1)]
    BatchTooWide { k: usize, slots: usize },

    #[error("keep({keep}) after a verify batch of {k} tokens (must be 1..={k})")]
    BadKeep { keep: usize, k: usize },

    #[error("keep() without a verify batch to settle")]
    NoBatch,

    #[error("MTP forward at position {pos} but its KV cache holds only {filled} positions")]
    MtpGap { pos: usize, filled: usize },

    #[error("{got} hidden values given, {want} expected")]
    HiddenRows { got: usize, want: usize },

    #[error("n-gram sizes {min}..={max} are out of range (1 <= min <= max <= 4)")]
    BadNgram { min: usize, max: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_mtp_when_present_and_mtp_without_a_head_is_an_error() {
        assert_eq!(DraftKind::Auto.resolve(true).unwrap(), DraftKind::Mtp);
        assert_eq!(DraftKind::Auto.resolve(false).unwrap(), DraftKind::Lookup);
        assert_eq!(DraftKind::Lookup.resolve(true).unwrap(), DraftKind::Lookup);
        assert!(matches!(
            DraftKind::Mtp.resolve(false),
            Err(SpecError::NoMtp)
        ));
    }
}
