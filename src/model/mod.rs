//! Model descriptions: typed hyperparameters, tensor tables and weight views per architecture.

pub mod qwen35;
