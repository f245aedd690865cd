//! Errors of the qwen35 model description: bad hyperparameters and bad tensors.

use std::fmt;

use crate::gguf::{GgmlType, GgufError};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),

    #[error("general.architecture is {found:?}; hybrid-run runs only \"qwen35\"")]
    Architecture { found: String },

    #[error("required metadata key {key} is missing")]
    MissingKey { key: String },

    #[error("metadata key {key} has type {found}, expected {expected}")]
    KeyType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("metadata key {key} = {value}: {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },

    /// Hyperparameters that are each fine but do not fit together.
    #[error("inconsistent hyperparameters: {0}")]
    Inconsistent(String),

    #[error("{} tensor problem(s):\n{}", problems.len(), TensorProblemList(problems))]
    Tensors { problems: Vec<TensorProblem> },

    #[error(
        "the context is full: {needed} tokens needed but the context holds {n_ctx} (raise -c)"
    )]
    ContextFull { n_ctx: usize, needed: usize },

    #[error("token id {token} is outside the vocabulary (n_vocab {n_vocab})")]
    BadToken { token: u32, n_vocab: usize },

    #[error("nothing to run: the token list is empty")]
    EmptyInput,

    /// A failure on the GPU (out of memory naming the tensor, a driver error, ...).
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
}

/// One thing wrong with one tensor. [`ModelError::Tensors`] lists all of them at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TensorProblem {
    Missing {
        name: String,
        expected_dims: Vec<u64>,
    },
    Shape {
        name: String,
        expected_dims: Vec<u64>,
        found_dims: Vec<u64>,
    },
    Type {
        name: String,
        found: GgmlType,
        allowed: &'static str,
    },
}

impl TensorProblem {
    pub fn tensor_name(&self) -> &str {
        match self {
            TensorProblem::Missing { name, .. }
            | TensorProblem::Shape { name, .. }
            | TensorProblem::Type { name, .. } => name,
        }
    }
}

impl fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorProblem::Missing {
                name,
                expected_dims,
            } => write!(f, "{name}: missing (expected shape {expected_dims:?})"),
            TensorProblem::Shape {
                name,
                expected_dims,
                found_dims,
            } => write!(
                f,
                "{name}: shape {found_dims:?}, expected {expected_dims:?} (ne0 first)"
            ),
            TensorProblem::Type {
                name,
                found,
                allowed,
            } => write!(f, "{name}: type {found}, expected {allowed}"),
        }
    }
}

struct TensorProblemList<'a>(&'a [TensorProblem]);

impl fmt::Display for TensorProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {p}")?;
        }
        Ok(())
    }
}
