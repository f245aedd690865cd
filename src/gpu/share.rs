//! The GPU's share of a CPU-placed FFN layer (hybrid split): while the CPU workers compute
//! rows `r0..` of a matrix, the GPU computes rows `..r0`, reading those weights straight
//! from host memory over PCIe (the file map, registered read-only and mapped for the device:
//! zero-copy, no VRAM). The kernels (`cuda/exact.cu`) follow the CPU kernels' float order
//! bit for bit on the same Q8_K activation bits, so the output does not depend on who
//! computed a row: the share can change from call to call (it follows the measured rates)
//! and a token's result stays independent of k (speculation unchanged).
//!
//! Why it pays: at k >= 2 the CPU FFN is bound by the cores' integer work, not by the host's
//! memory, so DRAM has bandwidth to spare that the GPU can use through PCIe (at k = 1 the
//! cores already take all of it: `docs/benchmarks/gpu-split-mmv-2026-12-06.md` §6).
//! `HYBRID_PCIE_SHARE`: `0` / `off` turns it off; a number sets the smallest k that uses
//! it (default [`DEFAULT_MIN_K`]).

use std::ffi::c_void;

use cudarc::driver::{sys, CudaEvent, PinnedHostSlice};
use simd::{GgmlType, QuantizedActs};

use super::buffer::{GpuBuf, View, ViewMut};
use super::device::Gpu;
use super::error::{GpuError, Result};
use super::ops::{as_i32, launch, launch_cfg};

/// Smallest token count that uses the share unless `HYBRID_PCIE_SHARE` says otherwise.
pub const DEFAULT_MIN_K: usize = 2;
/// Rows per CTA of the exact kernels (one warp per row).
const EX_WARPS: usize = 4;
/// The share is a multiple of this many rows.
const ROW_STEP: usize = 64;
/// The share never grows past this fraction of a matrix's rows.
const MAX_FRAC: f64 = 0.6;
/// Share of the first call of each (matrix kind, k), before any rate is measured.
const START_FRAC: f64 = 0.2;

/// A host range registered with the driver as read-only, device-mapped memory: kernels read
/// it through `dev` over PCIe. Unregistered on drop.
pub struct HostRegion {
    host: usize,
    len: usize,
    dev: u64,
    ctx: std::sync::Arc<cudarc::driver::CudaContext>,
}

impl HostRegion {
    fn register_range(gpu: &Gpu, host: usize, len: usize) -> Result<HostRegion> {
        gpu.ctx
            .bind_to_thread()
            .map_err(GpuError::driver("binding the context"))?;
        let flags = sys::CU_MEMHOSTREGISTER_DEVICEMAP | sys::CU_MEMHOSTREGISTER_READ_ONLY;
        // SAFETY: [host, host + len) is a page-aligned range of mapped memory (it spans a
        // live slice of the caller's file map, rounded out to whole pages of that map); the
        // driver only pins it and maps it for the device, read-only.
        unsafe { sys::cuMemHostRegister_v2(host as *mut c_void, len, flags) }
            .result()
            .map_err(GpuError::driver(format!(
                "registering {len} bytes of host weights for the GPU"
            )))?;
        let mut dev: sys::CUdeviceptr = 0;
        // SAFETY: out-parameter call on the range registered just above.
        let r =
            unsafe { sys::cuMemHostGetDevicePointer_v2(&mut dev, host as *mut c_void, 0) }.result();
        if let Err(e) = r {
            // SAFETY: the range was registered above and nothing uses it yet.
            unsafe { sys::cuMemHostUnregister(host as *mut c_void) };
            return Err(GpuError::Driver {
                what: "mapping registered host weights for the GPU".into(),
                source: e,
            });
        }
        Ok(HostRegion {
            host,
            len,
            dev,
            ctx: gpu.ctx.clone(),
        })
    }

    /// The device address of `bytes`, if the region holds all of it.
    pub fn device_ptr(&self, bytes: &[u8]) -> Option<u64> {
        let p = bytes.as_ptr() as usize;
        (p >= self.host && p + bytes.len() <= self.host + self.len)
            .then(|| self.dev + (p - self.host) as u64)
    }
}

impl Drop for HostRegion {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: registered in `register_range`; no kernel reads it any more (the model
            // that launched them is being dropped after synchronizing its stream).
            unsafe { sys::cuMemHostUnregister(self.host as *mut c_void) };
        }
    }
}

