//! Gated full attention over an f16 KV cache, computed the way llama.cpp's CPU flash-attention
//! "one chunk" path does (`ops.cpp` `ggml_compute_forward_flash_attn_ext_f16_one_chunk`,
//! spec §3.2): Q rounded to f16, q·k as an f16×f16 dot accumulated in f32, online softmax,
//! and the V accumulator kept in f16. llama.cpp switches to other paths for ≥ 64 query tokens
//! in one batch (tiled) and for single-token decode over ≥ 512 cells (split KV); those differ
//! from this one only in rounding.

use half::f16;
use simd::par::for_each_chunk_mut;
use simd::pool::Pool;

use super::act::sigmoid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDims {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
}

impl AttnDims {
    /// f16 elements per KV row (one token, all KV heads).
    pub fn kv_row(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }
}

/// Largest head dim the per-head stack buffers hold (qwen35 uses 256).
pub const MAX_HEAD_DIM: usize = 512;

/// Attention of one query token over cache rows `0..n_kv` (causal: the caller passes the
/// token's own position + 1), followed by the sigmoid output gate.
/// `q` and `gate` are [n_head·head_dim]; caches are [n_ctx][n_head_kv·head_dim];
/// `out` is [n_head·head_dim]. Query heads run in parallel on `pool`.
#[allow(clippy::too_many_arguments)]
pub fn attend_one(
    pool: &Pool,
    dims: &AttnDims,
    q: &[f32],
    gate: &[f32],
    k_cache: &[f16],
    v_cache: &[f16],
    n_kv: usize,
    out: &mut [f32],
) {
    let hd = dims.head_dim;
    let row = dims.kv_row();
    assert!(
        q.len() == dims.q_dim() && gate.len() == dims.q_dim() && out.len() == dims.q_dim(),
        "attend_one: shapes"
    );
    assert!(
        k_cache.len() >= n_kv * row && v_cache.len() >= n_kv * row,
        "attend_one: cache too short"
    );
    assert!(
        hd <= MAX_HEAD_DIM,
        "attend_one: head dim {hd} > {MAX_HEAD_DIM}"
    );
    let group = dims.n_head / dims.n_head_kv;
    for_each_chunk_mut(pool, out, hd, &|h, o| {
        let (qh, gh) = (&q[h * hd..(h + 1) * hd], &gate[h * hd..(h + 1) * hd]);
        attend_head(hd, row, h / group, qh, gh, k_cache, v_cache, n_kv, o);
    });
}

/// `attend_one` for `t_n` consecutive query tokens at positions `pos0..` (token `t` sees
/// cache rows `0..pos0 + t + 1`) in one parallel region over the heads: each head walks
/// its queries in order with exactly `attend_one`'s arithmetic. `q`, `gate`, `out` are
/// [t_n][n_head·head_dim]; `scratch` is reused for the head-major results.
#[allow(clippy::too_many_arguments)]
pub fn attend_batch(
    pool: &Pool,
    dims: &AttnDims,
    q: &[f32],
    gate: &[f32],
    k_cache: &[f16],
    v_cache: &[f16],
    pos0: usize,
    t_n: usize,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    let (hd, qd, row) = (dims.head_dim, dims.q_dim(), dims.kv_row());
    assert!(
        q.len() == t_n * qd && gate.len() == t_n * qd && out.len() == t_n * qd,
        "attend_batch: shapes"
    );
    assert!(
        k_cache.len() >= (pos0 + t_n) * row && v_cache.len() >= (pos0 + t_n) * row,
        "attend_batch: cache too short"
    );
    assert!(
        hd <= MAX_HEAD_DIM,
        "attend_batch: head dim {hd} > {MAX_HEAD_DIM}"
    );
    if t_n == 0 {
        return;
    }
    let group = dims.n_head / dims.n_head_kv;
    if scratch.len() < t_n * qd {
        scratch.resize(t_n * qd, 0.0);
    }
    let hm = &mut scratch[..t_n * qd];
    for_each_chunk_mut(pool, hm, t_n * hd, &|h, o| {
        for (t, ot) in o.chunks_exact_mut(hd).enumerate() {
            let at = t * qd + h * hd;
            let (qh, gh) = (&q[at..at + hd], &gate[at..at + hd]);
            attend_head(
                hd,
                row,
                h / group,
                qh,
                gh,
                k_cache,
                v_cache,
                pos0 + t + 1,
                ot,
            );
        }
    });
    for h in 0..dims.n_head {
        for t in 0..t_n {
            out[t * qd + h * hd..t * qd + (h + 1) * hd]
                .copy_from_slice(&hm[(h * t_n + t) * hd..(h * t_n + t + 1) * hd]);
        }
    }
}

