//! Random tensor data drawn directly in each storage format (no quantizer): every block is
//! valid, scales are finite f16, and the dequantized values have the requested
//! distribution. Layouts: `spec/gguf-quant-formats.md` §3.
//!
//! Generation is deterministic per (seed, tensor name, chunk): each chunk of rows gets its
//! own ChaCha8 stream, so chunks can be generated in parallel and in any order.

use half::f16;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::gguf::GgmlType;
use crate::model::qwen35::{Config, TensorKind};

/// Value distribution of a tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dist {
    /// Uniform on [lo, hi].
    Uniform { lo: f32, hi: f32 },
    /// −exp(U(lo, hi)): `ssm_a` as the converter stores it (−exp(A_log)).
    NegExp { lo: f32, hi: f32 },
}

impl Dist {
    /// Zero-mean uniform with standard deviation `std`.
    pub fn zero_mean(std: f32) -> Self {
        let a = std * 3f32.sqrt();
        Dist::Uniform { lo: -a, hi: a }
    }

    fn sample(self, rng: &mut impl Rng) -> f32 {
        match self {
            Dist::Uniform { lo, hi } => lo + (hi - lo) * rng.gen::<f32>(),
            Dist::NegExp { lo, hi } => -(lo + (hi - lo) * rng.gen::<f32>()).exp(),
        }
    }

