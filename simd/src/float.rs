//! F32, F16 and BF16 weights, dotted with activations of the same type (F16/BF16 activations
//! are rounded first, as llama.cpp's mul_mat does before `ggml_vec_dot_f16`/`_bf16`).
//!
//! Canonical float order (all ISAs, any k): llama.cpp's AVX2 `ggml_vec_dot_{f32,f16,bf16}`
//! (`ggml-cpu/vec.cpp`, checked against the wheel's disassembly, where GCC contracts the
//! BF16 loop's `add(mul(a, b), c)` into an fma too). 4×8 f32 lanes, for each 32-element
//! chunk j `acc[l] = fma(w[32j+l], x[32j+l], acc[l])`; then 8 lanes
//! `r[l] = (acc[l] + acc[16+l]) + (acc[8+l] + acc[24+l])`, `t[i] = r[i] + r[i+4]` and
//! * F32/F16 (two `hadd`s): `(t0 + t1) + (t2 + t3)`;
//! * BF16 (`movehl` + `movehdup`): `(t0 + t2) + (t1 + t3)`.
//!
//! The `cols % 32` leftover elements, in order: F32 adds the products of the first
//! `rem & !3` of them unfused (`s = s + w·x`, GCC's vectorised tail) and fuses the last
//! `rem & 3` (`s = fma(w, x, s)`); F16/BF16 add each f32 product in f64 and round once.

use crate::acts::ActRow;
use crate::floats::{bf16_to_f32, f16_to_f32};
use crate::kernels::{kernels_of, Kernels};
use crate::{GgmlType, Isa};

fn halves(data: &[u8]) -> impl Iterator<Item = u16> + '_ {
    data.chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
}

/// `ggml_fp16_to_fp32_row` / `ggml_bf16_to_fp32_row` / a copy.
pub(crate) fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => out
            .iter_mut()
            .zip(halves(data))
            .for_each(|(o, h)| *o = f16_to_f32(h)),
        GgmlType::BF16 => out
            .iter_mut()
            .zip(halves(data))
            .for_each(|(o, h)| *o = bf16_to_f32(h)),
        _ => unreachable!("float::dequantize called for {ty}"),
    }
}

/// Weight element `e` of a row of type `ty` as f32.
#[inline]
fn w_at(ty: GgmlType, row: &[u8], e: usize) -> f32 {
    match ty {
        GgmlType::F32 => {
            f32::from_le_bytes([row[4 * e], row[4 * e + 1], row[4 * e + 2], row[4 * e + 3]])
        }
        GgmlType::F16 => f16_to_f32(u16::from_le_bytes([row[2 * e], row[2 * e + 1]])),
        _ => bf16_to_f32(u16::from_le_bytes([row[2 * e], row[2 * e + 1]])),
    }
}

#[inline]
fn x_at(ty: GgmlType, x: &ActRow<'_>, e: usize) -> f32 {
    match ty {
        GgmlType::F32 => x.f[e],
        GgmlType::F16 => f16_to_f32(x.h[e]),
        _ => bf16_to_f32(x.h[e]),
    }
}

/// The 32-lane reduction (see the module doc); BF16 ends with the `hsum8` tree.
pub(crate) fn reduce32(ty: GgmlType, acc: &[f32; 32]) -> f32 {
    let r: [f32; 8] = std::array::from_fn(|l| (acc[l] + acc[16 + l]) + (acc[8 + l] + acc[24 + l]));
    let t: [f32; 4] = std::array::from_fn(|i| r[i] + r[i + 4]);
    if ty == GgmlType::BF16 {
        (t[0] + t[2]) + (t[1] + t[3])
    } else {
        (t[0] + t[1]) + (t[2] + t[3])
    }
}

/// Adds the leftover elements `n32..n` to the reduced sum, as the module doc says.
#[inline]
pub(crate) fn finish(ty: GgmlType, reduced: f32, row: &[u8], x: &ActRow<'_>, n32: usize) -> f32 {
    let n = row.len() / ty.block_bytes();
    if ty == GgmlType::F32 {
        let unfused_end = n32 + (n - n32) / 4 * 4;
        let mut s = reduced;
        for e in n32..unfused_end {
            s += w_at(ty, row, e) * x_at(ty, x, e);
        }
        for e in unfused_end..n {
            s = w_at(ty, row, e).mul_add(x_at(ty, x, e), s);
        }
        s
    } else {
        let mut s = reduced as f64;
        for e in n32..n {
            s += (w_at(ty, row, e) * x_at(ty, x, e)) as f64;
        }
        s as f32
    }
}

/// Scalar reference dot in the canonical order.
pub(crate) fn dot_ref(ty: GgmlType, row: &[u8], x: &ActRow<'_>) -> f32 {
    let n = row.len() / ty.block_bytes();
    let n32 = n / 32 * 32;
    let mut acc = [0.0f32; 32];
    for j in (0..n32).step_by(32) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a = w_at(ty, row, j + l).mul_add(x_at(ty, x, j + l), *a);
        }
    }
    finish(ty, reduce32(ty, &acc), row, x, n32)
}

