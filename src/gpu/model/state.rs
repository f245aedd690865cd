//! Per-sequence state on the device: the f16 KV cache of every attention layer, the conv and
//! recurrent state of every GDN layer, the MTP block's KV cache, and the split-KV attention
//! scratch (sized by the context). The GPU counterpart of [`crate::model::qwen35::SeqState`],
//! same layouts (conv `[d_conv−1][conv_dim]` oldest first; ssm `[h_v][d][d]` transposed).

use crate::model::qwen35::{Config, LayerType};

use super::super::buffer::GpuBuf;
use super::super::device::Gpu;
use super::super::error::{GpuError, Result};
use super::super::ops::{AttnScratch, KvCache};
use super::forward::MAX_BATCH;

pub enum GpuLayerState {
    Gdn {
        /// [3][conv_dim] f32.
        conv: GpuBuf<f32>,
        /// [h_v][d][d] f32, element (a, b) of head j at j·d² + b·d + a.
        ssm: GpuBuf<f32>,
    },
    Attention(KvCache),
}

pub struct GpuSeqState {
    /// Unique per state: CUDA graphs that captured this state's buffers are keyed by it.
    pub(crate) id: u64,
    /// Tokens already in the caches (the position of the next token).
    pub n_past: usize,
    /// Capacity of the KV caches in tokens.
    pub n_ctx: usize,
    pub layers: Vec<GpuLayerState>,
    /// The MTP block's KV cache and fill.
    pub mtp_kv: Option<KvCache>,
    pub mtp_n_past: usize,
    pub(crate) attn_scratch: AttnScratch,
    /// Device bytes held.
    pub bytes: usize,
}

impl GpuSeqState {
    pub fn new(gpu: &Gpu, cfg: &Config, n_ctx: usize) -> Result<GpuSeqState> {
        if n_ctx == 0 {
            return Err(GpuError::shape("GpuSeqState::new", "n_ctx = 0"));
        }
        let mut bytes = 0usize;
        let mut kv = |what: &str| -> Result<KvCache> {
            bytes += 2 * 2 * n_ctx * cfg.attn_kv_dim();
            KvCache::new(gpu, n_ctx, cfg.n_head_kv, cfg.head_dim, what)
        };
        let mut layers = Vec::with_capacity(cfg.n_layer());
        for i in 0..cfg.n_layer() {
            layers.push(match cfg.layer_type(i) {
                LayerType::Gdn => GpuLayerState::Gdn {
                    conv: gpu
                        .alloc_zeros(cfg.gdn_conv_state_len(), &format!("layer {i} conv state"))?,
                    ssm: gpu
                        .alloc_zeros(cfg.gdn_ssm_state_len(), &format!("layer {i} GDN state"))?,
                },
                LayerType::Attention => GpuLayerState::Attention(kv(&format!("layer {i}"))?),
            });
        }
        let mtp_kv = match cfg.mtp_block() {
            Some(_) => Some(kv("MTP block")?),
            None => None,
        };
        bytes += 4 * (cfg.gdn_conv_state_len() + cfg.gdn_ssm_state_len()) * cfg.n_gdn_layers();
        let attn_scratch = AttnScratch::new(gpu, MAX_BATCH, cfg.n_head, n_ctx)?;
        Ok(GpuSeqState {
            id: super::super::graph::next_id(),
            n_past: 0,
            n_ctx,
            layers,
            mtp_kv,
            mtp_n_past: 0,
            attn_scratch,
            bytes,
        })
    }

    /// Forgets everything: the next token is position 0 again (zeroes the GDN states; KV rows
    /// are overwritten before they are read).
    pub fn reset(&mut self, gpu: &Gpu) -> Result<()> {
        self.n_past = 0;
        self.mtp_n_past = 0;
        for l in &mut self.layers {
            if let GpuLayerState::Gdn { conv, ssm } = l {
                for b in [conv, ssm] {
                    gpu.stream
                        .memset_zeros(&mut b.slice)
                        .map_err(GpuError::driver("zeroing the GDN state"))?;
                }
            }
        }
        Ok(())
    }
}
