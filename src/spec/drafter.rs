//! The drafter interface: something that guesses the next few tokens cheaply. The driver
//! verifies every guess with the trunk, so a drafter can only cost time, never change output.

use super::target::Target;
use super::SpecError;

pub trait Drafter {
    /// Short name for logs and statistics ("mtp", "lookup", "oracle").
    fn name(&self) -> &'static str;

    /// The trunk has just taken `tokens` for good: they sit at positions
    /// `target.n_past() − tokens.len() ..`, and `hidden` holds their post-final-norm hN rows
    /// ([tokens.len()][n_embd]). Called for every prompt chunk and after every verify step
    /// (with the kept part of the batch), in order. Drafters that keep no model state need
    /// not implement it.
    fn commit(
        &mut self,
        _target: &mut dyn Target,
        _tokens: &[u32],
        _hidden: &[f32],
    ) -> Result<(), SpecError> {
        Ok(())
    }

    /// Runs work that `commit` deferred (the MTP catch-up). The driver calls it before each
    /// draft and at the end of a run, so the drafter's state is complete when it is left;
    /// `draft` flushes too, so calling it is never needed for correct drafts.
    fn flush(&mut self, _target: &mut dyn Target) -> Result<(), SpecError> {
        Ok(())
    }

    /// Writes up to `n` guesses into `out` (cleared first). `history` is the whole sequence
    /// so far, prompt included; its last token is the certain token at position
    /// `target.n_past()` that the trunk has not run yet. Fewer than `n` (even none) is fine.
    fn draft(
        &mut self,
        target: &mut dyn Target,
        history: &[u32],
        n: usize,
        out: &mut Vec<u32>,
    ) -> Result<(), SpecError>;
}
