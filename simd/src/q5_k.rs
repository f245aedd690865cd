//! Q5_K weights (256 per block, 176 bytes) dotted with Q8_K activations.
//! Layout and formulas: spec/gguf-quant-formats.md §3.3, §4.3; float order: `kq.rs`.

use bytemuck::{Pod, Zeroable};

use crate::acts::ActRow;
use crate::floats::f16_le;
use crate::kernels::{kernels_of, Kernels};
use crate::kq::{fold_block, fold_min1, hsum8_ref, lane, min_sums, scale_min_k4};
use crate::Isa;

/// One Q5_K super-block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    /// Packed exactly as in Q4_K.
    pub scales: [u8; 12],
    /// Fifth bit: bit 2c of `qh[l]` for element 64c+l, bit 2c+1 for element 64c+32+l.
    pub qh: [u8; 32],
    /// Low 4 bits, laid out as Q4_K's `qs`.
    pub qs: [u8; 128],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

fn blocks(data: &[u8]) -> &[BlockQ5K] {
    // Cannot fail: callers pass whole blocks, and the block has alignment 1.
    bytemuck::cast_slice(data)
}

/// The 5-bit value of element `e` of a block.
#[inline]
fn q_of(b: &BlockQ5K, e: usize) -> u8 {
    let (c, w) = (e / 64, e % 64);
    let l = w % 32;
    let (lo, bit) = if w < 32 {
        (b.qs[32 * c + l] & 0xF, 2 * c)
    } else {
        (b.qs[32 * c + l] >> 4, 2 * c + 1)
    };
    lo + 16 * ((b.qh[l] >> bit) & 1)
}

/// `dequantize_row_q5_K`: `y = (d·sc)·q − (dmin·m)`, q ∈ [0, 31].
pub(crate) fn dequantize(data: &[u8], out: &mut [f32]) {
    for (b, y) in blocks(data).iter().zip(out.chunks_exact_mut(256)) {
        let (d, min) = (f16_le(b.d), f16_le(b.dmin));
        let (sc, m) = scale_min_k4(&b.scales);
        for (e, v) in y.iter_mut().enumerate() {
            let j = e / 32;
            *v = (d * sc[j] as f32) * q_of(b, e) as f32 - min * m[j] as f32;
        }
    }
}

