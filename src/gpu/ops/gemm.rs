//! Large-batch matrix product for prefill (`cuda/dequant.cu` + cuBLAS).
//!
//! `out[t][r] = sum_c w[r][c] * x[t][c]` for many tokens: the weight matrix is dequantized to
//! f16 into a scratch buffer (same decoding as the mat-vec, `cuda/quant.cuh`), the activations
//! are rounded to f16, and cuBLAS multiplies them (`cublasGemmEx`, f16 inputs, f32
//! accumulation and f32 output). Numerics: the weights are exact up to the f16 rounding of
//! `sc * q - mn` (relative 2^-11); the activations carry f16 rounding (relative 2^-11 per value)
//! instead of the mat-vec's 8-bit quantization per 32 values (about 2^-8), so the GEMM path is
//! usually closer to the f32 reference than the mat-vec path. Activations above 65504 in
//! magnitude would overflow f16; the inputs of the projections are normed or gated, far below.
//!
//! cuBLAS is loaded at run time like the driver; [`Gemm::new`] returns `GpuError::NoDevice`
//! when libcublas is missing or fails to start, and callers keep the mat-vec path.

use std::ffi::c_void;

use cudarc::cublas::{result as blas, sys as blas_sys};

use super::super::buffer::{GpuBuf, GpuMatrix, View, ViewMut};
use super::super::device::Gpu;
use super::super::error::{GpuError, Result};
use super::super::kernels::mmv_index;
use super::{as_i32, launch, launch_cfg, need};

const OP: &str = "gemm";

/// Grid of the grid-stride conversion kernels: enough blocks to fill any current GPU.
fn grid_for(total: usize) -> u32 {
    total.div_ceil(256).clamp(1, 8192) as u32
}

/// A cuBLAS handle on the model's stream and the f16 scratch buffers of the GEMM path.
pub struct Gemm {
    handle: blas_sys::cublasHandle_t,
    /// Dequantized weights, [rows][cols] f16.
    w16: GpuBuf<u16>,
    /// Activations, [t][cols] f16.
    x16: GpuBuf<u16>,
}

// SAFETY: the handle is only used through `&mut Gemm` (one thread at a time) and is bound to
// the model's single stream.
unsafe impl Send for Gemm {}

