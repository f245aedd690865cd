//! CPU kernels for the GGUF weight formats hybrid-run runs on the CPU.

pub mod types;

pub use types::GgmlType;
