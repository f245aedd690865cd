//! Kernel profile: GPU time per kind of launch, from a pair of CUDA events around every
//! launch while it is on (`Gpu::set_kernel_profile`). For breakdowns in benchmarks: the
//! events serialize the stream (no launch overlap), so run it on eager launches (no CUDA
//! graphs) and read the totals as "time the kernels themselves take".

use std::collections::BTreeMap;
use std::sync::Mutex;

use cudarc::driver::{sys, CudaEvent, CudaStream};

use super::error::{GpuError, Result};

/// The launches recorded since the last [`KernelProfile::take`], labelled.
#[derive(Default)]
pub(crate) struct KernelProfile {
    pending: Mutex<Vec<(String, CudaEvent, CudaEvent)>>,
}

/// One row of a profile: label, launches, total GPU milliseconds.
#[derive(Clone, Debug)]
pub struct KernelTime {
    pub label: String,
    pub launches: usize,
    pub ms: f64,
}

impl KernelProfile {
    pub(crate) fn start(&self, stream: &CudaStream) -> Result<CudaEvent> {
        stream
            .record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(GpuError::driver("recording a profile event"))
    }

    pub(crate) fn finish(&self, label: String, stream: &CudaStream, e0: CudaEvent) -> Result<()> {
        let e1 = self.start(stream)?;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((label, e0, e1));
        Ok(())
    }

    /// Waits for the stream and sums the recorded launches per label (largest first).
    pub(crate) fn take(&self, stream: &CudaStream) -> Result<Vec<KernelTime>> {
        stream
            .synchronize()
            .map_err(GpuError::driver("waiting for the stream"))?;
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut sums: BTreeMap<String, (usize, f64)> = BTreeMap::new();
        for (label, e0, e1) in pending {
            let ms = e0
                .elapsed_ms(&e1)
                .map_err(GpuError::driver("reading a profile event"))?;
            let s = sums.entry(label).or_default();
            s.0 += 1;
            s.1 += ms as f64;
        }
        let mut rows: Vec<KernelTime> = sums
            .into_iter()
            .map(|(label, (launches, ms))| KernelTime {
                label,
                launches,
                ms,
            })
            .collect();
        rows.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(rows)
    }
}
