//! exp and silu computed the way llama.cpp's CPU backend computes them, so activations feed
//! the next quantization step with the same bits.
//!
//! ggml's vectorised `ggml_v_expf` (`ggml-cpu/vec.h`, llama.cpp 0c1e570, the AVX2+FMA
//! variant; itself adapted from Arm's optimized-routines expf) is a lane-wise algorithm, so
//! this scalar version with the same fused and unfused operations gives the same bits as one
//! lane of it. Max error 1.45 ulp + 0.5; flushes to infinity above 88.38 and to zero below
//! −103.97. ggml uses it for silu/swiglu on whole 8-lane chunks and libm `expf` for the tail.

#[inline]
fn c(bits: u32) -> f32 {
    f32::from_bits(bits)
}

/// One lane of ggml's AVX2 `ggml_v_expf`.
#[inline]
pub fn ggml_expf(x: f32) -> f32 {
    let r = c(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(c(0x3fb8_aa3b), r); // log2(e)
    let n = z - r;
    // fnmadd(a, b, c) = c − a·b, fused.
    let b = (-n).mul_add(c(0x35bf_be8e), (-n).mul_add(c(0x3f31_7200), x));
    let e = z.to_bits() << 23;
    let k = c(e.wrapping_add(1.0f32.to_bits()));
    let big = n.abs() > 126.0;
    let u = b * b;
    let j = c(0x3c07_2010)
        .mul_add(b, c(0x3d2b_9f17))
        .mul_add(u, c(0x3e2a_af33).mul_add(b, c(0x3eff_fedb)))
        .mul_add(u, c(0x3f7f_fff6) * b);
    if !big {
        return k.mul_add(j, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = c(g.wrapping_add(0x7f00_0000));
    let s2 = c(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// silu(x) = x / (1 + exp(−x)) with [`ggml_expf`], as `ggml_v_silu`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + ggml_expf(0.0 - x))
}

/// silu over a slice as `ggml_vec_silu_f32` does: 8-lane chunks with [`ggml_expf`], the tail
/// (fewer than 8) with libm `expf`.
pub fn silu_inplace(x: &mut [f32]) {
    let n8 = x.len() / 8 * 8;
    let (head, tail) = x.split_at_mut(n8);
    for v in head {
        *v = silu(*v);
    }
    for v in tail {
        *v = *v / (1.0 + (-*v).exp());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_expf_is_within_two_ulp_of_exp_over_its_range() {
        let mut x = -103.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = ggml_expf(x) as f64;
            let ulp = (want as f32).abs() * f32::EPSILON;
            assert!(
                (got - want).abs() <= 2.0 * ulp as f64 + f32::MIN_POSITIVE as f64,
                "x = {x}: {got} vs {want}"
            );
            x += 0.0137;
        }
        assert_eq!(ggml_expf(0.0), 1.0);
        assert!(ggml_expf(100.0).is_infinite());
        assert_eq!(ggml_expf(-200.0), 0.0);
    }

    #[test]
    fn silu_matches_its_definition() {
        for &x in &[-20.0f32, -1.5, 0.0, 0.3, 7.0] {
            let want = x as f64 / (1.0 + (-(x as f64)).exp());
            assert!((silu(x) as f64 - want).abs() <= 1e-6 * want.abs().max(1e-6));
        }
    }
}
