//! Quantized and float mat-vec for 1..=8 tokens (`cuda/mmvq.cu`).
//!
//! Numerics: quantized weights (Q4_K, Q5_K, Q6_K, Q8_0) are multiplied with activations
//! quantized to 8 bits per 32 values (`d = amax/127`, `q = round(x/d)`, `s = d*sum(q)`, f32),
//! like llama.cpp's CUDA backend (Q8_1, but with f32 `d` and `s`), using exact integer dots
//! per group; against an f64 product of the dequantized weights with the unquantized f32
//! activations the relative L2 error is about 0.3-0.5% (activation rounding), against an f64
//! product with the same quantized activations it is f32 rounding (~1e-6). Float weights
//! (F32, F16, BF16) use the f32 activations directly (f32 FMA). Row t of a k-token call is
//! bit-identical to a 1-token call on token t.

use simd::GgmlType;

use super::super::buffer::{GpuBuf, GpuMatrix, View, ViewMut};
use super::super::device::Gpu;
use super::super::error::{GpuError, Result};
use super::super::kernels::{mmv_index, MAX_K};
use super::{as_i32, blocks_for, launch, launch_cfg, need};

const OP: &str = "matvec";
const WARPS: usize = 4; // MMV_WARPS in mmvq.cu

/// Most CTAs per mat-vec launch: `HYBRID_MMV_BLOCKS_PER_SM` x the SM count when set (read
/// once), else no cap.
fn grid_cap(sm_count: i32) -> u32 {
    static PER_SM: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    let per_sm = *PER_SM.get_or_init(|| {
        super::super::env_number("HYBRID_MMV_BLOCKS_PER_SM").filter(|&v: &u32| v > 0)
    });
    per_sm.map_or(u32::MAX, |p| p.saturating_mul(sm_count.max(1) as u32))
}

/// Whether a quantized `rows` x `cols` matrix takes the kernel's split form (the warps of a
/// CTA share one row group and split its columns): wide matrices (fewer rows than columns),
/// unless `HYBRID_MMV_SPLIT=0` (read once). A whole-row warp walks a Q4_K row in cols / 1024
/// dependent steps at k = 1 (17 for the 27B's 5120 x 17408 FFN down), and a 48- or 5120-row
/// matrix has few warps to hide them; split, each warp takes a quarter of the steps on 4x the
/// warps. Measured on the H100 (docs/benchmarks/gpu-split-mmv-2026-12-06.md): the 27B's wide
/// matrices (48, 1024 and 5120 rows) get 7-32% faster, tall ones (6144 or 10240 x 5120) up to
/// 12% slower, hence the rule. The choice depends on the shape alone, so every k of one
/// matrix takes the same form (row t of a k-token call stays bit-identical to k = 1).
fn split_form(rows: usize, cols: usize) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON.get_or_init(|| super::super::env_switch("HYBRID_MMV_SPLIT", true));
    on && rows < cols
}

/// How many warps per 16-row CTA the tensor-core kernel (`mmv_q4_k_t_k*`, `mmv_q5_k_t_k*` in
/// `cuda/mmvq.cu`) gets for a `rows` x `cols` matrix, or None for matrices of fewer than
/// `HYBRID_MMVT_MIN_ROWS` rows (default 256: too few CTAs of 16 rows), which keep the dp4a
/// kernel. Wide matrices (fewer rows than columns) get 8 warps, tall ones 4
/// (`HYBRID_MMVT_WARPS=1..8` forces a count, for tuning). Like the split form, the choice
/// depends on the shape alone, so every k of one matrix takes the same kernel and a token's
/// bits do not depend on k.
fn mmvt_warps(rows: usize, cols: usize) -> Option<u32> {
    static CFG: std::sync::OnceLock<(usize, Option<u32>)> = std::sync::OnceLock::new();
    let (min_rows, forced) = *CFG.get_or_init(|| {
        let min_rows = super::super::env_number("HYBRID_MMVT_MIN_ROWS").unwrap_or(256);
        let forced =
            super::super::env_number("HYBRID_MMVT_WARPS").filter(|w: &u32| (1..=8).contains(w));
        (min_rows, forced)
    });
    (rows >= min_rows).then_some(forced.unwrap_or(if rows < cols { 8 } else { 4 }))
}

