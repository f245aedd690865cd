//! F32, F16 and BF16 weights, dotted with activations of the same type (F16/BF16 activations
//! are rounded first, as llama.cpp's `ggml_vec_dot_f16`/`_bf16` do).
//!
//! Canonical float order (all ISAs, any k): 8 f32 lanes, `acc[l] = fma(w[8j+l], x[8j+l],
//! acc[l])` for j = 0, 1, …, then `hsum8`, then the `cols % 8` leftover elements added in
//! order as `s = s + w·x` (separate multiply and add). llama.cpp's F16 AVX2 loop keeps 4×8
//! lanes and its BF16 AVX-512 path uses `vdpbf16ps`, so it differs from us in float order only.

use crate::acts::ActRow;
use crate::floats::{bf16_to_f32, f16_to_f32};
use crate::kernels::{kernels_of, Kernels};
use crate::kq::hsum8_ref;
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

/// Scalar reference dot in the canonical order.
pub(crate) fn dot_ref(ty: GgmlType, row: &[u8], x: &ActRow<'_>) -> f32 {
    let n = row.len() / ty.block_bytes();
    let mut acc = [0.0f32; 8];
    for j in 0..n / 8 {
        for l in 0..8 {
            let e = 8 * j + l;
            acc[l] = w_at(ty, row, e).mul_add(x_at(ty, x, e), acc[l]);
        }
    }
    let mut s = hsum8_ref(&acc);
    for e in n / 8 * 8..n {
        s += w_at(ty, row, e) * x_at(ty, x, e);
    }
    s
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

    use super::{w_at, x_at, ActRow};
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
                let mut acc = [_mm256_setzero_ps(); N];
                for j in 0..n / 8 {
                    let w = $load(row.as_ptr().add(8 * j * wb));
                    for t in 0..N {
                        let xv = $load((x[t].$xs.as_ptr() as *const u8).add(8 * j * $xbytes));
                        acc[t] = _mm256_fmadd_ps(w, xv, acc[t]);
                    }
                }
                for t in 0..N {
                    let mut s = hsum8(acc[t]);
                    for e in n / 8 * 8..n {
                        s += w_at($ty, row, e) * x_at($ty, &x[t], e);
                    }
                    out[t] = s;
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
