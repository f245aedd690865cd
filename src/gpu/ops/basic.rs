//! Norms, RoPE, elementwise ops and argmax (`cuda/norm.cu`, `rope.cu`, `elementwise.cu`,
//! `argmax.cu`).

use super::super::buffer::{View, ViewMut};
use super::super::device::Gpu;
use super::super::error::{GpuError, Result};
use super::matvec::QuantActs;
use super::{as_i32, blocks_for, launch, launch_cfg, need, DevPos};

/// Threads per row of the norms: 128 for head-sized rows, 256 for long ones, 1024 for rows of
/// at least 4096 (the n_embd norms). A one-token norm is one block, so its latency is the serial
/// passes over the row: on the H200, 27B full-GPU decode went from 77.7 to 83.4 t/s with
/// 1024 instead of 256 threads (same-call A/B, docs/benchmarks/gpu-hybrid-2026-11-22.md).
/// `HYBRID_NORM_THREADS` (256, 512 or 1024, read once) overrides it for tuning.
fn norm_threads(n: usize) -> u32 {
    static LONG: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    if n < 1024 {
        return 128;
    }
    if n < 4096 {
        return 256;
    }
    *LONG.get_or_init(|| {
        super::super::env_number("HYBRID_NORM_THREADS")
            .filter(|v| [256, 512, 1024].contains(v))
            .unwrap_or(1024)
    })
}

/// The gate operand of [`Gpu::rms_norm_gated`]: row r (head `r % heads` of token
/// `r / heads`) starts at `(r / heads) * stride + (r % heads) * n` of `v`, so the gates may be
/// columns of a wider per-token row (the stacked z|beta|alpha projection).
pub struct GateRows<'a> {
    pub v: View<'a, f32>,
    pub heads: usize,
    pub stride: usize,
}

impl<'a> GateRows<'a> {
    /// Rows of `n` one after another.
    pub fn contiguous(v: View<'a, f32>, n: usize) -> GateRows<'a> {
        GateRows {
            v,
            heads: 1,
            stride: n,
        }
    }
}

/// The rows a norm reads and writes (x by address: it is read-only or updated in place).
struct NormRows<'a> {
    x: u64,
    x_len: usize,
    x_stride: usize,
    y: ViewMut<'a, f32>,
    y_stride: usize,
    rows: usize,
    n: usize,
}

impl Gpu {
    /// RMSNorm of `rows` rows of `n`: `y[r] = (x[r] * scale_r) * w`, row r of x at
    /// `r * x_stride`, of y at `r * y_stride` (strides >= n).
    #[allow(clippy::too_many_arguments)]
    pub fn rms_norm(
        &self,
        x: View<'_, f32>,
        x_stride: usize,
        w: View<'_, f32>,
        y: ViewMut<'_, f32>,
        y_stride: usize,
        rows: usize,
        n: usize,
        eps: f32,
    ) -> Result<()> {
        let norm = NormRows {
            x: x.ptr,
            x_len: x.len(),
            x_stride,
            y,
            y_stride,
            rows,
            n,
        };
        self.norm_launch(norm, w, eps, None, None)
    }

    /// RMSNorm of `rows` contiguous rows of `n` with the steps around it fused into the one
    /// kernel: `x += add` first (in place; the residual a block left behind), then
    /// `y = RMSNorm(x) * w`, and with `qa`, `y` quantized for the quantized mat-vec as
    /// [`Gpu::quantize_acts`] would (n % 32 == 0). Bit-identical to [`Gpu::add_inplace`],
    /// [`Gpu::rms_norm`] and [`Gpu::quantize_acts`] in turn, with two launches fewer.
    #[allow(clippy::too_many_arguments)]
    pub fn add_rms_norm(
        &self,
        x: ViewMut<'_, f32>,
        add: Option<View<'_, f32>>,
        w: View<'_, f32>,
        y: ViewMut<'_, f32>,
        rows: usize,
        n: usize,
        eps: f32,
        qa: Option<&mut QuantActs>,
    ) -> Result<()> {
        const OP: &str = "add_rms_norm";
        if x.ptr == y.ptr {
            return Err(GpuError::shape(OP, "x and y must not be the same buffer"));
        }
        if let Some(a) = &add {
            need(OP, "add", a.len(), rows * n)?;
            if a.ptr == x.ptr || a.ptr == y.ptr {
                return Err(GpuError::shape(OP, "the residual must not be x or y"));
            }
        }
        let norm = NormRows {
            x: x.ptr,
            x_len: x.len(),
            x_stride: n,
            y,
            y_stride: n,
            rows,
            n,
        };
        self.norm_launch(norm, w, eps, add.map(|a| a.ptr), qa)
    }

