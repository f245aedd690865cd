//! The `qwen35` architecture (Qwen3.5/3.6 dense: Gated-DeltaNet + gated attention hybrid
//! with an MTP block). See `spec/qwen35-architecture.md`.
//!
//! - [`config`]: typed hyperparameters from GGUF metadata and derived widths;
//! - [`tensors`]: every tensor name and shape;
//! - [`weights`]: validated zero-copy views grouped per layer kind;
//! - [`size`]: trunk versus FFN bytes, KV and recurrent-state sizes.

pub mod config;
pub mod error;
pub mod forward;
pub mod size;
pub mod state;
pub mod tensors;
pub mod weights;

pub use config::{Config, LayerType, ARCH};
pub use error::{ModelError, TensorProblem};
pub use forward::{CpuModel, ForwardOutput, GdnStateSink, Logits};
pub use size::{SizeBreakdown, SizedTensor};
pub use state::{RecurrentSnapshot, SeqState};
pub use tensors::{expected_tensors, TensorGroup, TensorKind, TensorSpec};
pub use weights::{
    AttnWeights, FfnWeights, GdnWeights, Layer, LayerKind, MtpWeights, Qwen35Weights,
};
