//! Prefill weight streaming for the hybrid split: the dense FFN weights of CPU-placed layers
//! are copied to the GPU during large prefill chunks and multiplied there by the GEMM path,
//! instead of running the batch through the CPU kernels.
//!
//! Why: a prefill chunk of t tokens costs the CPU about t times the arithmetic of one token
//! (the weights are read once, but the k-token kernels are compute-bound beyond ~8 tokens),
//! while copying a layer's FFN over PCIe costs the same whatever t is. For the 27B Q4_K_M
//! split with 46 CPU layers that is ~7.8 GB per chunk, ~0.3 s at 25 GB/s, against ~16 s of
//! CPU work for 512 tokens (32 t/s measured). The switch point is [`STREAM_MIN_TOKENS`].
//!
//! Pipeline (two device slots, two pinned host buffers, one copy stream):
//! matrices are queued in the order the forward pass uses them (gate, up, down of each
//! CPU-placed layer). Loading item i into slot i % 2 means: wait (host) until the DMA of item
//! i - 2 has drained the pinned buffer, copy the bytes from the mmap into it (all cores), make
//! the copy stream wait (device) until the kernel that read item i - 2 from the slot has run,
//! and queue the DMA. The compute stream waits (device) for item i's DMA right before its
//! GEMM. So the DMA of the next matrix overlaps the GEMM of this one and the trunk kernels
//! queued around it, and the host copy of item i + 1 overlaps the DMA of item i.

use std::sync::Arc;

use cudarc::driver::{result as drv, CudaEvent, CudaStream, PinnedHostSlice};
use rayon::prelude::*;

use crate::gguf::TensorView;
use crate::model::qwen35::FfnWeights;

use super::super::buffer::GpuMatrix;
use super::super::device::Gpu;
use super::super::error::{GpuError, Result};

/// Fewest tokens in a chunk for its CPU-placed FFN layers to be streamed to the GPU
/// (streaming needs the GEMM path, which starts at `GEMM_MIN_TOKENS`; below that the CPU's
/// 8-token kernels cost about as much as one PCIe pass). Re-measured by
/// `gpu-model-check --prefill-bench` (docs/benchmarks/).
pub const STREAM_MIN_TOKENS: usize = 48;

/// Bytes per task of the parallel host copy.
const COPY_TASK: usize = 1 << 20;

struct Slot {
    /// Device buffer of `cap` bytes; `m.ty/rows/cols/row_bytes/name` describe what it holds.
    m: GpuMatrix,
    pinned: PinnedHostSlice<u8>,
    /// Recorded on the copy stream after the DMA into `m`.
    dma_done: CudaEvent,
    dma_pending: bool,
    /// Recorded on the compute stream after the last kernel that read `m`.
    used: CudaEvent,
    used_pending: bool,
}

/// Which matrix of a layer's FFN an item is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Gate,
    Up,
    Down,
}

/// The double-buffered streamer; one per hybrid [`super::GpuModel`].
pub struct FfnStreamer {
    copy: Arc<CudaStream>,
    slots: [Slot; 2],
    /// This chunk's queue: (layer, matrix).
    queue: Vec<(usize, Which)>,
    /// Next queue index to load, and next to be taken by the compute side.
    next_load: usize,
    next_take: usize,
    /// Bytes copied and host seconds spent copying into pinned memory (statistics).
    pub bytes: u64,
    pub host_copy_secs: f64,
    /// Measurement switch (`HYBRID_STREAM_SERIAL=1`): wait for every DMA and every GEMM
    /// before the next step, so host copy, DMA and compute never overlap (what the overlap
    /// gains is the difference).
    serial: bool,
}

fn view<'v, 'a>(f: &'v FfnWeights<'a>, w: Which) -> &'v TensorView<'a> {
    match w {
        Which::Gate => &f.gate,
        Which::Up => &f.up,
        Which::Down => &f.down,
    }
}

