//! Typed launch wrappers, one file per `cuda/*.cu` module. Each wrapper checks every size
//! against its views and returns `GpuError::Shape` before queuing anything; the kernel
//! arguments are labelled in the order of the `extern "C"` signature.

mod attn;
mod basic;
mod gdn;
mod gemm;
mod matvec;

pub use attn::{AttnScratch, KvCache, ATTN_HEAD_DIMS};
pub use basic::GateRows;
pub use gdn::{GdnConvArgs, GdnRecurrenceArgs, GDN_HEAD_DIM, GDN_HEAD_DIMS};
pub use gemm::Gemm;
pub use matvec::QuantActs;

use std::marker::PhantomData;

use std::ffi::c_void;

use cudarc::driver::{sys, CudaFunction, CudaStream, DeviceRepr, LaunchConfig};

use super::buffer::View;
use super::error::{GpuError, Result};
use super::kprof::KernelProfile;

/// A token position the kernels read from device memory (`*ptr + off`), so that a captured
/// CUDA graph replays at whatever position the device slot holds. `host` is the same value
/// on the host: the size checks and the grid of eager launches use it, and the caller makes
/// sure the slot holds `host - off` when the work runs (`Gpu::set_i32` before the launches).
#[derive(Clone, Copy)]
pub struct DevPos<'a> {
    pub(crate) ptr: u64,
    pub(crate) off: usize,
    pub host: usize,
    _m: PhantomData<&'a i32>,
}

impl<'a> DevPos<'a> {
    /// The position held by `slot[0]`, which is (or will be, by the time the work runs) `host`.
    pub fn new(slot: View<'a, i32>, host: usize) -> DevPos<'a> {
        DevPos {
            ptr: slot.ptr,
            off: 0,
            host,
            _m: PhantomData,
        }
    }

    /// The position `n` further on.
    pub fn offset(self, n: usize) -> DevPos<'a> {
        DevPos {
            off: self.off + n,
            host: self.host + n,
            ..self
        }
    }
}

pub(crate) fn launch_cfg(grid: (u32, u32, u32), block: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `v` as an i32 kernel argument.
pub(crate) fn as_i32(op: &'static str, what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| GpuError::shape(op, format!("{what} = {v} does not fit in i32")))
}

/// `n` blocks of `per` threads covering `total` items, as a grid size.
pub(crate) fn blocks_for(op: &'static str, total: usize, per: usize) -> Result<u32> {
    u32::try_from(total.div_ceil(per).max(1))
        .map_err(|_| GpuError::shape(op, format!("{total} items is too many")))
}

/// A view must hold at least `need` elements.
pub(crate) fn need(op: &'static str, what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(GpuError::shape(
            op,
            format!("{what} has {have} elements, needs {need}"),
        ));
    }
    Ok(())
}

/// A kernel launch being built: the kernel, its arguments (by reference, in the order of
/// the `extern "C"` signature) and whether it may use programmatic dependent launch.
pub(crate) struct Launch<'a> {
    f: &'a CudaFunction,
    stream: &'a CudaStream,
    pdl: bool,
    args: Vec<*mut c_void>,
    /// The kernel profile, while one is being taken.
    prof: Option<&'a KernelProfile>,
    /// Its label in the profile (default: the op name).
    label: Option<String>,
}

impl<'a> Launch<'a> {
    pub(crate) fn new(
        f: &'a CudaFunction,
        stream: &'a CudaStream,
        pdl: bool,
        prof: Option<&'a KernelProfile>,
    ) -> Launch<'a> {
        Launch {
            f,
            stream,
            pdl,
            args: Vec::with_capacity(12),
            prof,
            label: None,
        }
    }

    /// Whether a kernel profile is being taken (so a label is worth formatting).
    pub(crate) fn profiling(&self) -> bool {
        self.prof.is_some()
    }

    /// The launch's label in a kernel profile.
    pub(crate) fn label(&mut self, l: String) {
        self.label = Some(l);
    }

    /// The next kernel argument; it must outlive the launch (a local of the wrapper).
    pub(crate) fn arg<T: DeviceRepr>(&mut self, v: &'a T) -> &mut Launch<'a> {
        self.args.push(v as *const T as *mut c_void);
        self
    }
}

/// Queues the launch; the error names the op.
///
/// With `pdl` (sm_90 and newer, `Gpu::pdl`), the launch carries programmatic stream
/// serialization: the kernel's blocks may be scheduled while the previous kernel's last
/// blocks still run. Every kernel starts with `PDL_ENTER()` (`cuda/common.cuh`), which waits
/// for the previous grid to complete and its writes to be visible before anything is read,
/// then lets the next kernel launch; so only the launch latency and the tail overlap.
pub(crate) fn launch(op: &'static str, b: &mut Launch<'_>, cfg: LaunchConfig) -> Result<()> {
    b.stream
        .context()
        .bind_to_thread()
        .map_err(GpuError::driver(format!("binding the context for {op}")))?;
    let mut attr = sys::CUlaunchAttribute {
        id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        pad: [0; 4],
        value: sys::CUlaunchAttributeValue {
            programmaticStreamSerializationAllowed: 1,
        },
    };
    let config = sys::CUlaunchConfig {
        gridDimX: cfg.grid_dim.0,
        gridDimY: cfg.grid_dim.1,
        gridDimZ: cfg.grid_dim.2,
        blockDimX: cfg.block_dim.0,
        blockDimY: cfg.block_dim.1,
        blockDimZ: cfg.block_dim.2,
        sharedMemBytes: cfg.shared_mem_bytes,
        hStream: b.stream.cu_stream(),
        attrs: if b.pdl {
            &mut attr
        } else {
            std::ptr::null_mut()
        },
        numAttrs: b.pdl as u32,
    };
    let e0 = match b.prof {
        Some(p) => Some(p.start(b.stream)?),
        None => None,
    };
    // SAFETY: every wrapper pushes exactly the arguments of the kernel's extern "C"
    // signature, in order and with matching types (u64 device pointers, i32, f32), each a
    // reference that outlives this call, and has checked that each pointer addresses enough
    // live device memory for the shapes passed. `config` and `attr` live across the call, and
    // the function belongs to the context bound above.
    unsafe {
        sys::cuLaunchKernelEx(
            &config,
            b.f.cu_function(),
            b.args.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
    .result()
    .map_err(GpuError::driver(format!("launching {op}")))?;
    if let (Some(p), Some(e0)) = (b.prof, e0) {
        p.finish(
            b.label.take().unwrap_or_else(|| op.to_string()),
            b.stream,
            e0,
        )?;
    }
    Ok(())
}