/// Scalar reference dot of one row with one Q8_K token, in the canonical order (`kq.rs`).
pub(crate) fn dot_ref(row: &[u8], x: &ActRow<'_>) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut summs = 0.0f32;
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
        summs = fold_min1(summs, -dy * f16_le(b.dmin), &summ);
    }
    hsum8_ref(&acc) + summs
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
    use crate::kq::x86::{bsums_madd, fold, fold_min1, mins_dup16, scales_dup16};
    use crate::x86::{f16_to_f32_f16c, hsum8, madd_acc_avx2, madd_acc_avxvnni, prefetch_ahead};

    macro_rules! matvec {
        ($name:ident, $feat:literal, $madd_acc:ident) => {
            /// k-input Q5_K × Q8_K kernel (weights unpacked once per block for all tokens).
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
                let mut summs = [0.0f32; N];
                let m4 = _mm256_set1_epi8(0x0F);
                let sixteen = _mm256_set1_epi8(16);
                for (i, b) in blocks(row).iter().enumerate() {
                    prefetch_ahead::<3>(b.d.as_ptr());
                    let (sc, m) = crate::kq::scale_min_k4(&b.scales);
                    let mins = mins_dup16(&m);
                    let qh = _mm256_loadu_si256(b.qh.as_ptr() as *const __m256i);
                    let mut w = [_mm256_setzero_si256(); 8];
                    let s = scales_dup16(&sc);
                    for v in 0..8 {
                        let q =
                            _mm256_loadu_si256(b.qs.as_ptr().add(32 * (v / 2)) as *const __m256i);
                        let lo = if v % 2 == 0 {
                            _mm256_and_si256(q, m4)
                        } else {
                            _mm256_and_si256(_mm256_srli_epi16(q, 4), m4)
                        };
                        let bit = _mm256_set1_epi8(1 << v);
                        let hb = _mm256_and_si256(
                            _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit),
                            sixteen,
                        );
                        w[v] = _mm256_or_si256(lo, hb);
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
                        summs[t] = fold_min1(summs[t], -dy * dminx, summ);
                    }
                }
                for t in 0..N {
                    out[t] = hsum8(acc[t]) + summs[t];
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
    use crate::kq::x86::{
        bsums_madd, fold, fold16, fold_min1, mins_dup16, scaled_dot256, up16_index,
    };
    use crate::x86::{f16_to_f32_f16c, hsum8, prefetch_ahead};

    /// k-input Q5_K × Q8_K kernel with 512-bit integer work (`kq::x86::scaled_dot256`).
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C must be available; lengths as in `avx2`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn matvec<const N: usize>(row: &[u8], x: &[ActRow<'_>; N], out: &mut [f32; N]) {
        let mut acc = [_mm256_setzero_ps(); N];
        let mut summs = [0.0f32; N];
        let m4 = _mm512_set1_epi8(0x0F);
        let sixteen = _mm512_set1_epi8(16);
        // Word indices into sc16 of the scale pairs: s01 dword m = (sc[m/8], sc[2 + m/8]),
        // s23 = (sc[4 + m/8], sc[6 + m/8]) (as in Q4_K).
        let sidx = [0, 4].map(|b| {
            _mm512_mask_blend_epi16(
                0xFFFF_0000,
                _mm512_set1_epi32(b | ((b + 2) << 16)),
                _mm512_set1_epi32((b + 1) | ((b + 3) << 16)),
            )
        });
        let up16 = up16_index();
        for (i, b) in blocks(row).iter().enumerate() {
            // 3 lines per 176-byte block (as Q4_K's 2 per 144 and Q6_K's 4 per 210).
            prefetch_ahead::<3>(b.d.as_ptr());
            let (sc, m) = crate::kq::scale_min_k4(&b.scales);
            let mins = mins_dup16(&m);
            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(b.qh.as_ptr() as *const __m256i));
            let mut w = [_mm512_setzero_si512(); 4];
            for p in 0..2 {
                let q = _mm512_loadu_si512(b.qs.as_ptr().add(64 * p) as *const __m512i);
                let lo = _mm512_and_si512(q, m4);
                let hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
                w[2 * p] = _mm512_shuffle_i64x2(lo, hi, 0x44);
                w[2 * p + 1] = _mm512_shuffle_i64x2(lo, hi, 0xEE);
            }
            for (v, wv) in w.iter_mut().enumerate() {
                // w[v] = elements 64v..64v+63: its first 32 take bit 2v of qh, the rest 2v+1.
                let bits = _mm512_mask_blend_epi8(
                    0xFFFF_FFFF_0000_0000,
                    _mm512_set1_epi8(1 << (2 * v)),
                    _mm512_set1_epi8(1 << (2 * v + 1)),
                );
                let k = _mm512_test_epi8_mask(qh, bits);
                *wv = _mm512_mask_add_epi8(*wv, k, *wv, sixteen);
            }
            let sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_loadl_epi64(
                sc.as_ptr() as *const __m128i
            )));
            let (s01, s23) = (
                _mm512_permutexvar_epi16(sidx[0], sc16),
                _mm512_permutexvar_epi16(sidx[1], sc16),
            );
            let (dx, dminx) = (f16_to_f32_f16c(b.d), f16_to_f32_f16c(b.dmin));
            for t in 0..N {
                let q8 = x[t].qs.as_ptr().add(256 * i);
                let sumi = scaled_dot256(&w, q8, s01, s23, up16);
                let summ = bsums_madd(x[t].bsums.as_ptr().add(16 * i), mins);
                let dy = *x[t].d.get_unchecked(i);
                acc[t] = fold(acc[t], dy * dx, fold16(sumi));
                summs[t] = fold_min1(summs[t], -dy * dminx, summ);
            }
        }
        for t in 0..N {
            out[t] = hsum8(acc[t]) + summs[t];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::GgmlType;

    #[test]
    fn dequantize_follows_the_spec_formulas_on_a_crafted_block() {
        let mut b = BlockQ5K::zeroed();
        b.d = 0x4000u16.to_le_bytes(); // 2.0
        b.dmin = 0x3c00u16.to_le_bytes(); // 1.0
        b.scales[1] = 4; // sc1 = 4 (sub-block 1: elements 32..63)
        b.scales[5] = 6; // m1 = 6
        b.scales[2] = 1; // sc2 = 1 (sub-block 2: elements 64..95), m2 = 0
        b.qs[0] = 0x70; // element 32 low 4 bits = 7
        b.qh[0] = 0b0000_0110; // element 32 gets bit 1 (+16); element 64 (chunk 1 low) bit 2 (+16)
        b.qs[32] = 0x03; // element 64 low bits = 3
        let mut y = [0.0f32; 256];
        crate::dequantize_row(GgmlType::Q5_K, bytemuck::bytes_of(&b), &mut y);
        assert_eq!(y[0], 0.0); // sc0 = m0 = 0
        assert_eq!(y[32], 2.0 * 4.0 * 23.0 - 6.0); // q = 7 + 16
        assert_eq!(y[33], -6.0);
        assert_eq!(y[64], 2.0 * 19.0); // q = 3 + 16
        assert_eq!(y[96], 0.0); // sub-block 3: sc3 = 0
    }

    #[test]
    fn every_isa_matches_the_reference_and_widths_agree_bitwise() {
        check_format(
            GgmlType::Q5_K,
            &mut |rng, kind| {
                let mut b = BlockQ5K::zeroed();
                b.d = rand_scale(rng, kind);
                b.dmin = rand_scale(rng, kind);
                rng.fill(&mut b.scales);
                match kind {
                    BlockKind::AllMax => {
                        b.qs.fill(0xFF);
                        b.qh.fill(0xFF);
                    }
                    BlockKind::AllZero => {}
                    _ => {
                        rng.fill(&mut b.qs);
                        rng.fill(&mut b.qh);
                    }
                }
                bytemuck::bytes_of(&b).to_vec()
            },
            &|bytes| {
                let b: &BlockQ5K = bytemuck::from_bytes(bytes);
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