impl FfnStreamer {
    /// Allocates two device slots and two pinned host buffers, each as large as the largest
    /// host-placed FFN matrix. `None` when no layer's FFN is on the host.
    pub fn new(gpu: &Gpu, host_ffn: &[Option<FfnWeights<'_>>]) -> Result<Option<FfnStreamer>> {
        let cap = host_ffn
            .iter()
            .flatten()
            .flat_map(|f| [f.gate.data.len(), f.up.data.len(), f.down.data.len()])
            .max();
        let Some(cap) = cap else { return Ok(None) };
        let copy = gpu.ctx.new_stream().map_err(GpuError::driver(
            "creating the weight-streaming copy stream",
        ))?;
        let mk = |i: usize| -> Result<Slot> {
            let data = gpu.alloc_zeros::<u8>(cap, &format!("weight-streaming slot {i}"))?;
            // SAFETY: page-locked host memory that is only written (by the copy below) before
            // a DMA reads it; write-combined suits that write-once, DMA-read use.
            let pinned = unsafe { gpu.ctx.alloc_pinned::<u8>(cap) }.map_err(GpuError::driver(
                "allocating pinned weight-streaming memory",
            ))?;
            let ev = || {
                gpu.ctx
                    .new_event(None)
                    .map_err(GpuError::driver("creating a streaming event"))
            };
            Ok(Slot {
                m: GpuMatrix {
                    name: String::new(),
                    ty: crate::gguf::GgmlType::F32,
                    rows: 0,
                    cols: 0,
                    row_bytes: 0,
                    split: false,
                    data,
                },
                pinned,
                dma_done: ev()?,
                dma_pending: false,
                used: ev()?,
                used_pending: false,
            })
        };
        Ok(Some(FfnStreamer {
            copy,
            slots: [mk(0)?, mk(1)?],
            queue: Vec::new(),
            next_load: 0,
            next_take: 0,
            bytes: 0,
            host_copy_secs: 0.0,
            serial: std::env::var_os("HYBRID_STREAM_SERIAL").is_some_and(|v| v == "1"),
        }))
    }

    /// Device bytes held (both slots).
    pub fn device_bytes(&self) -> usize {
        self.slots.iter().map(|s| s.m.data.len()).sum()
    }

    /// Starts a chunk: queues the gate, up and down matrices of every host-placed layer and
    /// loads the first two.
    pub fn begin(&mut self, host_ffn: &[Option<FfnWeights<'_>>]) -> Result<()> {
        if self.next_take != self.next_load {
            // A previous chunk stopped early (an error): its loads are harmless, but the
            // slot events must be settled before reuse.
            self.copy
                .synchronize()
                .map_err(GpuError::driver("waiting for the copy stream"))?;
        }
        self.queue.clear();
        for (il, f) in host_ffn.iter().enumerate() {
            if f.is_some() {
                self.queue
                    .extend([(il, Which::Gate), (il, Which::Up), (il, Which::Down)]);
            }
        }
        self.next_load = 0;
        self.next_take = 0;
        while self.next_load < self.queue.len().min(2) {
            self.load(host_ffn)?;
        }
        Ok(())
    }

    /// Loads queue item `next_load` into its slot (see the module docs for the waits).
    fn load(&mut self, host_ffn: &[Option<FfnWeights<'_>>]) -> Result<()> {
        let i = self.next_load;
        let (il, which) = self.queue[i];
        let v = host_ffn[il]
            .as_ref()
            .map(|f| *view(f, which))
            .ok_or_else(|| {
                GpuError::shape("FfnStreamer", format!("layer {il} is not on the host"))
            })?;
        let s = &mut self.slots[i % 2];
        let n = v.data.len();
        if n > s.m.data.len() {
            return Err(GpuError::shape(
                "FfnStreamer",
                format!(
                    "{}: {n} bytes for a slot of {}",
                    v.info.name,
                    s.m.data.len()
                ),
            ));
        }
        if s.dma_pending {
            s.dma_done
                .synchronize()
                .map_err(GpuError::driver("waiting for a weight DMA"))?;
            s.dma_pending = false;
        }
        let t0 = std::time::Instant::now();
        let host = s
            .pinned
            .as_mut_slice()
            .map_err(GpuError::driver("mapping pinned streaming memory"))?;
        host[..n]
            .par_chunks_mut(COPY_TASK)
            .zip(v.data.par_chunks(COPY_TASK))
            .for_each(|(d, src)| d.copy_from_slice(src));
        self.host_copy_secs += t0.elapsed().as_secs_f64();
        if s.used_pending {
            self.copy.wait(&s.used).map_err(GpuError::driver(
                "ordering a weight DMA after its slot's last use",
            ))?;
            s.used_pending = false;
        }
        // SAFETY: the slot's device buffer holds at least n bytes (checked above); the pinned
        // source is not written again until `dma_done`, recorded right after, has completed
        // (the synchronize above on the next load into this slot).
        unsafe { drv::memcpy_htod_async(s.m.data.ptr, &host[..n], self.copy.cu_stream()) }
            .map_err(GpuError::driver(format!(
                "streaming {} to the GPU",
                v.info.name
            )))?;
        s.dma_done
            .record(&self.copy)
            .map_err(GpuError::driver("recording a weight DMA"))?;
        s.dma_pending = true;
        if self.serial {
            s.dma_done
                .synchronize()
                .map_err(GpuError::driver("waiting for a weight DMA"))?;
        }
        s.m.name.clear();
        s.m.name.push_str(&v.info.name);
        s.m.ty = v.info.ty;
        s.m.rows = v.info.rows() as usize;
        s.m.cols = v.info.row_len() as usize;
        s.m.row_bytes = n / s.m.rows.max(1);
        self.bytes += n as u64;
        self.next_load += 1;
        Ok(())
    }

    /// The next matrix in queue order, for layer `il`: makes the compute stream wait for its
    /// DMA. Call [`FfnStreamer::release`] once the kernels reading it are queued.
    fn take(&mut self, gpu: &Gpu, il: usize, which: Which) -> Result<&GpuMatrix> {
        let i = self.next_take;
        match self.queue.get(i) {
            Some(&(l, w)) if l == il && w == which && i < self.next_load => {}
            _ => {
                return Err(GpuError::shape(
                    "FfnStreamer",
                    format!("layer {il}: streamed matrices taken out of order"),
                ))
            }
        }
        let s = &self.slots[i % 2];
        gpu.stream
            .wait(&s.dma_done)
            .map_err(GpuError::driver("waiting for a streamed weight"))?;
        Ok(&s.m)
    }

    /// Marks the matrix taken last as done (its readers are queued) and loads the item that
    /// reuses its slot.
    fn release(&mut self, gpu: &Gpu, host_ffn: &[Option<FfnWeights<'_>>]) -> Result<()> {
        let i = self.next_take;
        let s = &mut self.slots[i % 2];
        s.used
            .record(&gpu.stream)
            .map_err(GpuError::driver("recording a streamed weight's use"))?;
        s.used_pending = true;
        if self.serial {
            s.used
                .synchronize()
                .map_err(GpuError::driver("waiting for a streamed weight's GEMM"))?;
        }
        self.next_take += 1;
        if self.next_load < self.queue.len() {
            self.load(host_ffn)?;
        }
        Ok(())
    }

    /// Runs `f` with layer `il`'s gate, up and down matrices in turn (each once, in that
    /// order), releasing each after `f` has queued its kernels.
    pub fn with_matrix<R>(
        &mut self,
        gpu: &Gpu,
        host_ffn: &[Option<FfnWeights<'_>>],
        il: usize,
        which: usize,
        f: impl FnOnce(&GpuMatrix) -> Result<R>,
    ) -> Result<R> {
        let w = match which {
            0 => Which::Gate,
            1 => Which::Up,
            _ => Which::Down,
        };
        let r = f(self.take(gpu, il, w)?)?;
        self.release(gpu, host_ffn)?;
        Ok(r)
    }
}

impl Drop for FfnStreamer {
    fn drop(&mut self) {
        // DMAs may still read the pinned buffers: let them finish before they are freed.
        let _ = self.copy.synchronize();
    }
}
