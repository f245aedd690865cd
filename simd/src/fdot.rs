//! Float vector pieces of attention and the GDN recurrence in ggml's AVX2 lane order, with
//! AVX-512 where the CPU has it (same per-lane operations, so the same bits).
//!
//! `dot_f32` / `dot_f16` follow ggml's `ggml_vec_dot_f32` / `ggml_vec_dot_f16` (AVX2): 32
//! f32 accumulator lanes, lane `l` gets `acc[l] = fma(x[i+l], y[i+l], acc[l])` for each
//! 32-element step `i`, then the fixed `GGML_F32x8_REDUCE` order of [`reduce32`]. Tails
//! (lengths that are not a multiple of 32) are handled as ggml's scalar loops: see each
//! function. With AVX-512 the 32 lanes are two zmm (lanes 0..15, 16..31); with AVX2 four
//! ymm (`x86::v3`, also taken on AVX2-only CPUs, where the scalar loops cost 2-3x more per
//! GDN column and far more per attention position); the scalar path is the definition.

use half::f16;

/// ggml's `GGML_F32x8_REDUCE` over 4×8 lanes.
pub fn reduce32(acc: &[f32; 32]) -> f32 {
    let r: [f32; 8] = std::array::from_fn(|l| (acc[l] + acc[16 + l]) + (acc[8 + l] + acc[24 + l]));
    let t0: [f32; 4] = std::array::from_fn(|l| r[l] + r[l + 4]);
    (t0[0] + t0[1]) + (t0[2] + t0[3])
}

/// AVX2 + FMA + F16C (x86-64-v3), the tier of `x86::v3`.
fn have_v3() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn have_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// f32 dot in the order of ggml's AVX2 `ggml_vec_dot_f32`; the leftover elements are added
/// in f32 the way GCC compiled its tail loop (first `rem & !3` products unfused, the last
/// `rem & 3` fused; checked in the llama.cpp wheel's disassembly).
pub fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len(), "dot_f32: lengths");
    let n = x.len();
    let n32 = n / 32 * 32;
    let acc = lanes_f32(&x[..n32], &y[..n32]);
    let mut sum = reduce32(&acc);
    let unfused_end = n32 + (n - n32) / 4 * 4;
    for i in n32..unfused_end {
        sum += x[i] * y[i];
    }
    for i in unfused_end..n {
        sum = x[i].mul_add(y[i], sum);
    }
    sum
}

/// The 32 accumulator lanes over whole 32-element steps (`x.len()` a multiple of 32).
fn lanes_f32(x: &[f32], y: &[f32]) -> [f32; 32] {
    #[cfg(target_arch = "x86_64")]
    if have_avx512() {
        // SAFETY: AVX-512F checked; lengths are equal multiples of 32 (callers).
        return unsafe { x86::lanes_f32(x, y) };
    }
    #[cfg(target_arch = "x86_64")]
    if have_v3() {
        // SAFETY: AVX2/FMA/F16C checked; lengths are equal multiples of 32 (callers).
        return unsafe { x86::v3::lanes_f32(x, y) };
    }
    let mut acc = [0.0f32; 32];
    for (xs, ys) in x.chunks_exact(32).zip(y.chunks_exact(32)) {
        for l in 0..32 {
            acc[l] = xs[l].mul_add(ys[l], acc[l]);
        }
    }
    acc
}

/// f16·f16 dot accumulated in f32 with the lane layout of ggml's AVX2 `ggml_vec_dot_f16`;
/// lengths that are not a multiple of 32 finish with a plain f64 tail, as ggml does.
pub fn dot_f16(x: &[f16], y: &[f16]) -> f32 {
    assert_eq!(x.len(), y.len(), "dot_f16: lengths");
    let n32 = x.len() / 32 * 32;
    let acc = lanes_f16(&x[..n32], &y[..n32]);
    let mut sum = reduce32(&acc) as f64;
    for i in n32..x.len() {
        sum += (x[i].to_f32() * y[i].to_f32()) as f64;
    }
    sum as f32
}

