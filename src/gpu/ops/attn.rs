//! Gated-attention decode over an f16 KV cache (`cuda/attn.cu`), spec/qwen35-forward.md §3.

use super::super::buffer::{GpuBuf, View, ViewMut};
use super::super::device::Gpu;
use super::super::error::{GpuError, Result};
use super::{as_i32, blocks_for, launch, launch_cfg, need, DevPos};

/// head_dims `attn_partial` is instanced for (`attn_partial_hd{64,128,256}`; the 27B uses
/// 256, the small test models 64 and 128).
pub const ATTN_HEAD_DIMS: [usize; 3] = [64, 128, 256];
/// The largest of [`ATTN_HEAD_DIMS`] (scratch rows are sized by it).
const ATTN_MAX_HEAD_DIM: usize = 256;
const CHUNK: usize = 256; // ATTN_CHUNK
const MAX_GROUP: usize = 8; // ATTN_MAXG

/// One layer's KV cache: K and V as f16 bits, [n_ctx][n_kv * head_dim] each.
pub struct KvCache {
    pub(crate) k: GpuBuf<u16>,
    pub(crate) v: GpuBuf<u16>,
    pub n_ctx: usize,
    pub n_kv: usize,
    pub head_dim: usize,
}

impl KvCache {
    /// `head_dim` must be one of [`ATTN_HEAD_DIMS`].
    pub fn new(
        gpu: &Gpu,
        n_ctx: usize,
        n_kv: usize,
        head_dim: usize,
        what: &str,
    ) -> Result<KvCache> {
        if !ATTN_HEAD_DIMS.contains(&head_dim) {
            return Err(GpuError::shape(
                "KvCache::new",
                format!(
                    "{what}: head_dim {head_dim}; the kernels are built for {ATTN_HEAD_DIMS:?}"
                ),
            ));
        }
        let n = n_ctx * n_kv * head_dim;
        Ok(KvCache {
            k: gpu.alloc_zeros(n, &format!("{what} K cache"))?,
            v: gpu.alloc_zeros(n, &format!("{what} V cache"))?,
            n_ctx,
            n_kv,
            head_dim,
        })
    }

    /// K cache, [n_ctx][n_kv * head_dim] f16 bits.
    pub fn k(&self) -> View<'_, u16> {
        self.k.view()
    }

    pub fn v(&self) -> View<'_, u16> {
        self.v.view()
    }

    /// Writable caches (to preload or restore them).
    pub fn k_v_mut(&mut self) -> (&mut GpuBuf<u16>, &mut GpuBuf<u16>) {
        (&mut self.k, &mut self.v)
    }
}

/// Split-KV partial results, sized for up to `max_tok` tokens, `n_head` heads and `n_ctx`
/// cache positions.
pub struct AttnScratch {
    part_o: GpuBuf<f32>,
    part_ml: GpuBuf<f32>,
    max_tok: usize,
    n_head: usize,
    max_split: usize,
    /// Launch the splits of the whole context (CUDA graph capture: the grid cannot follow
    /// the position at replay); otherwise just the splits up to the last token.
    pub(crate) whole_context_grid: bool,
}

impl AttnScratch {
    /// Launch the splits of the whole context (as a captured CUDA graph does) instead of
    /// those up to the last token; the results are the same (tests).
    pub fn set_whole_context_grid(&mut self, on: bool) {
        self.whole_context_grid = on;
    }

    pub fn new(gpu: &Gpu, max_tok: usize, n_head: usize, n_ctx: usize) -> Result<AttnScratch> {
        let max_split = n_ctx.div_ceil(CHUNK).max(1);
        let rows = max_tok * n_head * max_split;
        Ok(AttnScratch {
            part_o: gpu.alloc_zeros(rows * ATTN_MAX_HEAD_DIM, "attention partials")?,
            part_ml: gpu.alloc_zeros(rows * 2, "attention softmax partials")?,
            max_tok,
            n_head,
            max_split,
            whole_context_grid: false,
        })
    }
}

