//! An estimate of the GPU engine's scratch memory: the activation buffers of one chunk
//! (`Bufs` in `gpu/model/forward.rs`, each `[GEMM_CHUNK][width]` f32 when the prefill GEMM
//! path is on, plus the quantized activations), the GEMM path's f16 weight and activation
//! scratch and cuBLAS workspace, and the split-KV attention partials (`AttnScratch`, growing
//! with the context). The weight-streaming slots depend on the split and are reserved by the
//! planner itself.

use crate::model::qwen35::Config;

/// Tokens per chunk of the GPU forward (`gpu::MAX_K`).
const MAX_BATCH: u64 = crate::gpu::MAX_K as u64;
/// Tokens of a prefill GEMM chunk (`gpu::GEMM_CHUNK`).
const GEMM_CHUNK: u64 = crate::gpu::GEMM_CHUNK as u64;
/// cuBLAS workspace and handle state (cuBLAS 12/13 use up to 32 MiB of workspace on Hopper;
/// doubled for slack).
const CUBLAS_BYTES: u64 = 64 << 20;
/// Mirrors `gpu/ops/attn.rs`: widest attention head the partials are laid out for, and the
/// cache positions per split-KV chunk.
const ATTN_MAX_HEAD_DIM: u64 = 256;
const ATTN_CHUNK: u64 = 256;

/// Scratch bytes as a function of the context length.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScratchModel {
    /// Bytes independent of the context (activation buffers).
    pub fixed_bytes: u64,
    /// Attention partial bytes per split-KV chunk of the context.
    pub bytes_per_ctx_chunk: u64,
    /// Context positions per chunk.
    pub ctx_chunk: u64,
}

impl ScratchModel {
    /// No scratch (for tests that count only weights and state).
    pub const NONE: ScratchModel = ScratchModel {
        fixed_bytes: 0,
        bytes_per_ctx_chunk: 0,
        ctx_chunk: 1,
    };

    pub fn from_config(c: &Config) -> ScratchModel {
        let (d, ff, nv) = (c.n_embd as u64, c.n_ff as u64, c.n_vocab as u64);
        let (cd, vd, hv) = (
            c.gdn_conv_dim() as u64,
            c.gdn_value_dim() as u64,
            c.ssm_dt_rank as u64,
        );
        let (qd, kvd) = (c.attn_out_dim() as u64, c.attn_kv_dim() as u64);
        let widths = d // x
            + 2 * d // xn
            + cd.max(2 * qd).max(ff) // p0
            + vd.max(kvd).max(ff) // p1
            + 2 * hv.max(kvd) // p2, p3
            + cd // u
            + vd.max(qd) // g
            + vd.max(qd).max(ff) // y
            + 2 * d // o, hidden
            + nv; // logits
        let qa_n = (2 * d).max(ff).max(vd).max(qd);
        let qa = MAX_BATCH * qa_n + 2 * 4 * MAX_BATCH * qa_n.div_ceil(32);
        // GEMM path: every buffer but the logits holds GEMM_CHUNK tokens; f16 copies of the
        // largest matrix (trunk or FFN; the LM head never goes through it) and of one chunk's
        // widest input.
        let max_cols = d.max(ff).max(vd).max(qd);
        let max_elems = (ff * d).max(cd * d).max(2 * qd * d).max(vd * d).max(qd * d);
        let gemm = 4 * (GEMM_CHUNK - MAX_BATCH) * (widths - nv)
            + 2 * max_elems
            + 2 * GEMM_CHUNK * max_cols
            + CUBLAS_BYTES;
        ScratchModel {
            fixed_bytes: 4 * MAX_BATCH * widths + qa + 8 * MAX_BATCH + gemm,
            bytes_per_ctx_chunk: 4 * MAX_BATCH * c.n_head as u64 * (ATTN_MAX_HEAD_DIM + 2),
            ctx_chunk: ATTN_CHUNK,
        }
    }

    /// Scratch bytes for a context of `n_ctx` tokens.
    pub fn bytes(&self, n_ctx: u64) -> u64 {
        self.fixed_bytes + self.bytes_per_ctx_chunk * n_ctx.div_ceil(self.ctx_chunk).max(1)
    }
}
