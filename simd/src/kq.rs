//! Pieces shared by the K-quant files (Q4_K, Q5_K, Q6_K).
//!
//! Canonical float order for every K-quant dot (all ISAs, any k), that of llama.cpp's AVX2
//! `ggml_vec_dot_q{4,5,6}_K_q8_K` (`ggml-cpu/arch/x86/quants.c`): 8 f32 lanes `acc`,
//! starting at 0. For each super-block, in order: lane `l` gets the exact int32 sum
//! `sumi[l]` over the elements `e` with `(e / 4) % 8 == l` of `scale(e) · q(e) · q8(e)`
//! (this is the lane layout of `maddubs` + `madd` on a 32-byte vector), then
//! `acc[l] = fma(d, f32(sumi[l]), acc[l])` with `d = d_y · f32(x.d)`. The dot is `hsum8(acc)`
//! (tree in `hsum8_ref`) plus the min term, kept apart from `acc`:
//!
//! * Q4_K: a 4-lane `acc_m`; lane `l` covers sub-blocks 2l and 2l+1:
//!   `acc_m[l] = fma(dmin, f32(m[2l]·Σbsums(2l) + m[2l+1]·Σbsums(2l+1)), acc_m[l])` with
//!   `dmin = −d_y · f32(x.dmin)`; the dot is `hsum8(acc) + ((acc_m0+acc_m2) + (acc_m1+acc_m3))`.
//! * Q5_K: one f32 `summs = fma(dmin, f32(Σ_j m[j]·Σbsums(j)), summs)` per block (GCC
//!   contracts llama.cpp's `summs += dmin * int` into an fma, checked in the wheel's
//!   disassembly); the dot is `hsum8(acc) + summs`.
//! * Q6_K: the −32 offset is folded into the integer lanes (see `q6_k.rs`), no min term.

/// `get_scale_min_k4` for all eight sub-blocks: `(scales, mins)`, each 6 bits.
/// Branch-free with three 32-bit masks (the byte map of spec §3.2: bytes 0-3/4-7 hold the
/// low 6 bits of sc0-3/m0-3 and the top bits of sc4-7/m4-7, bytes 8-11 their low nibbles).
#[inline]
pub(crate) fn scale_min_k4(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (u0, u1, u2) = (w(0), w(1), w(2));
    let sc_lo = u0 & KMASK1;
    let sc_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let m_lo = u1 & KMASK1;
    let m_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    let (a, b, c, d) = (
        sc_lo.to_le_bytes(),
        sc_hi.to_le_bytes(),
        m_lo.to_le_bytes(),
        m_hi.to_le_bytes(),
    );
    (
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]],
        [c[0], c[1], c[2], c[3], d[0], d[1], d[2], d[3]],
    )
}

/// The canonical 8-lane horizontal sum (see `x86::hsum8`).
pub(crate) fn hsum8_ref(a: &[f32; 8]) -> f32 {
    let t4 = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    let t2 = [t4[0] + t4[2], t4[1] + t4[3]];
    t2[0] + t2[1]
}

/// Canonical lane of element `e` of a block.
#[inline]
pub(crate) const fn lane(e: usize) -> usize {
    (e / 4) % 8
}

/// Scalar canonical step for one block: `acc = fma(d, sumi, acc)`.
#[inline]
pub(crate) fn fold_block(acc: &mut [f32; 8], d: f32, sumi: &[i32; 8]) {
    for l in 0..8 {
        acc[l] = d.mul_add(sumi[l] as f32, acc[l]);
    }
}

/// `summ[j] = bsums[2j]·m[j] + bsums[2j+1]·m[j]`: the min sum of sub-block j.
pub(crate) fn min_sums(bsums: &[i16], m: &[u8; 8]) -> [i32; 8] {
    std::array::from_fn(|l| {
        bsums[2 * l] as i32 * m[l] as i32 + bsums[2 * l + 1] as i32 * m[l] as i32
    })
}

