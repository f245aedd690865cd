//! hybrid-run: qwen35 GGUF models on one GPU plus the CPU beside it.

pub use simd;

pub mod cli;
pub mod generate;
pub mod gguf;
pub mod gpu;
pub mod logging;
pub mod model;
pub mod ops;
pub mod placement;
pub mod sample;
pub mod serve;
pub mod spec;
pub mod synth;
pub mod tokenizer;
