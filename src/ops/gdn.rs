//! Gated DeltaNet per-token pieces (spec §4): the short causal conv over raw projections and
//! the gated delta rule, laid out as llama.cpp lays out its state so snapshots could be
//! exchanged with it.

use super::act::{sigmoid, silu_inplace, softplus};
use simd::par::{for_each_chunk_mut, for_each_chunk_mut2, for_each_chunk_mut_cols};
use simd::pool::Pool;

use super::norm::{l2_norm_inplace, rms_norm_chunks_inplace};

/// Shapes of one GDN layer (27B: H_k 16, H_v 48, d 128, conv kernel 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GdnDims {
    /// Key/query heads (`ssm.group_count`).
    pub h_k: usize,
    /// Value heads (`ssm.time_step_rank`); value head j pairs with key head j mod h_k.
    pub h_v: usize,
    /// Head dim, the same for keys and values (`ssm.state_size`).
    pub d: usize,
    /// Conv taps (`ssm.conv_kernel`).
    pub conv_kernel: usize,
}

impl GdnDims {
    pub fn key_dim(&self) -> usize {
        self.h_k * self.d
    }
    pub fn value_dim(&self) -> usize {
        self.h_v * self.d
    }
    /// Conv channels: [q | k | v].
    pub fn conv_dim(&self) -> usize {
        2 * self.key_dim() + self.value_dim()
    }
    /// f32 elements of the conv state: the last `conv_kernel − 1` raw projection columns.
    pub fn conv_state_len(&self) -> usize {
        (self.conv_kernel - 1) * self.conv_dim()
    }
    /// f32 elements of the recurrent state: one d×d matrix per value head.
    pub fn ssm_state_len(&self) -> usize {
        self.h_v * self.d * self.d
    }
}

/// One token of the depthwise causal conv. `state` holds the previous `K−1` raw columns,
/// oldest first (`[K−1][C]`); `w` is `ssm_conv1d.weight` (`[C][K]`, tap K−1 multiplies the
/// current token). Writes the conv output (before silu) into `out` and shifts `mixed` into
/// the state. The four products are summed in f32 in tap order, as `ssm_conv_f32` does.
pub fn conv_step(state: &mut [f32], mixed: &[f32], w: &[f32], kernel: usize, out: &mut [f32]) {
    let c = mixed.len();
    assert_eq!(state.len(), (kernel - 1) * c, "conv_step: state length");
    assert_eq!(w.len(), kernel * c, "conv_step: weight length");
    assert_eq!(out.len(), c, "conv_step: output length");
    for ch in 0..c {
        let taps = &w[ch * kernel..(ch + 1) * kernel];
        let mut sum = 0.0f32;
        for (k, &tap) in taps[..kernel - 1].iter().enumerate() {
            sum += state[k * c + ch] * tap;
        }
        sum += mixed[ch] * taps[kernel - 1];
        out[ch] = sum;
    }
    state.copy_within(c.., 0);
    state[(kernel - 2) * c..].copy_from_slice(mixed);
}

/// One token of the gated delta rule for one value head (spec §4 step 8, llama.cpp's fused
/// CPU op order). `s` is the head's state stored transposed, `s[b·d + a] = S[a][b]`;
/// `q`, `k` are L2-normalised; `g` is the log decay (≤ 0); `out` gets `Sᵀq / √d`.
pub fn delta_rule_step(
    s: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    g: f32,
    beta: f32,
    out: &mut [f32],
) {
    let d = q.len();
    assert!(
        s.len() == d * d && k.len() == d && v.len() == d && out.len() == d,
        "delta_rule_step: shapes"
    );
    let decay = g.exp();
    let scale = 1.0 / (d as f32).sqrt();
    // Per column: `col *= decay` (ggml scales the whole state first; columns are
    // independent, so the values are the same), `kv = dot_f32(col, k)`, `delta = (v[b] −
    // kv)·beta`, `col = fma(k, delta, col)` (ggml_vec_mad_f32: fused), `dot_f32(col, q)`.
    for b in 0..d {
        let col = &mut s[b * d..(b + 1) * d];
        out[b] = simd::fdot::delta_rule_column(col, k, q, decay, v[b], beta) * scale;
    }
}