/// Registers the page ranges spanning `slices`, merged where they touch or overlap (the
/// driver refuses to register a page twice). The slices must stay mapped and unchanged while
/// the regions live: the caller keeps the file map alive for as long as the model.
pub fn register_all(gpu: &Gpu, slices: &[&[u8]]) -> Result<Vec<HostRegion>> {
    const PAGE: usize = 4096;
    let mut ranges: Vec<(usize, usize)> = slices
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            let a = s.as_ptr() as usize;
            (a / PAGE * PAGE, (a + s.len()).div_ceil(PAGE) * PAGE)
        })
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
        .into_iter()
        .map(|(a, b)| HostRegion::register_range(gpu, a, b - a))
        .collect()
}

/// Whether `ty` has an exact kernel.
pub fn exact_supported(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_K | GgmlType::Q6_K)
}

/// One call's Q8_K activations on the device: quants, block scales and bsums of k tokens.
#[derive(Clone, Copy)]
pub struct ExactActs<'a> {
    q8: View<'a, i8>,
    d: View<'a, f32>,
    bsums: View<'a, i16>,
}

impl<'a> ExactActs<'a> {
    pub fn new(q8: View<'a, i8>, d: View<'a, f32>, bsums: View<'a, i16>) -> ExactActs<'a> {
        ExactActs { q8, d, bsums }
    }
}

impl Gpu {
    /// Whether the exact kernels were built.
    pub fn has_exact(&self) -> bool {
        self.k.exact.is_some()
    }

    /// `out[t * out_stride + r] = W[r] · x_t` for rows `0..rows` of a `ty` matrix whose rows
    /// (`row_bytes` each, `nb` blocks) start at device address `w` (device or registered host
    /// memory), in the CPU kernels' float order; `x` holds k tokens of Q8_K (`nb` blocks each).
    #[allow(clippy::too_many_arguments)]
    pub fn mmv_exact(
        &self,
        ty: GgmlType,
        w: u64,
        row_bytes: usize,
        rows: usize,
        nb: usize,
        x: &ExactActs<'_>,
        k: usize,
        out: &mut ViewMut<'_, f32>,
        out_stride: usize,
    ) -> Result<()> {
        const OP: &str = "mmv_exact";
        let kern = self
            .k
            .exact
            .as_ref()
            .ok_or_else(|| GpuError::shape(OP, "the exact kernels are not loaded"))?;
        let f = match ty {
            GgmlType::Q4_K => &kern[0],
            GgmlType::Q6_K => &kern[1],
            _ => return Err(GpuError::shape(OP, format!("no exact kernel for {ty}"))),
        };
        if rows == 0 || k == 0 || k > super::MAX_K || out_stride < rows {
            return Err(GpuError::shape(
                OP,
                format!("rows {rows}, k {k}, out stride {out_stride}"),
            ));
        }
        super::ops::need(OP, "q8", x.q8.len(), k * nb * 256)?;
        super::ops::need(OP, "d", x.d.len(), k * nb)?;
        super::ops::need(OP, "bsums", x.bsums.len(), k * nb * 16)?;
        super::ops::need(OP, "out", out.len(), (k - 1) * out_stride + rows)?;
        let rb = row_bytes as u64;
        let (ri, nbi, ki, osi) = (
            as_i32(OP, "rows", rows)?,
            as_i32(OP, "nb", nb)?,
            as_i32(OP, "k", k)?,
            as_i32(OP, "out_stride", out_stride)?,
        );
        let (qp, dp, bp, op) = (x.q8.ptr, x.d.ptr, x.bsums.ptr, out.ptr);
        let grid = rows.div_ceil(EX_WARPS) as u32;
        let mut b = self.launcher(f);
        b.arg(&w)
            .arg(&rb)
            .arg(&ri)
            .arg(&nbi)
            .arg(&qp)
            .arg(&dp)
            .arg(&bp)
            .arg(&ki)
            .arg(&op)
            .arg(&osi);
        launch(OP, &mut b, launch_cfg((grid, 1, 1), (32 * EX_WARPS) as u32))
    }
}

/// One matrix of a share: its type, rows, columns, and device address of row 0.
#[derive(Clone, Copy)]
pub struct SharedMat {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub w: u64,
}

impl SharedMat {
    fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.cols as u64).unwrap_or(0) as usize
    }
}

