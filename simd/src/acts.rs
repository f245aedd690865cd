//! Activations converted to a weight type's vec-dot type, as llama.cpp's CPU backend does
//! before every matmul (spec gguf-quant-formats.md §4.1, §5):
//!
//! * K-quant weights → Q8_K by `quantize_row_q8_K_ref` (sign-flipped scale, `nearest_int`);
//! * Q8_0 weights → Q8_0 by the x86 AVX `quantize_row_q8_0` (`d = f16(amax/127)`,
//!   `q = round_half_even(x · 127/amax)`);
//! * F16 / BF16 weights → f16 / bf16 (round to nearest even); F32 → f32 unchanged.
//!
//! The layout is ours (struct of arrays, one token after another) because only our kernels
//! read it: `qs` int8 quants, `d` f32 block scales (for Q8_0 the value of the stored f16),
//! `bsums` the Q8_K 16-element sums, `h` f16/bf16 bits, `f` plain f32.

use crate::floats::{f16_to_f32, f32_to_bf16, f32_to_f16};
use crate::GgmlType;

/// One token's converted activations, borrowed by the kernels.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ActRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub bsums: &'a [i16],
    pub h: &'a [u16],
    pub f: &'a [f32],
}

/// Reusable buffer of k tokens × n columns converted for one weight type.
/// `quantize` reallocates only when a call needs more room than any call before.
#[derive(Clone, Debug, Default)]
pub struct QuantizedActs {
    weight_ty: Option<GgmlType>,
    k: usize,
    n: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    bsums: Vec<i16>,
    h: Vec<u16>,
    f: Vec<f32>,
}

/// Grows `v` to `len` (never shrinks) and returns the first `len` elements.
fn room<T: Copy + Default>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    if v.len() < len {
        v.resize(len, T::default());
    }
    &mut v[..len]
}

impl QuantizedActs {
    pub fn new() -> Self {
        Self::default()
    }

    /// The weight type these activations were converted for (`None` before the first call).
    pub fn weight_type(&self) -> Option<GgmlType> {
        self.weight_ty
    }

    /// Number of tokens.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns per token.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Converts `x` (k tokens × n columns, row-major) for a matmul with weights of type `ty`.
    ///
    /// Panics if `x.len() != k * n`, if `ty` is Q8_K (not a weight type) or if `n` is not a
    /// multiple of the block size of `ty`'s vec-dot type.
    pub fn quantize(&mut self, ty: GgmlType, x: &[f32], k: usize, n: usize) {
        assert_eq!(
            x.len(),
            k * n,
            "QuantizedActs::quantize: x has {} values, k*n = {}",
            x.len(),
            k * n
        );
        assert!(
            ty != GgmlType::Q8_K,
            "QuantizedActs::quantize: Q8_K is an activation type, not a weight type"
        );
        let be = vec_dot_block(ty);
        assert!(
            n % be == 0,
            "QuantizedActs::quantize: {n} columns is not a multiple of {be} ({ty} activations)"
        );
        self.weight_ty = Some(ty);
        self.k = k;
        self.n = n;
        match ty {
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
                let nb = k * n / 256;
                let qs = room(&mut self.qs, k * n);
                let d = room(&mut self.d, nb);
                let bs = room(&mut self.bsums, nb * 16);
                for (b, xb) in x.chunks_exact(256).enumerate() {
                    let qb: &mut [i8; 256] = (&mut qs[b * 256..b * 256 + 256])
                        .try_into()
                        .expect("256-element chunk");
                    let sb: &mut [i16; 16] = (&mut bs[b * 16..b * 16 + 16])
                        .try_into()
                        .expect("16-element chunk");
                    d[b] = quantize_block_q8_k(xb.try_into().expect("256-element chunk"), qb, sb);
                }
            }
            GgmlType::Q8_0 => {
                let nb = k * n / 32;
                let qs = room(&mut self.qs, k * n);
                let d = room(&mut self.d, nb);
                for (b, xb) in x.chunks_exact(32).enumerate() {
                    let qb: &mut [i8; 32] = (&mut qs[b * 32..b * 32 + 32])
                        .try_into()
                        .expect("32-element chunk");
                    d[b] = f16_to_f32(quantize_block_q8_0(
                        xb.try_into().expect("32-element chunk"),
                        qb,
                    ));
                }
            }
            GgmlType::F16 => {
                for (o, &v) in room(&mut self.h, k * n).iter_mut().zip(x) {
                    *o = f32_to_f16(v);
                }
            }
            GgmlType::BF16 => {
                for (o, &v) in room(&mut self.h, k * n).iter_mut().zip(x) {
                    *o = f32_to_bf16(v);
                }
            }
            GgmlType::F32 => room(&mut self.f, k * n).copy_from_slice(x),
            GgmlType::Q8_K => unreachable!("rejected above"),
        }
    }

    /// Token `t`'s converted row. Panics if `t >= k`.
    pub(crate) fn row(&self, t: usize) -> ActRow<'_> {
        assert!(t < self.k, "token {t} out of {} quantized tokens", self.k);
        let n = self.n;
        match self.weight_ty {
            Some(GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K) => {
                let nb = n / 256;
                ActRow {
                    qs: &self.qs[t * n..(t + 1) * n],
                    d: &self.d[t * nb..(t + 1) * nb],
                    bsums: &self.bsums[t * nb * 16..(t + 1) * nb * 16],
                    ..Default::default()
                }
            }
            Some(GgmlType::Q8_0) => {
                let nb = n / 32;
                ActRow {
                    qs: &self.qs[t * n..(t + 1) * n],
                    d: &self.d[t * nb..(t + 1) * nb],
                    ..Default::default()
                }
            }
            Some(GgmlType::F16 | GgmlType::BF16) => ActRow {
                h: &self.h[t * n..(t + 1) * n],
                ..Default::default()
            },
            Some(GgmlType::F32) => ActRow {
                f: &self.f[t * n..(t + 1) * n],
                ..Default::default()
            },
            Some(GgmlType::Q8_K) | None => ActRow::default(),
        }
    }

    /// Token `t`'s Q8_K quants, scales and bsums (tests and the CPU forward's own checks).
    pub fn q8_k_row(&self, t: usize) -> (&[i8], &[f32], &[i16]) {
        let r = self.row(t);
        (r.qs, r.d, r.bsums)
    }
}