/// Everything of a GDN layer for one token between the input projections and `ssm_out`:
/// conv + silu, L2 norms, gates, the delta rule and the gated RMSNorm of every value head.
/// Inputs are this token's projections: `mixed` [conv_dim], `z` [value_dim], `b`, `a` [h_v].
/// Writes `y` [value_dim], the input of `ssm_out`. Value heads run in parallel on `pool`;
/// each head's arithmetic is the same whatever the thread count.
#[allow(clippy::too_many_arguments)]
pub fn gdn_token(
    pool: &Pool,
    dims: &GdnDims,
    p: &GdnParams<'_>,
    conv_state: &mut [f32],
    ssm_state: &mut [f32],
    mixed: &[f32],
    z: &[f32],
    b: &[f32],
    a: &[f32],
    scratch: &mut [f32],
    y: &mut [f32],
) {
    let (kd, vd, d) = (dims.key_dim(), dims.value_dim(), dims.d);
    assert_eq!(scratch.len(), dims.conv_dim(), "gdn_token: scratch length");
    assert_eq!(y.len(), vd, "gdn_token: output length");
    assert!(
        d <= MAX_HEAD_DIM,
        "gdn_token: head dim {d} > {MAX_HEAD_DIM}"
    );
    let pc = simd::prof::scope("gdn.core: conv+silu+l2 (serial)");
    conv_step(conv_state, mixed, p.conv_w, dims.conv_kernel, scratch);
    silu_inplace(scratch);
    let (qk, v) = scratch.split_at_mut(2 * kd);
    for head in qk.chunks_exact_mut(d) {
        l2_norm_inplace(head, p.eps);
    }
    drop(pc);
    let qk: &[f32] = qk;
    let v: &[f32] = v;
    let _ph = simd::prof::scope("gdn.core: heads (parallel)");
    for_each_chunk_mut2(pool, ssm_state, d * d, y, d, &|j, s, yj| {
        head_token(dims, p, j, s, qk, v, z, b[j], a[j], yj);
    });
}

/// One value head `j` of one token after the conv: the delta rule on the head's state `s`,
/// the gated RMSNorm into `yj`. `qk` is the token's normalised [q | k], `v` its values,
/// `z` its gate projections (all heads), `b`, `a` head j's beta and decay inputs.
#[allow(clippy::too_many_arguments)]
fn head_token(
    dims: &GdnDims,
    p: &GdnParams<'_>,
    j: usize,
    s: &mut [f32],
    qk: &[f32],
    v: &[f32],
    z: &[f32],
    b: f32,
    a: f32,
    yj: &mut [f32],
) {
    let (kd, d) = (dims.key_dim(), dims.d);
    let (q, k) = qk.split_at(kd);
    let i = j % dims.h_k; // tiled V-head order of qwen35 GGUFs (architecture spec §4.2)
    let beta = sigmoid(b);
    let g = softplus(a + p.dt_bias[j]) * p.ssm_a[j];
    delta_rule_step(
        s,
        &q[i * d..(i + 1) * d],
        &k[i * d..(i + 1) * d],
        &v[j * d..(j + 1) * d],
        g,
        beta,
        yj,
    );
    rms_norm_chunks_inplace(yj, p.ssm_norm, p.eps);
    let mut gate = [0.0f32; MAX_HEAD_DIM];
    let gate = &mut gate[..d];
    gate.copy_from_slice(&z[j * d..(j + 1) * d]);
    silu_inplace(gate); // ggml_silu runs per row of d_v values
    for (yi, &gi) in yj.iter_mut().zip(gate.iter()) {
        *yi *= gi;
    }
}