/// Which step of the FFN a share is for (separate rates: different shapes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ShareKind {
    GateUp = 0,
    Down = 1,
}

/// Counters since the last [`PcieShare::take_stats`].
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ShareStats {
    pub calls: u64,
    /// Rows the GPU computed (gate and up counted once each).
    pub gpu_rows: u64,
    pub cpu_rows: u64,
    /// GPU time (events around copies and kernels), and the time the CPU waited for it
    /// after finishing its own rows.
    pub gpu_ms: f64,
    pub wait_ms: f64,
    /// Host time spent queuing (copying the activations to pinned memory, the copies and
    /// launches), on the thread that then joins the CPU workers.
    pub launch_ms: f64,
}

/// The state of the PCIe share in a hybrid model: registered weights, device and pinned
/// buffers for one call's activations and results, and the adaptive split per (kind, k).
pub struct PcieShare {
    pub regions: Vec<HostRegion>,
    min_k: usize,
    /// A call's activations, packed (quants, then scales, then bsums, each 16-byte
    /// aligned), so that one copy takes them up; `acts` on the device, `h_acts` pinned.
    acts: GpuBuf<u8>,
    out: GpuBuf<f32>,
    h_acts: PinnedHostSlice<u8>,
    h_out: PinnedHostSlice<f32>,
    ev0: CudaEvent,
    ev1: CudaEvent,
    /// Fraction of rows given to the GPU, by kind and k (index k; 0 unused).
    frac: [[f64; super::MAX_K + 1]; 2],
    /// Whether this (kind, k) has been run once (the first call's timings are not used).
    warm: [[bool; super::MAX_K + 1]; 2],
    /// Rows of the call in flight (0: none).
    pending_rows: usize,
    pending_mats: usize,
    pending_k: usize,
    /// Host time from the start of `launch` to the first event (the GPU's late start).
    pending_pre: f64,
    stats: ShareStats,
}

/// Rows of a `rows`-row matrix for a GPU fraction `frac`: a multiple of [`ROW_STEP`], at least
/// one step (so the GPU's rate stays measured) and at most all rows.
fn share_rows(frac: f64, rows: usize) -> usize {
    let r = (frac.max(0.0) * rows as f64) as usize / ROW_STEP * ROW_STEP;
    r.clamp(ROW_STEP.min(rows), rows)
}

/// The GPU's next fraction of rows after a call in which it computed `gpu_rows` in
/// `gpu_secs` and the CPU `cpu_rows` in `cpu_secs`: toward the fraction at which both finish
/// together at these rates (`g / (g + c)` of the rows), smoothed, at most [`MAX_FRAC`].
/// Unchanged when a side has no rows or no time.
fn next_fraction(f: f64, gpu_rows: usize, gpu_secs: f64, cpu_rows: usize, cpu_secs: f64) -> f64 {
    if gpu_rows == 0 || cpu_rows == 0 || gpu_secs <= 0.0 || cpu_secs <= 0.0 {
        return f;
    }
    let g = gpu_rows as f64 / gpu_secs;
    let c = cpu_rows as f64 / cpu_secs;
    let target = (g / (g + c)).min(MAX_FRAC);
    0.6 * f + 0.4 * target
}

/// Byte offsets of the scales and bsums in a packed activation buffer for k tokens of nb
/// blocks, the bsums' length and the total (each part 16-byte aligned).
fn packed_len(k: usize, nb: usize) -> (usize, usize, usize, usize) {
    let a = |n: usize| n.div_ceil(16) * 16;
    let q8 = k * nb * 256;
    let d = a(q8);
    let bs = d + a(4 * k * nb);
    let bs_len = 2 * k * nb * 16;
    (d, bs, bs_len, bs + a(bs_len))
}

/// A byte view of the packed buffer as a view of `T` (its offset is 16-byte aligned and its
/// length a multiple of `size_of::<T>()`: `packed_len`).
fn cast_view<T>(v: View<'_, u8>) -> View<'_, T> {
    View::from_raw(v.device_ptr(), v.len() / std::mem::size_of::<T>())
}

/// Page-locked host memory for `n` values of `T`.
fn pinned<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    gpu: &Gpu,
    n: usize,
    what: &str,
) -> Result<PinnedHostSlice<T>> {
    // SAFETY: the share writes every element it copies before the copy is queued, and reads
    // results only after waiting for the copy that wrote them.
    unsafe { gpu.ctx.alloc_pinned::<T>(n.max(1)) }
        .map_err(GpuError::driver(format!("allocating pinned share {what}")))
}

