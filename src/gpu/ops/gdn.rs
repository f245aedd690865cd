//! Gated DeltaNet decode (`cuda/gdn.cu`): short conv + silu, then the gated delta rule with
//! the tiled head mapping (value head j reads key head j mod H_k), spec/qwen35-forward.md §4.

use super::super::buffer::{View, ViewMut};
use super::super::device::Gpu;
use super::super::error::{GpuError, Result};
use super::{as_i32, blocks_for, launch, launch_cfg, need};

/// d_k = d_v of every real qwen35 size.
pub const GDN_HEAD_DIM: usize = 128;
/// d_k = d_v the recurrence is instanced for (`gdn_recurrence_d{64,128}` in gdn.cu; 64 is
/// the tiny test model's).
pub const GDN_HEAD_DIMS: [usize; 2] = [64, 128];
const COLS_PER_CTA: usize = 16; // GDN_WARPS * GDN_COLS_PER_WARP

/// Arguments of [`Gpu::gdn_conv`].
pub struct GdnConvArgs<'a> {
    /// [ntok][channels] raw projection (q|k|v channels).
    pub x: View<'a, f32>,
    /// [channels][4] conv taps (`ssm_conv1d.weight`), tap 3 multiplies the current token.
    pub w: View<'a, f32>,
    /// [3][channels] last three raw inputs, oldest first; updated in place.
    pub state: ViewMut<'a, f32>,
    /// [ntok][channels] output, silu(conv).
    pub u: ViewMut<'a, f32>,
    /// Optional [n][3][channels] with ntok − 1 <= n: the state after each of the first
    /// min(n, ntok) tokens (a verify batch needs no copy of the last: it is the live state).
    pub snapshot: Option<ViewMut<'a, f32>>,
    pub channels: usize,
    pub ntok: usize,
}

/// Arguments of [`Gpu::gdn_recurrence`].
pub struct GdnRecurrenceArgs<'a> {
    /// [ntok][u_stride] conv output: q at [0, h_k*128), k at [h_k*128, 2*h_k*128), v
    /// ([h_v*128]) right after.
    pub u: View<'a, f32>,
    pub u_stride: usize,
    /// Raw beta projection, token t's h_v values at `t * ba_stride` (sigmoid is applied here).
    pub beta: View<'a, f32>,
    /// Raw alpha projection, laid out as `beta`.
    pub alpha: View<'a, f32>,
    /// Floats between tokens of `beta` and `alpha` (>= h_v; wider when they are columns of
    /// the stacked z|beta|alpha projection).
    pub ba_stride: usize,
    /// [h_v] `ssm_dt.bias`.
    pub dt_bias: View<'a, f32>,
    /// [h_v] `ssm_a` (= -exp(A_log)).
    pub ssm_a: View<'a, f32>,
    /// [h_v][128][128], element (a, b) of head j at j*128*128 + b*128 + a; updated in place.
    pub state: ViewMut<'a, f32>,
    /// [ntok][h_v][128] output o_j (before the gated norm).
    pub out: ViewMut<'a, f32>,
    /// Optional [n][h_v][d][d] with ntok − 1 <= n: the state after each of the first
    /// min(n, ntok) tokens.
    pub snapshot: Option<ViewMut<'a, f32>>,
    pub h_k: usize,
    pub h_v: usize,
    /// d_k = d_v, one of [`GDN_HEAD_DIMS`].
    pub d: usize,
    pub ntok: usize,
    /// L2-norm epsilon (the model's rms eps).
    pub eps: f32,
}

/// Device pointer and slot count of an optional snapshot view of `per_tok` floats per slot:
/// it must hold at least `ntok − 1` slots; the kernel writes `min(slots, ntok)` of them.
fn snapshot_slots(
    op: &'static str,
    s: Option<&ViewMut<'_, f32>>,
    ntok: usize,
    per_tok: usize,
) -> Result<(u64, i32)> {
    let Some(s) = s else {
        return Ok((0, 0));
    };
    need(op, "snapshot", s.len(), ntok.saturating_sub(1) * per_tok)?;
    let n = (s.len() / per_tok.max(1)).min(ntok);
    Ok((s.ptr, as_i32(op, "snapshot slots", n)?))
}