    fn norm_launch(
        &self,
        r: NormRows<'_>,
        w: View<'_, f32>,
        eps: f32,
        add: Option<u64>,
        qa: Option<&mut QuantActs>,
    ) -> Result<()> {
        const OP: &str = "rms_norm";
        let NormRows {
            x,
            x_len,
            x_stride,
            y,
            y_stride,
            rows,
            n,
        } = r;
        if rows == 0 || n == 0 || x_stride < n || y_stride < n {
            return Err(GpuError::shape(
                OP,
                format!("rows {rows}, n {n}, strides {x_stride}/{y_stride}"),
            ));
        }
        need(OP, "x", x_len, (rows - 1) * x_stride + n)?;
        need(OP, "y", y.len(), (rows - 1) * y_stride + n)?;
        need(OP, "w", w.len(), n)?;
        let (wp, yp) = (w.ptr, y.ptr);
        let (qp, dp) = match qa {
            Some(qa) => qa.claim(OP, yp, rows, n)?,
            None => (0, 0),
        };
        let op = add.unwrap_or(0);
        let (xs, ys, ni) = (
            as_i32(OP, "x_stride", x_stride)?,
            as_i32(OP, "y_stride", y_stride)?,
            as_i32(OP, "n", n)?,
        );
        let mut b = self.launcher(&self.k.rms_norm);
        b.arg(&x) /* x */
            .arg(&xs) /* x_stride */
            .arg(&wp) /* w */
            .arg(&yp) /* y */
            .arg(&ys) /* y_stride */
            .arg(&ni) /* n */
            .arg(&eps) /* eps */
            .arg(&op) /* o */
            .arg(&qp) /* q */
            .arg(&dp); /* ds */
        launch(
            OP,
            &mut b,
            launch_cfg((blocks_for(OP, rows, 1)?, 1, 1), norm_threads(n)),
        )
    }

    /// Gated RMSNorm: `y[r] = ((x[r] * scale_r) * w) * silu(z[r])`, rows of n contiguous;
    /// with `qa`, `y` is also quantized in the same kernel, as [`Gpu::quantize_acts`] would
    /// (all rows as one [rows * n] input; n % 32 == 0).
    #[allow(clippy::too_many_arguments)]
    pub fn rms_norm_gated(
        &self,
        x: View<'_, f32>,
        w: View<'_, f32>,
        z: GateRows<'_>,
        y: ViewMut<'_, f32>,
        rows: usize,
        n: usize,
        eps: f32,
        qa: Option<(&mut QuantActs, usize)>,
    ) -> Result<()> {
        const OP: &str = "rms_norm_gated";
        let GateRows {
            v: z,
            heads,
            stride,
        } = z;
        if rows == 0 || n == 0 || heads == 0 || rows % heads != 0 || stride < heads * n {
            return Err(GpuError::shape(
                OP,
                format!("rows {rows}, n {n}, gate heads {heads}, gate stride {stride}"),
            ));
        }
        need(OP, "x", x.len(), rows * n)?;
        need(OP, "z", z.len(), (rows / heads - 1) * stride + heads * n)?;
        need(OP, "y", y.len(), rows * n)?;
        need(OP, "w", w.len(), n)?;
        let (xp, wp, zp, yp) = (x.ptr, w.ptr, z.ptr, y.ptr);
        let ni = as_i32(OP, "n", n)?;
        let (zh, zs) = (as_i32(OP, "heads", heads)?, as_i32(OP, "stride", stride)?);
        let (qp, dp) = match qa {
            Some((qa, k)) if k > 0 && (rows * n) % k == 0 && n % 32 == 0 => {
                qa.claim(OP, yp, k, rows * n / k)?
            }
            Some((_, k)) => {
                return Err(GpuError::shape(
                    OP,
                    format!("{rows} rows of {n} quantized as {k} rows (n % 32 == 0)"),
                ))
            }
            None => (0, 0),
        };
        let mut b = self.launcher(&self.k.rms_norm_gated);
        b.arg(&xp) /* x */
            .arg(&wp) /* w */
            .arg(&zp) /* z */
            .arg(&yp) /* y */
            .arg(&ni) /* n */
            .arg(&eps) /* eps */
            .arg(&qp) /* q */
            .arg(&dp) /* ds */
            .arg(&zh) /* heads */
            .arg(&zs); /* z_stride */
        launch(
            OP,
            &mut b,
            launch_cfg((blocks_for(OP, rows, 1)?, 1, 1), norm_threads(n)),
        )
    }