/// One query head over cache rows `0..n_kv` of KV head `g` (see `attend_one`).
#[allow(clippy::too_many_arguments)]
fn attend_head(
    hd: usize,
    row: usize,
    g: usize,
    qh: &[f32],
    gh: &[f32],
    k_cache: &[f16],
    v_cache: &[f16],
    n_kv: usize,
    o: &mut [f32],
) {
    let scale = 1.0 / (hd as f32).sqrt();
    {
        let mut q16 = [f16::ZERO; MAX_HEAD_DIM];
        let mut vkq = [f16::ZERO; MAX_HEAD_DIM];
        let (q16, vkq) = (&mut q16[..hd], &mut vkq[..hd]);
        for (d, &s) in q16.iter_mut().zip(qh) {
            *d = f16::from_f32(s);
        }
        let mut sum = 0.0f32;
        let mut max = f32::NEG_INFINITY;
        for t in 0..n_kv {
            let k = &k_cache[t * row + g * hd..t * row + (g + 1) * hd];
            let v = &v_cache[t * row + g * hd..t * row + (g + 1) * hd];
            let s = dot_f16(k, q16) * scale;
            let mut ms = 1.0f32;
            let mut vs = 1.0f32;
            if s > max {
                let old = max;
                max = s;
                ms = (old - max).exp();
                // vkq = f16(vkq·ms), then vkq = f16(v·1 + vkq), each rounded to f16.
                simd::fdot::f16_scale_mad(vkq, v, Some(ms), vs);
            } else {
                vs = (s - max).exp();
                simd::fdot::f16_scale_mad(vkq, v, None, vs);
            }
            sum = sum.mul_add(ms, vs); // `S = S*ms + vs`, contracted to an fma by GCC
        }
        let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
        for ((dst, &a), &gt) in o.iter_mut().zip(vkq.iter()).zip(gh) {
            *dst = a.to_f32() * inv * sigmoid(gt);
        }
    }
}

/// f16·f16 dot accumulated in f32 with the lane layout of ggml's AVX2 `ggml_vec_dot_f16`
/// (4 accumulators × 8 lanes, fused multiply-add, then its fixed reduction order).
/// Lengths that are not a multiple of 32 finish with a plain f64 tail, as ggml does.
/// Vectorised in `simd::fdot` (same lanes, same bits).
pub fn dot_f16(x: &[f16], y: &[f16]) -> f32 {
    simd::fdot::dot_f16(x, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to16(v: &[f32]) -> Vec<f16> {
        v.iter().map(|&x| f16::from_f32(x)).collect()
    }

    #[test]
    fn attention_matches_an_f64_softmax_within_f16_rounding() {
        let dims = AttnDims {
            n_head: 4,
            n_head_kv: 2,
            head_dim: 32,
        };
        let n_kv = 9;
        let f = |i: usize, s: f32| (i as f32 * s).sin() * 1.5;
        let q: Vec<f32> = (0..dims.q_dim()).map(|i| f(i, 0.37)).collect();
        let gate: Vec<f32> = (0..dims.q_dim()).map(|i| f(i, 0.11)).collect();
        let kc = to16(
            &(0..n_kv * dims.kv_row())
                .map(|i| f(i, 0.53))
                .collect::<Vec<_>>(),
        );
        let vc = to16(
            &(0..n_kv * dims.kv_row())
                .map(|i| f(i, 0.29))
                .collect::<Vec<_>>(),
        );
        let mut out = vec![0.0; dims.q_dim()];
        attend_one(&Pool::new(2), &dims, &q, &gate, &kc, &vc, n_kv, &mut out);
        let hd = 32;
        for h in 0..4 {
            let g = h / 2;
            let s: Vec<f64> = (0..n_kv)
                .map(|t| {
                    (0..hd)
                        .map(|d| q[h * hd + d] as f64 * kc[t * 64 + g * hd + d].to_f64())
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
            for d in 0..hd {
                let o: f64 = (0..n_kv)
                    .map(|t| (s[t] - m).exp() / z * vc[t * 64 + g * hd + d].to_f64())
                    .sum();
                let gt = 1.0 / (1.0 + (-(gate[h * hd + d] as f64)).exp());
                assert!(
                    (out[h * hd + d] as f64 - o * gt).abs() < 5e-3,
                    "head {h} dim {d}"
                );
            }
        }
    }

    #[test]
    fn the_batched_attention_equals_one_query_at_a_time_bit_for_bit() {
        let dims = AttnDims {
            n_head: 6,
            n_head_kv: 2,
            head_dim: 64,
        };
        let (pos0, t_n) = (5, 11);
        let n_ctx = pos0 + t_n;
        let f = |i: usize, s: f32| (i as f32 * s).sin() * 2.5;
        let q: Vec<f32> = (0..t_n * dims.q_dim()).map(|i| f(i, 0.37)).collect();
        let gate: Vec<f32> = (0..t_n * dims.q_dim()).map(|i| f(i, 0.11)).collect();
        let kc = to16(
            &(0..n_ctx * dims.kv_row())
                .map(|i| f(i, 0.53))
                .collect::<Vec<_>>(),
        );
        let vc = to16(
            &(0..n_ctx * dims.kv_row())
                .map(|i| f(i, 0.29))
                .collect::<Vec<_>>(),
        );
        let qd = dims.q_dim();
        for threads in [1, 2] {
            let pool = Pool::new(threads);
            let mut want = vec![0.0f32; t_n * qd];
            for t in 0..t_n {
                let r = t * qd..(t + 1) * qd;
                let (qt, gt) = (&q[r.clone()], &gate[r.clone()]);
                attend_one(&pool, &dims, qt, gt, &kc, &vc, pos0 + t + 1, &mut want[r]);
            }
            let (mut got, mut scratch) = (vec![f32::NAN; t_n * qd], Vec::new());
            attend_batch(
                &pool,
                &dims,
                &q,
                &gate,
                &kc,
                &vc,
                pos0,
                t_n,
                &mut scratch,
                &mut got,
            );
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{threads} threads");
        }
    }

    #[test]
    fn dot_f16_equals_the_exact_sum_for_small_integers() {
        let x = to16(&(0..100).map(|i| (i % 7) as f32).collect::<Vec<_>>());
        let y = to16(&(0..100).map(|i| (i % 5) as f32 - 2.0).collect::<Vec<_>>());
        let want: f32 = (0..100)
            .map(|i| ((i % 7) as f32) * ((i % 5) as f32 - 2.0))
            .sum();
        assert_eq!(dot_f16(&x, &y), want);
    }
}