/// [`gdn_token`] for the `T` tokens of a batch at once (prefill), with the same values:
/// the conv, silu and L2 norms of every token run in parallel over tokens (they read only
/// raw projections), then each value head runs its delta rule over all tokens in order on
/// one thread (one pool dispatch per layer instead of one per token). `mixed` is
/// [T][conv_dim], `z` [T][value_dim], `b`, `a` [T][h_v]; `conv_out` is scratch of
/// `T · conv_dim`; `y` gets [T][value_dim]. The states end as after `T` `gdn_token` calls.
#[allow(clippy::too_many_arguments)]
pub fn gdn_batch(
    pool: &Pool,
    dims: &GdnDims,
    p: &GdnParams<'_>,
    conv_state: &mut [f32],
    ssm_state: &mut [f32],
    mixed: &[f32],
    z: &[f32],
    b: &[f32],
    a: &[f32],
    conv_out: &mut [f32],
    y: &mut [f32],
) {
    let (kd, vd, d, hv, cd) = (
        dims.key_dim(),
        dims.value_dim(),
        dims.d,
        dims.h_v,
        dims.conv_dim(),
    );
    let kern = dims.conv_kernel;
    let t_n = mixed.len() / cd;
    assert!(
        mixed.len() == t_n * cd
            && z.len() == t_n * vd
            && b.len() == t_n * hv
            && a.len() == t_n * hv
            && conv_out.len() == t_n * cd
            && y.len() == t_n * vd,
        "gdn_batch: shapes"
    );
    assert_eq!(
        conv_state.len(),
        dims.conv_state_len(),
        "gdn_batch: conv state"
    );
    assert_eq!(
        ssm_state.len(),
        dims.ssm_state_len(),
        "gdn_batch: ssm state"
    );
    assert!(
        d <= MAX_HEAD_DIM,
        "gdn_batch: head dim {d} > {MAX_HEAD_DIM}"
    );
    if t_n == 0 {
        return;
    }
    let w = p.conv_w;
    assert_eq!(w.len(), kern * cd, "gdn_batch: conv weight length");
    let state: &[f32] = conv_state;
    // Raw column of time `s` (negative: from the state, oldest first).
    let raw = |s: isize| -> &[f32] {
        if s >= 0 {
            &mixed[s as usize * cd..(s as usize + 1) * cd]
        } else {
            let r = (kern as isize - 1 + s) as usize;
            &state[r * cd..(r + 1) * cd]
        }
    };
    for_each_chunk_mut(pool, conv_out, cd, &|t, out| {
        // Same sums as `conv_step`: taps 0..K−1 over the window oldest first, then the
        // current column, in f32.
        let cols: Vec<&[f32]> = (0..kern)
            .map(|k| raw(t as isize + k as isize - (kern as isize - 1)))
            .collect();
        for (ch, o) in out.iter_mut().enumerate() {
            let taps = &w[ch * kern..(ch + 1) * kern];
            let mut sum = 0.0f32;
            for (k, &tap) in taps[..kern - 1].iter().enumerate() {
                sum += cols[k][ch] * tap;
            }
            sum += cols[kern - 1][ch] * taps[kern - 1];
            *o = sum;
        }
        silu_inplace(out);
        for head in out[..2 * kd].chunks_exact_mut(d) {
            l2_norm_inplace(head, p.eps);
        }
    });
    // The window after the last token: raw columns T−K+1 .. T−1 (some may be old state).
    let new_state: Vec<f32> = (0..kern - 1)
        .flat_map(|r| {
            raw(t_n as isize - (kern as isize - 1) + r as isize)
                .iter()
                .copied()
        })
        .collect();
    conv_state.copy_from_slice(&new_state);
    let conv_out: &[f32] = conv_out;
    for_each_chunk_mut_cols(pool, ssm_state, d * d, y, vd, d, &|j, s, mut ycols| {
        for t in 0..t_n {
            let (qk, v) = conv_out[t * cd..(t + 1) * cd].split_at(2 * kd);
            head_token(
                dims,
                p,
                j,
                s,
                qk,
                v,
                &z[t * vd..(t + 1) * vd],
                b[t * hv + j],
                a[t * hv + j],
                ycols.row(t),
            );
        }
    });
}

/// Largest GDN head dim the per-head stack buffers hold (qwen35 uses 128).
pub const MAX_HEAD_DIM: usize = 512;

