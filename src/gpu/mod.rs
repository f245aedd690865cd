//! CUDA backend: device runtime (cudarc, driver API loaded at run time) and the kernels of
//! `cuda/*.cu`, compiled by NVRTC for the device's compute capability at start-up and cached
//! on disk. No CUDA toolkit is needed to build; without libcuda, `Gpu::new` returns
//! `GpuError::NoDevice`.
//!
//! Layout: `compile` (NVRTC + cache, `enum Kernel`), `kernels` (functions in fields),
//! `device` (`Gpu`: detection, allocation, uploads), `layout` (row-split device layouts of
//! Q6_K and Q8_0), `graph` (CUDA graph capture/replay), `buffer` (buffers and views), `ops`
//! (typed launch wrappers, one file per kernel module), `model` (the whole qwen35 forward on
//! the device). All activations are f32, row-major
//! `[tokens][features]`; every wrapper documents its shapes.

mod buffer;
mod compile;
mod device;
mod error;
mod graph;
mod kernels;
mod kprof;
pub mod layout;
pub mod model;
mod ops;
pub mod share;

/// An on/off environment switch: `0`, `off` or `false` turn it off, `1`, `on` or `true` on;
/// unset or anything else leaves `default`.
pub(crate) fn env_switch(name: &str, default: bool) -> bool {
    match std::env::var(name).as_deref() {
        Ok("0") | Ok("off") | Ok("false") => false,
        Ok("1") | Ok("on") | Ok("true") => true,
        _ => default,
    }
}

/// A numeric tuning knob from the environment: `None` when unset or not a number.
pub(crate) fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

pub use buffer::{GpuBuf, GpuMatrix, View, ViewMut};
pub use compile::{cache_dir, compile_only, Kernel};
pub use device::{DeviceInfo, Gpu, HostStaging, MIN_CC};
pub use error::GpuError;
pub use graph::{graphs_enabled_by_env, Graph};
pub use kernels::{LoadStats, MAX_K, MMV_FORMATS};
pub use kprof::KernelTime;
pub use model::{
    GpuModel, GpuSeqState, GpuSnapshotRing, GEMM_CHUNK, GEMM_MIN_TOKENS, STREAM_MIN_TOKENS,
};
pub use ops::{
    AttnScratch, DevPos, GateRows, GdnConvArgs, GdnRecurrenceArgs, Gemm, KvCache, QuantActs,
    ATTN_HEAD_DIMS, GDN_HEAD_DIM, GDN_HEAD_DIMS,
};
