//! Device detection, the [`Gpu`] handle, allocation, uploads (through pinned staging) and
//! downloads.

use std::sync::Arc;

use cudarc::driver::{
    result as drv, sys, CudaContext, CudaEvent, CudaStream, DeviceRepr, PinnedHostSlice,
    ValidAsZeroBits,
};
use simd::GgmlType;

use super::buffer::{GpuBuf, GpuMatrix, View, ViewMut};
use super::compile;
use super::error::{GpuError, Result};
use super::kernels::{Kernels, LoadStats};
use super::kprof::{KernelProfile, KernelTime};
use super::ops::Launch;

/// Oldest compute capability the kernels are written for (dp4a, warp shuffles, NVRTC 13).
pub const MIN_CC: (i32, i32) = (7, 5);

/// Bytes of each of the two pinned staging buffers used by uploads.
const STAGING_BYTES: usize = 32 << 20;

/// Writes whole source rows into a staging buffer in another layout (`gpu::layout`).
type RowFill<'a> = dyn Fn(&[u8], &mut [u8]) + 'a;

#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability (major, minor).
    pub cc: (i32, i32),
    pub total_mem: usize,
    pub sm_count: i32,
    /// As `cuDriverGetVersion`: 1000 * major + 10 * minor.
    pub driver_version: i32,
    pub nvrtc_version: (i32, i32),
}

/// One CUDA device with its stream and compiled kernels. All work goes to one stream, so
/// launches and copies run in the order they are issued.
pub struct Gpu {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) k: Kernels,
    info: DeviceInfo,
    load_stats: LoadStats,
    /// Launch kernels with programmatic dependent launch (sm_90+, unless `HYBRID_PDL=0`).
    pdl: bool,
    /// Q4_K/Q5_K mat-vecs on the tensor cores (`mmv_*_t_k*`, sm_80+; `HYBRID_MMV_MMA`).
    mmvt: bool,
    /// GPU time per launch kind, while on (`set_kernel_profile`).
    prof: Option<KernelProfile>,
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

impl Gpu {
    /// Opens device `ordinal` and loads every kernel. Never panics: a missing libcuda or
    /// libnvrtc, no device, or a GPU older than sm_75 gives `GpuError::NoDevice`.
    pub fn new(ordinal: usize) -> Result<Gpu> {
        // cudarc panics when a library or symbol it needs is missing; turn that into an error.
        match std::panic::catch_unwind(|| Gpu::open(ordinal)) {
            Ok(r) => r,
            Err(p) => Err(GpuError::NoDevice(format!(
                "CUDA library failure: {}",
                panic_message(p)
            ))),
        }
    }