    /// NeoX RoPE in place on x ([ntok][n_heads][head_dim]) over the first n_rot dims of each
    /// head; token t is at position pos0 + t. `theta_scale = base^(-2/n_rot)` is computed
    /// here in f32 (`powf`), then theta is stepped in f32 as on the CPU.
    #[allow(clippy::too_many_arguments)]
    pub fn rope_neox(
        &self,
        x: ViewMut<'_, f32>,
        ntok: usize,
        n_heads: usize,
        head_dim: usize,
        n_rot: usize,
        pos: DevPos<'_>,
        freq_base: f32,
    ) -> Result<()> {
        const OP: &str = "rope_neox";
        if n_rot == 0 || n_rot % 2 != 0 || n_rot > head_dim {
            return Err(GpuError::shape(
                OP,
                format!("n_rot {n_rot} with head_dim {head_dim}"),
            ));
        }
        need(OP, "x", x.len(), ntok * n_heads * head_dim)?;
        let theta_scale = freq_base.powf(-2.0 / n_rot as f32);
        let xp = x.ptr;
        let (nt, nh, hd, nr) = (
            as_i32(OP, "ntok", ntok)?,
            as_i32(OP, "n_heads", n_heads)?,
            as_i32(OP, "head_dim", head_dim)?,
            as_i32(OP, "n_rot", n_rot)?,
        );
        as_i32(OP, "last position", pos.host + ntok)?;
        let (pp, po) = (pos.ptr, as_i32(OP, "position offset", pos.off)?);
        let mut b = self.launcher(&self.k.rope_neox);
        b.arg(&xp) /* x */
            .arg(&nt) /* ntok */
            .arg(&nh) /* n_heads */
            .arg(&hd) /* head_dim */
            .arg(&nr) /* n_rot */
            .arg(&pp) /* pos_p */
            .arg(&po) /* pos_off */
            .arg(&theta_scale); /* theta_scale */
        launch(
            OP,
            &mut b,
            launch_cfg(
                (blocks_for(OP, ntok * n_heads * n_rot / 2, 256)?, 1, 1),
                256,
            ),
        )
    }

    fn add_raw(&self, a: u64, b_: u64, y: u64, n: usize) -> Result<()> {
        const OP: &str = "add";
        let nn = n as i64;
        let mut b = self.launcher(&self.k.add);
        b.arg(&a) /* a */
            .arg(&b_) /* b */
            .arg(&y) /* y */
            .arg(&nn); /* n */
        launch(OP, &mut b, launch_cfg((blocks_for(OP, n, 256)?, 1, 1), 256))
    }

    /// `y = a + b` over n elements.
    pub fn add(
        &self,
        a: View<'_, f32>,
        b: View<'_, f32>,
        y: ViewMut<'_, f32>,
        n: usize,
    ) -> Result<()> {
        need("add", "a", a.len(), n)?;
        need("add", "b", b.len(), n)?;
        need("add", "y", y.len(), n)?;
        self.add_raw(a.ptr, b.ptr, y.ptr, n)
    }

    /// `acc += b` over n elements (the residual add).
    pub fn add_inplace(&self, acc: ViewMut<'_, f32>, b: View<'_, f32>, n: usize) -> Result<()> {
        need("add_inplace", "acc", acc.len(), n)?;
        need("add_inplace", "b", b.len(), n)?;
        self.add_raw(acc.ptr, b.ptr, acc.ptr, n)
    }

    /// `y = silu(g) * u` over n elements.
    pub fn swiglu(
        &self,
        g: View<'_, f32>,
        u: View<'_, f32>,
        y: ViewMut<'_, f32>,
        n: usize,
    ) -> Result<()> {
        self.swiglu_q8(g, u, y, n, None)
    }

