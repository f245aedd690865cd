//! CPU reference math for the qwen35 forward pass (everything except the weight mat-vecs,
//! which live in the `simd` crate). Each function follows the llama.cpp CPU op it mirrors,
//! so that our logits land within rounding of llama.cpp's; see
//! `shared/spec/qwen35-forward.md` §1, §3, §4 for the formulas and numerics.

pub mod act;
pub mod attention;
pub mod gdn;
pub mod norm;
pub mod rope;
