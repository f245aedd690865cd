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
/// (fewer than 8) with libm `expf`. The chunks run 16 (AVX-512) or 8 (AVX2) lanes at a time
/// where `Isa::detect()` allows, with the same per-lane operations (same bits).
pub fn silu_inplace(x: &mut [f32]) {
    let n8 = x.len() / 8 * 8;
    let (head, tail) = x.split_at_mut(n8);
    silu_lanes(Lanes::detect(), head, None);
    for v in tail {
        *v = *v / (1.0 + (-*v).exp());
    }
}

/// `g[i] = silu(g[i]) · u[i]` for every element, all with [`ggml_expf`] (the fused FFN's
/// swiglu; vectorised like [`silu_inplace`]). Panics if the lengths differ.
pub fn swiglu_inplace(g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len(), "swiglu_inplace: lengths");
    silu_lanes(Lanes::detect(), g, Some(u));
}

/// The vector width the elementwise functions use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lanes {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Lanes {
    fn detect() -> Lanes {
        #[cfg(target_arch = "x86_64")]
        {
            use crate::Isa;
            match Isa::detect() {
                Isa::Avx512 | Isa::Amx => return Lanes::Avx512,
                Isa::Avx2 | Isa::Avx2Vnni => return Lanes::Avx2,
                Isa::Scalar => {}
            }
        }
        Lanes::Scalar
    }
}