/// The smallest k that uses the share, from `HYBRID_PCIE_SHARE` (None: off).
pub fn min_k_from_env() -> Option<usize> {
    parse_min_k(std::env::var("HYBRID_PCIE_SHARE").ok().as_deref())
}

fn parse_min_k(v: Option<&str>) -> Option<usize> {
    match v.map(str::trim) {
        None | Some("") | Some("on") => Some(DEFAULT_MIN_K),
        Some("0") | Some("off") | Some("false") => None,
        Some(v) => match v.parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => {
                tracing::warn!(
                    "HYBRID_PCIE_SHARE={v:?} is not 0/off or a token count; using the default (from k = {DEFAULT_MIN_K})"
                );
                Some(DEFAULT_MIN_K)
            }
        },
    }
}

impl PcieShare {
    /// Buffers for up to `max_cols` columns (the FFN width) and `max_rows` output rows per
    /// matrix, k <= MAX_K.
    pub fn new(
        gpu: &Gpu,
        regions: Vec<HostRegion>,
        min_k: usize,
        max_cols: usize,
        max_rows: usize,
    ) -> Result<PcieShare> {
        let k = super::MAX_K;
        let nb = max_cols.div_ceil(256);
        let acts_bytes = packed_len(k, nb).3;
        let h_acts = pinned::<u8>(gpu, acts_bytes, "activations")?;
        let h_out = pinned::<f32>(gpu, 2 * k * max_rows, "results")?;
        let ev = || {
            gpu.ctx
                .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(GpuError::driver("creating a share event"))
        };
        Ok(PcieShare {
            regions,
            min_k,
            acts: gpu.alloc_zeros(acts_bytes, "share activations")?,
            out: gpu.alloc_zeros(2 * k * max_rows, "share results")?,
            h_acts,
            h_out,
            ev0: ev()?,
            ev1: ev()?,
            frac: [[START_FRAC; super::MAX_K + 1]; 2],
            warm: [[false; super::MAX_K + 1]; 2],
            pending_rows: 0,
            pending_mats: 0,
            pending_k: 0,
            pending_pre: 0.0,
            stats: ShareStats::default(),
        })
    }

    /// The device address of a host matrix's bytes, if registered.
    pub fn device_ptr(&self, bytes: &[u8]) -> Option<u64> {
        self.regions.iter().find_map(|r| r.device_ptr(bytes))
    }

    /// Rows of a `rows`-row matrix the GPU takes at k tokens (0: none).
    pub fn rows_for(&self, kind: ShareKind, k: usize, rows: usize) -> usize {
        if !self.active_at(k) {
            return 0;
        }
        share_rows(self.frac[kind as usize][k], rows)
    }

    /// Whether a call of k tokens uses the share.
    pub fn active_at(&self, k: usize) -> bool {
        (self.min_k..=super::MAX_K).contains(&k)
    }

