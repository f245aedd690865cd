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

use crate::model::qwen35::{ForwardOutput, Logits};

use super::drafter::Drafter;
use super::target::Target;
use super::SpecError;

pub struct MtpDrafter {
    d: usize,
    /// H of the last trunk token, [n_embd].
    pending_h: Vec<f32>,
    /// Hidden input rows for the MTP block, [T][n_embd]; grows to the largest commit.
    h_in: Vec<f32>,
    out: ForwardOutput,
    /// The position whose MTP KV entry the last draft wrote from `(x, pending_h)`.
    drafted_at: Option<usize>,
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
            h_in: vec![0.0; 8 * d],
            out: ForwardOutput::default(),
            drafted_at: None,
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
            let rows = n - skip;
            if self.h_in.len() < rows * d {
                self.h_in.resize(rows * d, 0.0);
            }
            for (r, t) in (skip..n).enumerate() {
                let src = if t == 0 {
                    &self.pending_h[..]
                } else {
                    &hidden[(t - 1) * d..t * d]
                };
                self.h_in[r * d..(r + 1) * d].copy_from_slice(src);
            }
            target.mtp_forward(
                start + skip,
                &tokens[skip..],
                &self.h_in[..rows * d],
                Logits::None,
                &mut self.out,
            )?;
        }
        self.pending_h.copy_from_slice(&hidden[(n - 1) * d..]);
        Ok(())
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