/// Rows per warp of the k-token kernel (RowsPerWarpQ in mmvq.cu: MMV_R1 at k = 1, except
/// MMV_R1_Q4K_WHOLE for Q4_K in the whole-row form, MMV_R_SMALL at k = 2, MMV_R_LARGE above).
/// (Q8_0 keeps 2 up to k = 4; its kernels walk row groups grid-stride, so a grid sized for 4
/// rows per warp still covers every row.) Tuning: `HYBRID_MMV_R1` / `HYBRID_MMV_R_LARGE`
/// tell the launcher the values a variant's sources were compiled with
/// (`bench-scripts/mmv-variants.sh`), so that its grid matches the kernel's row groups.
fn rows_per_warp(ty: GgmlType, k: usize, split: bool) -> usize {
    static R: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();
    let (r1, r_large) = *R.get_or_init(|| {
        let r = |name, default| {
            super::super::env_number(name)
                .filter(|r| (1..=8).contains(r))
                .unwrap_or(default)
        };
        (r("HYBRID_MMV_R1", 2), r("HYBRID_MMV_R_LARGE", 4))
    });
    match k {
        1 if ty == GgmlType::Q4_K && !split => 1,
        1 => r1,
        2 => 2,
        _ => r_large,
    }
}

/// Activations of up to `max_k` tokens of up to `max_n` values, quantized to 8 bits per
/// 32-block for the quantized mat-vec. Quantize once, then use for every matrix that reads
/// the same input (e.g. the q, k, v projections).
pub struct QuantActs {
    q: GpuBuf<i8>,
    /// (d, s) per 32-block.
    ds: GpuBuf<f32>,
    k: usize,
    n: usize,
    /// Device address of the f32 activations last quantized (0: none).
    src: u64,
}

impl QuantActs {
    pub fn new(gpu: &Gpu, max_k: usize, max_n: usize) -> Result<QuantActs> {
        let q = gpu.alloc_zeros::<i8>(max_k * max_n, "quantized activations")?;
        let ds = gpu.alloc_zeros::<f32>(2 * max_k * max_n.div_ceil(32), "activation scales")?;
        Ok(QuantActs {
            q,
            ds,
            k: 0,
            n: 0,
            src: 0,
        })
    }

    /// What the buffer holds: the quants and the (d, s) pairs of its last `k x n` input
    /// (for tests that compare producers).
    pub fn contents(&self, gpu: &Gpu) -> Result<(Vec<i8>, Vec<f32>)> {
        let m = self.k * self.n;
        Ok((
            gpu.download(self.q.view().sub(0, m)?)?,
            gpu.download(self.ds.view().sub(0, 2 * m / 32)?)?,
        ))
    }

    /// Points a kernel that quantizes its own output here: `k` rows of `n` (a multiple of
    /// 32) from the f32 rows at device address `src`. Returns the (q, ds) addresses and
    /// records what the buffer will hold, for [`Gpu::matvec`]'s check.
    pub(crate) fn claim(
        &mut self,
        op: &'static str,
        src: u64,
        k: usize,
        n: usize,
    ) -> Result<(u64, u64)> {
        if n % 32 != 0 {
            return Err(GpuError::shape(
                op,
                format!("n = {n} is not a multiple of 32"),
            ));
        }
        need(op, "quantized buffer", self.q.len(), k * n)?;
        need(op, "scale buffer", self.ds.len(), 2 * k * n / 32)?;
        self.k = k;
        self.n = n;
        self.src = src;
        Ok((self.q.ptr, self.ds.ptr))
    }
}

impl Gpu {
    /// Quantizes `x` ([k][n] f32, n a multiple of 32) into `qa`.
    pub fn quantize_acts(
        &self,
        x: View<'_, f32>,
        k: usize,
        n: usize,
        qa: &mut QuantActs,
    ) -> Result<()> {
        const OP: &str = "quantize_acts";
        need(OP, "x", x.len(), k * n)?;
        let nblocks = as_i32(OP, "k*n/32", k * n / 32)?;
        let xp = x.ptr;
        let (qp, dp) = qa.claim(OP, xp, k, n)?;
        let mut b = self.launcher(&self.k.quantize_q8_1);
        b.arg(&xp) /* x */
            .arg(&qp) /* q */
            .arg(&dp) /* ds */
            .arg(&nblocks); /* nblocks */
        launch(
            OP,
            &mut b,
            launch_cfg((blocks_for(OP, k * n / 32, 8)?, 1, 1), 256),
        )
    }

