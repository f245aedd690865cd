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
    /// The Q8_K quants in the AMX tile layout (built on demand by `build_amx`).
    #[cfg(target_arch = "x86_64")]
    amx: crate::q4_k_amx::AmxActs,
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
        let bufs = self.prepare(ty, x, k, n);
        // SAFETY: `bufs` points into buffers `prepare` sized for k·n values; one thread
        // fills every block.
        unsafe { bufs.fill(x, 0..bufs.units) };
    }

    /// `quantize`, with the blocks split over `pool`'s threads when there are many of them
    /// (prefill, long rows). The values are the same as `quantize`'s.
    pub fn quantize_with(
        &mut self,
        ty: GgmlType,
        x: &[f32],
        k: usize,
        n: usize,
        pool: &crate::Pool,
    ) {
        let bufs = self.prepare(ty, x, k, n);
        if k * n < PARALLEL_MIN || pool.n_threads() == 1 {
            // SAFETY: as in `quantize`.
            unsafe { bufs.fill(x, 0..bufs.units) };
            return;
        }
        pool.run(&|i, nt| {
            let r = bufs.units * i / nt..bufs.units * (i + 1) / nt;
            // SAFETY: the ranges of different threads are disjoint, so every block is
            // written by exactly one thread; the buffers outlive `run`.
            unsafe { bufs.fill(x, r) };
        });
    }

    /// Checks the arguments, records the shape and grows the buffers; returns raw views of
    /// them for `RawBufs::fill`.
    fn prepare(&mut self, ty: GgmlType, x: &[f32], k: usize, n: usize) -> RawBufs {
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
            n.is_multiple_of(be),
            "QuantizedActs::quantize: {n} columns is not a multiple of {be} ({ty} activations)"
        );
        self.weight_ty = Some(ty);
        #[cfg(target_arch = "x86_64")]
        self.amx.invalidate();
        self.k = k;
        self.n = n;
        let len = k * n;
        let mut b = RawBufs {
            ty,
            units: 0,
            qs: std::ptr::null_mut(),
            d: std::ptr::null_mut(),
            bsums: std::ptr::null_mut(),
            h: std::ptr::null_mut(),
            f: std::ptr::null_mut(),
        };
        match ty {
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
                b.units = len / 256;
                b.qs = room(&mut self.qs, len).as_mut_ptr();
                b.d = room(&mut self.d, len / 256).as_mut_ptr();
                b.bsums = room(&mut self.bsums, len / 256 * 16).as_mut_ptr();
            }
            GgmlType::Q8_0 => {
                b.units = len / 32;
                b.qs = room(&mut self.qs, len).as_mut_ptr();
                b.d = room(&mut self.d, len / 32).as_mut_ptr();
            }
            GgmlType::F16 | GgmlType::BF16 => {
                b.units = len.div_ceil(FLOAT_UNIT);
                b.h = room(&mut self.h, len).as_mut_ptr();
            }
            GgmlType::F32 => {
                b.units = len.div_ceil(FLOAT_UNIT);
                b.f = room(&mut self.f, len).as_mut_ptr();
            }
            GgmlType::Q8_K => unreachable!("rejected above"),
        }
        b
    }

    /// Builds the AMX tile layout of these Q8_K activations (after `quantize*`), split over
    /// `pool`'s threads when given. No-op for non-K-quant activations.
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn build_amx(&mut self, pool: Option<&crate::Pool>) {
        if !matches!(
            self.weight_ty,
            Some(GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K)
        ) {
            return;
        }
        let (k, nb) = (self.k, self.n / 256);
        self.amx.build(&self.qs, &self.d, &self.bsums, k, nb, pool);
    }

    /// The AMX tile layout, if `build_amx` ran since the last `quantize*` (`nb` blocks/row).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn amx(&self, nb: usize) -> Option<&crate::q4_k_amx::AmxActs> {
        self.amx.get(self.k, nb)
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

    /// All k tokens' Q8_K quants (k × n), block scales (k × n/256) and bsums (k × n/16),
    /// each token's after the previous one's; `None` unless the activations are Q8_K (the
    /// K-quant weight types). Another device computing rows from these gets the same bits.
    pub fn q8_k_all(&self) -> Option<(&[i8], &[f32], &[i16])> {
        match self.weight_ty {
            Some(GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K) => {
                let (k, n) = (self.k, self.n);
                Some((
                    &self.qs[..k * n],
                    &self.d[..k * n / 256],
                    &self.bsums[..k * n / 16],
                ))
            }
            _ => None,
        }
    }

    /// Token `t`'s Q8_K quants, scales and bsums (tests and the CPU forward's own checks).
    pub fn q8_k_row(&self, t: usize) -> (&[i8], &[f32], &[i16]) {
        let r = self.row(t);
        (r.qs, r.d, r.bsums)
    }
}