macro_rules! scalar_kernel {
    ($name:ident, $ty:expr) => {
        /// # Safety
        /// Same contract as `kernels::KernelFn` (no ISA requirement).
        unsafe fn $name<const N: usize>(row: &[u8], x: &[ActRow<'_>; N], out: &mut [f32; N]) {
            for t in 0..N {
                out[t] = dot_ref($ty, row, &x[t]);
            }
        }
    };
}
scalar_kernel!(scalar_f32, GgmlType::F32);
scalar_kernel!(scalar_f16, GgmlType::F16);
scalar_kernel!(scalar_bf16, GgmlType::BF16);

pub(crate) fn kernels(ty: GgmlType, isa: Isa) -> Kernels {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Scalar {
        // One 256-bit path serves every SIMD tier: these tensors are small.
        return match ty {
            GgmlType::F32 => kernels_of!(avx2::matvec_f32),
            GgmlType::F16 => kernels_of!(avx2::matvec_f16),
            _ => kernels_of!(avx2::matvec_bf16),
        };
    }
    let _ = isa;
    match ty {
        GgmlType::F32 => kernels_of!(scalar_f32),
        GgmlType::F16 => kernels_of!(scalar_f16),
        _ => kernels_of!(scalar_bf16),
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{finish, ActRow};
    use crate::x86::hsum8;
    use crate::GgmlType;

    /// # Safety
    /// AVX2 + F16C; `p` points at 8 readable f16.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load_f16(p: *const u8) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }

    /// # Safety
    /// AVX2; `p` points at 8 readable bf16.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load_bf16(p: *const u8) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)),
            16,
        ))
    }

    /// # Safety
    /// AVX2; `p` points at 8 readable f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load_f32(p: *const u8) -> __m256 {
        _mm256_loadu_ps(p as *const f32)
    }

    /// The 32-lane reduction of `reduce32` on four accumulators.
    ///
    /// # Safety
    /// AVX2 must be available.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn reduce4x8(ty: GgmlType, a: &[__m256; 4]) -> f32 {
        let r = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
        if ty == GgmlType::BF16 {
            return hsum8(r);
        }
        let t = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
        let h = _mm_hadd_ps(t, t);
        _mm_cvtss_f32(_mm_hadd_ps(h, h))
    }

    macro_rules! matvec {
        ($name:ident, $ty:expr, $load:ident, $xs:ident, $xbytes:expr) => {
            /// k-input float kernel: each 8-weight vector is converted once for all tokens.
            ///
            /// # Safety
            /// AVX2, FMA and F16C must be available; each `x[t]` holds one value per weight.
            #[target_feature(enable = "avx2,fma,f16c")]
            pub unsafe fn $name<const N: usize>(
                row: &[u8],
                x: &[ActRow<'_>; N],
                out: &mut [f32; N],
            ) {
                let wb = $ty.block_bytes();
                let n = row.len() / wb;
                let n32 = n / 32 * 32;
                let mut acc = [[_mm256_setzero_ps(); 4]; N];
                for j in (0..n32).step_by(32) {
                    for q in 0..4 {
                        let e = j + 8 * q;
                        let w = $load(row.as_ptr().add(e * wb));
                        for t in 0..N {
                            let xv = $load((x[t].$xs.as_ptr() as *const u8).add(e * $xbytes));
                            acc[t][q] = _mm256_fmadd_ps(w, xv, acc[t][q]);
                        }
                    }
                }
                for t in 0..N {
                    out[t] = finish($ty, reduce4x8($ty, &acc[t]), row, &x[t], n32);
                }
            }
        };
    }
    matvec!(matvec_f32, GgmlType::F32, load_f32, f, 4);
    matvec!(matvec_f16, GgmlType::F16, load_f16, h, 2);
    matvec!(matvec_bf16, GgmlType::BF16, load_bf16, h, 2);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floats::{f32_to_bf16, f32_to_f16};
    use crate::testutil::*;

    #[test]
    fn float_rows_dequantize_exactly() {
        let mut y = [0.0f32; 3];
        crate::dequantize_row(GgmlType::F16, &[0x00, 0x3c, 0xff, 0x7b, 0x00, 0xc0], &mut y);
        assert_eq!(y, [1.0, 65504.0, -2.0]);
        crate::dequantize_row(
            GgmlType::BF16,
            &[0x80, 0x3f, 0x40, 0xc0, 0x00, 0x00],
            &mut y,
        );
        assert_eq!(y, [1.0, -3.0, 0.0]);
        let mut y1 = [0.0f32; 1];
        crate::dequantize_row(GgmlType::F32, &1.5f32.to_le_bytes(), &mut y1);
        assert_eq!(y1, [1.5]);
    }

    fn gen(ty: GgmlType) -> impl FnMut(&mut Rng, BlockKind) -> Vec<u8> {
        move |rng, kind| {
            let v = match kind {
                BlockKind::HugeScale => 65504.0 * rng.unit(),
                BlockKind::TinyScale => 1e-7 * rng.unit(),
                BlockKind::ZeroScale | BlockKind::AllZero => 0.0,
                BlockKind::AllMax => 1.0,
                BlockKind::Random => rng.unit(),
            };
            match ty {
                GgmlType::F32 => v.to_le_bytes().to_vec(),
                GgmlType::F16 => f32_to_f16(v).to_le_bytes().to_vec(),
                _ => f32_to_bf16(v).to_le_bytes().to_vec(),
            }
        }
    }

    fn deq(ty: GgmlType) -> impl Fn(&[u8]) -> Vec<(f64, f64)> {
        move |b| {
            let mut y = [0.0f32];
            dequantize(ty, b, &mut y);
            vec![(y[0] as f64, (y[0] as f64).abs())]
        }
    }

    #[test]
    fn every_isa_matches_the_reference_and_widths_agree_bitwise_f32() {
        check_format(GgmlType::F32, &mut gen(GgmlType::F32), &deq(GgmlType::F32));
    }

    #[test]
    fn every_isa_matches_the_reference_and_widths_agree_bitwise_f16() {
        check_format(GgmlType::F16, &mut gen(GgmlType::F16), &deq(GgmlType::F16));
    }

    #[test]
    fn every_isa_matches_the_reference_and_widths_agree_bitwise_bf16() {
        check_format(
            GgmlType::BF16,
            &mut gen(GgmlType::BF16),
            &deq(GgmlType::BF16),
        );
    }
}
