//! Test helpers shared by the kernel files: a tiny seeded RNG, block generators with
//! extreme scales, and the harness that checks one format on every available ISA.

#![cfg(test)]

use crate::floats::{bf16_to_f32, f16_to_f32, f32_to_f16};
use crate::{matvec_rows, GgmlType, Isa, MatRef, QuantizedActs};

/// Relative tolerance of a kernel's f32 result against the f64 dequantize-then-dot
/// reference, relative to Σ|w_e|·|x_e| (f32 block combination, f32(sumi) rounding,
/// dy·dx rounding; a single wrong quant moves the result by ≳ 1/(cols·scale) ≫ this).
pub const DOT_REL_TOL: f64 = 1e-5;

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn fill(&mut self, b: &mut [u8]) {
        for x in b {
            *x = self.next_u64() as u8;
        }
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// What kind of block a generator should make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    Random,
    /// Scales at the f16 maximum, 65504.
    HugeScale,
    /// Subnormal f16 scales.
    TinyScale,
    ZeroScale,
    /// Every quant at its maximum (all-15 nibbles, all high bits set).
    AllMax,
    /// Every quant 0.
    AllZero,
}

pub const KINDS: [BlockKind; 6] = [
    BlockKind::Random,
    BlockKind::HugeScale,
    BlockKind::TinyScale,
    BlockKind::ZeroScale,
    BlockKind::AllMax,
    BlockKind::AllZero,
];

/// An f16 scale (as LE bytes) fitting the block kind.
pub fn rand_scale(rng: &mut Rng, kind: BlockKind) -> [u8; 2] {
    let bits = match kind {
        BlockKind::HugeScale => 0x7bff,
        BlockKind::TinyScale => 1 + rng.below(0x3ff) as u16,
        BlockKind::ZeroScale => 0,
        _ => f32_to_f16(rng.unit() * 0.05),
    };
    bits.to_le_bytes()
}

/// The f64 value the kernels should be approximating for activation element `e` of token `t`.
pub fn act_value(a: &QuantizedActs, ty: GgmlType, t: usize, e: usize) -> f64 {
    let r = a.row(t);
    match ty {
        GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => r.d[e / 256] as f64 * r.qs[e] as f64,
        GgmlType::Q8_0 => r.d[e / 32] as f64 * r.qs[e] as f64,
        GgmlType::F16 => f16_to_f32(r.h[e]) as f64,
        GgmlType::BF16 => bf16_to_f32(r.h[e]) as f64,
        GgmlType::F32 => r.f[e] as f64,
        GgmlType::Q8_K => unreachable!(),
    }
}

/// Random activations: k tokens × n, each token with its own magnitude; token 1 is all
/// zero and token 2 has one large outlier.
pub fn rand_acts(rng: &mut Rng, k: usize, n: usize) -> Vec<f32> {
    let mut x = vec![0.0f32; k * n];
    for t in 0..k {
        if t == 1 {
            continue;
        }
        let mag = [1.0f32, 1e-3, 30.0, 0.2][t % 4];
        for v in &mut x[t * n..(t + 1) * n] {
            *v = rng.unit() * mag;
        }
        if t == 2 {
            x[t * n + (rng.below(n as u64) as usize)] = 900.0;
        }
    }
    x
}

/// A format's f64 dequantization of one block: per element, (exact value, magnitude of its
/// terms).
pub type Deq64<'f> = dyn Fn(&[u8]) -> Vec<(f64, f64)> + 'f;

/// Checks one weight format on every available ISA:
/// * the scalar result is within `DOT_REL_TOL` of the f64 reference built from `deq64`
///   (per block element: (exact value, magnitude of its terms));
/// * every ISA gives the scalar result's bits (the integer sums are exact and the float
///   order is canonical), for k = 1, 2, 3, 4, 5, 8, 11 and every token position.
pub fn check_format(
    ty: GgmlType,
    gen: &mut dyn FnMut(&mut Rng, BlockKind) -> Vec<u8>,
    deq64: &Deq64<'_>,
) {
    let be = ty.block_elems();
    let mut rng = Rng::new(ty.ggml_id() as u64 + 7);
    // Float rows get lengths that are not a multiple of 8 (the leftover loop).
    let shapes: [(usize, usize); 3] = if ty.is_quantized() {
        [(1, be * 2), (19, be * 4), (5, be * 3)]
    } else {
        [(1, 19), (19, 35), (5, 24)]
    };
    for (rows, cols) in shapes {
        for kind in KINDS {
            let bpr = cols / ty.block_elems();
            let mut data = Vec::new();
            for _ in 0..rows * bpr {
                data.extend(gen(&mut rng, kind));
            }
            let w = MatRef {
                ty,
                data: &data,
                rows,
                cols,
            };
            let k = 11;
            let x = rand_acts(&mut rng, k, cols);
            let mut acts = QuantizedActs::new();
            acts.quantize(ty, &x, k, cols);
            let mut want = vec![0.0f32; k * rows];
            matvec_rows(Isa::Scalar, w, &acts, 0..rows, &mut want, rows);
            let bb = ty.block_bytes();
            for t in 0..k {
                for r in 0..rows {
                    let (mut dot, mut mag) = (0.0f64, 0.0f64);
                    for blk in 0..bpr {
                        let off = (r * bpr + blk) * bb;
                        for (j, (v, m)) in deq64(&data[off..off + bb]).into_iter().enumerate() {
                            let a = act_value(&acts, ty, t, blk * ty.block_elems() + j);
                            dot += v * a;
                            mag += m * a.abs();
                        }
                    }
                    let got = want[t * rows + r] as f64;
                    assert!(
                        (got - dot).abs() <= DOT_REL_TOL * mag,
                        "{ty} {kind:?} {rows}x{cols} token {t} row {r}: scalar {got} vs f64 {dot} (mag {mag})"
                    );
                }
            }
            for isa in Isa::available() {
                for kk in [1usize, 2, 3, 4, 5, 6, 7, 8, 11] {
                    let mut a = QuantizedActs::new();
                    a.quantize(ty, &x[..kk * cols], kk, cols);
                    let mut got = vec![f32::NAN; kk * rows];
                    matvec_rows(isa, w, &a, 0..rows, &mut got, rows);
                    for t in 0..kk {
                        for r in 0..rows {
                            let (g, e) = (got[t * rows + r], want[t * rows + r]);
                            assert!(
                                g.to_bits() == e.to_bits(),
                                "{ty} {isa} {kind:?} {rows}x{cols} k={kk} token {t} row {r}: {g} != scalar {e}"
                            );
                        }
                    }
                }
                // A row range that does not start at 0 writes only its rows.
                let mut part = vec![f32::NAN; rows];
                let mut a1 = QuantizedActs::new();
                a1.quantize(ty, &x[..cols], 1, cols);
                matvec_rows(isa, w, &a1, rows / 2..rows, &mut part, rows);
                assert!(part[..rows / 2].iter().all(|v| v.is_nan()));
                assert_eq!(
                    part[rows / 2..]
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                    want[rows / 2..rows]
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>()
                );
            }
        }
    }
}
