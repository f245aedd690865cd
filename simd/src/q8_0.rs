//! Q8_0 weights (32 per block, 34 bytes) dotted with Q8_0 activations.
//! Layout: spec/gguf-quant-formats.md §3.1, §4.2.
//!
//! Canonical float order (all ISAs, any k): 8 f32 lanes `acc`; per block, lane l gets the
//! exact sum of the 4 products of elements 4l..4l+3, then
//! `acc[l] = fma(f32(x.d)·f32(y.d), f32(sumi[l]), acc[l])`; the result is `hsum8`. That is
//! llama.cpp's AVX2 `ggml_vec_dot_q8_0_q8_0` (8 lanes, one fma per block).

use bytemuck::{Pod, Zeroable};

use crate::acts::ActRow;
use crate::floats::f16_le;
use crate::kernels::{kernels_of, Kernels};
use crate::kq::hsum8_ref;
use crate::Isa;

/// One Q8_0 block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// f16 scale.
    pub d: [u8; 2],
    pub qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

fn blocks(data: &[u8]) -> &[BlockQ8_0] {
    // Cannot fail: callers pass whole blocks, and the block has alignment 1.
    bytemuck::cast_slice(data)
}

/// `dequantize_row_q8_0`: `y = f32(d) · q`.
pub(crate) fn dequantize(data: &[u8], out: &mut [f32]) {
    for (b, y) in blocks(data).iter().zip(out.chunks_exact_mut(32)) {
        let d = f16_le(b.d);
        for (v, &q) in y.iter_mut().zip(&b.qs) {
            *v = d * q as f32;
        }
    }
}

/// `dequantize_row_q8_K`: `y = d · q` with the f32 `d` of each 292-byte block.
pub(crate) fn dequantize_q8_k(data: &[u8], out: &mut [f32]) {
    for (b, y) in data.chunks_exact(292).zip(out.chunks_exact_mut(256)) {
        let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        for (v, &q) in y.iter_mut().zip(&b[4..260]) {
            *v = d * q as i8 as f32;
        }
    }
}

/// Scalar reference dot of one row with one Q8_0 token, in the canonical order.
pub(crate) fn dot_ref(row: &[u8], x: &ActRow<'_>) -> f32 {
    let mut acc = [0.0f32; 8];
    for (i, b) in blocks(row).iter().enumerate() {
        let y = &x.qs[32 * i..32 * i + 32];
        let d = f16_le(b.d) * x.d[i];
        for (l, a) in acc.iter_mut().enumerate() {
            let s: i32 = (4 * l..4 * l + 4)
                .map(|e| b.qs[e] as i32 * y[e] as i32)
                .sum();
            *a = d.mul_add(s as f32, *a);
        }
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
        Isa::Avx512 | Isa::Amx => return kernels_of!(avx2::matvec_avx512),
    }
    let _ = isa;
    kernels_of!(matvec_scalar)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{blocks, ActRow};
    use crate::x86::{dpbusd_avx2, dpbusd_avxvnni, f16_to_f32_f16c, hsum8, prefetch_ahead};

    /// `acc + Σ4 u8·i8` with the EVEX (AVX512-VNNI + VL) `vpdpbusd` on 256-bit vectors.
    ///
    /// # Safety
    /// AVX512-VNNI and AVX512-VL must be available.
    #[target_feature(enable = "avx512vnni,avx512vl,avx2")]
    #[inline]
    unsafe fn dpbusd_avx512vl(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, s)
    }

    macro_rules! matvec {
        ($name:ident, $feat:literal, $dpbusd:ident) => {
            /// k-input Q8_0 × Q8_0 kernel: |w| is computed once per block, each token pays a
            /// sign flip and one (emulated) `vpdpbusd`.
            ///
            /// # Safety
            /// The target features must be available; `row` is whole blocks and each `x[t]`
            /// holds `32 · blocks` quants and one `d` per block.
            #[target_feature(enable = $feat)]
            pub unsafe fn $name<const N: usize>(
                row: &[u8],
                x: &[ActRow<'_>; N],
                out: &mut [f32; N],
            ) {
                let mut acc = [_mm256_setzero_ps(); N];
                for (i, b) in blocks(row).iter().enumerate() {
                    // One line per 34-byte block: every line of the row, most of them twice.
                    prefetch_ahead::<1>(b.d.as_ptr());
                    let w = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
                    // |w| as u8 (|-128| = 128 fits) and the sign moved onto the activation.
                    let aw = _mm256_sign_epi8(w, w);
                    let dx = f16_to_f32_f16c(b.d);
                    for t in 0..N {
                        let y = _mm256_loadu_si256(x[t].qs.as_ptr().add(32 * i) as *const __m256i);
                        let sumi = $dpbusd(_mm256_setzero_si256(), aw, _mm256_sign_epi8(y, w));
                        let d = _mm256_set1_ps(dx * *x[t].d.get_unchecked(i));
                        acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc[t]);
                    }
                }
                for t in 0..N {
                    out[t] = hsum8(acc[t]);
                }
            }
        };
    }
    matvec!(matvec_plain, "avx2,fma,f16c", dpbusd_avx2);
    matvec!(matvec_vnni, "avx2,fma,f16c,avxvnni", dpbusd_avxvnni);
    matvec!(
        matvec_avx512,
        "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        dpbusd_avx512vl
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::GgmlType;

    #[test]
    fn dequantize_follows_the_spec_formulas_on_a_crafted_block() {
        let mut b = BlockQ8_0::zeroed();
        b.d = 0x3400u16.to_le_bytes(); // 0.25
        b.qs[0] = -128;
        b.qs[5] = 127;
        b.qs[31] = -3;
        let mut y = [1.0f32; 32];
        crate::dequantize_row(GgmlType::Q8_0, bytemuck::bytes_of(&b), &mut y);
        assert_eq!((y[0], y[5], y[31], y[1]), (-32.0, 31.75, -0.75, 0.0));
    }

    #[test]
    fn q8_k_blocks_dequantize_as_d_times_q() {
        let mut blk = vec![0u8; 292];
        blk[..4].copy_from_slice(&(-0.5f32).to_le_bytes());
        blk[4] = 0x81; // -127
        blk[259] = 10;
        let mut y = [0.0f32; 256];
        crate::dequantize_row(GgmlType::Q8_K, &blk, &mut y);
        assert_eq!((y[0], y[255], y[1]), (63.5, -5.0, -0.0));
    }

    #[test]
    fn every_isa_matches_the_reference_and_widths_agree_bitwise() {
        check_format(
            GgmlType::Q8_0,
            &mut |rng, kind| {
                let mut b = BlockQ8_0::zeroed();
                b.d = rand_scale(rng, kind);
                match kind {
                    BlockKind::AllMax => b.qs = [-128; 32],
                    BlockKind::AllZero => {}
                    _ => {
                        let mut q = [0u8; 32];
                        rng.fill(&mut q);
                        b.qs = q.map(|v| v as i8);
                    }
                }
                bytemuck::bytes_of(&b).to_vec()
            },
            &|bytes| {
                let b: &BlockQ8_0 = bytemuck::from_bytes(bytes);
                let d = f16_le(b.d) as f64;
                b.qs.iter()
                    .map(|&q| (d * q as f64, (d * q as f64).abs()))
                    .collect()
            },
        );
    }
}
