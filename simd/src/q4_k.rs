//! Q4_K weights (256 per block, 144 bytes) dotted with Q8_K activations.
//! Layout and formulas: spec/gguf-quant-formats.md §3.2, §4.3; float order: `kq.rs`.

use bytemuck::{Pod, Zeroable};

use crate::acts::ActRow;
use crate::floats::f16_le;
use crate::kernels::{kernels_of, Kernels};
use crate::kq::{fold_block, fold_min4, hsum4_ref, hsum8_ref, lane, min_sums, scale_min_k4};
use crate::Isa;

/// One Q4_K super-block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4K {
    /// f16 super-scale of the sub-block scales.
    pub d: [u8; 2],
    /// f16 super-scale of the sub-block mins.
    pub dmin: [u8; 2],
    /// Eight 6-bit scales and eight 6-bit mins, packed (`get_scale_min_k4`).
    pub scales: [u8; 12],
    /// 4-bit quants: chunk c's bytes 32c..32c+31 hold elements 64c+l (low) and 64c+32+l (high).
    pub qs: [u8; 128],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

fn blocks(data: &[u8]) -> &[BlockQ4K] {
    // Cannot fail: callers pass whole blocks, and the block has alignment 1.
    bytemuck::cast_slice(data)
}

/// `dequantize_row_q4_K`: `y = (d·sc)·q − (dmin·m)`, each product rounded to f32.
pub(crate) fn dequantize(data: &[u8], out: &mut [f32]) {
    for (b, y) in blocks(data).iter().zip(out.chunks_exact_mut(256)) {
        let (d, min) = (f16_le(b.d), f16_le(b.dmin));
        let (sc, m) = scale_min_k4(&b.scales);
        for c in 0..4 {
            let q = &b.qs[32 * c..32 * c + 32];
            let (d1, m1) = (d * sc[2 * c] as f32, min * m[2 * c] as f32);
            let (d2, m2) = (d * sc[2 * c + 1] as f32, min * m[2 * c + 1] as f32);
            for l in 0..32 {
                y[64 * c + l] = d1 * (q[l] & 0xF) as f32 - m1;
                y[64 * c + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// The 4-bit value of element `e` of a block.
#[inline]
fn q_of(b: &BlockQ4K, e: usize) -> u8 {
    let (c, w) = (e / 64, e % 64);
    let byte = b.qs[32 * c + w % 32];
    if w < 32 {
        byte & 0xF
    } else {
        byte >> 4
    }
}

/// Scalar reference dot of one row with one Q8_K token, in the canonical order (`kq.rs`).
pub(crate) fn dot_ref(row: &[u8], x: &ActRow<'_>) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut acc_m = [0.0f32; 4];
    for (i, b) in blocks(row).iter().enumerate() {
        let (sc, m) = scale_min_k4(&b.scales);
        let q8 = &x.qs[256 * i..256 * i + 256];
        let mut sumi = [0i32; 8];
        for e in 0..256 {
            sumi[lane(e)] += sc[e / 32] as i32 * q_of(b, e) as i32 * q8[e] as i32;
        }
        let summ = min_sums(&x.bsums[16 * i..16 * i + 16], &m);
        let dy = x.d[i];
        fold_block(&mut acc, dy * f16_le(b.d), &sumi);
        fold_min4(&mut acc_m, -dy * f16_le(b.dmin), &summ);
    }
    hsum8_ref(&acc) + hsum4_ref(&acc_m)
}

/// # Safety
/// Same contract as `kernels::KernelFn` (the scalar path has no ISA requirement).
unsafe fn matvec_scalar<const N: usize>(row: &[u8], x: &[ActRow<'_>; N], out: &mut [f32; N]) {
    for t in 0..N {
        out[t] = dot_ref(row, &x[t]);
    }
}

pub(crate) fn kernels(isa: Isa) -> Kernels {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Scalar => {}
        Isa::Avx2 => return kernels_of!(avx2::matvec_plain),
        Isa::Avx2Vnni => return kernels_of!(avx2::matvec_vnni),
        Isa::Avx512 | Isa::Amx => return kernels_of!(avx512::matvec),
    }
    let _ = isa;
    kernels_of!(matvec_scalar)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{blocks, ActRow};
    use crate::kq::x86::{bsums_madd, fold, fold_min4, hsum4, mins_dup16, scales_dup16};
    use crate::x86::{f16_to_f32_f16c, hsum8, madd_acc_avx2, madd_acc_avxvnni, prefetch_ahead};

    macro_rules! matvec {
        ($name:ident, $feat:literal, $madd_acc:ident) => {
            /// k-input Q4_K × Q8_K kernel: each block's nibbles and scales are unpacked once
            /// and reused by all `N` tokens.
            ///
            /// # Safety
            /// The target features must be available; `row` is whole blocks and each `x[t]`
            /// holds `256 · blocks` quants, one `d` and 16 bsums per block.
            #[target_feature(enable = $feat)]
            pub unsafe fn $name<const N: usize>(
                row: &[u8],
                x: &[ActRow<'_>; N],
                out: &mut [f32; N],
            ) {
                let mut acc = [_mm256_setzero_ps(); N];
                let mut acc_m = [_mm_setzero_ps(); N];
                let m4 = _mm256_set1_epi8(0x0F);
                for (i, b) in blocks(row).iter().enumerate() {
                    // 3 lines: see the AVX-512 kernel.
                    prefetch_ahead::<3>(b.d.as_ptr());
                    let (sc, m) = crate::kq::scale_min_k4(&b.scales);
                    let mins = mins_dup16(&m);
                    let mut w = [_mm256_setzero_si256(); 8];
                    let s = scales_dup16(&sc);
                    for c in 0..4 {
                        let q = _mm256_loadu_si256(b.qs.as_ptr().add(32 * c) as *const __m256i);
                        w[2 * c] = _mm256_and_si256(q, m4);
                        w[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                    }
                    let (dx, dminx) = (f16_to_f32_f16c(b.d), f16_to_f32_f16c(b.dmin));
                    for t in 0..N {
                        let q8 = x[t].qs.as_ptr().add(256 * i);
                        let mut sumi = _mm256_setzero_si256();
                        for v in 0..8 {
                            let y = _mm256_loadu_si256(q8.add(32 * v) as *const __m256i);
                            sumi = $madd_acc(sumi, _mm256_maddubs_epi16(w[v], y), s[v]);
                        }
                        let summ = bsums_madd(x[t].bsums.as_ptr().add(16 * i), mins);
                        let dy = *x[t].d.get_unchecked(i);
                        acc[t] = fold(acc[t], dy * dx, sumi);
                        acc_m[t] = fold_min4(acc_m[t], -dy * dminx, summ);
                    }
                }
                for t in 0..N {
                    out[t] = hsum8(acc[t]) + hsum4(acc_m[t]);
                }
            }
        };
    }
    matvec!(matvec_plain, "avx2,fma,f16c", madd_acc_avx2);
    matvec!(matvec_vnni, "avx2,fma,f16c,avxvnni", madd_acc_avxvnni);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{blocks, ActRow};
    use crate::kq::x86::{bsums_madd, hsum4, mins_dup16, scaled_dot256, up16_index};
    use crate::x86::{hsum8, prefetch_ahead};

    /// k-input Q4_K × Q8_K kernel with 512-bit integer work (`vpdpbusd`, `vpmaddwd`).
    ///
    /// The float state of a token is one 16-lane vector: lanes 0..7 are the canonical `acc`,
    /// lanes 8..11 Q4_K's `acc_m`, lanes 12..15 are never read (no masking needed). One
    /// lane-wise fma per block updates both with `d = dy · [dx ×8, −dminx ×4, …]`; lane for lane this is the same fma
    /// (same operands, same rounding) as the separate 8- and 4-lane steps of `kq.rs`, since
    /// `dy · (−dminx) = −(dy · dminx)` exactly. The int32 lanes are gathered by two
    /// permutes: `fold16(sumi)` into 0..7 and the pairwise sums of `summ` into 8..11.
    ///
    /// The integer part is `kq::x86::scaled_dot256` (`vpdpbusd` per vector, one `vpmaddwd`
    /// per two vectors) with the scale pairs `s01` dword m = `(sc[m/8], sc[2 + m/8])` and
    /// `s23` = `(sc[4 + m/8], sc[6 + m/8])`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C must be available; lengths as in `avx2`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn matvec<const N: usize>(row: &[u8], x: &[ActRow<'_>; N], out: &mut [f32; N]) {
        let mut acc = [_mm512_setzero_ps(); N];
        let m4 = _mm512_set1_epi8(0x0F);
        // Operand a = sumi (16 lanes), operand b = summ (8 lanes, indices 16..23).
        let idx_a = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 18, 20, 22, 0, 0, 0, 0);
        let idx_b = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 17, 19, 21, 23, 0, 0, 0, 0);
        // Word indices into sc16 of the scale pairs s01, s23 (see above).
        let sidx = [0, 4].map(|b| {
            _mm512_mask_blend_epi16(
                0xFFFF_0000,
                _mm512_set1_epi32(b | ((b + 2) << 16)),
                _mm512_set1_epi32((b + 1) | ((b + 3) << 16)),
            )
        });
        let up16 = up16_index();
        let d_idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        let neg_hi =
            _mm512_mask_blend_epi32(0xFF00, _mm512_setzero_si512(), _mm512_set1_epi32(i32::MIN));
        for (i, b) in blocks(row).iter().enumerate() {
            // Consecutive blocks' prefetches start 144 bytes apart, so they leave no line out
            // only with floor((144 + 63) / 64) = 3 lines each; with 2 (until 2026-12-08) one
            // line in nine went unprefetched. On the 16-core GPU host of 2026-12-08 the Q4_K
            // rows of kernel-bench then streamed at 45-64% of the read loop while Q5_K, Q6_K
            // and Q8_0 (3 / 4 / 1 lines: full cover) reached 98-118%; on the 2-core dev VM 3
            // lines measured the same as 2 (docs/benchmarks/kernels-16core-2026-12-08.md).
            prefetch_ahead::<3>(b.d.as_ptr());
            let (sc, m) = crate::kq::scale_min_k4(&b.scales);
            let mins = mins_dup16(&m);
            // w[v] = elements 64v..64v+63 (sub-blocks 2v, 2v+1): chunk v's 32 bytes loaded
            // into both 256-bit halves (a broadcast load, no shuffle uop), the upper half's
            // words shifted right by 4 (masked shift), then the low nibble of every byte.
            let w = [0, 1, 2, 3].map(|v| {
                let q = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                    b.qs.as_ptr().add(32 * v) as *const __m256i
                ));
                _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xFFFF_0000, q, 4), m4)
            });
            let sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64(
                sc.as_ptr() as *const __m128i
            )));
            let (s01, s23) = (
                _mm512_permutexvar_epi16(sidx[0], sc16),
                _mm512_permutexvar_epi16(sidx[1], sc16),
            );
            // [dx ×8, −dminx ×8] from one 4-byte load of (d, dmin) and one f16 convert.
            let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([
                b.d[0], b.d[1], b.dmin[0], b.dmin[1],
            ])));
            let dv = _mm512_castsi512_ps(_mm512_xor_si512(
                _mm512_castps_si512(_mm512_permutexvar_ps(d_idx, _mm512_castps128_ps512(dd))),
                neg_hi,
            ));
            for t in 0..N {
                let q8 = x[t].qs.as_ptr().add(256 * i);
                let sumi = scaled_dot256(&w, q8, s01, s23, up16);
                let summ =
                    _mm512_castsi256_si512(bsums_madd(x[t].bsums.as_ptr().add(16 * i), mins));
                let ints = _mm512_add_epi32(
                    _mm512_permutex2var_epi32(sumi, idx_a, summ),
                    _mm512_permutex2var_epi32(sumi, idx_b, summ),
                );
                let d = _mm512_mul_ps(_mm512_set1_ps(*x[t].d.get_unchecked(i)), dv);
                acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(ints), acc[t]);
            }
        }
        for t in 0..N {
            let a = acc[t];
            out[t] = hsum8(_mm512_castps512_ps256(a)) + hsum4(_mm512_extractf32x4_ps(a, 2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::GgmlType;

    /// A block whose fields are chosen so every value below can be worked out by hand.
    fn crafted() -> BlockQ4K {
        let mut b = BlockQ4K::zeroed();
        b.d = 0x3c00u16.to_le_bytes(); // 1.0
        b.dmin = 0x3800u16.to_le_bytes(); // 0.5
                                          // sc0 = 5, m0 = 3 (bytes 0 and 4); sc4 = low nibble of byte 8 | (byte0 >> 6) << 4.
        b.scales[0] = 5 | (2 << 6); // sc0 = 5, top bits give sc4 bits 4..5 = 2
        b.scales[4] = 3 | (1 << 6); // m0 = 3, m4 bits 4..5 = 1
        b.scales[8] = 0x7 | (0x9 << 4); // sc4 low = 7, m4 low = 9
        b.qs[0] = 0xA3; // element 0: q = 3 (sub-block 0); element 32: q = 10 (sub-block 1)
        b.qs[64] = 0x0F; // element 128: q = 15 (sub-block 4)
        b
    }

    #[test]
    fn dequantize_follows_the_spec_formulas_on_a_crafted_block() {
        let b = crafted();
        let mut y = [0.0f32; 256];
        crate::dequantize_row(GgmlType::Q4_K, bytemuck::bytes_of(&b), &mut y);
        // sub-block 0: d·sc0·q − dmin·m0 = 1·5·3 − 0.5·3 = 13.5
        assert_eq!(y[0], 13.5);
        assert_eq!(y[1], -1.5); // q = 0
                                // sub-block 1: sc1 = 0, m1 = 0 → 0 whatever q is
        assert_eq!(y[32], 0.0);
        // sub-block 4: sc4 = 7 | 2<<4 = 39, m4 = 9 | 1<<4 = 25: 39·15 − 0.5·25 = 572.5
        assert_eq!(y[128], 572.5);
        assert_eq!(y[129], -12.5);
    }

    #[test]
    fn every_isa_matches_the_reference_and_widths_agree_bitwise() {
        check_format(
            GgmlType::Q4_K,
            &mut |rng, kind| {
                let mut b = BlockQ4K::zeroed();
                b.d = rand_scale(rng, kind);
                b.dmin = rand_scale(rng, kind);
                rng.fill(&mut b.scales);
                match kind {
                    BlockKind::AllMax => b.qs.fill(0xFF),
                    BlockKind::AllZero => b.qs.fill(0),
                    _ => rng.fill(&mut b.qs),
                }
                bytemuck::bytes_of(&b).to_vec()
            },
            &|bytes| {
                let b: &BlockQ4K = bytemuck::from_bytes(bytes);
                let (sc, m) = scale_min_k4(&b.scales);
                let (d, dm) = (f16_le(b.d) as f64, f16_le(b.dmin) as f64);
                (0..256)
                    .map(|e| {
                        (
                            d * sc[e / 32] as f64 * q_of(b, e) as f64 - dm * m[e / 32] as f64,
                            (d * sc[e / 32] as f64 * q_of(b, e) as f64).abs()
                                + (dm * m[e / 32] as f64).abs(),
                        )
                    })
                    .collect()
            },
        );
    }
}
