//! Scalar activations (`ggml/src/ggml-cpu/unary-ops.cpp`, `vec.h`).

#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// silu(x) = x·sigmoid(x) with ggml's vectorised exp, as llama.cpp's CPU computes it on
/// whole 8-lane chunks (all our silu inputs are multiples of 8 long).
pub use simd::act::{silu, silu_inplace};

/// softplus(x) = log(1 + e^x), with llama.cpp's cut-off: x itself above 20
/// (`unary-ops.cpp` `op_softplus`, libm `logf`/`expf`).
#[inline]
pub fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        (1.0 + x.exp()).ln()
    }
}

/// f32 dot product in the order of ggml's AVX2 `ggml_vec_dot_f32`: 4 accumulators of 8 lanes
/// with fused multiply-adds, its fixed reduction, then the leftover elements in f32 the way
/// GCC compiled its tail loop (first `rem & !3` products added unfused, the last `rem & 3`
/// fused; checked in the wheel's disassembly).
/// Vectorised in `simd::fdot` (same lanes, same bits).
pub fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    simd::fdot::dot_f32(x, y)
}

/// ggml's `GGML_F32x8_REDUCE` over 4×8 lanes.
pub fn reduce32(acc: &[f32; 32]) -> f32 {
    simd::fdot::reduce32(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_match_their_definitions() {
        for &x in &[-30.0f32, -3.5, -1e-3, 0.0, 0.7, 4.0, 19.9, 25.0] {
            let xd = x as f64;
            let sig = 1.0 / (1.0 + (-xd).exp());
            assert!((sigmoid(x) as f64 - sig).abs() <= 1e-6 * sig.max(1e-30) + 1e-12);
            assert!((silu(x) as f64 - xd * sig).abs() <= 1e-6 * (xd * sig).abs() + 1e-12);
            let sp = if xd > 20.0 { xd } else { (1.0 + xd.exp()).ln() };
            assert!(
                (dot_f32(&[x; 40], &[2.0; 40]) as f64 - 80.0 * xd).abs()
                    <= 1e-5 * (80.0 * xd).abs() + 1e-12
            );
            assert!(
                (softplus(x) as f64 - sp).abs() <= 1e-6 * sp.abs() + 1e-12,
                "{x}"
            );
        }
    }
}
