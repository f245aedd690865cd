//! The whole qwen35 model on the GPU ("full-GPU mode"): [`GpuModel`] uploads every tensor
//! ([`weights`]), keeps the per-sequence KV caches and GDN states on the device
//! ([`GpuSeqState`]) and runs the forward pass with the kernels of [`crate::gpu`]
//! ([`forward`]); it implements [`crate::generate::Engine`] so the decoding loop runs on it
//! unchanged.

mod forward;
mod shared_ffn;
mod snapshot;
mod state;
mod stream;
mod weights;

pub use forward::{GpuModel, GEMM_CHUNK, GEMM_MIN_TOKENS, MAX_BATCH};
pub use snapshot::GpuSnapshotRing;
pub use state::{GpuLayerState, GpuSeqState};
pub use stream::STREAM_MIN_TOKENS;
pub use weights::GpuWeights;

use crate::generate::Engine;
use crate::model::qwen35::{ForwardOutput, Logits, ModelError};

impl Engine for GpuModel<'_> {
    type State = GpuSeqState;

    fn forward(
        &mut self,
        st: &mut GpuSeqState,
        tokens: &[u32],
        want: Logits,
        out: &mut ForwardOutput,
    ) -> Result<(), ModelError> {
        GpuModel::forward(self, st, tokens, want, out)
    }

    /// The argmax is taken on the device; `out` is left untouched.
    fn forward_greedy(
        &mut self,
        st: &mut GpuSeqState,
        tokens: &[u32],
        _out: &mut ForwardOutput,
    ) -> Result<u32, ModelError> {
        Ok(GpuModel::forward_greedy(self, st, tokens)?.0)
    }

    fn position(st: &GpuSeqState) -> (usize, usize) {
        (st.n_past, st.n_ctx)
    }

    fn n_threads(&self) -> usize {
        1
    }
}
