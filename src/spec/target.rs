//! What the speculative driver needs from a model placement: a trunk forward that can
//! snapshot its recurrent state per batch token and roll back to one of them, and the MTP
//! block. [`CpuTarget`] is the CPU reference; GPU and hybrid placements implement the same
//! trait, so the driver and drafters never see where the layers run.

use crate::model::qwen35::{CpuModel, ForwardOutput, Logits, SeqState};

use super::ring::SnapshotRing;
use super::SpecError;

pub trait Target {
    fn n_embd(&self) -> usize;
    fn n_vocab(&self) -> usize;
    fn has_mtp(&self) -> bool;
    /// Tokens in the trunk's caches (the position of the next token).
    fn n_past(&self) -> usize;
    fn n_ctx(&self) -> usize;
    /// CPU threads the placement computes with (statistics).
    fn n_threads(&self) -> usize;
    /// The most drafts one verify batch may carry (snapshot slots).
    fn max_drafts(&self) -> usize;
    /// Plain trunk forward (prompt chunks); `out.hidden` gets every token's hN row.
    fn forward(
        &mut self,
        tokens: &[u32],
        want: Logits,
        out: &mut ForwardOutput,
    ) -> Result<(), SpecError>;
    /// Verify forward of `tokens` (the certain token, then drafts): logits and hN rows of every
    /// token, and a snapshot of the recurrent state after each token but the last.
    fn verify(&mut self, tokens: &[u32], out: &mut ForwardOutput) -> Result<(), SpecError>;
    /// Keeps the first `keep` tokens (1..=k) of the last verify batch and forgets the rest.
    fn keep(&mut self, keep: usize) -> Result<(), SpecError>;
    /// Runs the MTP block on `tokens` at positions `pos..`, paired with `hidden_in` rows
    /// ([T][n_embd]); MTP KV entries at positions >= `pos` are replaced. `out.hidden` gets
    /// every token's hM row, `out.logits` the rows `want` asks for.
    fn mtp_forward(
        &mut self,
        pos: usize,
        tokens: &[u32],
        hidden_in: &[f32],
        want: Logits,
        out: &mut ForwardOutput,
    ) -> Result<(), SpecError>;

    /// Greedy verification: [`Target::verify`] where only each row's argmax is needed
    /// (pushed onto `argmax`, one per token). GPU placements take it on the device and leave
    /// `out.logits` empty; the default takes it from the logits.
    fn verify_argmax(
        &mut self,
        tokens: &[u32],
        out: &mut ForwardOutput,
        argmax: &mut Vec<u32>,
    ) -> Result<(), SpecError> {
        self.verify(tokens, out)?;
        let nv = self.n_vocab();
        argmax.extend(out.logits.chunks_exact(nv).map(crate::sample::argmax));
        Ok(())
    }

    /// Greedy drafting: [`Target::mtp_forward`] of one token, returning the argmax of its
    /// logit row (taken on the device by GPU placements).
    fn mtp_forward_argmax(
        &mut self,
        pos: usize,
        token: u32,
        hidden_in: &[f32],
        out: &mut ForwardOutput,
    ) -> Result<u32, SpecError> {
        self.mtp_forward(pos, &[token], hidden_in, Logits::Last, out)?;
        let nv = self.n_vocab();
        let last = out.logits.len().checked_sub(nv).map(|s| &out.logits[s..]);
        last.map(crate::sample::argmax).ok_or(SpecError::Model(
            crate::model::qwen35::ModelError::Inconsistent(
                "mtp_forward returned no logit row".into(),
            ),
        ))
    }
}

/// The CPU placement: a [`CpuModel`], one sequence's state, and the snapshot ring.
pub struct CpuTarget<'m, 'a> {
    pub model: &'m mut CpuModel<'a>,
    pub st: &'m mut SeqState,
    ring: SnapshotRing,
    /// (position of the first token, k) of the last verify batch not yet settled by `keep`.
    pending: Option<(usize, usize)>,
}

impl<'m, 'a> CpuTarget<'m, 'a> {
    /// Allocates a ring for batches of up to `max_drafts + 1` tokens.
    pub fn new(model: &'m mut CpuModel<'a>, st: &'m mut SeqState, max_drafts: usize) -> Self {
        let ring = SnapshotRing::new(st, max_drafts);
        tracing::debug!(
            slots = max_drafts,
            mib = ring.bytes() as f64 / (1 << 20) as f64,
            "GDN snapshot ring allocated"
        );
        CpuTarget {
            model,
            st,
            ring,
            pending: None,
        }
    }
}

impl Target for CpuTarget<'_, '_> {
    fn n_embd(&self) -> usize {
        self.model.cfg.n_embd
    }
    fn n_vocab(&self) -> usize {
        self.model.cfg.n_vocab
    }
    fn has_mtp(&self) -> bool {
        self.model.has_mtp()
    }
    fn n_past(&self) -> usize {
        self.st.n_past
    }
    fn n_ctx(&self) -> usize {
        self.st.n_ctx
    }
    fn n_threads(&self) -> usize {
        self.model.n_threads()
    }
    fn max_drafts(&self) -> usize {
        self.ring.n_slots()
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        want: Logits,
        out: &mut ForwardOutput,
    ) -> Result<(), SpecError> {
        self.pending = None;
        Ok(self.model.forward(self.st, tokens, want, out)?)
    }

    fn verify(&mut self, tokens: &[u32], out: &mut ForwardOutput) -> Result<(), SpecError> {
        let k = tokens.len();
        if !self.ring.begin(k) {
            return Err(SpecError::BatchTooWide {
                k,
                slots: self.ring.n_slots(),
            });
        }
        let pos0 = self.st.n_past;
        self.pending = None;
        self.model.forward_with_snapshots(
            self.st,
            tokens,
            Logits::All,
            out,
            Some(&mut self.ring),
        )?;
        self.pending = Some((pos0, k));
        Ok(())
    }

    fn keep(&mut self, keep: usize) -> Result<(), SpecError> {
        let Some((pos0, k)) = self.pending.take() else {
            return Err(SpecError::NoBatch);
        };
        if keep == 0 || keep > k {
            return Err(SpecError::BadKeep { keep, k });
        }
        if keep < k {
            self.ring.restore(self.model.pool(), keep - 1, self.st);
            self.st.n_past = pos0 + keep;
        }
        Ok(())
    }

    fn mtp_forward(
        &mut self,
        pos: usize,
        tokens: &[u32],
        hidden_in: &[f32],
        want: Logits,
        out: &mut ForwardOutput,
    ) -> Result<(), SpecError> {
        check_mtp_args(
            pos,
            self.st.mtp_n_past,
            tokens,
            hidden_in,
            self.model.cfg.n_embd,
        )?;
        self.st.mtp_n_past = pos;
        Ok(self
            .model
            .mtp_forward_rows(self.st, tokens, hidden_in, want, out)?)
    }
}

/// The argument checks every [`Target::mtp_forward`] makes: no gap before `pos` in the MTP
/// cache (`filled` entries written) and one `n_embd` hidden row per token.
pub(crate) fn check_mtp_args(
    pos: usize,
    filled: usize,
    tokens: &[u32],
    hidden_in: &[f32],
    n_embd: usize,
) -> Result<(), SpecError> {
    if pos > filled {
        return Err(SpecError::MtpGap { pos, filled });
    }
    if hidden_in.len() != tokens.len() * n_embd {
        return Err(SpecError::HiddenRows {
            got: hidden_in.len(),
            want: tokens.len() * n_embd,
        });
    }
    Ok(())
}