    /// Copies the k tokens of Q8_K activations up and queues the exact mat-vec of rows
    /// `..rows` of each matrix in `mats` (same columns), results going back to pinned memory.
    pub fn launch(
        &mut self,
        gpu: &Gpu,
        acts: &QuantizedActs,
        mats: &[SharedMat],
        rows: usize,
        k: usize,
    ) -> Result<()> {
        const OP: &str = "PcieShare::launch";
        let t0 = std::time::Instant::now();
        let (q8, d, bs) = acts
            .q8_k_all()
            .ok_or_else(|| GpuError::shape(OP, "the activations are not Q8_K"))?;
        if acts.k() != k || mats.is_empty() || mats.len() > 2 {
            return Err(GpuError::shape(
                OP,
                format!("k {k} / {}, {} matrices", acts.k(), mats.len()),
            ));
        }
        let nb = acts.n() / 256;
        let (o_d, o_bs, _, total) = packed_len(k, nb);
        if total > self.h_acts.len()
            || 2 * k * rows > self.h_out.len()
            || mats.iter().any(|m| m.cols != acts.n() || rows > m.rows)
        {
            return Err(GpuError::shape(
                OP,
                format!(
                    "{} values, {rows} rows: larger than the share buffers",
                    q8.len()
                ),
            ));
        }
        let map = |e| GpuError::driver("mapping pinned share buffers")(e);
        {
            let h = self.h_acts.as_mut_slice().map_err(map)?;
            h[..q8.len()].copy_from_slice(bytemuck::cast_slice(q8));
            h[o_d..o_d + 4 * d.len()].copy_from_slice(bytemuck::cast_slice(d));
            h[o_bs..o_bs + 2 * bs.len()].copy_from_slice(bytemuck::cast_slice(bs));
        }
        self.ev0
            .record(&gpu.stream)
            .map_err(GpuError::driver("recording a share event"))?;
        self.pending_pre = t0.elapsed().as_secs_f64();
        let s = gpu.stream.cu_stream();
        let h = self.h_acts.as_slice().map_err(map)?;
        // SAFETY: the device buffer has the pinned buffer's size (both from `packed_len` of
        // the largest call) and `total` fits it (checked above); the pinned source is not
        // rewritten before `finish` has waited for the stream.
        unsafe { cudarc::driver::result::memcpy_htod_async(self.acts.ptr, &h[..total], s) }
            .map_err(GpuError::driver("copying share activations"))?;
        let a = self.acts.view();
        let x = ExactActs {
            q8: cast_view(a.sub(0, q8.len())?),
            d: cast_view(a.sub(o_d, 4 * d.len())?),
            bsums: cast_view(a.sub(o_bs, 2 * bs.len())?),
        };
        for (j, m) in mats.iter().enumerate() {
            let mut o = self.out.view_mut().sub(j * k * rows, k * rows)?;
            gpu.mmv_exact(m.ty, m.w, m.row_bytes(), rows, nb, &x, k, &mut o, rows)?;
        }
        let n = mats.len() * k * rows;
        let h = self.h_out.as_mut_slice().map_err(map)?;
        // SAFETY: the device buffer holds n results written by the kernels queued above on
        // the same stream; the pinned destination has room for n (checked) and is read only
        // after `finish` waits for the event recorded next.
        unsafe { cudarc::driver::result::memcpy_dtoh_async(&mut h[..n], self.out.ptr, s) }
            .map_err(GpuError::driver("copying share results"))?;
        self.ev1
            .record(&gpu.stream)
            .map_err(GpuError::driver("recording a share event"))?;
        self.pending_rows = rows;
        self.pending_mats = mats.len();
        self.pending_k = k;
        self.stats.launch_ms += t0.elapsed().as_secs_f64() * 1e3;
        Ok(())
    }

    /// Waits for the call in flight and returns its results, matrix j's token t row r at
    /// `[(j * k + t) * rows + r]`. `cpu_secs` (the CPU's time for its `cpu_rows`, measured
    /// by the caller) and the GPU's event time move the split toward equal finish times.
    pub fn finish(&mut self, kind: ShareKind, cpu_rows: usize, cpu_secs: f64) -> Result<&[f32]> {
        let (rows, k, n_mats) = (self.pending_rows, self.pending_k, self.pending_mats);
        let w0 = std::time::Instant::now();
        self.ev1
            .synchronize()
            .map_err(GpuError::driver("waiting for the GPU's share"))?;
        let wait = w0.elapsed().as_secs_f64();
        let gpu_ms = self
            .ev0
            .elapsed_ms(&self.ev1)
            .map_err(GpuError::driver("timing the GPU's share"))? as f64;
        self.stats.calls += 1;
        self.stats.gpu_rows += (rows * n_mats) as u64;
        self.stats.cpu_rows += (cpu_rows * n_mats) as u64;
        self.stats.gpu_ms += gpu_ms;
        self.stats.wait_ms += wait * 1e3;
        let (ki, kk) = (kind as usize, k.min(super::MAX_K));
        if !self.warm[ki][kk] {
            self.warm[ki][kk] = true;
        } else {
            // The GPU's clock starts with `launch` (its copy into pinned memory delays it),
            // the CPU's when its workers start.
            let f = &mut self.frac[ki][kk];
            *f = next_fraction(
                *f,
                rows,
                self.pending_pre + gpu_ms * 1e-3,
                cpu_rows,
                cpu_secs,
            );
        }
        self.pending_rows = 0;
        let h = self
            .h_out
            .as_slice()
            .map_err(GpuError::driver("mapping pinned share results"))?;
        Ok(&h[..n_mats * k * rows])
    }