/// Below this many values `quantize_with` stays on the calling thread.
const PARALLEL_MIN: usize = 16384;
/// Float conversions are split in units of this many values.
const FLOAT_UNIT: usize = 1024;

/// Raw views of a `QuantizedActs`'s buffers, sized by `prepare`, so that several threads
/// can fill disjoint blocks. `units` counts blocks (or `FLOAT_UNIT`-value pieces).
struct RawBufs {
    ty: GgmlType,
    units: usize,
    qs: *mut i8,
    d: *mut f32,
    bsums: *mut i16,
    h: *mut u16,
    f: *mut f32,
}

// SAFETY: the pointers are only written through `fill`, whose callers give each thread a
// disjoint range of units, while the owning `QuantizedActs` is mutably borrowed.
unsafe impl Sync for RawBufs {}

impl RawBufs {
    /// Converts units `r` of `x`.
    ///
    /// # Safety
    /// The buffers must be as `prepare` sized them for `x`, and no other thread may touch
    /// the units in `r` at the same time.
    unsafe fn fill(&self, x: &[f32], r: std::ops::Range<usize>) {
        use std::slice::from_raw_parts_mut as part;
        match self.ty {
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
                let quantize = q8_k_block_fn();
                for b in r {
                    let xb: &[f32; 256] = x[256 * b..256 * b + 256]
                        .try_into()
                        .expect("256-value block");
                    // SAFETY: block b's quants and bsums lie inside the sized buffers and
                    // belong to this call only (caller's contract).
                    let (qb, sb) = unsafe {
                        (
                            &mut *(self.qs.add(256 * b) as *mut [i8; 256]),
                            &mut *(self.bsums.add(16 * b) as *mut [i16; 16]),
                        )
                    };
                    // SAFETY: as above.
                    unsafe { *self.d.add(b) = quantize(xb, qb, sb) };
                }
            }
            GgmlType::Q8_0 => {
                for b in r {
                    let xb: &[f32; 32] = x[32 * b..32 * b + 32].try_into().expect("32-value block");
                    // SAFETY: as for Q8_K above.
                    let qb = unsafe { &mut *(self.qs.add(32 * b) as *mut [i8; 32]) };
                    // SAFETY: as above.
                    unsafe { *self.d.add(b) = f16_to_f32(quantize_block_q8_0(xb, qb)) };
                }
            }
            GgmlType::F16 | GgmlType::BF16 => {
                let (a, e) = (r.start * FLOAT_UNIT, (r.end * FLOAT_UNIT).min(x.len()));
                // SAFETY: values a..e lie inside the sized buffer and belong to this call.
                let out = unsafe { part(self.h.add(a), e - a) };
                let conv = if self.ty == GgmlType::F16 {
                    f32_to_f16
                } else {
                    f32_to_bf16
                };
                for (o, &v) in out.iter_mut().zip(&x[a..e]) {
                    *o = conv(v);
                }
            }
            GgmlType::F32 => {
                let (a, e) = (r.start * FLOAT_UNIT, (r.end * FLOAT_UNIT).min(x.len()));
                // SAFETY: as above.
                unsafe { part(self.f.add(a), e - a) }.copy_from_slice(&x[a..e]);
            }
            GgmlType::Q8_K => unreachable!("rejected by prepare"),
        }
    }
}

