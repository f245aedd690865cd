//! The GPU placements as a speculative [`Target`]: a [`GpuModel`] (whole model on the GPU, or
//! the hybrid split with some dense FFNs on the CPU), its [`GpuSeqState`] on the device, and a
//! [`GpuSnapshotRing`] on the device. A verify batch of k <= 8 tokens is one
//! weight-stationary forward; the GDN kernels write the per-token snapshots as they go;
//! `keep` restores a slot device to device and moves `n_past` back (attention KV rows past it
//! are overwritten later). The MTP block runs on the GPU with its KV cache on the device, so
//! the CPU [`super::MtpDrafter`] drafts on the GPU unchanged.

use crate::gpu::{GpuModel, GpuSeqState, GpuSnapshotRing, MAX_K};
use crate::model::qwen35::{ForwardOutput, Logits};

use super::target::Target;
use super::SpecError;

pub struct GpuTarget<'m, 'a> {
    pub model: &'m mut GpuModel<'a>,
    pub st: &'m mut GpuSeqState,
    ring: GpuSnapshotRing,
    /// CPU threads of the hybrid split's FFN (statistics; 1 for the whole-GPU placement).
    threads: usize,
    /// (position of the first token, k) of the last verify batch not yet settled by `keep`.
    pending: Option<(usize, usize)>,
}

impl<'m, 'a> GpuTarget<'m, 'a> {
    /// Wraps a model, its state and a ring allocated beforehand with
    /// [`GpuSnapshotRing::new`] (allocate it before anything else large on the device).
    /// The ring's slots, capped at [`MAX_K`] − 1, bound the drafts per step.
    /// Ends the target and hands its snapshot ring back, for the next request to reuse.
    pub fn into_ring(self) -> GpuSnapshotRing {
        self.ring
    }

    pub fn new(
        model: &'m mut GpuModel<'a>,
        st: &'m mut GpuSeqState,
        ring: GpuSnapshotRing,
        threads: usize,
    ) -> Self {
        tracing::debug!(
            slots = ring.n_slots(),
            mib = ring.bytes() as f64 / (1 << 20) as f64,
            "GDN snapshot ring on the device"
        );
        GpuTarget {
            model,
            st,
            ring,
            threads,
            pending: None,
        }
    }
}

impl GpuTarget<'_, '_> {
    /// The verify forward behind [`Target::verify`] (logit rows downloaded) and
    /// [`Target::verify_argmax`] (`argmax` given: only each row's argmax comes back).
    fn verify_with(
        &mut self,
        tokens: &[u32],
        out: &mut ForwardOutput,
        argmax: Option<&mut Vec<u32>>,
    ) -> Result<(), SpecError> {
        let k = tokens.len();
        if k == 0 || k - 1 > self.max_drafts() {
            return Err(SpecError::BatchTooWide {
                k,
                slots: self.max_drafts(),
            });
        }
        let pos0 = self.st.n_past;
        self.pending = None;
        match argmax {
            Some(a) => {
                self.model
                    .forward_with_snapshots_argmax(self.st, tokens, out, &mut self.ring, a)?
            }
            None => self
                .model
                .forward_with_snapshots(self.st, tokens, out, &mut self.ring)?,
        }
        self.pending = Some((pos0, k));
        Ok(())
    }

    /// The checks and position update shared by the MTP forwards.
    fn begin_mtp(
        &mut self,
        pos: usize,
        tokens: &[u32],
        hidden_in: &[f32],
    ) -> Result<(), SpecError> {
        super::target::check_mtp_args(
            pos,
            self.st.mtp_n_past,
            tokens,
            hidden_in,
            self.model.cfg.n_embd,
        )?;
        self.st.mtp_n_past = pos;
        Ok(())
    }
}

impl Target for GpuTarget<'_, '_> {
    fn n_embd(&self) -> usize {
        self.model.cfg.n_embd
    }
    fn n_vocab(&self) -> usize {
        self.model.cfg.n_vocab
    }
    fn has_mtp(&self) -> bool {
        self.model.cfg.mtp_block().is_some() && self.st.mtp_kv.is_some()
    }
    fn n_past(&self) -> usize {
        self.st.n_past
    }
    fn n_ctx(&self) -> usize {
        self.st.n_ctx
    }
    fn n_threads(&self) -> usize {
        self.threads
    }
    fn max_drafts(&self) -> usize {
        self.ring.n_slots().min(MAX_K - 1)
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
        self.verify_with(tokens, out, None)
    }

    fn verify_argmax(
        &mut self,
        tokens: &[u32],
        out: &mut ForwardOutput,
        argmax: &mut Vec<u32>,
    ) -> Result<(), SpecError> {
        self.verify_with(tokens, out, Some(argmax))
    }

    fn mtp_forward_argmax(
        &mut self,
        pos: usize,
        token: u32,
        hidden_in: &[f32],
        out: &mut ForwardOutput,
    ) -> Result<u32, SpecError> {
        self.begin_mtp(pos, &[token], hidden_in)?;
        let mut a = Vec::with_capacity(1);
        self.model
            .mtp_forward_argmax(self.st, &[token], hidden_in, out, &mut a)?;
        a.first().copied().ok_or(SpecError::Model(
            crate::model::qwen35::ModelError::Inconsistent("no MTP argmax".into()),
        ))
    }

    fn keep(&mut self, keep: usize) -> Result<(), SpecError> {
        let Some((pos0, k)) = self.pending.take() else {
            return Err(SpecError::NoBatch);
        };
        if keep == 0 || keep > k {
            return Err(SpecError::BadKeep { keep, k });
        }
        if keep < k {
            self.model
                .restore_snapshot(&self.ring, keep - 1, self.st, pos0 + keep)?;
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
        self.begin_mtp(pos, tokens, hidden_in)?;
        Ok(self
            .model
            .mtp_forward_rows(self.st, tokens, hidden_in, want, out)?)
    }
}
