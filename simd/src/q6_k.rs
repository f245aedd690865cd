//! Q6_K weights (256 per block, 210 bytes) dotted with Q8_K activations.
//! Layout and formulas: spec/gguf-quant-formats.md §3.4, §4.4.
//!
//! Canonical float order (all ISAs): as `kq.rs` without a min term. The integer lane sums use
//! the unsigned value u = q + 32 ∈ [0, 63] (so `maddubs` can take it) and then subtract, per
//! lane l, `32 · (bsums[2l]·sc[2l] + bsums[2l+1]·sc[2l+1])`. The lane values differ from a
//! "true" per-lane split but their total is the exact Σ sc·q·q8, and every ISA computes the
//! same lane values, then `acc = fma(d_y·d_x, f32(sumi), acc)` as llama.cpp's AVX2 kernel.

use bytemuck::{Pod, Zeroable};

use crate::acts::ActRow;
use crate::floats::f16_le;
use crate::kernels::{kernels_of, Kernels};
use crate::kq::{fold_block, hsum8_ref, lane};
use crate::Isa;

/// One Q6_K super-block. Note the scale comes last.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6K {
    /// Low 4 bits of the quants.
    pub ql: [u8; 128],
    /// High 2 bits, four per byte.
    pub qh: [u8; 64],
    /// int8 scales of the sixteen 16-element sub-blocks.
    pub scales: [i8; 16],
    /// f16 super-scale.
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

fn blocks(data: &[u8]) -> &[BlockQ6K] {
    // Cannot fail: callers pass whole blocks, and the block has alignment 1.
    bytemuck::cast_slice(data)
}

/// The unsigned 6-bit value (q + 32) of element `e` of a block (spec §3.4 table).
#[inline]
pub(crate) fn u_of(b: &BlockQ6K, e: usize) -> u8 {
    let (n, w) = (e / 128, e % 128);
    let (part, l) = (w / 32, w % 32);
    let lq = &b.ql[64 * n..64 * n + 64];
    let h = b.qh[32 * n + l];
    let low = match part {
        0 => lq[l] & 0xF,
        1 => lq[l + 32] & 0xF,
        2 => lq[l] >> 4,
        _ => lq[l + 32] >> 4,
    };
    low | ((h >> (2 * part)) & 3) << 4
}

/// `dequantize_row_q6_K`: `y = d · sc · q` evaluated left to right in f32.
pub(crate) fn dequantize(data: &[u8], out: &mut [f32]) {
    for (b, y) in blocks(data).iter().zip(out.chunks_exact_mut(256)) {
        let d = f16_le(b.d);
        for (e, v) in y.iter_mut().enumerate() {
            *v = d * b.scales[e / 16] as f32 * (u_of(b, e) as i32 - 32) as f32;
        }
    }
}

