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
/// Written as `vmovd` + `vcvtph2ps` in `asm!`: from the intrinsics, LLVM sees that only lane
/// 0 of the converted vector is used and loads the f16 with `vpinsrw` into whatever register
/// it likes for the (unused) upper lanes; in the k-input kernels it picked a token's float
/// accumulator, so every block's scale waited for the previous block's last FMA: a
/// loop-carried chain through the scale. Q8_0 (a scale per 32 weights) ran at 4.4 ns per
/// block on the dev VM instead of ~1.1 ns. `vmovd` from a general register zeroes the upper
/// lanes, so the conversion depends on nothing but the two bytes.
///
/// # Safety
/// F16C must be available.
#[target_feature(enable = "f16c")]
#[inline]
pub unsafe fn f16_to_f32_f16c(b: [u8; 2]) -> f32 {
    let r: f32;
    // SAFETY: register-only instructions (no memory, no stack, flags untouched); F16C is
    // available per this function's contract and `vmovd` is AVX, implied by F16C here.
    unsafe {
        std::arch::asm!(
            "vmovd {x}, {g:e}",
            "vcvtph2ps {x}, {x}",
            g = in(reg) u16::from_le_bytes(b) as u32,
            x = out(xmm_reg) r,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    r
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

/// XOR of the 64-bit words of `buf`, read with the widest loads the CPU has (AVX-512, else
/// AVX2, else plain 8-byte words), optionally with the kernels' software prefetch: the read loop of
/// `Pool::read_bandwidth`. With plain words it was compiled to 16-byte SSE2 loads, which on
/// the GPU host's cores could not keep up with DRAM (70 GB/s with 16 threads while the Q4_K
/// kernels read their weights at 90+ GB/s), so the "roofline" sat under the kernels.
/// With `prefetch` off it relies on the hardware prefetchers alone; which of the two reads
/// faster depends on the machine, so a roofline takes the faster of both.
pub fn stream_xor_with(buf: &[u64], prefetch: bool) -> u64 {
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was just detected; the function reads only inside `buf`.
        return unsafe {
            if prefetch {
                stream_xor_avx512::<true>(buf)
            } else {
                stream_xor_avx512::<false>(buf)
            }
        };
    }
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was just detected; the function reads only inside `buf`.
        return unsafe {
            if prefetch {
                stream_xor_avx2::<true>(buf)
            } else {
                stream_xor_avx2::<false>(buf)
            }
        };
    }
    let mut acc = 0u64;
    for c in buf.chunks(32) {
        if prefetch {
            prefetch_ahead::<4>(c.as_ptr() as *const u8);
        }
        acc = c.iter().fold(acc, |a, w| a ^ w);
    }
    acc
}

/// `stream_xor` with one zmm load per 64-byte line.
///
/// # Safety
/// AVX-512F must be available.
#[target_feature(enable = "avx512f")]
unsafe fn stream_xor_avx512<const PF: bool>(buf: &[u64]) -> u64 {
    let chunks = buf.chunks_exact(32);
    let tail = chunks.remainder().iter().fold(0u64, |a, w| a ^ w);
    let mut acc = [_mm512_setzero_si512(); 4];
    for c in chunks {
        if PF {
            prefetch_ahead::<4>(c.as_ptr() as *const u8);
        }
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: `c` holds 32 words, so words 8j .. 8j + 7 are inside it.
            *a = _mm512_xor_si512(*a, _mm512_loadu_si512(c.as_ptr().add(8 * j) as *const _));
        }
    }
    let v = _mm512_xor_si512(
        _mm512_xor_si512(acc[0], acc[1]),
        _mm512_xor_si512(acc[2], acc[3]),
    );
    let mut w = [0u64; 8];
    _mm512_storeu_si512(w.as_mut_ptr() as *mut _, v);
    w.iter().fold(tail, |a, x| a ^ x)
}

/// `stream_xor` with two ymm loads per 64-byte line.
///
/// # Safety
/// AVX2 must be available.
#[target_feature(enable = "avx2")]
unsafe fn stream_xor_avx2<const PF: bool>(buf: &[u64]) -> u64 {
    let chunks = buf.chunks_exact(32);
    let tail = chunks.remainder().iter().fold(0u64, |a, w| a ^ w);
    let mut acc = [_mm256_setzero_si256(); 8];
    for c in chunks {
        if PF {
            prefetch_ahead::<4>(c.as_ptr() as *const u8);
        }
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: `c` holds 32 words, so words 4j .. 4j + 3 are inside it.
            *a = _mm256_xor_si256(
                *a,
                _mm256_loadu_si256(c.as_ptr().add(4 * j) as *const __m256i),
            );
        }
    }
    let v = acc
        .iter()
        .fold(_mm256_setzero_si256(), |x, a| _mm256_xor_si256(x, *a));
    let mut w = [0u64; 4];
    _mm256_storeu_si256(w.as_mut_ptr() as *mut __m256i, v);
    w.iter().fold(tail, |a, x| a ^ x)
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
    fn stream_xor_is_the_xor_of_the_words_on_every_path() {
        // 1000 words: 31 whole 32-word chunks and a tail of 8.
        let buf: Vec<u64> = (0..1000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i << 7))
            .collect();
        let want = buf.iter().fold(0, |a, w| a ^ w);
        assert_eq!(stream_xor_with(&buf, true), want);
        assert_eq!(stream_xor_with(&buf, false), want);
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F checked above.
            assert_eq!(unsafe { stream_xor_avx512::<true>(&buf) }, want);
            // SAFETY: as above.
            assert_eq!(unsafe { stream_xor_avx512::<false>(&buf) }, want);
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 checked above.
            assert_eq!(unsafe { stream_xor_avx2::<true>(&buf) }, want);
            // SAFETY: as above.
            assert_eq!(unsafe { stream_xor_avx2::<false>(&buf) }, want);
        }
    }

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