fn lanes_f16(x: &[f16], y: &[f16]) -> [f32; 32] {
    #[cfg(target_arch = "x86_64")]
    if have_avx512() {
        // SAFETY: AVX-512F checked; lengths are equal multiples of 32 (callers).
        return unsafe { x86::lanes_f16(x, y) };
    }
    #[cfg(target_arch = "x86_64")]
    if have_v3() {
        // SAFETY: AVX2/FMA/F16C checked; lengths are equal multiples of 32 (callers).
        return unsafe { x86::v3::lanes_f16(x, y) };
    }
    let mut acc = [0.0f32; 32];
    for (xs, ys) in x.chunks_exact(32).zip(y.chunks_exact(32)) {
        for l in 0..32 {
            acc[l] = xs[l].to_f32().mul_add(ys[l].to_f32(), acc[l]);
        }
    }
    acc
}

/// The f16 V accumulator step of llama.cpp's one-chunk flash attention:
/// `a = f16(f32(a)·ms)` for every element when `rescale`, then `a = f16(fma(f32(v), vs,
/// f32(a)))`. Each element is rounded to f16 after each of the two steps, as ggml does.
pub fn f16_scale_mad(acc: &mut [f16], v: &[f16], rescale: Option<f32>, vs: f32) {
    assert_eq!(acc.len(), v.len(), "f16_scale_mad: lengths");
    #[cfg(target_arch = "x86_64")]
    if have_avx512() {
        // SAFETY: AVX-512F checked (F16C is part of the build's baseline); equal lengths.
        unsafe { x86::f16_scale_mad(acc, v, rescale, vs) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if have_v3() {
        // SAFETY: AVX2/FMA/F16C checked; equal lengths (asserted above).
        unsafe { x86::v3::f16_scale_mad(acc, v, rescale, vs) };
        return;
    }
    scale_mad_scalar(acc, v, rescale, vs);
}

/// `f16_scale_mad`'s definition, element by element (also the vector paths' tails).
fn scale_mad_scalar(acc: &mut [f16], v: &[f16], rescale: Option<f32>, vs: f32) {
    for (a, &vv) in acc.iter_mut().zip(v) {
        let a0 = rescale.map_or(*a, |ms| f16::from_f32(a.to_f32() * ms));
        *a = f16::from_f32(vv.to_f32().mul_add(vs, a0.to_f32()));
    }
}

/// One column `b` of the gated delta rule (llama.cpp's fused CPU op order): `col *= decay`,
/// `kv = dot_f32(col, k)`, `delta = (v_b − kv)·beta`, `col = fma(k, delta, col)`, returns
/// `dot_f32(col, q)`. All three vectors have the same length.
pub fn delta_rule_column(
    col: &mut [f32],
    k: &[f32],
    q: &[f32],
    decay: f32,
    v_b: f32,
    beta: f32,
) -> f32 {
    assert!(
        col.len() == k.len() && col.len() == q.len(),
        "delta_rule_column: lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if col.len() == 128 && have_avx512() {
        // SAFETY: AVX-512F checked; all three slices have 128 elements.
        return unsafe { x86::delta_rule_column_128(col, k, q, decay, v_b, beta) };
    }
    #[cfg(target_arch = "x86_64")]
    if col.len() == 128 && have_v3() {
        // SAFETY: AVX2/FMA/F16C checked; all three slices have 128 elements.
        return unsafe { x86::v3::delta_rule_column_128(col, k, q, decay, v_b, beta) };
    }
    for x in col.iter_mut() {
        *x *= decay;
    }
    let kv = dot_f32(col, k);
    let delta = (v_b - kv) * beta;
    for (x, &ka) in col.iter_mut().zip(k) {
        *x = ka.mul_add(delta, *x);
    }
    dot_f32(col, q)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::reduce32;

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store32(a0: __m512, a1: __m512) -> [f32; 32] {
        let mut acc = [0.0f32; 32];
        // SAFETY: `acc` holds 32 f32.
        unsafe {
            _mm512_storeu_ps(acc.as_mut_ptr(), a0);
            _mm512_storeu_ps(acc.as_mut_ptr().add(16), a1);
        }
        acc
    }

    /// # Safety
    /// AVX-512F; `x.len() == y.len()`, a multiple of 32.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn lanes_f32(x: &[f32], y: &[f32]) -> [f32; 32] {
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let (px, py) = (x.as_ptr(), y.as_ptr());
        for i in (0..x.len()).step_by(32) {
            // SAFETY: i + 32 <= len for both slices (caller).
            unsafe {
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(px.add(i)), _mm512_loadu_ps(py.add(i)), a0);
                a1 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(px.add(i + 16)),
                    _mm512_loadu_ps(py.add(i + 16)),
                    a1,
                );
            }
        }
        // SAFETY: AVX-512F (this function's feature).
        unsafe { store32(a0, a1) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn ld16(p: *const f16) -> __m512 {
        // SAFETY: caller: 16 readable f16.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn st16(p: *mut f16, v: __m512) {
        // SAFETY: caller: 16 writable f16.
        unsafe {
            _mm256_storeu_si256(
                p as *mut __m256i,
                _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v),
            )
        }
    }

    /// # Safety
    /// AVX-512F; `x.len() == y.len()`, a multiple of 32.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn lanes_f16(x: &[f16], y: &[f16]) -> [f32; 32] {
        let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let (px, py) = (x.as_ptr(), y.as_ptr());
        for i in (0..x.len()).step_by(32) {
            // SAFETY: i + 32 <= len for both slices (caller).
            unsafe {
                a0 = _mm512_fmadd_ps(ld16(px.add(i)), ld16(py.add(i)), a0);
                a1 = _mm512_fmadd_ps(ld16(px.add(i + 16)), ld16(py.add(i + 16)), a1);
            }
        }
        // SAFETY: AVX-512F (this function's feature).
        unsafe { store32(a0, a1) }
    }

    /// # Safety
    /// AVX-512F; `acc.len() == v.len()`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn f16_scale_mad(acc: &mut [f16], v: &[f16], rescale: Option<f32>, vs: f32) {
        let n = acc.len();
        let n16 = n / 16 * 16;
        let (pa, pv) = (acc.as_mut_ptr(), v.as_ptr());
        let vsv = _mm512_set1_ps(vs);
        for i in (0..n16).step_by(16) {
            // SAFETY: i + 16 <= n for both slices (caller: equal lengths).
            unsafe {
                let mut a = ld16(pa.add(i));
                if let Some(ms) = rescale {
                    a = _mm512_mul_ps(a, _mm512_set1_ps(ms));
                    // Round to f16 and back: the value ggml stores between the two steps.
                    a = _mm512_cvtph_ps(_mm512_cvtps_ph::<
                        { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
                    >(a));
                }
                st16(pa.add(i), _mm512_fmadd_ps(ld16(pv.add(i)), vsv, a));
            }
        }
        super::scale_mad_scalar(&mut acc[n16..], &v[n16..], rescale, vs);
    }

    /// `delta_rule_column` for 128-element columns with the column held in 8 zmm.
    ///
    /// # Safety
    /// AVX-512F; `col`, `k`, `q` have 128 elements each.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn delta_rule_column_128(
        col: &mut [f32],
        k: &[f32],
        q: &[f32],
        decay: f32,
        v_b: f32,
        beta: f32,
    ) -> f32 {
        let (pc, pk, pq) = (col.as_mut_ptr(), k.as_ptr(), q.as_ptr());
        let dv = _mm512_set1_ps(decay);
        let ld = |p: *const f32, j: usize| {
            // SAFETY: j < 8 and the three slices have 128 elements (caller), so the 16
            // floats at 16·j are in bounds; AVX-512F is this function's feature.
            unsafe { _mm512_loadu_ps(p.add(16 * j)) }
        };
        let mut c: [__m512; 8] = std::array::from_fn(|j| _mm512_mul_ps(ld(pc, j), dv));
        let kk: [__m512; 8] = std::array::from_fn(|j| ld(pk, j));
        // Lanes 0..15 of each 32-step go to a0, 16..31 to a1, steps in order.
        let dot = |c: &[__m512; 8], y: &[__m512; 8]| {
            let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for s in 0..4 {
                a0 = _mm512_fmadd_ps(c[2 * s], y[2 * s], a0);
                a1 = _mm512_fmadd_ps(c[2 * s + 1], y[2 * s + 1], a1);
            }
            // SAFETY: AVX-512F (this function's feature).
            reduce32(&unsafe { store32(a0, a1) })
        };
        let kv = dot(&c, &kk);
        let delta = _mm512_set1_ps((v_b - kv) * beta);
        for j in 0..8 {
            c[j] = _mm512_fmadd_ps(kk[j], delta, c[j]);
            // SAFETY: as in `ld`: 16 floats at 16·j < 128 of `col`.
            unsafe { _mm512_storeu_ps(pc.add(16 * j), c[j]) };
        }
        let qq: [__m512; 8] = std::array::from_fn(|j| ld(pq, j));
        dot(&c, &qq)
    }
    /// The same operations on four ymm per 32-lane step (lanes 8j..8j + 7 in `a[j]`), for
    /// CPUs with AVX2, FMA and F16C but no AVX-512: the same per-lane operations in the same
    /// order as the AVX-512 functions above and the scalar definitions, so the same bits.
    pub mod v3 {
        use std::arch::x86_64::*;

        use half::f16;

        use super::super::reduce32;

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn store32(a: &[__m256; 4]) -> [f32; 32] {
            let mut acc = [0.0f32; 32];
            for (j, v) in a.iter().enumerate() {
                // SAFETY: `acc` holds 32 f32, so 8 at 8·j (j < 4) are in bounds.
                unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(8 * j), *v) };
            }
            acc
        }

        /// # Safety
        /// AVX2/FMA/F16C; `x.len() == y.len()`, a multiple of 32.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn lanes_f32(x: &[f32], y: &[f32]) -> [f32; 32] {
            let mut a = [_mm256_setzero_ps(); 4];
            let (px, py) = (x.as_ptr(), y.as_ptr());
            for i in (0..x.len()).step_by(32) {
                for (j, aj) in a.iter_mut().enumerate() {
                    // SAFETY: i + 32 <= len for both slices (caller), 8j + 8 <= 32.
                    unsafe {
                        *aj = _mm256_fmadd_ps(
                            _mm256_loadu_ps(px.add(i + 8 * j)),
                            _mm256_loadu_ps(py.add(i + 8 * j)),
                            *aj,
                        );
                    }
                }
            }
            // SAFETY: AVX2 (this function's feature).
            unsafe { store32(&a) }
        }

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn ld8(p: *const f16) -> __m256 {
            // SAFETY: caller: 8 readable f16.
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
        }

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn st8(p: *mut f16, v: __m256) {
            // SAFETY: caller: 8 writable f16.
            unsafe {
                _mm_storeu_si128(
                    p as *mut __m128i,
                    _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
                )
            }
        }

        /// # Safety
        /// AVX2/FMA/F16C; `x.len() == y.len()`, a multiple of 32.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn lanes_f16(x: &[f16], y: &[f16]) -> [f32; 32] {
            let mut a = [_mm256_setzero_ps(); 4];
            let (px, py) = (x.as_ptr(), y.as_ptr());
            for i in (0..x.len()).step_by(32) {
                for (j, aj) in a.iter_mut().enumerate() {
                    // SAFETY: i + 32 <= len for both slices (caller), 8j + 8 <= 32.
                    unsafe {
                        *aj = _mm256_fmadd_ps(ld8(px.add(i + 8 * j)), ld8(py.add(i + 8 * j)), *aj);
                    }
                }
            }
            // SAFETY: AVX2 (this function's feature).
            unsafe { store32(&a) }
        }

        /// # Safety
        /// AVX2/FMA/F16C; `acc.len() == v.len()`.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn f16_scale_mad(acc: &mut [f16], v: &[f16], rescale: Option<f32>, vs: f32) {
            let n = acc.len();
            let n8 = n / 8 * 8;
            let (pa, pv) = (acc.as_mut_ptr(), v.as_ptr());
            let vsv = _mm256_set1_ps(vs);
            for i in (0..n8).step_by(8) {
                // SAFETY: i + 8 <= n for both slices (caller: equal lengths).
                unsafe {
                    let mut a = ld8(pa.add(i));
                    if let Some(ms) = rescale {
                        a = _mm256_mul_ps(a, _mm256_set1_ps(ms));
                        // Round to f16 and back: the value ggml stores between the two steps.
                        a = _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(a));
                    }
                    st8(pa.add(i), _mm256_fmadd_ps(ld8(pv.add(i)), vsv, a));
                }
            }
            super::super::scale_mad_scalar(&mut acc[n8..], &v[n8..], rescale, vs);
        }

        /// `delta_rule_column` for 128-element columns with the column held in 16 ymm.
        ///
        /// # Safety
        /// AVX2/FMA/F16C; `col`, `k`, `q` have 128 elements each.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn delta_rule_column_128(
            col: &mut [f32],
            k: &[f32],
            q: &[f32],
            decay: f32,
            v_b: f32,
            beta: f32,
        ) -> f32 {
            let (pc, pk, pq) = (col.as_mut_ptr(), k.as_ptr(), q.as_ptr());
            let dv = _mm256_set1_ps(decay);
            let ld = |p: *const f32, j: usize| {
                // SAFETY: j < 16 and the three slices have 128 elements (caller), so the 8
                // floats at 8·j are in bounds; AVX2 is this function's feature.
                unsafe { _mm256_loadu_ps(p.add(8 * j)) }
            };
            let mut c: [__m256; 16] = std::array::from_fn(|j| _mm256_mul_ps(ld(pc, j), dv));
            let kk: [__m256; 16] = std::array::from_fn(|j| ld(pk, j));
            // Lanes 8j..8j + 7 of each 32-step go to a[j], steps in order.
            let dot = |c: &[__m256; 16], y: &[__m256; 16]| {
                let mut a = [_mm256_setzero_ps(); 4];
                for s in 0..4 {
                    for (j, aj) in a.iter_mut().enumerate() {
                        *aj = _mm256_fmadd_ps(c[4 * s + j], y[4 * s + j], *aj);
                    }
                }
                // SAFETY: AVX2 (this function's feature).
                reduce32(&unsafe { store32(&a) })
            };
            let kv = dot(&c, &kk);
            let delta = _mm256_set1_ps((v_b - kv) * beta);
            for j in 0..16 {
                c[j] = _mm256_fmadd_ps(kk[j], delta, c[j]);
                // SAFETY: as in `ld`: 8 floats at 8·j < 128 of `col`.
                unsafe { _mm256_storeu_ps(pc.add(8 * j), c[j]) };
            }
            let qq: [__m256; 16] = std::array::from_fn(|j| ld(pq, j));
            dot(&c, &qq)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Rng;

    fn scalar_dot_f32(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len();
        let n32 = n / 32 * 32;
        let mut acc = [0.0f32; 32];
        for i in (0..n32).step_by(32) {
            for l in 0..32 {
                acc[l] = x[i + l].mul_add(y[i + l], acc[l]);
            }
        }
        let mut sum = reduce32(&acc);
        let ue = n32 + (n - n32) / 4 * 4;
        for i in n32..ue {
            sum += x[i] * y[i];
        }
        for i in ue..n {
            sum = x[i].mul_add(y[i], sum);
        }
        sum
    }

    fn vecs(rng: &mut Rng, n: usize, mag: f32) -> Vec<f32> {
        (0..n).map(|_| rng.unit() * mag).collect()
    }

    #[test]
    fn the_vector_dots_equal_the_scalar_lane_definition_bit_for_bit() {
        let mut rng = Rng::new(5);
        for n in [0usize, 1, 31, 32, 33, 64, 100, 128, 256, 259] {
            for mag in [1.0f32, 1e-30, 6e4] {
                let (x, y) = (vecs(&mut rng, n, mag), vecs(&mut rng, n, 1.0));
                assert_eq!(
                    dot_f32(&x, &y).to_bits(),
                    scalar_dot_f32(&x, &y).to_bits(),
                    "n {n}"
                );
                let (xh, yh): (Vec<f16>, Vec<f16>) = (
                    x.iter().map(|&v| f16::from_f32(v)).collect(),
                    y.iter().map(|&v| f16::from_f32(v)).collect(),
                );
                let n32 = n / 32 * 32;
                let mut acc = [0.0f32; 32];
                for i in (0..n32).step_by(32) {
                    for l in 0..32 {
                        acc[l] = xh[i + l].to_f32().mul_add(yh[i + l].to_f32(), acc[l]);
                    }
                }
                let mut want = reduce32(&acc) as f64;
                for i in n32..n {
                    want += (xh[i].to_f32() * yh[i].to_f32()) as f64;
                }
                assert_eq!(
                    dot_f16(&xh, &yh).to_bits(),
                    (want as f32).to_bits(),
                    "f16 n {n}"
                );
            }
        }
    }

    #[test]
    fn the_f16_accumulator_step_rounds_twice_like_the_scalar_definition() {
        let mut rng = Rng::new(9);
        for n in [1usize, 15, 16, 17, 128, 256] {
            for rescale in [None, Some(0.37f32), Some(1e-5)] {
                let a0: Vec<f16> = vecs(&mut rng, n, 3e4)
                    .iter()
                    .map(|&v| f16::from_f32(v))
                    .collect();
                let v: Vec<f16> = vecs(&mut rng, n, 2.0)
                    .iter()
                    .map(|&v| f16::from_f32(v))
                    .collect();
                let vs = rng.unit().abs();
                let mut got = a0.clone();
                f16_scale_mad(&mut got, &v, rescale, vs);
                let want: Vec<f16> = a0
                    .iter()
                    .zip(&v)
                    .map(|(&a, &vv)| {
                        let a = match rescale {
                            Some(ms) => f16::from_f32(a.to_f32() * ms),
                            None => a,
                        };
                        f16::from_f32(vv.to_f32().mul_add(vs, a.to_f32()))
                    })
                    .collect();
                let bits = |s: &[f16]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "n {n} rescale {rescale:?}");
            }
        }
    }

    #[test]
    fn the_fused_delta_rule_column_equals_the_three_pass_definition() {
        let mut rng = Rng::new(13);
        for d in [128usize, 64, 96] {
            for _ in 0..20 {
                let col = vecs(&mut rng, d, 2.0);
                let (k, q) = (vecs(&mut rng, d, 0.2), vecs(&mut rng, d, 0.2));
                let (decay, v_b, beta) = (rng.unit().abs(), rng.unit(), rng.unit().abs());
                let mut want = col.clone();
                for x in want.iter_mut() {
                    *x *= decay;
                }
                let kv = scalar_dot_f32(&want, &k);
                let delta = (v_b - kv) * beta;
                for (x, &ka) in want.iter_mut().zip(&k) {
                    *x = ka.mul_add(delta, *x);
                }
                let out_want = scalar_dot_f32(&want, &q);
                let mut got = col.clone();
                let out = delta_rule_column(&mut got, &k, &q, decay, v_b, beta);
                assert_eq!(out.to_bits(), out_want.to_bits(), "d {d}");
                assert!(got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }
    }

    /// The AVX2 tier on its own, against the scalar definitions: on an AVX-512 machine the
    /// dispatching functions above never reach it.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx2_tier_equals_the_scalar_definitions_bit_for_bit() {
        if !have_v3() {
            eprintln!("skipped: no AVX2/FMA/F16C");
            return;
        }
        let mut rng = Rng::new(21);
        for n in [32usize, 64, 256] {
            let (x, y) = (vecs(&mut rng, n, 3.0), vecs(&mut rng, n, 1.0));
            let mut want = [0.0f32; 32];
            for (xs, ys) in x.chunks_exact(32).zip(y.chunks_exact(32)) {
                for l in 0..32 {
                    want[l] = xs[l].mul_add(ys[l], want[l]);
                }
            }
            // SAFETY: AVX2/FMA/F16C checked; equal lengths, multiples of 32.
            let got = unsafe { x86::v3::lanes_f32(&x, &y) };
            assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits), "f32 n {n}");
            let (xh, yh): (Vec<f16>, Vec<f16>) = (
                x.iter().map(|&v| f16::from_f32(v)).collect(),
                y.iter().map(|&v| f16::from_f32(v)).collect(),
            );
            let mut want = [0.0f32; 32];
            for (xs, ys) in xh.chunks_exact(32).zip(yh.chunks_exact(32)) {
                for l in 0..32 {
                    want[l] = xs[l].to_f32().mul_add(ys[l].to_f32(), want[l]);
                }
            }
            // SAFETY: as above.
            let got = unsafe { x86::v3::lanes_f16(&xh, &yh) };
            assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits), "f16 n {n}");
        }
        for n in [7usize, 8, 9, 128, 131] {
            for rescale in [None, Some(0.37f32), Some(1e-5)] {
                let a0: Vec<f16> = vecs(&mut rng, n, 3e4)
                    .iter()
                    .map(|&v| f16::from_f32(v))
                    .collect();
                let v: Vec<f16> = vecs(&mut rng, n, 2.0)
                    .iter()
                    .map(|&v| f16::from_f32(v))
                    .collect();
                let vs = rng.unit().abs();
                let mut got = a0.clone();
                // SAFETY: AVX2/FMA/F16C checked; equal lengths.
                unsafe { x86::v3::f16_scale_mad(&mut got, &v, rescale, vs) };
                let want: Vec<u16> = a0
                    .iter()
                    .zip(&v)
                    .map(|(&a, &vv)| {
                        let a = rescale.map_or(a, |ms| f16::from_f32(a.to_f32() * ms));
                        f16::from_f32(vv.to_f32().mul_add(vs, a.to_f32())).to_bits()
                    })
                    .collect();
                let got: Vec<u16> = got.iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, want, "scale_mad n {n} rescale {rescale:?}");
            }
        }
        for _ in 0..20 {
            let col = vecs(&mut rng, 128, 2.0);
            let (k, q) = (vecs(&mut rng, 128, 0.2), vecs(&mut rng, 128, 0.2));
            let (decay, v_b, beta) = (rng.unit().abs(), rng.unit(), rng.unit().abs());
            let mut want = col.clone();
            for x in want.iter_mut() {
                *x *= decay;
            }
            let delta = (v_b - scalar_dot_f32(&want, &k)) * beta;
            for (x, &ka) in want.iter_mut().zip(&k) {
                *x = ka.mul_add(delta, *x);
            }
            let out_want = scalar_dot_f32(&want, &q);
            let mut got = col.clone();
            // SAFETY: AVX2/FMA/F16C checked; all three have 128 elements.
            let out = unsafe { x86::v3::delta_rule_column_128(&mut got, &k, &q, decay, v_b, beta) };
            assert_eq!(out.to_bits(), out_want.to_bits());
            assert!(got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}
