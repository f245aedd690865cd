//! CUDA backend: device runtime (cudarc, driver API loaded at run time) and the kernels of
//! `cuda/*.cu`, compiled by NVRTC for the device's compute capability at start-up and cached
//! on disk. No CUDA toolkit is needed to build; without libcuda, `Gpu::new` returns
//! `GpuError::NoDevice`.
//!
//! Layout: `compile` (NVRTC + cache, `enum Kernel`), `kernels` (functions in fields),
//! `device` (`Gpu`: detection, allocation, uploads), `graph` (CUDA graph capture/replay), `buffer` (buffers and views), `ops`
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
pub mod model;
mod ops;
pub mod share;

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
