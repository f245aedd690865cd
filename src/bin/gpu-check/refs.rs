//! CPU references for gpu-check: random test data, an independent dequantizer written from
//! spec/gguf-quant-formats.md §3 (cross-checked against `simd::dequantize_row`), the 8-bit
//! activation quantizer the GPU mat-vec uses, and f64 versions of every op.

use half::{bf16, f16};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use simd::GgmlType;

pub type Rng8 = ChaCha8Rng;

pub fn uniform(rng: &mut Rng8, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(lo..hi)).collect()
}

fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_bits().to_le_bytes()
}

/// Random weight bytes for `rows` x `cols` of `ty`: random quants and packed scales, with
/// the float scales drawn in a realistic range (never NaN/inf).
pub fn random_weights(rng: &mut Rng8, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let n = rows * cols;
    match ty {
        GgmlType::F32 => uniform(rng, n, -1.0, 1.0)
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        GgmlType::F16 => uniform(rng, n, -1.0, 1.0)
            .iter()
            .flat_map(|&v| f16_bytes(v))
            .collect(),
        GgmlType::BF16 => uniform(rng, n, -1.0, 1.0)
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
            .collect(),
        _ => {
            let (qk, bb) = (ty.block_elems(), ty.block_bytes());
            let nblocks = n / qk;
            let mut out = vec![0u8; nblocks * bb];
            rng.fill(&mut out[..]);
            for blk in out.chunks_mut(bb) {
                let d = f16_bytes(rng.gen_range(0.001..0.01));
                let dmin = f16_bytes(rng.gen_range(0.0005..0.005));
                match ty {
                    GgmlType::Q8_0 => blk[0..2].copy_from_slice(&d),
                    GgmlType::Q4_K | GgmlType::Q5_K => {
                        blk[0..2].copy_from_slice(&d);
                        blk[2..4].copy_from_slice(&dmin);
                    }
                    GgmlType::Q6_K => blk[208..210].copy_from_slice(&d),
                    _ => unreachable!("not a weight type: {ty}"),
                }
            }
            out
        }
    }
}

fn h(b: &[u8], o: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[o], b[o + 1]])).to_f32()
}

fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Dequantizes one row, written from the spec independently of the simd crate.
pub fn dequant_spec(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(data.chunks(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(data.chunks(2)) {
                *o = f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(data.chunks(2)) {
                *o = bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in out.chunks_mut(32).zip(data.chunks(34)) {
                let d = h(b, 0);
                for i in 0..32 {
                    o[i] = d * (b[2 + i] as i8) as f32;
                }
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let q5 = ty == GgmlType::Q5_K;
            let bb = ty.block_bytes();
            for (o, b) in out.chunks_mut(256).zip(data.chunks(bb)) {
                let (d, dmin) = (h(b, 0), h(b, 2));
                let sc = &b[4..16];
                let (qh, qs) = if q5 {
                    (&b[16..48], &b[48..176])
                } else {
                    (&b[0..0], &b[16..144])
                };
                for c in 0..4 {
                    for half in 0..2 {
                        let j = 2 * c + half;
                        let (s, m) = scale_min_k4(j, sc);
                        let (d1, m1) = (d * s as f32, dmin * m as f32);
                        for l in 0..32 {
                            let mut q = if half == 0 {
                                qs[32 * c + l] & 0xF
                            } else {
                                qs[32 * c + l] >> 4
                            } as u32;
                            if q5 {
                                q += 16 * ((qh[l] as u32 >> j) & 1);
                            }
                            o[64 * c + 32 * half + l] = d1 * q as f32 - m1;
                        }
                    }
                }
            }
        }
        GgmlType::Q6_K => {
            for (o, b) in out.chunks_mut(256).zip(data.chunks(210)) {
                let d = h(b, 208);
                for n in 0..2 {
                    let (ql, qh) = (&b[64 * n..], &b[128 + 32 * n..]);
                    let sc = &b[192 + 8 * n..];
                    for l in 0..32 {
                        let is = l / 16;
                        let v = [
                            (ql[l] & 0xF) | ((qh[l] & 3) << 4),
                            (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                            (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                            (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                        ];
                        for m in 0..4 {
                            let q = v[m] as i32 - 32;
                            o[128 * n + 32 * m + l] = d * (sc[is + 2 * m] as i8) as f32 * q as f32;
                        }
                    }
                }
            }
        }
        GgmlType::Q8_K => unreachable!("Q8_K is an activation format"),
    }
}

/// The activation quantizer of cuda/mmvq.cu (quantize_q8_1), in the same f32 operations:
/// returns x rounded to d * q per 32-block (the product taken exactly, in f64).
pub fn quantize_acts_like_gpu(x: &[f32]) -> Vec<f64> {
    let mut out = vec![0.0f64; x.len()];
    for (o, b) in out.chunks_mut(32).zip(x.chunks(32)) {
        let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        for (oi, &v) in o.iter_mut().zip(b) {
            let q = if amax == 0.0 { 0.0 } else { (v / d).round() };
            *oi = d as f64 * q as f64;
        }
    }
    out
}

/// f64 mat-vec: out[t][r] = sum_c w[r][c] * x[t][c].
pub fn matvec_f64(w: &[f32], rows: usize, cols: usize, x: &[f64], k: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; k * rows];
    for t in 0..k {
        let xt = &x[t * cols..(t + 1) * cols];
        for r in 0..rows {
            let wr = &w[r * cols..(r + 1) * cols];
            out[t * rows + r] = wr.iter().zip(xt).map(|(&a, &b)| a as f64 * b).sum();
        }
    }
    out
}

pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub fn softplus(x: f64) -> f64 {
    if x > 20.0 {
        x
    } else {
        (1.0 + x.exp()).ln()
    }
}

pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f64> {
    let n = x.len() as f64;
    let ss: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
    let scale = 1.0 / (ss / n + eps as f64).sqrt();
    x.iter()
        .zip(w)
        .map(|(&v, &wi)| v as f64 * scale * wi as f64)
        .collect()
}

/// The activation rounding's effect on each output, bounded: |sum_c w[r][c] * (xq[t][c] -
/// x[t][c])| <= sum_c |w[r][c]| * |xq[t][c] - x[t][c]| for row r of token t ([t][r] order).
pub fn act_rounding_bound(
    w: &[f32],
    rows: usize,
    cols: usize,
    x: &[f64],
    xq: &[f64],
    k: usize,
) -> Vec<f64> {
    let mut out = vec![0.0f64; k * rows];
    for t in 0..k {
        let dx: Vec<f64> = (0..cols)
            .map(|c| (xq[t * cols + c] - x[t * cols + c]).abs())
            .collect();
        for r in 0..rows {
            let wr = &w[r * cols..(r + 1) * cols];
            out[t * rows + r] = wr
                .iter()
                .zip(&dx)
                .map(|(&a, &d)| (a as f64).abs() * d)
                .sum();
        }
    }
    out
}

/// The largest |got - want| / (bound + slack) over all outputs (NaN or inf: infinity), where
/// slack = rel_slack * the RMS of `want` covers the f32 rounding of the kernel. <= 1 when
/// every output is within its bound.
pub fn worst_bound_ratio(got: &[f32], want: &[f64], bound: &[f64], rel_slack: f64) -> f64 {
    assert_eq!(got.len(), want.len());
    assert_eq!(got.len(), bound.len());
    if got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let rms = (want.iter().map(|w| w * w).sum::<f64>() / want.len().max(1) as f64).sqrt();
    let slack = rel_slack * rms + 1e-30;
    got.iter()
        .zip(want)
        .zip(bound)
        .map(|((&g, &w), &b)| (g as f64 - w).abs() / (b + slack))
        .fold(0.0, f64::max)
}

/// Relative L2 error ||got - want|| / ||want||; NaN or inf anywhere in `got` gives +inf.
pub fn rel_l2(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    if got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).powi(2))
        .sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    (num / den.max(1e-300)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The bound holds for the exact product with the rounded activations, and a product
    /// with one output off by more than its bound exceeds it.
    #[test]
    fn act_rounding_bound_holds_and_catches() {
        let mut rng = Rng8::seed_from_u64(7);
        let (rows, cols, k) = (37, 512, 2);
        let w = uniform(&mut rng, rows * cols, -1.0, 1.0);
        let x32 = uniform(&mut rng, k * cols, -1.0, 1.0);
        let x: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
        let xq = quantize_acts_like_gpu(&x32);
        let exact = matvec_f64(&w, rows, cols, &x, k);
        let same = matvec_f64(&w, rows, cols, &xq, k);
        let bound = act_rounding_bound(&w, rows, cols, &x, &xq, k);
        let got: Vec<f32> = same.iter().map(|&v| v as f32).collect();
        let r = worst_bound_ratio(&got, &exact, &bound, 1e-5);
        assert!(r <= 1.0, "ratio {r}");
        assert!(bound.iter().all(|&b| b > 0.0));
        let mut bad = got.clone();
        bad[5] = (exact[5] + 2.0 * bound[5] + 1e-3) as f32;
        assert!(worst_bound_ratio(&bad, &exact, &bound, 1e-5) > 1.0);
        bad[5] = f32::NAN;
        assert!(worst_bound_ratio(&bad, &exact, &bound, 1e-5).is_infinite());
    }
}
