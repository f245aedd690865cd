//! The GDN snapshot ring on the device: the conv and recurrent state of every GDN layer after
//! each token of a verify batch but the last (the live state), written by the GDN kernels
//! themselves during the forward, so recording costs no extra pass. Restoring slot t copies
//! it back into the live state (device to device). Attention KV needs no snapshot: rows past
//! the kept position are overwritten by later batches.
//!
//! Same contract as the CPU [`crate::spec::SnapshotRing`]: slot t holds the state after batch
//! token t; `n_slots` slots serve batches of up to `n_slots + 1` tokens.

use crate::model::qwen35::{Config, LayerType};

use super::super::buffer::{GpuBuf, ViewMut};
use super::super::device::Gpu;
use super::super::error::{GpuError, Result};
use super::state::{GpuLayerState, GpuSeqState};

/// One GDN layer's slots: conv `[n_slots][3][conv_dim]`, ssm `[n_slots][h_v][d][d]`.
struct LayerSlots {
    conv: GpuBuf<f32>,
    ssm: GpuBuf<f32>,
}

pub struct GpuSnapshotRing {
    /// Unique per ring: CUDA graphs that captured its slots' addresses are keyed by it.
    pub(crate) id: u64,
    n_slots: usize,
    conv_len: usize,
    ssm_len: usize,
    /// Per trunk layer (None for attention layers).
    layers: Vec<Option<LayerSlots>>,
    /// Slots the last forward wrote: `0..recording`.
    recording: usize,
    bytes: usize,
}

impl GpuSnapshotRing {
    /// Allocates (and zeroes) every slot now, so decoding never allocates and running out of
    /// device memory shows at start. `n_slots` may be 0 (a ring that records nothing).
    pub fn new(gpu: &Gpu, cfg: &Config, n_slots: usize) -> Result<GpuSnapshotRing> {
        let (conv_len, ssm_len) = (cfg.gdn_conv_state_len(), cfg.gdn_ssm_state_len());
        let mut layers = Vec::with_capacity(cfg.n_layer());
        let mut bytes = 0;
        for i in 0..cfg.n_layer() {
            layers.push(match cfg.layer_type(i) {
                LayerType::Gdn if n_slots > 0 => {
                    bytes += 4 * n_slots * (conv_len + ssm_len);
                    Some(LayerSlots {
                        conv: gpu.alloc_zeros(
                            n_slots * conv_len,
                            &format!("layer {i} conv snapshots"),
                        )?,
                        ssm: gpu
                            .alloc_zeros(n_slots * ssm_len, &format!("layer {i} GDN snapshots"))?,
                    })
                }
                _ => None,
            });
        }
        Ok(GpuSnapshotRing {
            id: super::super::graph::next_id(),
            n_slots,
            conv_len,
            ssm_len,
            layers,
            recording: 0,
            bytes,
        })
    }

    pub fn n_slots(&self) -> usize {
        self.n_slots
    }

    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Slots the current batch records (`begin`'s k − 1, at most `n_slots`).
    pub(crate) fn recording(&self) -> usize {
        self.recording
    }

    /// Prepares to record a batch of `k` tokens (slots `0..k−1`). Returns false when the
    /// ring is too small for the batch.
    pub fn begin(&mut self, k: usize) -> bool {
        let need = k.saturating_sub(1);
        self.recording = need.min(self.n_slots);
        need <= self.n_slots
    }

    /// The conv and ssm snapshot views of trunk layer `il` for the batch being recorded
    /// (None: an attention layer, or nothing to record).
    pub(crate) fn layer_views(
        &mut self,
        il: usize,
    ) -> Result<Option<(ViewMut<'_, f32>, ViewMut<'_, f32>)>> {
        let n = self.recording;
        let (cl, sl) = (self.conv_len, self.ssm_len);
        match self.layers.get_mut(il) {
            Some(Some(s)) if n > 0 => Ok(Some((
                s.conv.view_mut().sub(0, n * cl)?,
                s.ssm.view_mut().sub(0, n * sl)?,
            ))),
            _ => Ok(None),
        }
    }

    /// Copies slot `t` (the state after batch token `t`) into `st`'s GDN layers, on the
    /// device. A slot the last batch did not record is an error.
    pub fn restore(&self, gpu: &Gpu, t: usize, st: &mut GpuSeqState) -> Result<()> {
        if t >= self.recording {
            return Err(GpuError::shape(
                "snapshot restore",
                format!("slot {t} not recorded ({} slots written)", self.recording),
            ));
        }
        let (cl, sl) = (self.conv_len, self.ssm_len);
        for (ls, slots) in st.layers.iter_mut().zip(&self.layers) {
            if let (GpuLayerState::Gdn { conv, ssm }, Some(s)) = (ls, slots) {
                gpu.copy(s.conv.view().sub(t * cl, cl)?, &mut conv.view_mut())?;
                gpu.copy(s.ssm.view().sub(t * sl, sl)?, &mut ssm.view_mut())?;
            }
        }
        Ok(())
    }
}