    /// Standard deviation of a zero-mean uniform, `None` for anything else.
    fn zero_mean_std(self) -> Option<f32> {
        match self {
            Dist::Uniform { lo, hi } if lo == -hi && hi > 0.0 => Some(hi / 3f32.sqrt()),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("cannot generate {ty} data")]
    UnsupportedType { ty: GgmlType },
    #[error("{ty} data needs a zero-mean uniform distribution, got {dist:?}")]
    NeedsZeroMean { ty: GgmlType, dist: Dist },
    #[error("{len} bytes is not a whole number of {ty} blocks")]
    PartialBlock { ty: GgmlType, len: usize },
}

/// How each tensor of a synthetic model is initialised. Matrices are zero-mean uniform with
/// std `1/sqrt(fan_in)` (fan_in = row length), so a normalised input gives outputs of about
/// unit scale; the LM head uses twice that so logits are spread (std ~2), not flat.
pub fn dist_for(kind: TensorKind, dims: &[u64], cfg: &Config) -> Dist {
    use TensorKind::*;
    let fan_in = dims.first().copied().unwrap_or(1).max(1) as f32;
    match kind {
        OutputNorm | AttnNorm | PostAttentionNorm | AttnQNorm | AttnKNorm | NextnEnorm
        | NextnHnorm | NextnSharedHeadNorm | SsmNorm => Dist::Uniform { lo: 0.9, hi: 1.1 },
        // decay rate per head: A in [−e, −1/e]
        SsmA => Dist::NegExp { lo: -1.0, hi: 1.0 },
        // softplus(−1.5 .. −0.5) = 0.2 .. 0.47: decays of 0.6–0.9 per token with A ≈ −1
        SsmDtBias => Dist::Uniform { lo: -1.5, hi: -0.5 },
        // taps of std 1/sqrt(d_conv): the conv keeps the input scale
        SsmConv1d => Dist::zero_mean(1.0 / (cfg.ssm_d_conv as f32).sqrt()),
        Output | NextnSharedHeadHead => Dist::zero_mean(2.0 / fan_in.sqrt()),
        _ => Dist::zero_mean(1.0 / fan_in.sqrt()),
    }
}

/// Stable 64-bit FNV-1a of the tensor name, mixed with the seed.
fn tensor_seed(seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The generator for chunk `chunk` of tensor `name`.
pub fn chunk_rng(seed: u64, name: &str, chunk: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(tensor_seed(seed, name));
    rng.set_stream(chunk);
    rng
}

/// Fills `out` (a whole number of `ty` blocks) with values drawn from `dist`.
pub fn fill(
    ty: GgmlType,
    dist: Dist,
    rng: &mut ChaCha8Rng,
    out: &mut [u8],
) -> Result<(), BlockError> {
    let bb = ty.block_bytes();
    if out.len() % bb != 0 {
        return Err(BlockError::PartialBlock { ty, len: out.len() });
    }
    if ty == GgmlType::F32 {
        for c in out.chunks_exact_mut(4) {
            c.copy_from_slice(&dist.sample(rng).to_le_bytes());
        }
        return Ok(());
    }
    if ty == GgmlType::F16 {
        for c in out.chunks_exact_mut(2) {
            c.copy_from_slice(&f16::from_f32(dist.sample(rng)).to_le_bytes());
        }
        return Ok(());
    }
    let std = dist
        .zero_mean_std()
        .ok_or(BlockError::NeedsZeroMean { ty, dist })?;
    let block: fn(f32, &mut ChaCha8Rng, &mut [u8]) = match ty {
        GgmlType::Q8_0 => q8_0_block,
        GgmlType::Q4_K => q4_k_block,
        GgmlType::Q5_K => q5_k_block,
        GgmlType::Q6_K => q6_k_block,
        _ => return Err(BlockError::UnsupportedType { ty }),
    };
    for b in out.chunks_exact_mut(bb) {
        block(std, rng, b);
    }
    Ok(())
}

/// Per-block scale jitter in [0.75, 1.25] so blocks are not all alike.
fn jitter(rng: &mut impl Rng) -> f32 {
    0.75 + 0.5 * rng.gen::<f32>()
}

/// An f16 scale: finite, and never zero for a positive input.
fn f16_scale(x: f32) -> [u8; 2] {
    let h = f16::from_f32(x.min(60_000.0));
    let h = if h == f16::ZERO && x > 0.0 {
        f16::from_bits(1)
    } else {
        h
    };
    h.to_le_bytes()
}

/// RMS of integers drawn uniformly from [lo, hi].
fn uniform_int_rms(lo: i32, hi: i32) -> f32 {
    let n = (hi - lo + 1) as f32;
    let mean = (lo + hi) as f32 / 2.0;
    (mean * mean + (n * n - 1.0) / 12.0).sqrt()
}

/// Q8_0: d (f16), qs[32] uniform in [−127, 127]; y = d·q.
fn q8_0_block(std: f32, rng: &mut ChaCha8Rng, b: &mut [u8]) {
    let q_rms = uniform_int_rms(-127, 127);
    b[0..2].copy_from_slice(&f16_scale(std / q_rms * jitter(rng)));
    for q in &mut b[2..34] {
        *q = rng.gen_range(-127i8..=127) as u8;
    }
}

/// Sub-block scales of Q4_K/Q5_K: 6-bit values in [24, 63].
const KS_LO: i32 = 24;
const KS_HI: i32 = 63;

/// Packs eight 6-bit scales and mins as `get_scale_min_k4` unpacks them.
fn pack_k4_scales(sc: &[u8; 8], m: &[u8; 8], out: &mut [u8]) {
    for j in 0..4 {
        out[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        out[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        out[j + 8] = (sc[j + 4] & 0x0f) | ((m[j + 4] & 0x0f) << 4);
    }
}

/// Q4_K/Q5_K header: y = d·sc·q − dmin·m with m = sc and dmin = d·center, so each
/// sub-block is exactly zero-mean: y = d·sc·(q − center).
fn k_header(std: f32, q_dev_rms: f32, center: f32, rng: &mut ChaCha8Rng, b: &mut [u8]) {
    let mut sc = [0u8; 8];
    for s in &mut sc {
        *s = rng.gen_range(KS_LO..=KS_HI) as u8;
    }
    let d = std / (uniform_int_rms(KS_LO, KS_HI) * q_dev_rms) * jitter(rng);
    let dh = f16::from_f32(d);
    b[0..2].copy_from_slice(&f16_scale(d));
    // dmin from the rounded d keeps the mean at zero after f16 rounding of both
    b[2..4].copy_from_slice(&f16_scale(dh.to_f32() * center));
    pack_k4_scales(&sc, &sc, &mut b[4..16]);
}

/// Q4_K: 144 bytes = d, dmin, scales[12], qs[128]; q uniform in [0, 15].
fn q4_k_block(std: f32, rng: &mut ChaCha8Rng, b: &mut [u8]) {
    // uniform on 0..15: deviation from 7.5 has rms sqrt((16²−1)/12)
    k_header(std, (255.0f32 / 12.0).sqrt(), 7.5, rng, b);
    rng.fill_bytes(&mut b[16..144]);
}

/// Q5_K: 176 bytes = d, dmin, scales[12], qh[32], qs[128]; q uniform in [0, 31].
fn q5_k_block(std: f32, rng: &mut ChaCha8Rng, b: &mut [u8]) {
    k_header(std, (1023.0f32 / 12.0).sqrt(), 15.5, rng, b);
    rng.fill_bytes(&mut b[16..176]);
}

/// Q6_K: 210 bytes = ql[128], qh[64], scales[16] (int8), d; y = d·sc·(q − 32), q uniform in
/// [0, 63]. Scale signs are random so the −0.5 offset of q − 32 averages out.
fn q6_k_block(std: f32, rng: &mut ChaCha8Rng, b: &mut [u8]) {
    const LO: i32 = 24;
    const HI: i32 = 127;
    rng.fill_bytes(&mut b[0..192]);
    for s in &mut b[192..208] {
        let mag = rng.gen_range(LO..=HI) as i8;
        *s = if rng.gen::<bool>() { mag } else { -mag } as u8;
    }
    let q_rms = (4096.0f32 / 12.0 + 0.25 - 1.0 / 12.0).sqrt(); // E[(q−32)²] over 0..63
    let d = std / (uniform_int_rms(LO, HI) * q_rms) * jitter(rng);
    b[208..210].copy_from_slice(&f16_scale(d));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_at(b: &[u8], i: usize) -> f32 {
        f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
    }

    /// Dequantization written from spec/gguf-quant-formats.md §3, independent of the packer.
    fn dequant(ty: GgmlType, data: &[u8]) -> Vec<f32> {
        let mut y = Vec::new();
        for b in data.chunks_exact(ty.block_bytes()) {
            match ty {
                GgmlType::Q8_0 => {
                    let d = f16_at(b, 0);
                    y.extend(b[2..34].iter().map(|&q| d * (q as i8) as f32));
                }
                GgmlType::Q4_K | GgmlType::Q5_K => {
                    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                    let s = &b[4..16];
                    let sm = |j: usize| -> (f32, f32) {
                        if j < 4 {
                            ((s[j] & 63) as f32, (s[j + 4] & 63) as f32)
                        } else {
                            (
                                ((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4)) as f32,
                                ((s[j + 4] >> 4) | ((s[j] >> 6) << 4)) as f32,
                            )
                        }
                    };
                    let q5 = ty == GgmlType::Q5_K;
                    let (qh, qs) = if q5 {
                        (&b[16..48], &b[48..176])
                    } else {
                        (&b[0..0], &b[16..144])
                    };
                    let mut out = [0f32; 256];
                    for c in 0..4 {
                        for l in 0..32 {
                            let byte = qs[32 * c + l];
                            for (half, j) in [(0usize, 2 * c), (1, 2 * c + 1)] {
                                let mut q = if half == 0 { byte & 0xf } else { byte >> 4 } as f32;
                                if q5 && (qh[l] >> j) & 1 == 1 {
                                    q += 16.0;
                                }
                                let (sc, m) = sm(j);
                                out[64 * c + 32 * half + l] = d * sc * q - dmin * m;
                            }
                        }
                    }
                    y.extend(out);
                }
                GgmlType::Q6_K => {
                    let d = f16_at(b, 208);
                    let mut out = [0f32; 256];
                    for n in 0..2 {
                        let (ql, qh, sc) = (&b[64 * n..], &b[128 + 32 * n..], &b[192 + 8 * n..]);
                        for l in 0..32 {
                            let is = l / 16;
                            let v = [
                                (ql[l] & 0xf) | ((qh[l] & 3) << 4),
                                (ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4),
                                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                            ];
                            for (k, &q) in v.iter().enumerate() {
                                let s = sc[is + 2 * k] as i8 as f32;
                                out[128 * n + l + 32 * k] = d * s * (q as i32 - 32) as f32;
                            }
                        }
                    }
                    y.extend(out);
                }
                GgmlType::F32 => y.extend(
                    b.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                ),
                _ => unreachable!("test helper covers the generated types"),
            }
        }
        y
    }

    fn stats(v: &[f32]) -> (f32, f32) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean as f32, var.sqrt() as f32)
    }

    #[test]
    fn every_quantized_format_dequantizes_to_the_requested_std_and_zero_mean() {
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::F32,
        ] {
            for std in [0.0076f32, 0.0625, 1.0] {
                let n_blocks = 4096 / ty.block_elems() * 16;
                let mut buf = vec![0u8; n_blocks * ty.block_bytes()];
                let mut rng = chunk_rng(7, "t", 0);
                fill(ty, Dist::zero_mean(std), &mut rng, &mut buf).expect("valid block multiple");
                let y = dequant(ty, &buf);
                assert!(y.iter().all(|x| x.is_finite()), "{ty}");
                let (mean, sd) = stats(&y);
                assert!((sd / std - 1.0).abs() < 0.05, "{ty} std {sd} want {std}");
                assert!(mean.abs() < 0.05 * std, "{ty} mean {mean} std {std}");
            }
        }
    }

    #[test]
    fn k_quant_scales_are_finite_normal_or_subnormal_f16_and_nonzero() {
        for ty in [
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::Q8_0,
        ] {
            let mut buf = vec![0u8; 64 * ty.block_bytes()];
            fill(
                ty,
                Dist::zero_mean(1e-3),
                &mut chunk_rng(1, "x", 3),
                &mut buf,
            )
            .expect("whole blocks");
            for b in buf.chunks_exact(ty.block_bytes()) {
                let offs: &[usize] = match ty {
                    GgmlType::Q6_K => &[208],
                    GgmlType::Q8_0 => &[0],
                    _ => &[0, 2],
                };
                for &o in offs {
                    let d = f16_at(b, o);
                    assert!(d.is_finite() && d > 0.0, "{ty} scale {d}");
                }
            }
        }
    }

    #[test]
    fn the_same_seed_name_and_chunk_give_the_same_bytes_and_others_differ() {
        let gen = |seed, name: &str, chunk| {
            let mut b = vec![0u8; 8 * 144];
            fill(
                GgmlType::Q4_K,
                Dist::zero_mean(0.1),
                &mut chunk_rng(seed, name, chunk),
                &mut b,
            )
            .expect("whole blocks");
            b
        };
        assert_eq!(gen(1, "a", 0), gen(1, "a", 0));
        assert_ne!(gen(1, "a", 0), gen(2, "a", 0));
        assert_ne!(gen(1, "a", 0), gen(1, "b", 0));
        assert_ne!(gen(1, "a", 0), gen(1, "a", 1));
    }

    #[test]
    fn ssm_a_is_negative_and_partial_blocks_are_rejected() {
        let mut b = vec![0u8; 4 * 48];
        fill(
            GgmlType::F32,
            Dist::NegExp { lo: -1.0, hi: 1.0 },
            &mut chunk_rng(0, "a", 0),
            &mut b,
        )
        .expect("f32 takes any length");
        let y = dequant(GgmlType::F32, &b);
        assert!(y
            .iter()
            .all(|&x| (-std::f32::consts::E..=-1.0 / std::f32::consts::E).contains(&x)));
        let mut odd = vec![0u8; 100];
        assert!(matches!(
            fill(
                GgmlType::Q4_K,
                Dist::zero_mean(1.0),
                &mut chunk_rng(0, "a", 0),
                &mut odd
            ),
            Err(BlockError::PartialBlock { .. })
        ));
        assert!(matches!(
            fill(
                GgmlType::Q4_K,
                Dist::Uniform { lo: 0.9, hi: 1.1 },
                &mut chunk_rng(0, "a", 0),
                &mut b[..144]
            ),
            Err(BlockError::NeedsZeroMean { .. })
        ));
    }
}