/// `x[i] = silu(x[i])`, times `u[i]` when given, every element with [`ggml_expf`].
fn silu_lanes(lanes: Lanes, x: &mut [f32], u: Option<&[f32]>) {
    let done = match lanes {
        Lanes::Scalar => 0,
        // SAFETY: `Lanes::detect` chose the tier after `Isa::detect` checked the CPU.
        #[cfg(target_arch = "x86_64")]
        Lanes::Avx2 => unsafe { x86::silu_avx2(x, u) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Lanes::Avx512 => unsafe { x86::silu_avx512(x, u) },
    };
    match u {
        Some(u) => {
            for (v, &w) in x[done..].iter_mut().zip(&u[done..]) {
                *v = silu(*v) * w;
            }
        }
        None => {
            for v in &mut x[done..] {
                *v = silu(*v);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! [`super::ggml_expf`] and silu lane-wise: every scalar operation becomes the same
    //! IEEE operation per lane (`mul_add` → fma, `(−n)·c + x` → fnmadd), the two branches
    //! become masked blends computed from the same comparisons.
    use std::arch::x86_64::*;

    macro_rules! c {
        ($set:ident, $bits:expr) => {
            $set(f32::from_bits($bits))
        };
    }

    /// `silu` (times `u`) over the whole 16-lane chunks of `x`; returns how many it did.
    ///
    /// # Safety
    /// AVX-512F must be available; `u`, when given, is at least as long as `x`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn silu_avx512(x: &mut [f32], u: Option<&[f32]>) -> usize {
        let n = x.len() / 16 * 16;
        let zero = _mm512_setzero_ps();
        let one = _mm512_set1_ps(1.0);
        for i in (0..n).step_by(16) {
            // SAFETY: i + 16 ≤ n ≤ x.len() (and ≤ u.len(), caller).
            unsafe {
                let v = _mm512_loadu_ps(x.as_ptr().add(i));
                let e = expf512(_mm512_sub_ps(zero, v));
                let mut s = _mm512_div_ps(v, _mm512_add_ps(one, e));
                if let Some(u) = u {
                    s = _mm512_mul_ps(s, _mm512_loadu_ps(u.as_ptr().add(i)));
                }
                _mm512_storeu_ps(x.as_mut_ptr().add(i), s);
            }
        }
        n
    }

    /// One `ggml_expf` per lane.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    unsafe fn expf512(x: __m512) -> __m512 {
        let r = c!(_mm512_set1_ps, 0x4b40_0000);
        let z = _mm512_fmadd_ps(x, c!(_mm512_set1_ps, 0x3fb8_aa3b), r);
        let n = _mm512_sub_ps(z, r);
        let b = _mm512_fnmadd_ps(
            n,
            c!(_mm512_set1_ps, 0x35bf_be8e),
            _mm512_fnmadd_ps(n, c!(_mm512_set1_ps, 0x3f31_7200), x),
        );
        let e = _mm512_slli_epi32(_mm512_castps_si512(z), 23);
        let k = _mm512_castsi512_ps(_mm512_add_epi32(e, _mm512_set1_epi32(0x3f80_0000)));
        let an = _mm512_abs_ps(n);
        let big = _mm512_cmp_ps_mask(an, _mm512_set1_ps(126.0), _CMP_GT_OQ);
        let u = _mm512_mul_ps(b, b);
        let j = _mm512_fmadd_ps(
            _mm512_fmadd_ps(
                _mm512_fmadd_ps(
                    c!(_mm512_set1_ps, 0x3c07_2010),
                    b,
                    c!(_mm512_set1_ps, 0x3d2b_9f17),
                ),
                u,
                _mm512_fmadd_ps(
                    c!(_mm512_set1_ps, 0x3e2a_af33),
                    b,
                    c!(_mm512_set1_ps, 0x3eff_fedb),
                ),
            ),
            u,
            _mm512_mul_ps(c!(_mm512_set1_ps, 0x3f7f_fff6), b),
        );
        let small = _mm512_fmadd_ps(k, j, k);
        if big == 0 {
            return small;
        }
        let le0 = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ);
        let g = _mm512_maskz_mov_epi32(le0, _mm512_set1_epi32(0x8200_0000u32 as i32));
        let s1 = _mm512_castsi512_ps(_mm512_add_epi32(g, _mm512_set1_epi32(0x7f00_0000)));
        let s2 = _mm512_castsi512_ps(_mm512_sub_epi32(e, g));
        let huge = _mm512_cmp_ps_mask(an, _mm512_set1_ps(192.0), _CMP_GT_OQ);
        let bigv = _mm512_mask_blend_ps(
            huge,
            _mm512_mul_ps(_mm512_fmadd_ps(s2, j, s2), s1),
            _mm512_mul_ps(s1, s1),
        );
        _mm512_mask_blend_ps(big, small, bigv)
    }

    /// `silu` (times `u`) over the whole 8-lane chunks of `x`; returns how many it did.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `u`, when given, is at least as long as `x`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn silu_avx2(x: &mut [f32], u: Option<&[f32]>) -> usize {
        let n = x.len() / 8 * 8;
        let zero = _mm256_setzero_ps();
        let one = _mm256_set1_ps(1.0);
        for i in (0..n).step_by(8) {
            // SAFETY: i + 8 ≤ n ≤ x.len() (and ≤ u.len(), caller).
            unsafe {
                let v = _mm256_loadu_ps(x.as_ptr().add(i));
                let e = expf256(_mm256_sub_ps(zero, v));
                let mut s = _mm256_div_ps(v, _mm256_add_ps(one, e));
                if let Some(u) = u {
                    s = _mm256_mul_ps(s, _mm256_loadu_ps(u.as_ptr().add(i)));
                }
                _mm256_storeu_ps(x.as_mut_ptr().add(i), s);
            }
        }
        n
    }

    /// One `ggml_expf` per lane.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn expf256(x: __m256) -> __m256 {
        let r = c!(_mm256_set1_ps, 0x4b40_0000);
        let z = _mm256_fmadd_ps(x, c!(_mm256_set1_ps, 0x3fb8_aa3b), r);
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(
            n,
            c!(_mm256_set1_ps, 0x35bf_be8e),
            _mm256_fnmadd_ps(n, c!(_mm256_set1_ps, 0x3f31_7200), x),
        );
        let e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
        let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_set1_epi32(0x3f80_0000)));
        let an = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
        let big = _mm256_cmp_ps(an, _mm256_set1_ps(126.0), _CMP_GT_OQ);
        let u = _mm256_mul_ps(b, b);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_fmadd_ps(
                    c!(_mm256_set1_ps, 0x3c07_2010),
                    b,
                    c!(_mm256_set1_ps, 0x3d2b_9f17),
                ),
                u,
                _mm256_fmadd_ps(
                    c!(_mm256_set1_ps, 0x3e2a_af33),
                    b,
                    c!(_mm256_set1_ps, 0x3eff_fedb),
                ),
            ),
            u,
            _mm256_mul_ps(c!(_mm256_set1_ps, 0x3f7f_fff6), b),
        );
        let small = _mm256_fmadd_ps(k, j, k);
        if _mm256_movemask_ps(big) == 0 {
            return small;
        }
        let le0 = _mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ);
        let g = _mm256_and_si256(
            _mm256_castps_si256(le0),
            _mm256_set1_epi32(0x8200_0000u32 as i32),
        );
        let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
        let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
        let huge = _mm256_cmp_ps(an, _mm256_set1_ps(192.0), _CMP_GT_OQ);
        let bigv = _mm256_blendv_ps(
            _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1),
            _mm256_mul_ps(s1, s1),
            huge,
        );
        _mm256_blendv_ps(small, bigv, big)
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

    /// Inputs that reach every branch of `ggml_expf` (|n| ≤ 126, 126 < |n| ≤ 192 on both
    /// signs, |n| > 192, ±0, ±inf, NaN) plus random values of several magnitudes.
    fn edge_inputs() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            87.0,
            88.3,
            88.5,
            89.0,
            100.0,
            -87.0,
            -88.0,
            -90.0,
            -103.0,
            -104.0,
            -130.0,
            -140.0,
            150.0,
            -200.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            -1e-40,
            f32::MAX,
            f32::MIN,
        ];
        // A sweep through the range boundaries of n = round(−v·log2 e): 126 and 192.
        let mut t = -150.0f32;
        while t < 150.0 {
            v.push(t);
            t += 0.173;
        }
        let mut rng = crate::testutil::Rng::new(77);
        for mag in [1.0f32, 10.0, 100.0, 300.0] {
            v.extend((0..203).map(|_| rng.unit() * mag));
        }
        v
    }

    #[test]
    fn vector_silu_and_swiglu_equal_the_scalar_lanes_bit_for_bit_on_every_width() {
        let x = edge_inputs();
        let u: Vec<f32> = x.iter().map(|v| 0.5 - v * 0.01).collect();
        let want: Vec<u32> = x.iter().map(|&v| silu(v).to_bits()).collect();
        let want_u: Vec<u32> = x
            .iter()
            .zip(&u)
            .map(|(&v, &w)| (silu(v) * w).to_bits())
            .collect();
        let mut widths = vec![Lanes::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if crate::Isa::Avx2.is_available() {
                widths.push(Lanes::Avx2);
            } else {
                eprintln!("skipped avx2: not available");
            }
            if crate::Isa::Avx512.is_available() {
                widths.push(Lanes::Avx512);
            } else {
                eprintln!("skipped avx512: not available");
            }
        }
        for lanes in widths {
            // Odd lengths: whole vectors plus a scalar remainder.
            for len in [x.len(), x.len() - 5, 7, 0] {
                let mut got = x[..len].to_vec();
                silu_lanes(lanes, &mut got, None);
                let bits: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                assert_eq!(bits, want[..len], "{lanes:?} silu len {len}");
                let mut got = x[..len].to_vec();
                silu_lanes(lanes, &mut got, Some(&u[..len]));
                let bits: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                assert_eq!(bits, want_u[..len], "{lanes:?} swiglu len {len}");
            }
        }
    }

    #[test]
    fn silu_inplace_uses_libm_only_for_the_tail_past_whole_8_lane_chunks() {
        let x = edge_inputs();
        let mut got = x[..21].to_vec();
        silu_inplace(&mut got);
        for (i, (&g, &v)) in got.iter().zip(&x[..21]).enumerate() {
            let want = if i < 16 {
                silu(v)
            } else {
                v / (1.0 + (-v).exp())
            };
            assert_eq!(g.to_bits(), want.to_bits(), "element {i} ({v})");
        }
    }

    #[test]
    fn silu_matches_its_definition() {
        for &x in &[-20.0f32, -1.5, 0.0, 0.3, 7.0] {
            let want = x as f64 / (1.0 + (-(x as f64)).exp());
            assert!((silu(x) as f64 - want).abs() <= 1e-6 * want.abs().max(1e-6));
        }
    }
}