/// The small float tensors of one GDN layer.
#[derive(Clone, Copy, Debug)]
pub struct GdnParams<'a> {
    /// `ssm_conv1d.weight`, [conv_dim][K].
    pub conv_w: &'a [f32],
    /// `ssm_dt.bias`, [h_v].
    pub dt_bias: &'a [f32],
    /// `ssm_a` = −exp(A_log), [h_v].
    pub ssm_a: &'a [f32],
    /// `ssm_norm.weight`, [d], shared by all heads, not +1 folded.
    pub ssm_norm: &'a [f32],
    pub eps: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in (−mag, mag).
    fn vals(seed: &mut u64, n: usize, mag: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * mag
            })
            .collect()
    }

    #[test]
    fn the_batched_layer_equals_token_by_token_bit_for_bit() {
        let dims = GdnDims {
            h_k: 2,
            h_v: 4,
            d: 32,
            conv_kernel: 4,
        };
        let (cd, vd, hv) = (dims.conv_dim(), dims.value_dim(), dims.h_v);
        let mut seed = 11u64;
        let conv_w = vals(&mut seed, cd * 4, 0.5);
        let dt_bias = vals(&mut seed, hv, 1.0);
        let ssm_a: Vec<f32> = vals(&mut seed, hv, 1.0).iter().map(|v| -v.abs()).collect();
        let ssm_norm = vals(&mut seed, dims.d, 1.5);
        let p = GdnParams {
            conv_w: &conv_w,
            dt_bias: &dt_bias,
            ssm_a: &ssm_a,
            ssm_norm: &ssm_norm,
            eps: 1e-6,
        };
        for threads in [1usize, 2, 3] {
            let pool = Pool::new(threads);
            let mut conv_a = vals(&mut seed, dims.conv_state_len(), 1.0);
            let mut ssm_a_st = vals(&mut seed, dims.ssm_state_len(), 0.2);
            let (mut conv_b, mut ssm_b) = (conv_a.clone(), ssm_a_st.clone());
            // Batches shorter than the conv window (1, 2), then longer ones, back to back.
            for t_n in [1usize, 2, 5, 9] {
                let mixed = vals(&mut seed, t_n * cd, 2.0);
                let z = vals(&mut seed, t_n * vd, 3.0);
                let b = vals(&mut seed, t_n * hv, 4.0);
                let a = vals(&mut seed, t_n * hv, 4.0);
                let mut want = vec![f32::NAN; t_n * vd];
                let mut scratch = vec![0.0f32; cd];
                for t in 0..t_n {
                    gdn_token(
                        &pool,
                        &dims,
                        &p,
                        &mut conv_a,
                        &mut ssm_a_st,
                        &mixed[t * cd..(t + 1) * cd],
                        &z[t * vd..(t + 1) * vd],
                        &b[t * hv..(t + 1) * hv],
                        &a[t * hv..(t + 1) * hv],
                        &mut scratch,
                        &mut want[t * vd..(t + 1) * vd],
                    );
                }
                let mut got = vec![f32::NAN; t_n * vd];
                let mut conv_out = vec![0.0f32; t_n * cd];
                gdn_batch(
                    &pool,
                    &dims,
                    &p,
                    &mut conv_b,
                    &mut ssm_b,
                    &mixed,
                    &z,
                    &b,
                    &a,
                    &mut conv_out,
                    &mut got,
                );
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "y, {threads} threads, T = {t_n}");
                assert_eq!(bits(&conv_b), bits(&conv_a), "conv state, T = {t_n}");
                assert_eq!(bits(&ssm_b), bits(&ssm_a_st), "ssm state, T = {t_n}");
            }
        }
    }

    #[test]
    fn conv_step_shifts_the_window_and_applies_taps_oldest_first() {
        let (c, k) = (3usize, 4usize);
        let w: Vec<f32> = (0..c * k).map(|i| i as f32 + 1.0).collect();
        let mut state = vec![0.0f32; (k - 1) * c];
        let mut out = vec![0.0f32; c];
        let cols = [
            [1.0f32, 2.0, 3.0],
            [4.0, 5.0, 6.0],
            [7.0, 8.0, 9.0],
            [10.0, 11.0, 12.0],
        ];
        for col in &cols {
            conv_step(&mut state, col, &w, k, &mut out);
        }
        for ch in 0..c {
            let want: f32 = (0..k).map(|t| cols[t][ch] * w[ch * k + t]).sum();
            assert_eq!(out[ch], want);
        }
        assert_eq!(&state[..c], &cols[1][..]);
        assert_eq!(&state[2 * c..], &cols[3][..]);
    }

    #[test]
    fn delta_rule_matches_the_matrix_form() {
        let d = 8usize;
        let mut s: Vec<f32> = (0..d * d)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.05)
            .collect();
        let mut sm = vec![vec![0.0f64; d]; d]; // sm[a][b]
        for a in 0..d {
            for b in 0..d {
                sm[a][b] = s[b * d + a] as f64;
            }
        }
        let unit = |seed: f32| {
            let v: Vec<f32> = (0..d).map(|i| (i as f32 * seed).sin()).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / n).collect::<Vec<_>>()
        };
        let (q, k) = (unit(1.3), unit(0.7));
        let v: Vec<f32> = (0..d).map(|i| i as f32 * 0.1 - 0.3).collect();
        let (g, beta) = (-0.4f32, 0.8f32);
        let mut out = vec![0.0; d];
        delta_rule_step(&mut s, &q, &k, &v, g, beta, &mut out);
        let e = (g as f64).exp();
        for row in sm.iter_mut() {
            for x in row.iter_mut() {
                *x *= e;
            }
        }
        for b in 0..d {
            let kv: f64 = (0..d).map(|a| sm[a][b] * k[a] as f64).sum();
            let delta = beta as f64 * (v[b] as f64 - kv);
            for a in 0..d {
                sm[a][b] += k[a] as f64 * delta;
            }
        }
        for b in 0..d {
            let o: f64 = (0..d).map(|a| sm[a][b] * q[a] as f64).sum::<f64>() / (d as f64).sqrt();
            assert!((out[b] as f64 - o).abs() < 1e-5, "out[{b}]");
            for a in 0..d {
                assert!((s[b * d + a] as f64 - sm[a][b]).abs() < 1e-5);
            }
        }
    }
}