/// Scalar reference dot of one row with one Q8_K token, in the canonical order.
pub(crate) fn dot_ref(row: &[u8], x: &ActRow<'_>) -> f32 {
    let mut acc = [0.0f32; 8];
    for (i, b) in blocks(row).iter().enumerate() {
        let q8 = &x.qs[256 * i..256 * i + 256];
        let bs = &x.bsums[16 * i..16 * i + 16];
        let mut sumi = [0i32; 8];
        for e in 0..256 {
            sumi[lane(e)] += b.scales[e / 16] as i32 * u_of(b, e) as i32 * q8[e] as i32;
        }
        for l in 0..8 {
            sumi[l] -= 32
                * (bs[2 * l] as i32 * b.scales[2 * l] as i32
                    + bs[2 * l + 1] as i32 * b.scales[2 * l + 1] as i32);
        }
        fold_block(&mut acc, x.d[i] * f16_le(b.d), &sumi);
    }
    hsum8_ref(&acc)
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
    use crate::kq::x86::{bsums_madd, fold};
    use crate::x86::{f16_to_f32_f16c, hsum8, madd_acc_avx2, madd_acc_avxvnni, prefetch_ahead};

    macro_rules! matvec {
        ($name:ident, $feat:literal, $madd_acc:ident) => {
            /// k-input Q6_K × Q8_K kernel (weights unpacked once per block for all tokens).
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
                let m4 = _mm256_set1_epi8(0x0F);
                let m30 = _mm256_set1_epi8(0x30);
                for (i, b) in blocks(row).iter().enumerate() {
                    prefetch_ahead::<4>(b.ql.as_ptr());
                    let mut w = [_mm256_setzero_si256(); 8];
                    let mut s = [_mm256_setzero_si256(); 8];
                    for n in 0..2 {
                        let l0 = _mm256_loadu_si256(b.ql.as_ptr().add(64 * n) as *const __m256i);
                        let l1 =
                            _mm256_loadu_si256(b.ql.as_ptr().add(64 * n + 32) as *const __m256i);
                        let h = _mm256_loadu_si256(b.qh.as_ptr().add(32 * n) as *const __m256i);
                        w[4 * n] = _mm256_or_si256(
                            _mm256_and_si256(l0, m4),
                            _mm256_and_si256(_mm256_slli_epi16(h, 4), m30),
                        );
                        w[4 * n + 1] = _mm256_or_si256(
                            _mm256_and_si256(l1, m4),
                            _mm256_and_si256(_mm256_slli_epi16(h, 2), m30),
                        );
                        w[4 * n + 2] = _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                            _mm256_and_si256(h, m30),
                        );
                        w[4 * n + 3] = _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                            _mm256_and_si256(_mm256_srli_epi16(h, 2), m30),
                        );
                    }
                    let sc16 =
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(b.scales.as_ptr() as *const __m128i));
                    // s[v]: scale 2v in the low 128-bit lane, 2v + 1 in the high one, from
                    // sc16's low (v < 4) or high (v >= 4) half in both lanes and one in-lane
                    // shuffle (not 16 scalar broadcasts).
                    let halves = [
                        _mm256_permute2x128_si256::<0x00>(sc16, sc16),
                        _mm256_permute2x128_si256::<0x11>(sc16, sc16),
                    ];
                    for v in 0..8 {
                        let j = (2 * v % 8) as i16; // int16 lane of scale 2v in its half
                        let lo = 0x0100 + 0x0202 * j;
                        let hi = 0x0100 + 0x0202 * (j + 1);
                        let mask = _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo));
                        s[v] = _mm256_shuffle_epi8(halves[v / 4], mask);
                    }
                    let dx = f16_to_f32_f16c(b.d);
                    for t in 0..N {
                        let q8 = x[t].qs.as_ptr().add(256 * i);
                        let mut sumi = _mm256_setzero_si256();
                        for v in 0..8 {
                            let y = _mm256_loadu_si256(q8.add(32 * v) as *const __m256i);
                            sumi = $madd_acc(sumi, _mm256_maddubs_epi16(w[v], y), s[v]);
                        }
                        let corr = bsums_madd(x[t].bsums.as_ptr().add(16 * i), sc16);
                        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 5));
                        acc[t] = fold(acc[t], *x[t].d.get_unchecked(i) * dx, sumi);
                    }
                }
                for t in 0..N {
                    out[t] = hsum8(acc[t]);
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
    use crate::kq::x86::{bsums_madd, fold, fold16, scaled_dot256, up16_index};
    use crate::x86::{f16_to_f32_f16c, hsum8, prefetch_ahead};

    /// `vpermw` indices of the scale pairs: `s01` dword m = `(sc[m/4], sc[4 + m/4])` (the
    /// scales of `P_0[m]`, `P_1[m]`: lane m of vector v covers elements 64v+4m.., scale
    /// index 4v + m/4), `s23` dword m = `(sc[8 + m/4], sc[12 + m/4])`.
    static SCALE_IDX: [i16; 64] = {
        let mut a = [0i16; 64];
        let mut i = 0;
        while i < 64 {
            let (pair, m, second) = (i / 32, (i % 32) / 2, i % 2);
            a[i] = (8 * pair + 4 * second + m / 4) as i16;
            i += 1;
        }
        a
    };

    /// k-input Q6_K × Q8_K kernel with 512-bit integer work: `kq::x86::scaled_dot256` on
    /// the unsigned 6-bit quants (the −32 offset is subtracted through the bsums, as in AVX2).
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C must be available; lengths as in `avx2`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn matvec<const N: usize>(row: &[u8], x: &[ActRow<'_>; N], out: &mut [f32; N]) {
        let mut acc = [_mm256_setzero_ps(); N];
        let m4 = _mm512_set1_epi8(0x0F);
        let m30 = _mm512_set1_epi8(0x30);
        // w[2n]: first half shifts the 2 high bits from bits 0-1 (<<4), second from 2-3 (<<2);
        // w[2n+1]: from bits 4-5 (no shift) and 6-7 (>>2).
        let shl = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4);
        let shr = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
        let idx =
            [0, 1].map(|v| _mm512_loadu_si512(SCALE_IDX.as_ptr().add(32 * v) as *const __m512i));
        let up16 = up16_index();
        for (i, b) in blocks(row).iter().enumerate() {
            // 4 lines cover a 210-byte block wherever it starts. Without it the weights
            // streamed 5% slower in the 2-thread decode of the dev VM (hardware prefetchers
            // alone); 3 lines or `prefetcht1`/`t2` measured the same as this.
            prefetch_ahead::<4>(b.ql.as_ptr());
            let mut w = [_mm512_setzero_si512(); 4];
            for n in 0..2 {
                let l = _mm512_loadu_si512(b.ql.as_ptr().add(64 * n) as *const __m512i);
                let h = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                    b.qh.as_ptr().add(32 * n) as *const __m256i
                ));
                w[2 * n] = _mm512_or_si512(
                    _mm512_and_si512(l, m4),
                    _mm512_and_si512(_mm512_sllv_epi64(h, shl), m30),
                );
                w[2 * n + 1] = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                    _mm512_and_si512(_mm512_srlv_epi64(h, shr), m30),
                );
            }
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.scales.as_ptr() as *const __m128i));
            let sc512 = _mm512_castsi256_si512(sc16);
            let s = [0, 1].map(|v| _mm512_permutexvar_epi16(idx[v], sc512));
            let dx = f16_to_f32_f16c(b.d);
            for t in 0..N {
                let q8 = x[t].qs.as_ptr().add(256 * i);
                let sumi = scaled_dot256(&w, q8, s[0], s[1], up16);
                let corr = bsums_madd(x[t].bsums.as_ptr().add(16 * i), sc16);
                let sumi = _mm256_sub_epi32(fold16(sumi), _mm256_slli_epi32(corr, 5));
                acc[t] = fold(acc[t], *x[t].d.get_unchecked(i) * dx, sumi);
            }
        }
        for t in 0..N {
            out[t] = hsum8(acc[t]);
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
        let mut b = BlockQ6K::zeroed();
        b.d = 0x3800u16.to_le_bytes(); // 0.5
        b.scales[0] = 3;
        b.scales[2] = -2; // sub-block 2: elements 32..47
        b.scales[6] = 5; // sub-block 6: elements 96..111
        b.scales[8] = 7; // sub-block 8: elements 128..143 (second half)
        b.ql[0] = 0x5A; // element 0 low = 0xA, element 64 low = 0x5
        b.ql[32] = 0x0C; // element 32 low = 0xC, element 96 low = 0
        b.qh[0] = 0b11_10_01_00; // el 0: 0, el 32: 1, el 64: 2, el 96: 3
        b.ql[64] = 0x01; // second half, element 128 low = 1
        b.qh[32] = 0b11; // element 128 high bits = 3
        let mut y = [0.0f32; 256];
        crate::dequantize_row(GgmlType::Q6_K, bytemuck::bytes_of(&b), &mut y);
        assert_eq!(y[0], 0.5 * 3.0 * (10.0 - 32.0)); // u = 0xA
        assert_eq!(y[32], 0.5 * -2.0 * ((0xC + 16) as f32 - 32.0));
        assert_eq!(y[64], 0.0); // sub-block 4 scale 0
        assert_eq!(y[96], 0.5 * 5.0 * (48.0 - 32.0)); // u = 0, high bits 3
        assert_eq!(y[128], 0.5 * 7.0 * ((1 + 48) as f32 - 32.0));
        assert_eq!(y[1], 0.5 * 3.0 * -32.0);
    }

    #[test]
    fn every_isa_matches_the_reference_and_widths_agree_bitwise() {
        check_format(
            GgmlType::Q6_K,
            &mut |rng, kind| {
                let mut b = BlockQ6K::zeroed();
                b.d = rand_scale(rng, kind);
                let mut sc = [0u8; 16];
                rng.fill(&mut sc);
                b.scales = sc.map(|v| v as i8);
                if kind == BlockKind::AllMax {
                    b.scales = [-128; 16];
                }
                match kind {
                    BlockKind::AllMax => {
                        b.ql.fill(0xFF);
                        b.qh.fill(0xFF);
                    }
                    BlockKind::AllZero => {}
                    _ => {
                        rng.fill(&mut b.ql);
                        rng.fill(&mut b.qh);
                    }
                }
                bytemuck::bytes_of(&b).to_vec()
            },
            &|bytes| {
                let b: &BlockQ6K = bytemuck::from_bytes(bytes);
                let d = f16_le(b.d) as f64;
                (0..256)
                    .map(|e| {
                        let v = d * b.scales[e / 16] as f64 * (u_of(b, e) as f64 - 32.0);
                        (v, v.abs())
                    })
                    .collect()
            },
        );
    }
}