/// Q4_K's min step: `acc_m[l] = fma(dmin, f32(summ[2l] + summ[2l+1]), acc_m[l])`.
#[inline]
pub(crate) fn fold_min4(acc_m: &mut [f32; 4], dmin: f32, summ: &[i32; 8]) {
    for l in 0..4 {
        acc_m[l] = dmin.mul_add((summ[2 * l] + summ[2 * l + 1]) as f32, acc_m[l]);
    }
}

/// The 4-lane sum of `_mm_movehl_ps` + `_mm_movehdup_ps`: `(a0 + a2) + (a1 + a3)`.
pub(crate) fn hsum4_ref(a: &[f32; 4]) -> f32 {
    (a[0] + a[2]) + (a[1] + a[3])
}

/// Q5_K's min step: `summs = fma(dmin, f32(Σ summ), summs)`.
#[inline]
pub(crate) fn fold_min1(summs: f32, dmin: f32, summ: &[i32; 8]) -> f32 {
    dmin.mul_add(summ.iter().sum::<i32>() as f32, summs)
}

#[cfg(test)]
mod tests {
    use super::scale_min_k4;

    /// `x86::scaled_dot256` against the plain formula: lane m = Σ over the elements e of
    /// lanes m of the four 64-byte vectors of `scale(v, m) · w · y`, with the scale pairs as
    /// the kernels build them (`s01` for vectors 0, 1; `s23` for 2, 3). Covers the int16
    /// packing bound at its extreme (w = 63, y = ±128, |scale| = 128).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn scaled_dot256_equals_the_scaled_lane_sums_at_the_extremes() {
        use std::arch::x86_64::*;
        if !crate::Isa::Avx512.is_available() {
            eprintln!("skipped: this CPU lacks AVX-512 VNNI");
            return;
        }
        let mut rng = crate::testutil::Rng::new(11);
        for case in 0..200 {
            let mut w = [0u8; 256];
            let mut y = [0i8; 256];
            let mut sc = [0i16; 16];
            match case {
                0 => {
                    w.fill(63);
                    y.fill(-128);
                    sc.fill(-128);
                }
                1 => {
                    w.fill(63);
                    y.fill(127);
                    sc.fill(127);
                }
                _ => {
                    for v in w.iter_mut() {
                        *v = (rng.next_u64() % 64) as u8;
                    }
                    for v in y.iter_mut() {
                        *v = rng.next_u64() as i8;
                    }
                    for v in sc.iter_mut() {
                        *v = rng.next_u64() as i8 as i16;
                    }
                }
            }
            // Scale of element e: vector v = e / 64, lane m = (e % 64) / 4 uses sc[4v + m / 4]
            // (one scale per 16 elements, as Q6_K; Q4_K/Q5_K repeat theirs).
            let scale = |e: usize| sc[4 * (e / 64) + (e % 64) / 16] as i32;
            let want: Vec<i32> = (0..16)
                .map(|m| {
                    (0..256)
                        .filter(|e| (e % 64) / 4 == m)
                        .map(|e| scale(e) * w[e] as i32 * y[e] as i32)
                        .sum()
                })
                .collect();
            // s01 dword m = (scale of vector 0 lane m, of vector 1 lane m); s23 likewise.
            let pair = |v0: usize| -> [i16; 32] {
                std::array::from_fn(|i| sc[4 * (v0 + i % 2) + (i / 2) / 4])
            };
            let mut got = [0i32; 16];
            // SAFETY: AVX-512 F/BW/VNNI checked above; every pointer covers the bytes read.
            unsafe {
                let ld = |p: *const u8| _mm512_loadu_si512(p as *const __m512i);
                let wv = [0, 1, 2, 3].map(|v| ld(w.as_ptr().add(64 * v)));
                let (s01, s23) = (pair(0), pair(2));
                let r = super::x86::scaled_dot256(
                    &wv,
                    y.as_ptr(),
                    ld(s01.as_ptr() as *const u8),
                    ld(s23.as_ptr() as *const u8),
                    super::x86::up16_index(),
                );
                _mm512_storeu_si512(got.as_mut_ptr() as *mut __m512i, r);
            }
            assert_eq!(got.to_vec(), want, "case {case}");
        }
    }

    #[test]
    fn scale_unpacking_matches_the_per_index_formula_for_every_byte_value() {
        // The per-index definition of `get_scale_min_k4`, spec §3.2.
        let reference = |j: usize, q: &[u8; 12]| -> (u8, u8) {
            if j < 4 {
                (q[j] & 63, q[j + 4] & 63)
            } else {
                (
                    (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
                    (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
                )
            }
        };
        for v in 0..=255u8 {
            for pos in 0..12 {
                let mut q = [0x5Au8; 12];
                q[pos] = v;
                q[(pos + 5) % 12] = v.rotate_left(3);
                let (sc, m) = scale_min_k4(&q);
                for j in 0..8 {
                    assert_eq!((sc[j], m[j]), reference(j, &q), "byte {pos} = {v}, j = {j}");
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// int16 lanes `[m0,m0,m1,m1,…,m7,m7]` for `madd` with the 16 bsums.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn mins_dup16(m: &[u8; 8]) -> __m256i {
        let m8 = _mm_loadl_epi64(m.as_ptr() as *const __m128i);
        _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8))
    }

    /// The eight 6-bit sub-block scales as eight int16 broadcasts (`s[v]` = scale v in every
    /// lane), from one widening and eight in-lane shuffles: the `set1` of each scale costs a
    /// GPR extract, a move to a vector register and a broadcast apiece, about a quarter of a
    /// Q4_K block's instructions at k = 1.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn scales_dup16(sc: &[u8; 8]) -> [__m256i; 8] {
        let s8 = _mm_loadl_epi64(sc.as_ptr() as *const __m128i);
        let s16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(s8));
        // Bytes 2v, 2v + 1 (int16 lane v) into every int16 lane.
        std::array::from_fn(|v| {
            let pair = (0x0100 + 0x0202 * v) as i16;
            _mm256_shuffle_epi8(s16, _mm256_set1_epi16(pair))
        })
    }

    /// `madd(bsums, v16)`: 8 int32 lanes, lane l = bsums[2l]·v[2l] + bsums[2l+1]·v[2l+1].
    ///
    /// # Safety
    /// AVX2 must be available; `bsums` must point at 16 readable i16.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn bsums_madd(bsums: *const i16, v16: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_loadu_si256(bsums as *const __m256i), v16)
    }

    /// `acc = fma(set1(d), f32(sumi), acc)`.
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn fold(acc: __m256, d: f32, sumi: __m256i) -> __m256 {
        _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc)
    }

    /// Q4_K's min step on 4 lanes: `acc_m + set1(dmin) · f32(pairwise sums of summ)` (fma).
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn fold_min4(acc_m: __m128, dmin: f32, summ: __m256i) -> __m128 {
        let pairs = _mm_hadd_epi32(
            _mm256_castsi256_si128(summ),
            _mm256_extracti128_si256(summ, 1),
        );
        _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(pairs), acc_m)
    }

    /// `(a0 + a2) + (a1 + a3)`, as `hsum4_ref`.
    ///
    /// # Safety
    /// SSE3 must be available (implied by AVX2).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub unsafe fn hsum4(a: __m128) -> f32 {
        let t = _mm_add_ps(a, _mm_movehl_ps(a, a));
        _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)))
    }

    /// Q5_K's min step: `fma(dmin, f32(Σ lanes of summ), summs)` (exact int32 sum).
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn fold_min1(summs: f32, dmin: f32, summ: __m256i) -> f32 {
        let s4 = _mm_add_epi32(
            _mm256_castsi256_si128(summ),
            _mm256_extracti128_si256(summ, 1),
        );
        let s2 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
        let s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0b01));
        dmin.mul_add(_mm_cvtsi128_si32(s1) as f32, summs)
    }

    /// `vpshufb` indices for [`scaled_dot256`]: bytes 2, 3 of dword d of each 128-bit lane
    /// take bytes 4d, 4d+1 (the dword's low word moves up); bytes 0, 1 are masked off there.
    /// Passed through `black_box`: with a known index LLVM folds the masked shuffle into
    /// `vpermt2w` (3 uops, one on port 0), which measured slower.
    ///
    /// # Safety
    /// AVX-512F must be available.
    ///
    /// The word mask goes with it, opaque too: with a known word-granular mask LLVM splits
    /// the merge-masked `vpshufb` into a plain `vpshufb` and a masked `vmovdqu16`, one more
    /// 512-bit uop per pair of vectors in a loop that is bound by them (compute ceiling on
    /// the dev VM, k = 4, two alternated rounds: Q4_K 15.1 -> 13.7-14.9 ns per block, Q5_K
    /// 20.5 -> 19.3-19.4, Q6_K 15.3 -> 14.1-14.2; docs/benchmarks/kernels-2core-2026-12-06.md).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn up16_index() -> Up16 {
        Up16 {
            idx: std::hint::black_box(_mm512_broadcast_i32x4(_mm_setr_epi32(
                0x0100_0000,
                0x0504_0000,
                0x0908_0000,
                0x0D0C_0000u32 as i32,
            ))),
            hi_words: std::hint::black_box(0xCCCC_CCCC_CCCC_CCCC),
        }
    }

    /// The shuffle of [`up16_index`]: indices and the mask of the dwords' high words.
    #[derive(Clone, Copy)]
    pub struct Up16 {
        idx: __m512i,
        hi_words: __mmask64,
    }

    /// The scaled integer dot of one 256-element K-quant block with one token, as 16 int32
    /// lanes (lane m belongs to canonical lane m % 8; `fold16` gives `sumi`).
    ///
    /// `w[v]` holds the unsigned quants of elements 64v..64v+63 (each < 64) and `q8` the
    /// token's 256 int8 quants. One `vpdpbusd` per vector gives `P_v`, lane m = the 4-element
    /// sum at elements 64v+4m.. (|P| ≤ 4·63·128 < 2^15, so it fits int16). `P_0`/`P_1` lanes
    /// share canonical lanes, so `P_1`'s low word is moved into `P_0`'s high word (masked
    /// `vpshufb`) and one `vpmaddwd` with `s01` (dword m = the int16 scale pair of `P_0[m]`,
    /// `P_1[m]`) applies both scales; same for `P_2`, `P_3` with `s23`. All sums are exact,
    /// so this equals the `maddubs` + `madd` formulation bit for bit; it needs 6 multiply
    /// uops per token and block instead of 8 and fewer uops in all.
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI must be available; `q8` must point at 256 readable bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    pub unsafe fn scaled_dot256(
        w: &[__m512i; 4],
        q8: *const i8,
        s01: __m512i,
        s23: __m512i,
        up16: Up16,
    ) -> __m512i {
        let p = [0, 1, 2, 3].map(|v| {
            let y = _mm512_loadu_si512(q8.add(64 * v) as *const __m512i);
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[v], y)
        });
        let x01 = _mm512_mask_shuffle_epi8(p[0], up16.hi_words, p[1], up16.idx);
        let x23 = _mm512_mask_shuffle_epi8(p[2], up16.hi_words, p[3], up16.idx);
        _mm512_add_epi32(_mm512_madd_epi16(x01, s01), _mm512_madd_epi16(x23, s23))
    }

    /// Folds a 16-lane int32 vector of 4-element sums into the canonical 8 lanes
    /// (lane m of a 64-element vector is group 16v+m, whose canonical lane is m % 8).
    ///
    /// # Safety
    /// AVX-512F must be available.
    #[target_feature(enable = "avx512f,avx2")]
    #[inline]
    pub unsafe fn fold16(v: __m512i) -> __m256i {
        _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1))
    }
}