    /// `out[t][r] = sum_c w[r][c] * x[t][c]` for t < k (1..=8): x is [k][w.cols] f32, out is
    /// [k][w.rows]. For a quantized `w`, `qa` must hold `x` quantized by
    /// [`Gpu::quantize_acts`]; float weights ignore `qa`.
    pub fn matvec(
        &self,
        w: &GpuMatrix,
        x: View<'_, f32>,
        qa: &QuantActs,
        k: usize,
        out: ViewMut<'_, f32>,
    ) -> Result<()> {
        if k == 0 || k > MAX_K {
            return Err(GpuError::shape(
                OP,
                format!("{}: k = {k}, must be 1..={MAX_K}", w.name),
            ));
        }
        let fmt = mmv_index(w.ty, w.split).ok_or_else(|| {
            let layout = if w.split { " (row-split)" } else { "" };
            GpuError::shape(OP, format!("{}: no mat-vec for {}{layout}", w.name, w.ty))
        })?;
        need(OP, "x", x.len(), k * w.cols)?;
        need(OP, "out", out.len(), k * w.rows)?;
        let split = split_form(w.rows, w.cols);
        let rows_per_cta = WARPS * rows_per_warp(w.ty, k, split);
        // The kernel walks row groups grid-stride, so the grid may be capped (tuning knob
        // HYBRID_MMV_BLOCKS_PER_SM; default: one CTA per row group).
        let blocks = blocks_for(OP, w.rows, rows_per_cta)?.min(grid_cap(self.info().sm_count));
        let grid = (blocks, 1, 1);
        let (wp, row_bytes) = (w.data.ptr, w.row_bytes as u64);
        let rows = as_i32(OP, "rows", w.rows)?;
        let n = as_i32(OP, "cols", w.cols)?;
        let op = out.ptr;
        let f = &self.k.mmv[fmt][k - 1];
        if w.ty.is_quantized() {
            if qa.src != x.ptr || qa.k != k || qa.n != w.cols {
                return Err(GpuError::shape(
                    OP,
                    format!("{}: activations were not quantized from this x ({k} x {}); call quantize_acts first", w.name, w.cols),
                ));
            }
            let (aq, ads) = (qa.q.ptr, qa.ds.ptr);
            let tensor_core = match (w.ty, &self.k.mmvt, self.mmvt()) {
                (GgmlType::Q4_K, Some(fs), true) => Some(&fs[0]),
                (GgmlType::Q5_K, Some(fs), true) => Some(&fs[1]),
                _ => None,
            }
            .and_then(|fs| Some((&fs[k - 1], mmvt_warps(w.rows, w.cols)?)));
            // The tensor-core kernel: one CTA per 16 rows. The dp4a kernel: its grid above, or
            // in the split form one row group per CTA (its warps split the columns); it takes
            // the form as a last argument.
            let (f, grid, threads, split_arg, form) = match tensor_core {
                Some((f, warps)) => (
                    f,
                    (blocks_for(OP, w.rows, 16)?, 1, 1),
                    32 * warps,
                    None,
                    " mma",
                ),
                None if split => {
                    let grid = (blocks_for(OP, w.rows, rows_per_warp(w.ty, k, true))?, 1, 1);
                    (f, grid, 32 * WARPS as u32, Some(1i32), "")
                }
                None => (f, grid, 32 * WARPS as u32, Some(0i32), ""),
            };
            let mut b = self.launcher(f);
            if b.profiling() {
                b.label(format!("matvec {} {}x{} k={k}{form}", w.ty, w.rows, w.cols));
            }
            b.arg(&wp) /* W */
                .arg(&row_bytes) /* row_bytes */
                .arg(&rows) /* rows */
                .arg(&n) /* n */
                .arg(&aq) /* aq */
                .arg(&ads) /* ads */
                .arg(&op); /* out */
            if let Some(split) = &split_arg {
                b.arg(split); /* split */
            }
            launch(OP, &mut b, launch_cfg(grid, threads))
        } else {
            let epu = if w.ty == GgmlType::F32 { 4 } else { 8 };
            if w.cols % epu != 0 {
                return Err(GpuError::shape(
                    OP,
                    format!(
                        "{}: {} weights need cols % {epu} == 0, got {}",
                        w.name, w.ty, w.cols
                    ),
                ));
            }
            if x.ptr % 16 != 0 {
                return Err(GpuError::shape(
                    OP,
                    format!("{}: x must be 16-byte aligned for {} weights", w.name, w.ty),
                ));
            }
            let xp = x.ptr;
            let mut b = self.launcher(f);
            b.arg(&wp) /* W */
                .arg(&row_bytes) /* row_bytes */
                .arg(&rows) /* rows */
                .arg(&n) /* n */
                .arg(&xp) /* x */
                .arg(&op); /* out */
            launch(OP, &mut b, launch_cfg(grid, 32 * WARPS as u32))
        }
    }
}