impl Gpu {
    /// Writes k and v ([ntok][n_kv * head_dim] f32) of tokens at positions pos0.. into the cache,
    /// rounded to f16 (nearest even).
    pub fn kv_store(
        &self,
        cache: &mut KvCache,
        k: View<'_, f32>,
        v: View<'_, f32>,
        ntok: usize,
        pos: DevPos<'_>,
    ) -> Result<()> {
        const OP: &str = "kv_store";
        let pos0 = pos.host;
        let kv_dim = cache.n_kv * cache.head_dim;
        if pos0 + ntok > cache.n_ctx {
            return Err(GpuError::shape(
                OP,
                format!(
                    "positions {pos0}..{} past n_ctx {}",
                    pos0 + ntok,
                    cache.n_ctx
                ),
            ));
        }
        need(OP, "k", k.len(), ntok * kv_dim)?;
        need(OP, "v", v.len(), ntok * kv_dim)?;
        if pos.off != 0 {
            return Err(GpuError::shape(
                OP,
                "a position offset (the kernel reads *pos only)",
            ));
        }
        let (kp, vp, kc, vc, pp) = (k.ptr, v.ptr, cache.k.ptr, cache.v.ptr, pos.ptr);
        let (kd, nt) = (as_i32(OP, "kv_dim", kv_dim)?, as_i32(OP, "ntok", ntok)?);
        let mut b = self.launcher(&self.k.kv_store);
        b.arg(&kp) /* k */
            .arg(&vp) /* v */
            .arg(&kc) /* k_cache */
            .arg(&vc) /* v_cache */
            .arg(&kd) /* kv_dim */
            .arg(&nt) /* ntok */
            .arg(&pp); /* pos_p */
        launch(
            OP,
            &mut b,
            launch_cfg((blocks_for(OP, ntok * kv_dim, 256)?, 1, 1), 256),
        )
    }

    /// Causal attention of ntok query tokens at positions pos0.. (their K/V already stored)
    /// over the cache: q is [ntok][n_head][hd] (normed and roped), out [ntok][n_head][hd],
    /// hd = the cache's head_dim.
    /// Query head h uses KV head h / (n_head / n_kv); scores are scaled by `scale`.
    #[allow(clippy::too_many_arguments)]
    pub fn attn_decode(
        &self,
        q: View<'_, f32>,
        cache: &KvCache,
        scratch: &mut AttnScratch,
        out: ViewMut<'_, f32>,
        n_head: usize,
        ntok: usize,
        pos: DevPos<'_>,
        scale: f32,
    ) -> Result<()> {
        const OP: &str = "attn_decode";
        let pos0 = pos.host;
        let n_kv = cache.n_kv;
        let hd = cache.head_dim;
        let fi = ATTN_HEAD_DIMS
            .iter()
            .position(|&x| x == hd)
            .ok_or_else(|| GpuError::shape(OP, format!("head_dim {hd} not instanced")))?;
        if n_kv == 0 || n_head % n_kv != 0 || n_head / n_kv > MAX_GROUP {
            return Err(GpuError::shape(
                OP,
                format!(
                    "n_head {n_head}, n_kv {n_kv}: need n_head = g * n_kv with g <= {MAX_GROUP}"
                ),
            ));
        }
        let len = pos0 + ntok;
        if ntok == 0 || len > cache.n_ctx {
            return Err(GpuError::shape(
                OP,
                format!("ntok {ntok} at pos0 {pos0} with n_ctx {}", cache.n_ctx),
            ));
        }
        let n_split = if scratch.whole_context_grid {
            scratch.max_split
        } else {
            len.div_ceil(CHUNK)
        };
        if ntok > scratch.max_tok || n_head != scratch.n_head || n_split > scratch.max_split {
            return Err(GpuError::shape(
                OP,
                format!(
                    "scratch is for {} tokens, {} heads, {} splits; asked {ntok}, {n_head}, {n_split}",
                    scratch.max_tok, scratch.n_head, scratch.max_split
                ),
            ));
        }
        need(OP, "q", q.len(), ntok * n_head * hd)?;
        need(OP, "out", out.len(), ntok * n_head * hd)?;
        let (qp, kc, vc, po, pml, op) = (
            q.ptr,
            cache.k.ptr,
            cache.v.ptr,
            scratch.part_o.ptr,
            scratch.part_ml.ptr,
            out.ptr,
        );
        let (nh, nk, pp, poff, ns) = (
            as_i32(OP, "n_head", n_head)?,
            as_i32(OP, "n_kv", n_kv)?,
            pos.ptr,
            as_i32(OP, "position offset", pos.off)?,
            as_i32(OP, "n_split", n_split)?,
        );
        let mut b = self.launcher(&self.k.attn_partial[fi]);
        b.arg(&qp) /* q */
            .arg(&kc) /* k_cache */
            .arg(&vc) /* v_cache */
            .arg(&po) /* part_o */
            .arg(&pml) /* part_ml */
            .arg(&nh) /* n_head */
            .arg(&nk) /* n_kv */
            .arg(&pp) /* pos_p */
            .arg(&poff) /* pos_off */
            .arg(&ns) /* n_split */
            .arg(&scale); /* scale */
        launch(
            OP,
            &mut b,
            launch_cfg((n_kv as u32, ntok as u32, n_split as u32), 256),
        )?;
        let hdi = as_i32(OP, "head_dim", hd)?;
        let mut b = self.launcher(&self.k.attn_combine);
        b.arg(&po) /* part_o */
            .arg(&pml) /* part_ml */
            .arg(&op) /* o */
            .arg(&nh) /* n_head */
            .arg(&ns) /* n_split */
            .arg(&hdi); /* hd */
        launch(
            OP,
            &mut b,
            launch_cfg((n_head as u32, ntok as u32, 1), hd as u32),
        )
    }
}
