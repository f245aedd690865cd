//! CUDA graphs: a decode step's ~1,300 kernel launches recorded once and replayed with one
//! `cuGraphLaunch`, so the step no longer pays a host-side launch per kernel.
//!
//! A graph replays its launches with the arguments they were captured with, so everything
//! that changes between steps must live in device memory: the token position is a device
//! integer (`ops::DevPos`) the kernels read, and attention is launched over the splits of the
//! whole context (`AttnScratch::whole_context_grid`). The model decides what a graph may be
//! reused for (`model::forward`, `GraphKey`).
//!
//! `HYBRID_CUDA_GRAPHS=0` turns graphs off (eager launches, as before); a capture the driver
//! refuses turns them off for the rest of the run with a warning.

use cudarc::driver::{sys, CudaGraph};

use super::device::Gpu;
use super::error::{GpuError, Result};

/// Whether CUDA graphs are allowed (`HYBRID_CUDA_GRAPHS=0` says no).
pub fn graphs_enabled_by_env() -> bool {
    super::env_switch("HYBRID_CUDA_GRAPHS", true)
}

/// An instantiated graph, launched on the stream it was captured from.
pub struct Graph {
    g: CudaGraph,
}

impl Graph {
    /// Queues one replay on the stream.
    pub fn launch(&self) -> Result<()> {
        self.g
            .launch()
            .map_err(GpuError::driver("launching a CUDA graph"))
    }
}

impl Gpu {
    /// Starts recording the stream's work into a graph: until [`Gpu::end_capture`], launches
    /// and copies on the stream are recorded, not run. Host-to-device copies from pageable
    /// memory, synchronization and downloads must not happen in between.
    pub fn begin_capture(&self) -> Result<()> {
        self.stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
            .map_err(GpuError::driver("starting a CUDA graph capture"))
    }

    /// Ends the capture and instantiates what was recorded.
    pub fn end_capture(&self) -> Result<Graph> {
        let g = self
            .stream
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .map_err(GpuError::driver("ending a CUDA graph capture"))?
            .ok_or_else(|| GpuError::shape("end_capture", "the driver returned no graph"))?;
        Ok(Graph { g })
    }

    /// Ends a capture that failed half-way, dropping what was recorded, so the stream runs
    /// work again. Errors are ignored: this is the clean-up path of another error.
    pub fn abort_capture(&self) {
        if let Ok(sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_ACTIVE)
        | Ok(sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_INVALIDATED) =
            self.stream.capture_status()
        {
            let _ = self.stream.end_capture(sys::CUgraphInstantiate_flags(0));
        }
    }
}

/// A process-wide unique id (sequence states and snapshot rings carry one, so a graph that
/// captured their buffers' addresses is only replayed on them).
pub(crate) fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
