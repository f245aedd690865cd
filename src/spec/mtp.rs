//! The MTP drafter: the model's own next-next-token head (spec §7).
//!
//! Pairing invariant (spec §7.2): the MTP KV entry at position t is computed from
//! `(x_t, H_{t−1})`, where H is the trunk's post-final-norm hidden state. `pending_h` is H of
//! the last token the trunk has taken (zero at the start of a sequence).
//!
//! - Drafting from the certain token x at position p: step 0 runs `(x, pending_h)` at p and
//!   yields d₁ and the MTP output hM₁; step i runs `(d_i, hM_i)` at p+i (chained drafts).
//! - Catch-up after the trunk keeps `[x, d₁..d_m]` at p..p+m: positions p+1..p+m are re-run
//!   with the trunk's rows `H_p..H_{p+m−1}`, and `pending_h = H_{p+m}`. Position p is already
//!   right: draft step 0 wrote it from exactly `(x, pending_h)`. When nothing was drafted
//!   (or a prompt chunk arrives) every position is run.
//! - Catch-up is deferred: committed rows wait in a backlog and run as one batch when the next
//!   draft needs them ([`Drafter::flush`]), when `BACKLOG_ROWS` have gathered, or at the end of
//!   a run. While the adaptive length is not drafting, the MTP block then runs once per
//!   `BACKLOG_ROWS` tokens (one read of its weights) instead of once per token.

use crate::model::qwen35::{ForwardOutput, Logits};

use super::drafter::Drafter;
use super::target::Target;
use super::SpecError;

/// Catch-up rows gathered before they are run without waiting for a draft: bounds the
/// backlog's memory (`BACKLOG_ROWS × n_embd` floats) and keeps each flush a modest batch.
const BACKLOG_ROWS: usize = 64;

pub struct MtpDrafter {
    d: usize,
    /// H of the last trunk token, [n_embd].
    pending_h: Vec<f32>,
    /// A draft step's hidden input row, [n_embd].
    h_in: Vec<f32>,
    out: ForwardOutput,
    /// The position whose MTP KV entry the last draft wrote from `(x, pending_h)`.
    drafted_at: Option<usize>,
    /// Deferred catch-up: tokens at positions `backlog_pos..` and their hidden input rows.
    backlog_pos: usize,
    backlog_tokens: Vec<u32>,
    backlog_h: Vec<f32>,
}

impl MtpDrafter {
    /// A drafter for `target`'s MTP block; errors when the model has none.
    pub fn new(target: &dyn Target) -> Result<MtpDrafter, SpecError> {
        if !target.has_mtp() {
            return Err(SpecError::NoMtp);
        }
        let d = target.n_embd();
        Ok(MtpDrafter {
            d,
            pending_h: vec![0.0; d],
            h_in: vec![0.0; d],
            out: ForwardOutput::default(),
            drafted_at: None,
            backlog_pos: 0,
            backlog_tokens: Vec::with_capacity(BACKLOG_ROWS),
            backlog_h: Vec::with_capacity(BACKLOG_ROWS * d),
        })
    }
}

impl Drafter for MtpDrafter {
    fn name(&self) -> &'static str {
        "mtp"
    }

    fn commit(
        &mut self,
        target: &mut dyn Target,
        tokens: &[u32],
        hidden: &[f32],
    ) -> Result<(), SpecError> {
        let (d, n) = (self.d, tokens.len());
        if n == 0 {
            return Ok(());
        }
        if hidden.len() != n * d {
            return Err(SpecError::HiddenRows {
                got: hidden.len(),
                want: n * d,
            });
        }
        let start = target.n_past() - n;
        let skip = usize::from(self.drafted_at.take() == Some(start));
        if skip < n {
            if !self.backlog_tokens.is_empty()
                && self.backlog_pos + self.backlog_tokens.len() != start + skip
            {
                // Not a continuation of the backlog (cannot happen through the driver, which
                // commits in order): run what is there first.
                self.flush(target)?;
            }
            if self.backlog_tokens.is_empty() {
                self.backlog_pos = start + skip;
            }
            for t in skip..n {
                let src = if t == 0 {
                    &self.pending_h[..]
                } else {
                    &hidden[(t - 1) * d..t * d]
                };
                self.backlog_h.extend_from_slice(src);
                self.backlog_tokens.push(tokens[t]);
            }
        }
        self.pending_h.copy_from_slice(&hidden[(n - 1) * d..]);
        if self.backlog_tokens.len() >= BACKLOG_ROWS {
            self.flush(target)?;
        }
        Ok(())
    }

    fn flush(&mut self, target: &mut dyn Target) -> Result<(), SpecError> {
        if self.backlog_tokens.is_empty() {
            return Ok(());
        }
        let res = target.mtp_forward(
            self.backlog_pos,
            &self.backlog_tokens,
            &self.backlog_h,
            Logits::None,
            &mut self.out,
        );
        self.backlog_tokens.clear();
        self.backlog_h.clear();
        res
    }

    fn draft(
        &mut self,
        target: &mut dyn Target,
        history: &[u32],
        n: usize,
        out: &mut Vec<u32>,
    ) -> Result<(), SpecError> {
        out.clear();
        let Some(&last) = history.last() else {
            return Ok(());
        };
        if n == 0 {
            return Ok(());
        }
        self.flush(target)?;
        let d = self.d;
        let pos = target.n_past();
        self.h_in[..d].copy_from_slice(&self.pending_h);
        let mut tok = last;
        for i in 0..n {
            // Greedy drafts: only the argmax is needed (GPU placements take it on the device).
            tok = target.mtp_forward_argmax(pos + i, tok, &self.h_in[..d], &mut self.out)?;
            if i == 0 {
                self.drafted_at = Some(pos);
            }
            out.push(tok);
            self.h_in[..d].copy_from_slice(&self.out.hidden[..d]);
        }
        Ok(())
    }
}
