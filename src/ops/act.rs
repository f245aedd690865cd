//! Scalar activations (`ggml/src/ggml-cpu/unary-ops.cpp`, `vec.h`).

#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// silu(x) = x·sigmoid(x). llama.cpp's SIMD path uses a vectorised exp approximation, so this
/// differs from it in the last bit or two.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// softplus(x) = log(1 + e^x), with llama.cpp's cut-off: x itself above 20.
#[inline]
pub fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
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
                (softplus(x) as f64 - sp).abs() <= 1e-6 * sp.abs() + 1e-12,
                "{x}"
            );
        }
    }
}