impl Gpu {
    /// Causal depthwise conv (kernel 4) + silu for ntok tokens, updating the conv state.
    pub fn gdn_conv(&self, a: GdnConvArgs<'_>) -> Result<()> {
        const OP: &str = "gdn_conv";
        let (c, t) = (a.channels, a.ntok);
        need(OP, "x", a.x.len(), t * c)?;
        need(OP, "w", a.w.len(), 4 * c)?;
        need(OP, "state", a.state.len(), 3 * c)?;
        need(OP, "u", a.u.len(), t * c)?;
        let (snap, n_snap) = snapshot_slots(OP, a.snapshot.as_ref(), t, 3 * c)?;
        let (xp, wp, sp, up) = (a.x.ptr, a.w.ptr, a.state.ptr, a.u.ptr);
        let (ci, ti) = (as_i32(OP, "channels", c)?, as_i32(OP, "ntok", t)?);
        let mut b = self.launcher(&self.k.gdn_conv);
        b.arg(&xp) /* x */
            .arg(&wp) /* w */
            .arg(&sp) /* state */
            .arg(&up) /* u */
            .arg(&snap) /* snap */
            .arg(&n_snap) /* n_snap */
            .arg(&ci) /* channels */
            .arg(&ti); /* ntok */
        launch(OP, &mut b, launch_cfg((blocks_for(OP, c, 128)?, 1, 1), 128))
    }

    /// L2 norms, beta/decay and the gated delta rule for ntok tokens (spec §4 steps 2-3, 7-8).
    pub fn gdn_recurrence(&self, a: GdnRecurrenceArgs<'_>) -> Result<()> {
        const OP: &str = "gdn_recurrence";
        let d = a.d;
        let Some(fi) = GDN_HEAD_DIMS.iter().position(|&x| x == d) else {
            return Err(GpuError::shape(
                OP,
                format!("head dim {d}: the kernel is built for {GDN_HEAD_DIMS:?}"),
            ));
        };
        let (hk, hv, t) = (a.h_k, a.h_v, a.ntok);
        if hk == 0 || hv == 0 || hv % hk != 0 {
            return Err(GpuError::shape(
                OP,
                format!("h_k {hk}, h_v {hv}: h_v must be a multiple of h_k"),
            ));
        }
        if a.u_stride < (2 * hk + hv) * d {
            return Err(GpuError::shape(
                OP,
                format!(
                    "u_stride {} < q+k+v width {}",
                    a.u_stride,
                    (2 * hk + hv) * d
                ),
            ));
        }
        if t == 0 {
            return Err(GpuError::shape(OP, "ntok = 0"));
        }
        need(OP, "u", a.u.len(), (t - 1) * a.u_stride + (2 * hk + hv) * d)?;
        if a.ba_stride < hv {
            return Err(GpuError::shape(
                OP,
                format!("beta/alpha stride {} < h_v {hv}", a.ba_stride),
            ));
        }
        need(OP, "beta", a.beta.len(), (t - 1) * a.ba_stride + hv)?;
        need(OP, "alpha", a.alpha.len(), (t - 1) * a.ba_stride + hv)?;
        need(OP, "dt_bias", a.dt_bias.len(), hv)?;
        need(OP, "ssm_a", a.ssm_a.len(), hv)?;
        need(OP, "state", a.state.len(), hv * d * d)?;
        need(OP, "out", a.out.len(), t * hv * d)?;
        let (snap, n_snap) = snapshot_slots(OP, a.snapshot.as_ref(), t, hv * d * d)?;
        let (up, bp, ap, dtp, sap, stp, op) = (
            a.u.ptr,
            a.beta.ptr,
            a.alpha.ptr,
            a.dt_bias.ptr,
            a.ssm_a.ptr,
            a.state.ptr,
            a.out.ptr,
        );
        let us = as_i32(OP, "u_stride", a.u_stride)?;
        let bas = as_i32(OP, "ba_stride", a.ba_stride)?;
        let (hki, hvi, ti) = (
            as_i32(OP, "h_k", hk)?,
            as_i32(OP, "h_v", hv)?,
            as_i32(OP, "ntok", t)?,
        );
        let eps = a.eps;
        let out_scale = 1.0f32 / (d as f32).sqrt();
        let mut b = self.launcher(&self.k.gdn_recurrence[fi]);
        b.arg(&up) /* u */
            .arg(&us) /* u_stride */
            .arg(&bp) /* b */
            .arg(&ap) /* a */
            .arg(&bas) /* ba_stride */
            .arg(&dtp) /* dt_bias */
            .arg(&sap) /* ssm_a */
            .arg(&stp) /* state */
            .arg(&op) /* out */
            .arg(&snap) /* snap */
            .arg(&n_snap) /* n_snap */
            .arg(&hki) /* h_k */
            .arg(&hvi) /* h_v */
            .arg(&ti) /* ntok */
            .arg(&eps) /* eps */
            .arg(&out_scale); /* out_scale */
        let grid = (hv as u32, (d / COLS_PER_CTA) as u32, 1);
        launch(OP, &mut b, launch_cfg(grid, 128))
    }
}
