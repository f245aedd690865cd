//! Per-sequence state of the qwen35 trunk: the f16 KV cache of every attention layer, the
//! conv and recurrent state of every GDN layer, and the MTP block's own KV cache. Sized once
//! from the context length; nothing here grows during decoding.

use half::f16;

use super::config::{Config, LayerType};

/// State of one trunk layer.
pub enum LayerState {
    Gdn {
        /// The last `d_conv − 1` raw `attn_qkv` outputs, oldest first: [d_conv−1][conv_dim].
        conv: Vec<f32>,
        /// One d×d matrix per value head, stored transposed (`s[b·d + a] = S[a][b]`).
        ssm: Vec<f32>,
    },
    Attention {
        /// [n_ctx][n_head_kv·head_dim] f16.
        k: Vec<f16>,
        /// [n_ctx][n_head_kv·head_dim] f16.
        v: Vec<f16>,
    },
}

/// Everything a sequence carries between forward calls.
pub struct SeqState {
    /// Tokens already in the caches (the position of the next token).
    pub n_past: usize,
    /// Capacity of the KV caches in tokens.
    pub n_ctx: usize,
    pub layers: Vec<LayerState>,
    /// The MTP block's KV cache ([n_ctx][kv_row] each) and its fill; empty without MTP.
    pub mtp_k: Vec<f16>,
    pub mtp_v: Vec<f16>,
    pub mtp_n_past: usize,
}

impl SeqState {
    pub fn new(cfg: &Config, n_ctx: usize) -> SeqState {
        let kv_row = cfg.attn_kv_dim();
        let layers = (0..cfg.n_layer())
            .map(|i| match cfg.layer_type(i) {
                LayerType::Gdn => LayerState::Gdn {
                    conv: vec![0.0; cfg.gdn_conv_state_len()],
                    ssm: vec![0.0; cfg.gdn_ssm_state_len()],
                },
                LayerType::Attention => LayerState::Attention {
                    k: vec![f16::ZERO; n_ctx * kv_row],
                    v: vec![f16::ZERO; n_ctx * kv_row],
                },
            })
            .collect();
        let mtp_len = if cfg.mtp_block().is_some() {
            n_ctx * kv_row
        } else {
            0
        };
        SeqState {
            n_past: 0,
            n_ctx,
            layers,
            mtp_k: vec![f16::ZERO; mtp_len],
            mtp_v: vec![f16::ZERO; mtp_len],
            mtp_n_past: 0,
        }
    }

    /// Forgets everything: the next token is position 0 again.
    pub fn reset(&mut self) {
        self.n_past = 0;
        self.mtp_n_past = 0;
        for l in &mut self.layers {
            if let LayerState::Gdn { conv, ssm } = l {
                conv.fill(0.0);
                ssm.fill(0.0);
            }
        }
    }

    /// Copies the recurrent (GDN) part of the state, for speculative rollback.
    pub fn save_recurrent(&self, out: &mut RecurrentSnapshot) {
        out.n_past = self.n_past;
        out.data.clear();
        for l in &self.layers {
            if let LayerState::Gdn { conv, ssm } = l {
                out.data.extend_from_slice(conv);
                out.data.extend_from_slice(ssm);
            }
        }
    }

    /// Restores a snapshot taken by [`SeqState::save_recurrent`] and truncates the KV caches
    /// to its position (KV rows past `n_past` are simply overwritten later).
    pub fn restore_recurrent(&mut self, snap: &RecurrentSnapshot) {
        let mut off = 0;
        for l in &mut self.layers {
            if let LayerState::Gdn { conv, ssm } = l {
                let (nc, ns) = (conv.len(), ssm.len());
                conv.copy_from_slice(&snap.data[off..off + nc]);
                off += nc;
                ssm.copy_from_slice(&snap.data[off..off + ns]);
                off += ns;
            }
        }
        self.n_past = snap.n_past;
        self.mtp_n_past = self.mtp_n_past.min(snap.n_past);
    }
}

/// The GDN conv + recurrent state of every layer at one position.
#[derive(Default, Clone)]
pub struct RecurrentSnapshot {
    pub n_past: usize,
    pub data: Vec<f32>,
}