    /// Sets the smallest k that uses the share (`None`: never; tests and benchmarks compare).
    pub fn set_min_k(&mut self, min_k: Option<usize>) {
        self.min_k = min_k.unwrap_or(usize::MAX).max(1);
    }

    /// The current fractions for k = 1..=MAX_K, gate/up then down (benchmarks print them).
    pub fn fractions(&self) -> [[f64; super::MAX_K + 1]; 2] {
        self.frac
    }

    pub fn take_stats(&mut self) -> ShareStats {
        std::mem::take(&mut self.stats)
    }
}

impl ShareStats {
    /// One line for the end of a run.
    pub fn summary(&self) -> String {
        let all = (self.gpu_rows + self.cpu_rows).max(1) as f64;
        format!(
            "PCIe share: {} calls, the GPU computed {:.0}% of the CPU-placed FFN rows in them ({:.1} ms of GPU time), the CPU waited {:.1} ms for it",
            self.calls,
            100.0 * self.gpu_rows as f64 / all,
            self.gpu_ms,
            self.wait_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With fixed rates the split converges to equal finish times within a few calls.
    #[test]
    fn the_split_converges_to_equal_finish_times() {
        let rows = 17408;
        let (g, c) = (3000.0, 7000.0); // rows per second
        let mut f = START_FRAC;
        for _ in 0..20 {
            let rg = share_rows(f, rows);
            let rc = rows - rg;
            f = next_fraction(f, rg, rg as f64 / g, rc, rc as f64 / c);
        }
        assert!((f - 0.3).abs() < 0.01, "fraction {f}");
        let rg = share_rows(f, rows);
        let (tg, tc) = (rg as f64 / g, (rows - rg) as f64 / c);
        assert!((tg - tc).abs() / tc < 0.03, "GPU {tg} s vs CPU {tc} s");
    }

    #[test]
    fn the_split_is_capped_and_ignores_empty_measurements() {
        let mut f = START_FRAC;
        for _ in 0..50 {
            f = next_fraction(f, 1000, 1e-6, 1000, 1.0);
        }
        assert!(f <= MAX_FRAC + 1e-12 && f > MAX_FRAC - 0.01, "{f}");
        assert_eq!(next_fraction(0.3, 0, 1.0, 100, 1.0), 0.3);
        assert_eq!(next_fraction(0.3, 100, 0.0, 100, 1.0), 0.3);
        assert_eq!(next_fraction(0.3, 100, 1.0, 100, 0.0), 0.3);
    }

    #[test]
    fn the_summary_gives_the_gpu_share_of_rows_and_serializes() {
        let s = ShareStats {
            calls: 38,
            gpu_rows: 300,
            cpu_rows: 700,
            gpu_ms: 12.5,
            wait_ms: 0.9,
            launch_ms: 1.0,
        };
        let line = s.summary();
        assert!(line.contains("38 calls"), "{line}");
        assert!(line.contains("computed 30% of"), "{line}");
        assert!(line.contains("waited 0.9 ms"), "{line}");
        let j = serde_json::to_value(s).unwrap();
        assert_eq!(j["gpu_rows"], 300);
    }

    #[test]
    fn the_environment_switch_reads_off_a_count_or_the_default() {
        assert_eq!(parse_min_k(None), Some(DEFAULT_MIN_K));
        assert_eq!(parse_min_k(Some("0")), None);
        assert_eq!(parse_min_k(Some("off")), None);
        assert_eq!(parse_min_k(Some(" 3 ")), Some(3));
        assert_eq!(parse_min_k(Some("1")), Some(1));
        assert_eq!(parse_min_k(Some("00")), None);
        assert_eq!(parse_min_k(Some("lots")), Some(DEFAULT_MIN_K));
    }

    #[test]
    fn share_rows_are_whole_steps_within_the_matrix() {
        assert_eq!(share_rows(0.0, 5120), ROW_STEP);
        assert_eq!(share_rows(0.3, 5120), 1536);
        assert_eq!(share_rows(0.31, 5120) % ROW_STEP, 0);
        assert_eq!(share_rows(1.0, 100), 64);
        assert_eq!(share_rows(0.5, 40), 40);
        assert_eq!(share_rows(2.0, 640), 640);
    }
}