    fn open(ordinal: usize) -> Result<Gpu> {
        // SAFETY: only tries to dlopen the candidate names of libcuda.
        if !unsafe { sys::is_culib_present() } {
            return Err(GpuError::NoDevice(
                "libcuda (the NVIDIA driver library) was not found".into(),
            ));
        }
        if !compile::nvrtc_present() {
            return Err(GpuError::NoDevice(
                "libnvrtc (CUDA's run-time compiler) was not found".into(),
            ));
        }
        drv::init().map_err(|e| GpuError::NoDevice(format!("cuInit failed: {e}")))?;
        let count = CudaContext::device_count()
            .map_err(|e| GpuError::NoDevice(format!("cuDeviceGetCount: {e}")))?;
        if ordinal >= count.max(0) as usize {
            return Err(GpuError::NoDevice(format!(
                "device {ordinal} asked for, {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(GpuError::driver("creating the context"))?;
        // SAFETY: hybrid-run uses a single stream per context, so stream order already orders
        // every use of every allocation; cudarc's per-buffer events would only add cost.
        unsafe { ctx.disable_event_tracking() };
        let cc = ctx
            .compute_capability()
            .map_err(GpuError::driver("reading the compute capability"))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown".into());
        if cc < MIN_CC {
            return Err(GpuError::NoDevice(format!(
                "{name} is sm_{}{}; hybrid-run needs sm_75 or newer",
                cc.0, cc.1
            )));
        }
        let total_mem = ctx
            .total_mem()
            .map_err(GpuError::driver("reading total memory"))?;
        let sm_count = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(GpuError::driver("reading the SM count"))?;
        let mut driver_version = 0;
        // SAFETY: out-parameter call; cuInit succeeded above.
        unsafe { sys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .map_err(GpuError::driver("reading the driver version"))?;
        let nvrtc_version = compile::nvrtc_version()?;
        let (k, load_stats) = Kernels::load(&ctx, cc, driver_version)?;
        // A stream of our own, not the legacy default stream: CUDA graphs can only be
        // captured from a created stream (`graph.rs`).
        let stream = ctx
            .new_stream()
            .map_err(GpuError::driver("creating the stream"))?;
        let info = DeviceInfo {
            ordinal,
            name,
            cc,
            total_mem,
            sm_count,
            driver_version,
            nvrtc_version,
        };
        tracing::info!(
            "GPU {}: {} sm_{}{} {} SMs {:.1} GiB, driver {}.{}, NVRTC {}.{}, kernels: {} compiled, {} cached ({:.0} ms)",
            ordinal,
            info.name,
            cc.0,
            cc.1,
            sm_count,
            total_mem as f64 / (1u64 << 30) as f64,
            driver_version / 1000,
            (driver_version % 1000) / 10,
            nvrtc_version.0,
            nvrtc_version.1,
            load_stats.compiled,
            load_stats.cached,
            load_stats.compile_ms
        );
        let pdl = cc.0 >= 9 && super::env_switch("HYBRID_PDL", true);
        // Off unless HYBRID_MMV_MMA=1: measured slower than the dp4a kernels at k = 1
        // (docs/benchmarks/gpu-mma-mmv-2026-12-06.md).
        let mmvt = k.mmvt.is_some() && super::env_switch("HYBRID_MMV_MMA", false);
        Ok(Gpu {
            ctx,
            stream,
            k,
            info,
            load_stats,
            pdl,
            mmvt,
            prof: None,
        })
    }

    /// A launch of kernel `f` on the stream (`ops::launch` queues it).
    pub(crate) fn launcher<'a>(&'a self, f: &'a cudarc::driver::CudaFunction) -> Launch<'a> {
        Launch::new(f, &self.stream, self.pdl, self.prof.as_ref())
    }

    /// Starts (or stops) timing every launch with a pair of events (eager launches only:
    /// not while a CUDA graph is captured).
    pub fn set_kernel_profile(&mut self, on: bool) {
        self.prof = on.then(KernelProfile::default);
    }

    /// GPU time per launch label since profiling started or the last call, largest first.
    pub fn take_kernel_profile(&self) -> Result<Vec<KernelTime>> {
        match &self.prof {
            Some(p) => p.take(&self.stream),
            None => Ok(Vec::new()),
        }
    }

    /// Whether kernels are launched with programmatic dependent launch.
    pub fn pdl(&self) -> bool {
        self.pdl
    }

    /// Turns programmatic dependent launch off or back on (only on devices that have it;
    /// benchmarks compare both).
    pub fn set_pdl(&mut self, on: bool) {
        self.pdl = on && self.info.cc.0 >= 9;
    }

    /// Whether Q4_K/Q5_K mat-vecs run on the tensor cores.
    pub fn mmvt(&self) -> bool {
        self.mmvt
    }

    /// Turns the tensor-core Q4_K/Q5_K mat-vecs on or off (only on devices that have them,
    /// sm_80+; checks and benchmarks compare both). A model must keep one setting for its
    /// whole life: a token's bits depend on it.
    pub fn set_mmvt(&mut self, on: bool) {
        self.mmvt = on && self.k.mmvt.is_some();
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn load_stats(&self) -> LoadStats {
        self.load_stats
    }

    /// (free, total) device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize)> {
        self.ctx
            .mem_get_info()
            .map_err(GpuError::driver("reading free memory"))
    }

    /// Waits for all queued work; reports any error a kernel raised.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(GpuError::driver("waiting for the stream"))
    }

    fn oom(&self, what: &str, bytes: usize) -> GpuError {
        let (free, total) = self.mem_info().unwrap_or((0, 0));
        GpuError::OutOfMemory {
            what: what.to_string(),
            bytes,
            free,
            total,
        }
    }

    fn map_alloc(
        &self,
        what: &str,
        bytes: usize,
    ) -> impl FnOnce(cudarc::driver::DriverError) -> GpuError + '_ {
        let what = what.to_string();
        move |e| {
            if e.0 == sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY {
                self.oom(&what, bytes)
            } else {
                GpuError::Driver {
                    what: format!("allocating {bytes} bytes for {what}"),
                    source: e,
                }
            }
        }
    }

    /// Zero-filled device buffer of `n` elements; `what` names it in errors.
    pub fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        n: usize,
        what: &str,
    ) -> Result<GpuBuf<T>> {
        let bytes = n.saturating_mul(std::mem::size_of::<T>());
        let s = self
            .stream
            .alloc_zeros::<T>(n)
            .map_err(self.map_alloc(what, bytes))?;
        Ok(GpuBuf::from_slice(s))
    }

    /// Copies `host` into a new device buffer (small data; weights go through
    /// [`Gpu::upload_matrix`]).
    pub fn upload<T: DeviceRepr>(&self, host: &[T], what: &str) -> Result<GpuBuf<T>> {
        let bytes = std::mem::size_of_val(host);
        // SAFETY: the buffer is filled by the copy queued right after, before any other use.
        let mut s =
            unsafe { self.stream.alloc::<T>(host.len()) }.map_err(self.map_alloc(what, bytes))?;
        self.stream
            .memcpy_htod(host, &mut s)
            .map_err(GpuError::driver(format!("copying {what} to the device")))?;
        Ok(GpuBuf::from_slice(s))
    }

    /// Overwrites the start of `dst` with `host`.
    pub fn write<T: DeviceRepr>(&self, host: &[T], dst: &mut GpuBuf<T>) -> Result<()> {
        if host.len() > dst.len() {
            return Err(GpuError::shape(
                "write",
                format!("{} elements into a buffer of {}", host.len(), dst.len()),
            ));
        }
        self.stream
            .memcpy_htod(host, &mut dst.slice)
            .map_err(GpuError::driver("copying to the device"))
    }

    /// Copies a device view back (waits for the stream).
    pub fn download<T: DeviceRepr + Default + Clone>(&self, v: View<'_, T>) -> Result<Vec<T>> {
        let mut out = vec![T::default(); v.len()];
        // SAFETY: `v` points at `v.len()` live elements of T (it borrows its buffer) and
        // `out` has room for exactly that many; the stream is synchronized before returning.
        unsafe { drv::memcpy_dtoh_async(&mut out[..], v.ptr, self.stream.cu_stream()) }
            .map_err(GpuError::driver("copying from the device"))?;
        self.synchronize()?;
        Ok(out)
    }

    /// Uploads a weight matrix from its GGUF bytes (e.g. a slice of the mmap) through two
    /// pinned staging buffers, in the row-split layout where `gpu::layout::row_split` says
    /// so. Errors name the tensor and the bytes asked for.
    pub fn upload_matrix(
        &self,
        name: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<GpuMatrix> {
        let split = super::layout::row_split(ty, rows, cols);
        self.upload_matrix_as(name, ty, rows, cols, bytes, split)
    }

    /// `upload_matrix` with the layout chosen by the caller (`split`: the row-split layout,
    /// which only `gpu::layout::splittable` matrices have; tests compare both layouts).
    pub fn upload_matrix_as(
        &self,
        name: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
        split: bool,
    ) -> Result<GpuMatrix> {
        if split && !super::layout::splittable(ty, cols) {
            return Err(GpuError::shape(
                "upload_matrix",
                format!("{name}: no row-split layout for {ty} with {cols} columns"),
            ));
        }
        let row_bytes = ty.row_bytes(cols as u64).ok_or_else(|| {
            GpuError::shape(
                "upload_matrix",
                format!("{name}: {cols} columns is not a whole number of {ty} blocks"),
            )
        })? as usize;
        let need = rows
            .checked_mul(row_bytes)
            .ok_or_else(|| GpuError::shape("upload_matrix", format!("{name}: size overflows")))?;
        if bytes.len() != need {
            return Err(GpuError::shape(
                "upload_matrix",
                format!(
                    "{name}: {rows} x {cols} {ty} needs {need} bytes, got {}",
                    bytes.len()
                ),
            ));
        }
        // SAFETY: every byte is written by the staged copies below before any kernel reads it.
        let dst = unsafe { self.stream.alloc::<u8>(need) }.map_err(self.map_alloc(name, need))?;
        let data = GpuBuf::from_slice(dst);
        if split {
            let fill = |s: &[u8], d: &mut [u8]| super::layout::split_rows(ty, cols, s, d);
            self.staged_copy(bytes, data.ptr, name, row_bytes, Some(&fill))?;
        } else {
            self.staged_copy(bytes, data.ptr, name, 1, None)?;
        }
        Ok(GpuMatrix {
            name: name.to_string(),
            ty,
            rows,
            cols,
            row_bytes,
            split,
            data,
        })
    }

    /// Host -> device copy of `src` to `dst_ptr` in chunks through two pinned buffers, so the
    /// CPU fills one while the DMA engine drains the other. With `fill`, each chunk (a whole
    /// number of `unit`-byte rows) is written into the staging buffer by `fill(src, dst)`
    /// instead of copied as it is (the row-split layout of `gpu::layout`).
    fn staged_copy(
        &self,
        src: &[u8],
        dst_ptr: u64,
        what: &str,
        unit: usize,
        fill: Option<&RowFill<'_>>,
    ) -> Result<()> {
        let unit = unit.max(1);
        if src.len() <= STAGING_BYTES / 4 || unit > STAGING_BYTES {
            // Small (or rows longer than a staging buffer): a plain copy is as fast and
            // needs no pinned memory.
            let owned;
            let src = match fill {
                Some(f) => {
                    let mut v = vec![0u8; src.len()];
                    f(src, &mut v);
                    owned = v;
                    &owned[..]
                }
                None => src,
            };
            // SAFETY: `dst_ptr` addresses at least `src.len()` bytes of a live allocation
            // owned by the caller; synchronized before returning.
            unsafe { drv::memcpy_htod_async(dst_ptr, src, self.stream.cu_stream()) }
                .map_err(GpuError::driver(format!("copying {what}")))?;
            return self.synchronize();
        }
        let mut pinned = Vec::with_capacity(2);
        for _ in 0..2 {
            // SAFETY: page-locked host memory; only written below before being copied from.
            let p = unsafe { self.ctx.alloc_pinned::<u8>(STAGING_BYTES) }
                .map_err(GpuError::driver("allocating pinned staging memory"))?;
            pinned.push(p);
        }
        let mut events: [Option<cudarc::driver::CudaEvent>; 2] = [None, None];
        let chunk_bytes = STAGING_BYTES / unit * unit;
        for (i, chunk) in src.chunks(chunk_bytes).enumerate() {
            let slot = i % 2;
            if let Some(ev) = events[slot].take() {
                ev.synchronize()
                    .map_err(GpuError::driver("waiting for a staging copy"))?;
            }
            let buf = pinned[slot]
                .as_mut_slice()
                .map_err(GpuError::driver("mapping pinned staging memory"))?;
            match fill {
                Some(f) => f(chunk, &mut buf[..chunk.len()]),
                None => buf[..chunk.len()].copy_from_slice(chunk),
            }
            let off = (i * chunk_bytes) as u64;
            // SAFETY: the destination range [off, off + chunk.len()) lies inside the
            // allocation (chunks partition `src`, whose length equals it); the pinned source
            // is not touched again until the event recorded after this copy has completed.
            unsafe {
                drv::memcpy_htod_async(dst_ptr + off, &buf[..chunk.len()], self.stream.cu_stream())
            }
            .map_err(GpuError::driver(format!("copying {what}")))?;
            events[slot] = Some(
                self.stream
                    .record_event(None)
                    .map_err(GpuError::driver("recording a staging event"))?,
            );
        }
        self.synchronize()
    }

    /// Device-to-device copy of `n` bytes (used by the bandwidth benchmark).
    pub fn copy_bytes(
        &self,
        src: View<'_, u8>,
        dst: &mut super::buffer::ViewMut<'_, u8>,
    ) -> Result<()> {
        if src.len() > dst.len() {
            return Err(GpuError::shape(
                "copy_bytes",
                format!("{} bytes into {}", src.len(), dst.len()),
            ));
        }
        // SAFETY: both ranges are live device memory of at least src.len() bytes, borrowed
        // from their buffers for the duration of the call.
        unsafe { drv::memcpy_dtod_async(dst.ptr, src.ptr, src.len(), self.stream.cu_stream()) }
            .map_err(GpuError::driver("device-to-device copy"))
    }

    /// Device-to-device copy of `src` into the start of `dst` (snapshot record/restore).
    pub fn copy<T: DeviceRepr>(
        &self,
        src: View<'_, T>,
        dst: &mut super::buffer::ViewMut<'_, T>,
    ) -> Result<()> {
        if src.len() > dst.len() {
            return Err(GpuError::shape(
                "copy",
                format!("{} elements into {}", src.len(), dst.len()),
            ));
        }
        let bytes = src.len() * std::mem::size_of::<T>();
        // SAFETY: both ranges are live device memory of at least `bytes` bytes, borrowed
        // from their buffers for the duration of the call; the copy is queued on the one
        // stream every kernel uses, so it is ordered with them.
        unsafe { drv::memcpy_dtod_async(dst.ptr, src.ptr, bytes, self.stream.cu_stream()) }
            .map_err(GpuError::driver("device-to-device copy"))
    }

    /// Sets the first element of `dst` to `v` (stream-ordered, no host memory involved).
    pub fn set_i32(&self, dst: &mut ViewMut<'_, i32>, v: i32) -> Result<()> {
        if dst.is_empty() {
            return Err(GpuError::shape("set_i32", "an empty view"));
        }
        // SAFETY: `dst` borrows at least one live i32 of device memory; the memset is queued
        // on the one stream every kernel uses, so it is ordered with them.
        unsafe { sys::cuMemsetD32Async(dst.ptr, v as u32, 1, self.stream.cu_stream()) }
            .result()
            .map_err(GpuError::driver("setting a device integer"))
    }

    /// An event recorded now on the stream (for timing).
    pub fn record_event(&self) -> Result<cudarc::driver::CudaEvent> {
        self.stream
            .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(GpuError::driver("recording an event"))
    }
}

/// Page-locked host buffers for the activations that go down to the CPU FFN and back up in
/// every CPU-placed layer (hybrid split): DMA from and to them needs no driver-side staging
/// copy, and nothing is allocated per token.
pub struct HostStaging {
    /// Device -> host (the normed FFN input); cached memory, the CPU reads it.
    down: PinnedHostSlice<f32>,
    /// Host -> device (the FFN output); the CPU writes it.
    up: PinnedHostSlice<f32>,
    /// Recorded after the last upload from `up`, which must finish before `up` is rewritten.
    up_done: CudaEvent,
    up_pending: bool,
}

impl HostStaging {
    /// Two buffers of `n` f32 each.
    pub fn new(gpu: &Gpu, n: usize) -> Result<HostStaging> {
        let alloc = || {
            // SAFETY: page-locked host memory; every element is written (by a DMA or by the
            // CPU) before it is read, and only the first n written elements are ever read.
            unsafe { gpu.ctx.alloc_pinned_with_flags::<f32>(n.max(1), 0) }
                .map_err(GpuError::driver("allocating pinned activation buffers"))
        };
        Ok(HostStaging {
            down: alloc()?,
            up: alloc()?,
            up_done: gpu
                .ctx
                .new_event(None)
                .map_err(GpuError::driver("creating an upload event"))?,
            up_pending: false,
        })
    }

    /// Copies `v` into the download buffer and waits for it.
    pub fn download(&mut self, gpu: &Gpu, v: View<'_, f32>) -> Result<()> {
        let n = v.len();
        if n > self.down.len() {
            return Err(GpuError::shape(
                "HostStaging",
                format!("{n} values for a pinned buffer of {}", self.down.len()),
            ));
        }
        let host = self
            .down
            .as_mut_slice()
            .map_err(GpuError::driver("mapping the pinned download buffer"))?;
        // SAFETY: `v` points at n live f32 (it borrows its buffer), `host` has room for n, and
        // the stream is synchronized before `host` is read or the borrow ends.
        unsafe { drv::memcpy_dtoh_async(&mut host[..n], v.ptr, gpu.stream.cu_stream()) }
            .map_err(GpuError::driver("copying activations from the device"))?;
        gpu.synchronize()
    }

    /// The first `n_in` downloaded values and the first `n_out` values of the upload
    /// buffer (after the previous upload from it has finished).
    pub fn io(&mut self, n_in: usize, n_out: usize) -> Result<(&[f32], &mut [f32])> {
        if n_in > self.down.len() || n_out > self.up.len() {
            return Err(GpuError::shape(
                "HostStaging",
                format!(
                    "{n_in} / {n_out} values for pinned buffers of {}",
                    self.down.len()
                ),
            ));
        }
        if self.up_pending {
            self.up_done
                .synchronize()
                .map_err(GpuError::driver("waiting for an activation upload"))?;
            self.up_pending = false;
        }
        let down = self
            .down
            .as_slice()
            .map_err(GpuError::driver("mapping the pinned download buffer"))?;
        let up = self
            .up
            .as_mut_slice()
            .map_err(GpuError::driver("mapping the pinned upload buffer"))?;
        Ok((&down[..n_in], &mut up[..n_out]))
    }

    /// Queues the copy of the first `dst.len()` values of the upload buffer into `dst`.
    pub fn upload(&mut self, gpu: &Gpu, dst: ViewMut<'_, f32>) -> Result<()> {
        let n = dst.len();
        if n > self.up.len() {
            return Err(GpuError::shape(
                "HostStaging",
                format!("{n} values from a pinned buffer of {}", self.up.len()),
            ));
        }
        let host = self
            .up
            .as_slice()
            .map_err(GpuError::driver("mapping the pinned upload buffer"))?;
        // SAFETY: `dst` addresses n live f32 of a device buffer it borrows; the pinned source
        // is not written again until `up_done`, recorded right after, has completed (`io`
        // waits for it).
        unsafe { drv::memcpy_htod_async(dst.ptr, &host[..n], gpu.stream.cu_stream()) }
            .map_err(GpuError::driver("copying activations to the device"))?;
        self.up_done
            .record(&gpu.stream)
            .map_err(GpuError::driver("recording an activation upload"))?;
        self.up_pending = true;
        Ok(())
    }
}
