//! Small x86 helpers shared by the kernel files. Every function is a `#[target_feature]`
//! `#[inline]` fn so it inlines into kernels that enable a superset of its features.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// Horizontal sum of 8 f32 lanes in the canonical tree (same as `hsum8_ref`):
/// `t4[i] = a[i] + a[i+4]`, `t2[i] = t4[i] + t4[i+2]`, `t2[0] + t2[1]`.
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub unsafe fn hsum8(v: __m256) -> f32 {
    let t4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)))
}

/// `acc + madd(p, s)`: int16 pairs times int16 scales into int32 (plain AVX2).
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
pub unsafe fn madd_acc_avx2(acc: __m256i, p: __m256i, s: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(p, s))
}

/// `acc + madd(p, s)` in one AVX-VNNI `vpdpwssd`.
///
/// # Safety
/// AVX2 and AVX-VNNI must be available.
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
pub unsafe fn madd_acc_avxvnni(acc: __m256i, p: __m256i, s: __m256i) -> __m256i {
    _mm256_dpwssd_avx_epi32(acc, p, s)
}

/// `acc + Σ4 u8·i8` (int32 lanes of 4 products), plain AVX2: `maddubs` then `madd` with 1.
/// `u` must be ≤ 128 per byte when `s` can be ±127, so the int16 pair sums cannot saturate.
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
#[inline]
pub unsafe fn dpbusd_avx2(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_add_epi32(
        acc,
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)),
    )
}

/// `acc + Σ4 u8·i8` in one AVX-VNNI `vpdpbusd` (no saturation).
///
/// # Safety
/// AVX2 and AVX-VNNI must be available.
#[target_feature(enable = "avx2,avxvnni")]
#[inline]
pub unsafe fn dpbusd_avxvnni(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(acc, u, s)
}

/// f16 bits → f32 with F16C (exact, same as `floats::f16_to_f32`).
///
/// # Safety
/// F16C must be available.
#[target_feature(enable = "f16c")]
#[inline]
pub unsafe fn f16_to_f32_f16c(b: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(
        _mm_cvtsi32_si128(u16::from_le_bytes(b) as i32),
    ))
}

/// How far ahead of the weight block being computed the streaming kernels prefetch, in
/// bytes. A single core's hardware prefetchers alone kept Q4_K MatVec1In at ~5 GB/s of
/// weights on the dev VM (sequential read: ~16 GB/s); prefetching 2 KiB ahead (a bit under
/// one 27B row of 2880 bytes) measured 9-11 GB/s. 1 KiB and 4 KiB measured lower.
pub const PREFETCH_AHEAD: usize = 2048;

/// Prefetches (into L1) the `LINES` cache lines starting `PREFETCH_AHEAD` bytes past `p`.
/// The address may lie past the end of the matrix: a prefetch never faults, and the
/// pointer is only formed with `wrapping_add`, never dereferenced.
#[inline(always)]
pub fn prefetch_ahead<const LINES: usize>(p: *const u8) {
    for j in 0..LINES {
        let q = p.wrapping_add(PREFETCH_AHEAD + 64 * j) as *const i8;
        // SAFETY: `prefetcht0` is in the x86_64 baseline (SSE) and has no memory-safety
        // effect: it reads nothing architecturally and ignores invalid addresses.
        unsafe { _mm_prefetch(q, _MM_HINT_T0) }
    }
}

/// `out[c][r] = m[r][c]` for a 16 × 16 f32 block (unpack, 128-bit shuffles, then lane
/// shuffles: 64 shuffles instead of 256 scalar moves).
///
/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
#[inline]
pub unsafe fn transpose16(m: &[[f32; 16]; 16], out: &mut [[f32; 16]; 16]) {
    let r: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(m[i].as_ptr()));
    // t[2i], t[2i+1]: per 128-bit lane, rows 2i and 2i+1 interleaved (elements 0,1 / 2,3).
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // u[4g + k]: lane j holds column 4j + k of rows 4g .. 4g + 3.
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let (g, k) = (i / 4, i % 4);
        let (a, b) = (t[4 * g + k / 2], t[4 * g + 2 + k / 2]);
        if k % 2 == 0 {
            _mm512_shuffle_ps::<0x44>(a, b)
        } else {
            _mm512_shuffle_ps::<0xEE>(a, b)
        }
    });
    for k in 0..4 {
        let (a, b, c, d) = (u[k], u[4 + k], u[8 + k], u[12 + k]);
        let x0 = _mm512_shuffle_f32x4::<0x44>(a, b);
        let x1 = _mm512_shuffle_f32x4::<0xEE>(a, b);
        let y0 = _mm512_shuffle_f32x4::<0x44>(c, d);
        let y1 = _mm512_shuffle_f32x4::<0xEE>(c, d);
        _mm512_storeu_ps(out[k].as_mut_ptr(), _mm512_shuffle_f32x4::<0x88>(x0, y0));
        _mm512_storeu_ps(
            out[4 + k].as_mut_ptr(),
            _mm512_shuffle_f32x4::<0xDD>(x0, y0),
        );
        _mm512_storeu_ps(
            out[8 + k].as_mut_ptr(),
            _mm512_shuffle_f32x4::<0x88>(x1, y1),
        );
        _mm512_storeu_ps(
            out[12 + k].as_mut_ptr(),
            _mm512_shuffle_f32x4::<0xDD>(x1, y1),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose16_swaps_rows_and_columns() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: no AVX-512");
            return;
        }
        let m: [[f32; 16]; 16] =
            std::array::from_fn(|r| std::array::from_fn(|c| (16 * r + c) as f32));
        let mut out = [[f32::NAN; 16]; 16];
        // SAFETY: AVX-512F checked above.
        unsafe { transpose16(&m, &mut out) };
        for r in 0..16 {
            for c in 0..16 {
                assert_eq!(out[c][r], m[r][c], "row {r} col {c}");
            }
        }
    }
}