impl Drop for Gemm {
    fn drop(&mut self) {
        // SAFETY: the handle was created by `create_handle` and is destroyed once.
        let _ = unsafe { blas::destroy_handle(self.handle) };
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

impl Gemm {
    /// Loads cuBLAS and allocates scratch for matrices of up to `max_weights` elements and
    /// activations of up to `max_acts` elements. Never panics: a missing or broken libcublas
    /// is `GpuError::NoDevice`.
    pub fn new(gpu: &Gpu, max_weights: usize, max_acts: usize) -> Result<Gemm> {
        if gpu.k.dequant.is_none() {
            return Err(GpuError::NoDevice(
                "the f16 conversion kernels (cuda/dequant.cu) did not load".into(),
            ));
        }
        // SAFETY: only tries to dlopen the candidate names of libcublas.
        if !unsafe { blas_sys::is_culib_present() } {
            return Err(GpuError::NoDevice(
                "libcublas was not found; prefill uses the mat-vec path".into(),
            ));
        }
        // cudarc panics when a symbol is missing; turn that into an error.
        let handle = std::panic::catch_unwind(|| -> Result<blas_sys::cublasHandle_t> {
            gpu.ctx
                .bind_to_thread()
                .map_err(GpuError::driver("binding the context for cuBLAS"))?;
            let h = blas::create_handle()
                .map_err(|e| GpuError::NoDevice(format!("cublasCreate failed: {e:?}")))?;
            // SAFETY: `h` is a live handle and the stream belongs to the current context.
            if let Err(e) = unsafe { blas::set_stream(h, gpu.stream.cu_stream() as _) } {
                // SAFETY: created just above, not used again.
                let _ = unsafe { blas::destroy_handle(h) };
                return Err(GpuError::NoDevice(format!("cublasSetStream failed: {e:?}")));
            }
            Ok(h)
        })
        .map_err(|p| GpuError::NoDevice(format!("cuBLAS failure: {}", panic_message(p))))??;
        let w16 = gpu.alloc_zeros::<u16>(max_weights, "f16 weight scratch");
        let x16 = gpu.alloc_zeros::<u16>(max_acts, "f16 activation scratch");
        match (w16, x16) {
            (Ok(w16), Ok(x16)) => Ok(Gemm { handle, w16, x16 }),
            (Err(e), _) | (_, Err(e)) => {
                // SAFETY: created above, not used again.
                let _ = unsafe { blas::destroy_handle(handle) };
                Err(e)
            }
        }
    }

    /// Bytes of device scratch held.
    pub fn scratch_bytes(&self) -> usize {
        2 * (self.w16.len() + self.x16.len())
    }
}

impl Gpu {
    /// Whether the f16 conversion kernels (`cuda/dequant.cu`) loaded.
    pub fn has_dequant(&self) -> bool {
        self.k.dequant.is_some()
    }

    /// Dequantizes `w` into `out` as [w.rows][w.cols] f16 (also used by tests).
    pub fn dequant_f16(&self, w: &GpuMatrix, out: ViewMut<'_, u16>) -> Result<()> {
        let fmt = mmv_index(w.ty, w.split).ok_or_else(|| {
            GpuError::shape(OP, format!("{}: no dequantizer for {}", w.name, w.ty))
        })?;
        if w.cols % 32 != 0 {
            return Err(GpuError::shape(
                OP,
                format!("{}: cols = {} is not a multiple of 32", w.name, w.cols),
            ));
        }
        need(OP, "f16 weight scratch", out.len(), w.rows * w.cols)?;
        let (wp, row_bytes, op) = (w.data.ptr, w.row_bytes as u64, out.ptr);
        let rows = as_i32(OP, "rows", w.rows)?;
        let n = as_i32(OP, "cols", w.cols)?;
        let dq = self.k.dequant.as_ref().ok_or_else(|| {
            GpuError::shape(
                OP,
                "the f16 conversion kernels (cuda/dequant.cu) did not load",
            )
        })?;
        let mut b = self.launcher(&dq.by_fmt[fmt]);
        b.arg(&wp) /* W */
            .arg(&row_bytes) /* row_bytes */
            .arg(&rows) /* rows */
            .arg(&n) /* n */
            .arg(&op); /* out */
        launch(
            OP,
            &mut b,
            launch_cfg((grid_for(w.rows * w.cols / 8), 1, 1), 256),
        )
    }

    /// Rounds `n` values of `x` to f16 into `out`.
    pub fn to_f16(&self, x: View<'_, f32>, n: usize, out: ViewMut<'_, u16>) -> Result<()> {
        need(OP, "x", x.len(), n)?;
        need(OP, "f16 activation scratch", out.len(), n)?;
        let (xp, op, nn) = (x.ptr, out.ptr, n as i64);
        let dq = self.k.dequant.as_ref().ok_or_else(|| {
            GpuError::shape(
                OP,
                "the f16 conversion kernels (cuda/dequant.cu) did not load",
            )
        })?;
        let mut b = self.launcher(&dq.f32_to_f16);
        b.arg(&xp) /* x */
            .arg(&op) /* y */
            .arg(&nn); /* n */
        launch(OP, &mut b, launch_cfg((grid_for(n), 1, 1), 256))
    }

    /// `out[i][r] = sum_c w[r][c] * x[i][c]` for i < t (any t >= 1): x is [t][w.cols] f32,
    /// out is [t][w.rows] f32. Dequantizes `w` to f16 and calls cuBLAS.
    pub fn gemm(
        &self,
        g: &mut Gemm,
        w: &GpuMatrix,
        x: View<'_, f32>,
        t: usize,
        out: ViewMut<'_, f32>,
    ) -> Result<()> {
        if t == 0 {
            return Err(GpuError::shape(OP, format!("{}: t = 0", w.name)));
        }
        need(OP, "x", x.len(), t * w.cols)?;
        need(OP, "out", out.len(), t * w.rows)?;
        let m = as_i32(OP, "rows", w.rows)?;
        let k = as_i32(OP, "cols", w.cols)?;
        let n = as_i32(OP, "tokens", t)?;
        self.dequant_f16(w, g.w16.view_mut())?;
        self.to_f16(x, t * w.cols, g.x16.view_mut())?;
        let (alpha, beta) = (1.0f32, 0.0f32);
        // Column-major view: C (rows x t, ld rows) = W16ᵀ (W16 is cols x rows, ld cols) · X16
        // (cols x t, ld cols), i.e. row-major out[t][rows] = x[t][cols] · wᵀ.
        // SAFETY: w16 holds rows*cols f16 (checked in dequant_f16), x16 t*cols f16 (to_f16),
        // out t*rows f32 (checked above); all on the stream the handle is bound to, and the
        // scalars outlive the call (host pointer mode, read before it returns).
        unsafe {
            blas::gemm_ex(
                g.handle,
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                m,
                n,
                k,
                &alpha as *const f32 as *const c_void,
                g.w16.ptr as *const c_void,
                blas_sys::cudaDataType::CUDA_R_16F,
                k,
                g.x16.ptr as *const c_void,
                blas_sys::cudaDataType::CUDA_R_16F,
                k,
                &beta as *const f32 as *const c_void,
                out.ptr as *mut c_void,
                blas_sys::cudaDataType::CUDA_R_32F,
                m,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
            )
        }
        .map_err(|e| GpuError::shape(OP, format!("{}: cublasGemmEx failed: {e:?}", w.name)))
    }
}