/// Whether activations converted for weights of type `a` serve weights of type `b` too
/// (the K-quants all take the same Q8_K rows).
pub fn same_acts(a: GgmlType, b: GgmlType) -> bool {
    let kq = |t| matches!(t, GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K);
    a == b || (kq(a) && kq(b))
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
    // Largest |x| (a vectorisable max), then the first element reaching it: the same
    // element ggml's strict `>` scan keeps.
    let amax = x
        .iter()
        .fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m });
    let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
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

type Q8KBlockFn = fn(&[f32; 256], &mut [i8; 256], &mut [i16; 16]) -> f32;

/// [`quantize_block_q8_k`] or its AVX-512 version (same values), by `Isa::detect()`.
fn q8_k_block_fn() -> Q8KBlockFn {
    #[cfg(target_arch = "x86_64")]
    if matches!(crate::Isa::detect(), crate::Isa::Avx512 | crate::Isa::Amx) {
        return x86::quantize_block_q8_k_avx512_checked;
    }
    quantize_block_q8_k
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Safe entry for the fn-pointer table: only handed out after `Isa::detect()` chose an
    /// AVX-512 tier.
    pub(super) fn quantize_block_q8_k_avx512_checked(
        x: &[f32; 256],
        qs: &mut [i8; 256],
        bsums: &mut [i16; 16],
    ) -> f32 {
        debug_assert!(crate::Isa::Avx512.is_available());
        // SAFETY: `q8_k_block_fn` returns this only on an AVX-512 tier.
        unsafe { quantize_block_q8_k_avx512(x, qs, bsums) }
    }

    /// [`super::quantize_block_q8_k`] 16 values at a time: the same max (a max is exact in
    /// any order; NaN lanes are skipped as by the scalar strict `>`), the first element
    /// reaching it, the same `iscale·v` products and `nearest_int`, integer bsums.
    ///
    /// # Safety
    /// AVX-512F/BW must be available.
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    pub(super) unsafe fn quantize_block_q8_k_avx512(
        x: &[f32; 256],
        qs: &mut [i8; 256],
        bsums: &mut [i16; 16],
    ) -> f32 {
        let v: [__m512; 16] = std::array::from_fn(|g| _mm512_loadu_ps(x.as_ptr().add(16 * g)));
        let mut m = _mm512_setzero_ps();
        for &vg in &v {
            // max(|v|, m) returns m where |v| is NaN.
            m = _mm512_max_ps(_mm512_abs_ps(vg), m);
        }
        let amax = _mm512_reduce_max_ps(m);
        if amax == 0.0 {
            qs.fill(0);
            bsums.fill(0);
            return 0.0;
        }
        let av = _mm512_set1_ps(amax);
        let mut max = 0.0f32;
        for (g, &vg) in v.iter().enumerate() {
            let hit = _mm512_cmp_ps_mask(_mm512_abs_ps(vg), av, _CMP_EQ_OQ);
            if hit != 0 {
                max = x[16 * g + hit.trailing_zeros() as usize];
                break;
            }
        }
        let iscale = -127.0f32 / max;
        let is = _mm512_set1_ps(iscale);
        let magic = _mm512_set1_ps(12582912.0);
        let mant = _mm512_set1_epi32(0x007f_ffff);
        let half = _mm512_set1_epi32(0x0040_0000);
        let top = _mm512_set1_epi32(127);
        for (g, &vg) in v.iter().enumerate() {
            let f = _mm512_add_ps(_mm512_mul_ps(is, vg), magic);
            let q = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(f), mant), half);
            let q = _mm512_min_epi32(q, top);
            _mm_storeu_si128(
                qs.as_mut_ptr().add(16 * g) as *mut __m128i,
                _mm512_cvtepi32_epi8(q),
            );
            bsums[g] = _mm512_reduce_add_epi32(q) as i16;
        }
        1.0 / iscale
    }
}