    /// [`Gpu::swiglu`] with its output quantized in the same kernel when `qa` is given:
    /// `(qa, k)` for `k` rows of `n / k` (each a multiple of 32), as [`Gpu::quantize_acts`]
    /// would.
    pub fn swiglu_q8(
        &self,
        g: View<'_, f32>,
        u: View<'_, f32>,
        y: ViewMut<'_, f32>,
        n: usize,
        qa: Option<(&mut QuantActs, usize)>,
    ) -> Result<()> {
        const OP: &str = "swiglu";
        need(OP, "g", g.len(), n)?;
        need(OP, "u", u.len(), n)?;
        need(OP, "y", y.len(), n)?;
        let (gp, up, yp, nn) = (g.ptr, u.ptr, y.ptr, n as i64);
        let (qp, dp) = match qa {
            Some((qa, k)) if k > 0 && n % k == 0 => qa.claim(OP, yp, k, n / k)?,
            Some((_, k)) => {
                return Err(GpuError::shape(OP, format!("{n} values are not {k} rows")))
            }
            None => (0, 0),
        };
        let mut b = self.launcher(&self.k.swiglu);
        b.arg(&gp) /* g */
            .arg(&up) /* u */
            .arg(&yp) /* y */
            .arg(&nn) /* n */
            .arg(&qp) /* q */
            .arg(&dp); /* ds */
        launch(OP, &mut b, launch_cfg((blocks_for(OP, n, 256)?, 1, 1), 256))
    }

    /// `o[r][i] *= sigmoid(gate[r * gate_stride + i])` for `rows` rows of n (o contiguous).
    pub fn sigmoid_gate(
        &self,
        o: ViewMut<'_, f32>,
        gate: View<'_, f32>,
        rows: usize,
        n: usize,
        gate_stride: usize,
    ) -> Result<()> {
        const OP: &str = "sigmoid_gate";
        if rows == 0 || n == 0 || gate_stride < n {
            return Err(GpuError::shape(
                OP,
                format!("rows {rows}, n {n}, gate_stride {gate_stride}"),
            ));
        }
        need(OP, "o", o.len(), rows * n)?;
        need(OP, "gate", gate.len(), (rows - 1) * gate_stride + n)?;
        let (op, gp) = (o.ptr, gate.ptr);
        let (r, ni, gs) = (
            as_i32(OP, "rows", rows)?,
            as_i32(OP, "n", n)?,
            as_i32(OP, "gate_stride", gate_stride)?,
        );
        let mut b = self.launcher(&self.k.sigmoid_gate);
        b.arg(&op) /* o */
            .arg(&gp) /* gate */
            .arg(&r) /* rows */
            .arg(&ni) /* n */
            .arg(&gs); /* gate_stride */
        launch(
            OP,
            &mut b,
            launch_cfg((blocks_for(OP, rows * n, 256)?, 1, 1), 256),
        )
    }

    /// Per token t < ntok of x ([ntok][n]): `idx[t]` = index of the largest value (ties: the
    /// lowest index; NaN never wins; n if the row is all NaN), `val[t]` = that value.
    pub fn argmax(
        &self,
        x: View<'_, f32>,
        ntok: usize,
        n: usize,
        idx: ViewMut<'_, i32>,
        val: ViewMut<'_, f32>,
    ) -> Result<()> {
        const OP: &str = "argmax";
        if ntok == 0 || n == 0 {
            return Err(GpuError::shape(OP, format!("ntok {ntok}, n {n}")));
        }
        need(OP, "x", x.len(), ntok * n)?;
        need(OP, "idx", idx.len(), ntok)?;
        need(OP, "val", val.len(), ntok)?;
        let (xp, ip, vp) = (x.ptr, idx.ptr, val.ptr);
        let ni = as_i32(OP, "n", n)?;
        let mut b = self.launcher(&self.k.argmax);
        b.arg(&xp) /* x */
            .arg(&ni) /* n */
            .arg(&ip) /* idx */
            .arg(&vp); /* val */
        launch(
            OP,
            &mut b,
            launch_cfg((blocks_for(OP, ntok, 1)?, 1, 1), 1024),
        )
    }
}