/// Block size of the activation type that weights of type `ty` are dotted with.
pub(crate) const fn vec_dot_block(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K | GgmlType::Q8_K => 256,
        GgmlType::Q8_0 => 32,
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
    }
}

/// ggml's `nearest_int`: adds 1.5·2²³ and reads the mantissa, i.e. round half to even.
/// Valid for |f| ≤ 4194303 (always true here: |f| ≤ 127).
#[inline]
pub fn nearest_int(f: f32) -> i32 {
    let v = f + 12582912.0f32;
    (v.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// `quantize_row_q8_K_ref` for one block; returns `d`.
pub fn quantize_block_q8_k(x: &[f32; 256], qs: &mut [i8; 256], bsums: &mut [i16; 16]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax == 0.0 {
        qs.fill(0);
        bsums.fill(0);
        return 0.0;
    }
    // The sign flip is ggml's: the largest-magnitude element maps to -127.
    let iscale = -127.0f32 / max;
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (g, s) in bsums.iter_mut().enumerate() {
        *s = qs[16 * g..16 * g + 16].iter().map(|&q| q as i16).sum();
    }
    1.0 / iscale
}

/// The x86 AVX `quantize_row_q8_0` for one block; returns the f16 bits of `d`.
pub fn quantize_block_q8_0(x: &[f32; 32], qs: &mut [i8; 32]) -> u16 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        // _mm256_round_ps(_MM_ROUND_NEAREST) then a saturating pack.
        *q = (v * id).round_ties_even().clamp(-128.0, 127.0) as i8;
    }
    f32_to_f16(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-3.5), -4);
        assert_eq!(nearest_int(126.49), 126);
    }

    #[test]
    fn q8_k_maps_the_largest_magnitude_to_minus_127_with_the_sign_flip() {
        let mut x = [0.0f32; 256];
        x[3] = 2.0;
        x[7] = -2.0; // ties: the first (x[3] = +2) wins because the comparison is strict
        x[10] = 1.0; // iscale = -63.5 → -63.5 → round half even → -64
        x[11] = 0.5; // -31.75 → -32
        let (mut qs, mut bs) = ([0i8; 256], [0i16; 16]);
        let d = quantize_block_q8_k(&x, &mut qs, &mut bs);
        assert_eq!(d, 1.0 / (-127.0f32 / 2.0));
        assert_eq!(qs[3], -127);
        assert_eq!(qs[7], 127);
        assert_eq!(qs[10], -64);
        assert_eq!(qs[11], -32);
        assert_eq!(bs[0], -127 + 127 - 64 - 32);
        assert!(bs[1..].iter().all(|&s| s == 0));
    }

    #[test]
    fn q8_k_of_zeros_has_zero_scale() {
        let (mut qs, mut bs) = ([1i8; 256], [1i16; 16]);
        assert_eq!(quantize_block_q8_k(&[0.0; 256], &mut qs, &mut bs), 0.0);
        assert!(qs.iter().all(|&q| q == 0) && bs.iter().all(|&s| s == 0));
    }

    #[test]
    fn q8_0_uses_127_over_amax_and_rounds_half_to_even() {
        let mut x = [0.0f32; 32];
        x[0] = -127.0; // amax 127 → id = 1
        x[1] = 2.5; // → 2 (half to even; roundf would give 3)
        x[2] = -3.5; // → -4
        x[3] = 0.49;
        let mut qs = [0i8; 32];
        let d = quantize_block_q8_0(&x, &mut qs);
        assert_eq!(f16_to_f32(d), 1.0);
        assert_eq!(&qs[..4], &[-127, 2, -4, 0]);
    }

    #[test]
    fn quantize_reuses_its_buffers() {
        let mut a = QuantizedActs::new();
        let x = vec![0.25f32; 2 * 512];
        a.quantize(GgmlType::Q4_K, &x, 2, 512);
        let p = a.qs.as_ptr();
        a.quantize(GgmlType::Q6_K, &x[..512], 1, 512);
        assert_eq!(p, a.qs.as_ptr());
        let (qs, d, bs) = a.q8_k_row(0);
        assert_eq!((qs.len(), d.len(), bs.len()), (512, 2, 32));
    }
}