/// The x86 AVX `quantize_row_q8_0` for one block; returns the f16 bits of `d`.
pub fn quantize_block_q8_0(x: &[f32; 32], qs: &mut [i8; 32]) -> u16 {
    let amax = x
        .iter()
        .fold(0.0f32, |m, v| if v.abs() > m { v.abs() } else { m });
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        // _mm256_round_ps(_MM_ROUND_NEAREST) is round half to even, which `nearest_int`
        // computes exactly for |v·id| ≤ 127 (≪ 2²²); then a saturating pack.
        *q = nearest_int(v * id).clamp(-128, 127) as i8;
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
        // Now the negative one comes first and wins.
        let mut y = x;
        y[3] = -2.0;
        y[7] = 2.0;
        assert_eq!(
            quantize_block_q8_k(&y, &mut [0; 256], &mut [0; 16]),
            1.0 / (127.0f32 / 2.0)
        );
        assert_eq!(qs[3], -127);
        assert_eq!(qs[7], 127);
        assert_eq!(qs[10], -64);
        assert_eq!(qs[11], -32);
        assert_eq!(bs[0], -127 + 127 - 64 - 32);
        assert!(bs[1..].iter().all(|&s| s == 0));
    }

    #[test]
    fn the_vector_q8_k_block_equals_the_scalar_one_bit_for_bit() {
        #[cfg(target_arch = "x86_64")]
        {
            if !crate::Isa::Avx512.is_available() {
                eprintln!("skipped: no AVX-512");
                return;
            }
            let mut rng = crate::testutil::Rng::new(21);
            let mut cases: Vec<[f32; 256]> = Vec::new();
            for mag in [1.0f32, 1e-38, 3e38, 1e-3] {
                cases.push(std::array::from_fn(|_| rng.unit() * mag));
            }
            cases.push([0.0; 256]);
            cases.push([-0.0; 256]);
            // Ties for the largest magnitude (the first one wins), on both signs.
            let mut t = [0.25f32; 256];
            t[37] = -3.0;
            t[200] = 3.0;
            cases.push(t);
            t[37] = 3.0;
            t[200] = -3.0;
            cases.push(t);
            // A tie inside one 16-value group.
            t[200] = 0.0;
            t[40] = -3.0;
            cases.push(t);
            // Halfway points of the rounding (x = 0.5 + n over iscale 1): 127 / 127 = 1.
            cases.push(std::array::from_fn(|i| {
                if i == 0 {
                    -127.0
                } else {
                    (i as f32 - 128.0) * 0.5
                }
            }));
            // NaN and infinities are skipped / kept like the scalar compare.
            let mut n = cases[0];
            n[5] = f32::NAN;
            cases.push(n);
            n[9] = f32::INFINITY;
            cases.push(n);
            let mut subn = [0.0f32; 256];
            subn[77] = 1e-45;
            subn[78] = -1e-45;
            cases.push(subn);
            for (c, x) in cases.iter().enumerate() {
                let (mut q0, mut b0) = ([0i8; 256], [0i16; 16]);
                let (mut q1, mut b1) = ([1i8; 256], [1i16; 16]);
                let d0 = quantize_block_q8_k(x, &mut q0, &mut b0);
                // SAFETY: AVX-512 checked above.
                let d1 = unsafe { x86::quantize_block_q8_k_avx512(x, &mut q1, &mut b1) };
                assert_eq!(d0.to_bits(), d1.to_bits(), "case {c}: d");
                assert_eq!(q0, q1, "case {c}: qs");
                assert_eq!(b0, b1, "case {c}: bsums");
            }
        }
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
    fn parallel_quantization_gives_the_same_values() {
        let pool = crate::Pool::new(3);
        let mut rng = crate::testutil::Rng::new(9);
        for ty in [
            GgmlType::Q4_K,
            GgmlType::Q8_0,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::F32,
        ] {
            let (k, n) = (9, 2560);
            let x = crate::testutil::rand_acts(&mut rng, k, n);
            let (mut a, mut b) = (QuantizedActs::new(), QuantizedActs::new());
            a.quantize(ty, &x, k, n);
            b.quantize_with(ty, &x, k, n, &pool);
            let bits = |q: &QuantizedActs| {
                (
                    q.qs.clone(),
                    q.d.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    q.bsums.clone(),
                    q.h.clone(),
                    q.f.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                )
            };
            assert_eq!(bits(&a), bits(&b), "{ty}");
        }
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
