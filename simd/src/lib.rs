//! CPU kernels for the GGUF weight formats hybrid-run runs on the CPU: exact
//! dequantization, activation conversion as llama.cpp's CPU backend does it, and k-input
//! mat-vec kernels (one weight read for up to 8 tokens) for scalar, AVX2 (± AVX-VNNI) and
//! AVX-512 VNNI, plus a pinned worker pool. See `.dev/SIMD_API.md` for the contract and
//! `kq.rs` / `q8_0.rs` / `float.rs` for the fixed float order every path follows.

pub mod act;
pub mod acts;
pub mod fdot;
pub mod floats;
pub mod isa;
mod kernels;
mod kq;
pub mod par;
pub mod pool;
pub mod prof;
pub mod types;
#[cfg(target_arch = "x86_64")]
mod x86;

pub mod float;
pub mod q4_k;
#[cfg(target_arch = "x86_64")]
mod q4_k_amx;
pub mod q5_k;
pub mod q6_k;
#[cfg(target_arch = "x86_64")]
mod q6_k_amx;
pub mod q8_0;

#[cfg(test)]
mod testutil;

pub use acts::QuantizedActs;
pub use isa::Isa;
pub use kernels::{dequantize_row, matvec_rows, KernelSet, MatRef};
pub use pool::Pool;
pub use types::GgmlType;
