//! Errors of the CUDA backend.

use std::path::PathBuf;

/// Everything that can go wrong on the GPU side. Launch wrappers return `Shape` for bad
/// arguments before anything is queued; driver failures carry what we were doing.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No usable CUDA device: libcuda or libnvrtc missing, no device, or an old GPU.
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    #[error("CUDA driver error while {what}: {source}")]
    Driver {
        what: String,
        #[source]
        source: cudarc::driver::DriverError,
    },
    #[error("NVRTC failed to compile cuda/{module}.cu: {log}")]
    Nvrtc { module: &'static str, log: String },
    #[error("kernel {name} is missing from module {module}")]
    MissingKernel { module: &'static str, name: String },
    #[error("out of GPU memory: {what} needs {bytes} bytes, {free} of {total} bytes free")]
    OutOfMemory {
        what: String,
        bytes: usize,
        free: usize,
        total: usize,
    },
    /// A launch wrapper rejected its arguments (sizes, strides, unsupported shapes).
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },
    #[error("kernel cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GpuError {
    pub(crate) fn shape(op: &'static str, msg: impl Into<String>) -> GpuError {
        GpuError::Shape {
            op,
            msg: msg.into(),
        }
    }

    pub(crate) fn driver(
        what: impl Into<String>,
    ) -> impl FnOnce(cudarc::driver::DriverError) -> GpuError {
        let what = what.into();
        move |source| GpuError::Driver { what, source }
    }
}

pub type Result<T, E = GpuError> = std::result::Result<T, E>;
