//! The qwen35 forward pass on the CPU: the reference every GPU and hybrid path is checked
//! against. It follows `shared/spec/qwen35-forward.md` step by step and mirrors llama.cpp's
//! CPU numerics (activations quantized to the weight's vec-dot type inside the `simd`
//! mat-vecs, f64 norm sums, f16 KV cache and flash-attention accumulators).
//!
//! A batch of T tokens goes through every layer together: the projections use the k-input
//! kernels (each weight row read once per 8 tokens); the conv, recurrence and attention run
//! token by token inside the layer. A token's result does not depend on T or on the thread
//! count, so batched verification equals sequential decoding bit for bit.

use half::f16;
use simd::par::{for_each_chunk_mut, for_each_chunk_mut2};
use simd::{MatRef, Pool};

use crate::gguf::{GgmlType, TensorView};
use crate::ops::attention::{attend_batch, attend_one, AttnDims};
use crate::ops::gdn::{gdn_batch, gdn_token, GdnDims, GdnParams};
use crate::ops::norm::{rms_norm, rms_norm_chunks_inplace};
use crate::ops::rope::{rope_neox_inplace, rope_table_sections};
use crate::placement::profile::{self, Phase};

use super::config::Config;
use super::error::ModelError;
use super::state::{LayerState, SeqState};
use super::weights::{AttnWeights, FfnWeights, LayerKind, Qwen35Weights};

/// Which logit rows a forward call computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's (plain decoding, prompt processing).
    Last,
    /// Every token's (speculative verification, teacher-forced tests).
    All,
    /// None (prompt chunks whose logits nobody reads).
    None,
}

impl Logits {
    /// The rows of an `n`-token batch whose logits are wanted.
    pub fn rows(self, n: usize) -> std::ops::Range<usize> {
        match self {
            Logits::Last => n.saturating_sub(1)..n,
            Logits::All => 0..n,
            Logits::None => 0..0,
        }
    }
}

/// What a forward call returns. Buffers are reused across calls.
#[derive(Default)]
pub struct ForwardOutput {
    /// Row-major [rows][n_vocab]; rows as asked by [`Logits`].
    pub logits: Vec<f32>,
    /// The post-final-norm hidden state `hN` of every token, [T][n_embd] (MTP input).
    pub hidden: Vec<f32>,
}

/// Receives the GDN state of layer `layer` after batch token `t` (`conv`, `ssm` as in
/// [`LayerState::Gdn`]), from inside the layer's token scan; `pool` is free to copy with.
pub trait GdnStateSink {
    fn after_token(&mut self, pool: &Pool, layer: usize, t: usize, conv: &[f32], ssm: &[f32]);
}

/// Small float tensors copied out of the file once (norms, conv taps, gates).
struct AttnSmall {
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
}

struct GdnSmall {
    conv_w: Vec<f32>,
    dt_bias: Vec<f32>,
    ssm_a: Vec<f32>,
    ssm_norm: Vec<f32>,
}

enum KindSmall {
    Gdn(GdnSmall),
    Attention(AttnSmall),
}

struct LayerSmall {
    attn_norm: Vec<f32>,
    post_norm: Vec<f32>,
    kind: KindSmall,
}

struct MtpSmall {
    attn_norm: Vec<f32>,
    post_norm: Vec<f32>,
    attn: AttnSmall,
    enorm: Vec<f32>,
    hnorm: Vec<f32>,
    head_norm: Vec<f32>,
}

/// Reused activation buffers; they grow to the largest batch seen and never shrink.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    xn: Vec<f32>,
    o: Vec<f32>,
    p0: Vec<f32>,
    p1: Vec<f32>,
    p2: Vec<f32>,
    p3: Vec<f32>,
    y: Vec<f32>,
    conv: Vec<f32>,
    hid: Vec<f32>,
}

fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// A qwen35 model ready to run on the CPU.
pub struct CpuModel<'a> {
    pub cfg: Config,
    pub w: Qwen35Weights<'a>,
    pool: Pool,
    layers: Vec<LayerSmall>,
    output_norm: Vec<f32>,
    mtp: Option<MtpSmall>,
    scratch: Scratch,
}

/// A whole float tensor as f32 (F32 read directly; other types dequantized).
fn to_f32(v: &TensorView<'_>) -> Vec<f32> {
    let n = v.info.n_elements() as usize;
    let mut out = vec![0.0f32; n];
    if v.info.ty == GgmlType::F32 {
        for (o, b) in out.iter_mut().zip(v.data.chunks_exact(4)) {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    } else {
        simd::dequantize_row(v.info.ty, v.data, &mut out);
    }
    out
}

fn mat<'v>(v: &TensorView<'v>) -> MatRef<'v> {
    MatRef {
        ty: v.info.ty,
        data: v.data,
        rows: v.info.rows() as usize,
        cols: v.info.row_len() as usize,
    }
}

fn attn_small(a: &AttnWeights<'_>) -> AttnSmall {
    AttnSmall {
        q_norm: to_f32(&a.attn_q_norm),
        k_norm: to_f32(&a.attn_k_norm),
    }
}

impl<'a> CpuModel<'a> {
    pub fn new(cfg: Config, w: Qwen35Weights<'a>, n_threads: usize) -> CpuModel<'a> {
        let layers = w
            .layers
            .iter()
            .map(|l| LayerSmall {
                attn_norm: to_f32(&l.attn_norm),
                post_norm: to_f32(&l.post_attention_norm),
                kind: match &l.kind {
                    LayerKind::Gdn(g) => KindSmall::Gdn(GdnSmall {
                        conv_w: to_f32(&g.ssm_conv1d),
                        dt_bias: to_f32(&g.ssm_dt_bias),
                        ssm_a: to_f32(&g.ssm_a),
                        ssm_norm: to_f32(&g.ssm_norm),
                    }),
                    LayerKind::Attention(a) => KindSmall::Attention(attn_small(a)),
                },
            })
            .collect();
        let mtp = w.mtp.as_ref().map(|m| MtpSmall {
            attn_norm: to_f32(&m.attn_norm),
            post_norm: to_f32(&m.post_attention_norm),
            attn: attn_small(&m.attn),
            enorm: to_f32(&m.enorm),
            hnorm: to_f32(&m.hnorm),
            head_norm: to_f32(&m.shared_head_norm),
        });
        let output_norm = to_f32(&w.output_norm);
        CpuModel {
            cfg,
            w,
            pool: Pool::new(n_threads.max(1)),
            layers,
            output_norm,
            mtp,
            scratch: Scratch::default(),
        }
    }

    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }

    /// The model's thread pool, for state copies between forward calls.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn has_mtp(&self) -> bool {
        self.mtp.is_some()
    }

    fn check_tokens(&self, st: &SeqState, n_past: usize, tokens: &[u32]) -> Result<(), ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        if n_past + tokens.len() > st.n_ctx {
            return Err(ModelError::ContextFull {
                n_ctx: st.n_ctx,
                needed: n_past + tokens.len(),
            });
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.cfg.n_vocab) {
            return Err(ModelError::BadToken {
                token: t,
                n_vocab: self.cfg.n_vocab,
            });
        }
        Ok(())
    }

    /// Runs `tokens` at positions `st.n_past..` through the trunk and advances the state.
    pub fn forward(
        &mut self,
        st: &mut SeqState,
        tokens: &[u32],
        want: Logits,
        out: &mut ForwardOutput,
    ) -> Result<(), ModelError> {
        self.forward_with_snapshots(st, tokens, want, out, None)
    }

    /// [`CpuModel::forward`], and hands every GDN layer's conv and recurrent state after each
    /// batch token to `sink` (speculative rollback). The sink only copies; results are the same.
    pub fn forward_with_snapshots(
        &mut self,
        st: &mut SeqState,
        tokens: &[u32],
        want: Logits,
        out: &mut ForwardOutput,
        mut sink: Option<&mut dyn GdnStateSink>,
    ) -> Result<(), ModelError> {
        self.check_tokens(st, st.n_past, tokens)?;
        let t_n = tokens.len();
        let d = self.cfg.n_embd;
        let eps = self.cfg.rms_eps;
        let pos0 = st.n_past;
        let CpuModel {
            cfg,
            w,
            pool,
            layers,
            output_norm,
            scratch,
            ..
        } = self;

        let step_t0 = profile::start();
        let x = grow(&mut scratch.x, t_n * d);
        for (t, &tok) in tokens.iter().enumerate() {
            embed(&w.token_embd, tok, &mut x[t * d..(t + 1) * d]);
        }

        for (il, (lw, ls)) in w.layers.iter().zip(layers.iter()).enumerate() {
            let _span = tracing::trace_span!("layer", il).entered();
            let mixer_t0 = profile::start();
            let x = &mut scratch.x[..t_n * d];
            let xn = grow(&mut scratch.xn, t_n * d);
            {
                let _p = simd::prof::scope("norm");
                norm_rows(pool, x, &ls.attn_norm, eps, xn);
            }
            match (&lw.kind, &ls.kind, &mut st.layers[il]) {
                (LayerKind::Gdn(g), KindSmall::Gdn(gs), LayerState::Gdn { conv, ssm }) => {
                    let dims = GdnDims {
                        h_k: cfg.ssm_n_group,
                        h_v: cfg.ssm_dt_rank,
                        d: cfg.ssm_d_state,
                        conv_kernel: cfg.ssm_d_conv,
                    };
                    let (cd, vd, hv) = (dims.conv_dim(), dims.value_dim(), dims.h_v);
                    let qkv = grow(&mut scratch.p0, t_n * cd);
                    let z = grow(&mut scratch.p1, t_n * vd);
                    let b = grow(&mut scratch.p2, t_n * hv);
                    let a = grow(&mut scratch.p3, t_n * hv);
                    // The four input projections read the same xn: one conversion, one
                    // parallel region.
                    {
                        let _p = simd::prof::scope("gdn.qkv+gate+beta+alpha");
                        pool.matmul_many(
                            xn,
                            t_n,
                            &mut [
                                (mat(&g.attn_qkv), &mut *qkv),
                                (mat(&g.attn_gate), &mut *z),
                                (mat(&g.ssm_beta), &mut *b),
                                (mat(&g.ssm_alpha), &mut *a),
                            ],
                        );
                    }
                    let (qkv, z, b, a): (&[f32], &[f32], &[f32], &[f32]) = (qkv, z, b, a);
                    let params = GdnParams {
                        conv_w: &gs.conv_w,
                        dt_bias: &gs.dt_bias,
                        ssm_a: &gs.ssm_a,
                        ssm_norm: &gs.ssm_norm,
                        eps,
                    };
                    let y = grow(&mut scratch.y, t_n * vd);
                    if sink.is_none() && t_n > 1 {
                        // Prefill: the same values with one parallel region per step
                        // instead of one per token.
                        let conv_out = grow(&mut scratch.conv, t_n * cd);
                        gdn_batch(pool, &dims, &params, conv, ssm, qkv, z, b, a, conv_out, y);
                    } else {
                        let conv_scratch = grow(&mut scratch.conv, cd);
                        let _p = simd::prof::scope("gdn.core");
                        for t in 0..t_n {
                            gdn_token(
                                pool,
                                &dims,
                                &params,
                                conv,
                                ssm,
                                &qkv[t * cd..(t + 1) * cd],
                                &z[t * vd..(t + 1) * vd],
                                &b[t * hv..(t + 1) * hv],
                                &a[t * hv..(t + 1) * hv],
                                conv_scratch,
                                &mut y[t * vd..(t + 1) * vd],
                            );
                            if let Some(sink) = sink.as_deref_mut() {
                                sink.after_token(pool, il, t, conv, ssm);
                            }
                        }
                    }
                    let o = grow(&mut scratch.o, t_n * d);
                    {
                        let _p = simd::prof::scope("gdn.ssm_out");
                        pool.matmul(mat(&g.ssm_out), y, t_n, o);
                    }
                }
                (
                    LayerKind::Attention(aw),
                    KindSmall::Attention(asm),
                    LayerState::Attention { k, v },
                ) => {
                    attention(cfg, pool, scratch_parts(scratch), aw, asm, k, v, pos0, t_n);
                }
                _ => unreachable!(
                    "layer {il}: weights, small tensors and state are built from the same schedule"
                ),
            }
            {
                let _p = simd::prof::scope("add");
                add_into(pool, d, &mut scratch.x[..t_n * d], &scratch.o[..t_n * d]);
            }
            profile::record(Phase::CpuMixer, il, mixer_t0);
            let ffn_t0 = profile::start();
            ffn(pool, scratch, &lw.ffn, &ls.post_norm, eps, t_n, d);
            profile::record(Phase::CpuFfn, il, ffn_t0);
        }

        let _p = simd::prof::scope("final norm + lm_head");
        let x = &scratch.x[..t_n * d];
        head(pool, x, output_norm, eps, &w.output, cfg.n_vocab, want, out);
        st.n_past += t_n;
        profile::record(Phase::Step, 0, step_t0);
        Ok(())
    }

    /// Runs the MTP block on `tokens` at positions `st.mtp_n_past..`, each paired with the
    /// trunk hidden state given in `hidden_in` ([T][n_embd]; spec §7.2: the MTP entry at
    /// position t sees token t and the trunk's hN of position t−1). Writes the MTP KV cache,
    /// the logits of every token and each token's MTP output hidden `hM` into `out`.
    pub fn mtp_forward(
        &mut self,
        st: &mut SeqState,
        tokens: &[u32],
        hidden_in: &[f32],
        out: &mut ForwardOutput,
    ) -> Result<(), ModelError> {
        self.mtp_forward_rows(st, tokens, hidden_in, Logits::All, out)
    }

    /// [`CpuModel::mtp_forward`] with a choice of logit rows (speculative catch-up only
    /// fills the MTP KV cache and needs none).
    pub fn mtp_forward_rows(
        &mut self,
        st: &mut SeqState,
        tokens: &[u32],
        hidden_in: &[f32],
        want: Logits,
        out: &mut ForwardOutput,
    ) -> Result<(), ModelError> {
        self.check_tokens(st, st.mtp_n_past, tokens)?;
        let t_n = tokens.len();
        let d = self.cfg.n_embd;
        let eps = self.cfg.rms_eps;
        assert_eq!(hidden_in.len(), t_n * d, "mtp_forward: hidden rows");
        let pos0 = st.mtp_n_past;
        let CpuModel {
            cfg,
            w,
            pool,
            mtp,
            scratch,
            ..
        } = self;
        let (Some(mw), Some(ms)) = (w.mtp.as_ref(), mtp.as_ref()) else {
            return Err(ModelError::Inconsistent(
                "this model has no MTP block".into(),
            ));
        };

        // u = eh_proj · [enorm(embed(x)) | hnorm(h)]
        let cat = grow(&mut scratch.p0, t_n * 2 * d);
        let mut e = vec![0.0f32; d];
        for (t, &tok) in tokens.iter().enumerate() {
            embed(&mw.embed_tokens, tok, &mut e);
            rms_norm(&e, &ms.enorm, eps, &mut cat[t * 2 * d..t * 2 * d + d]);
            rms_norm(
                &hidden_in[t * d..(t + 1) * d],
                &ms.hnorm,
                eps,
                &mut cat[t * 2 * d + d..(t + 1) * 2 * d],
            );
        }
        let x = grow(&mut scratch.x, t_n * d);
        pool.matmul(mat(&mw.eh_proj), cat, t_n, x);

        let xn = grow(&mut scratch.xn, t_n * d);
        norm_rows(pool, &scratch.x[..t_n * d], &ms.attn_norm, eps, xn);
        attention(
            cfg,
            pool,
            scratch_parts(scratch),
            &mw.attn,
            &ms.attn,
            &mut st.mtp_k,
            &mut st.mtp_v,
            pos0,
            t_n,
        );
        add_into(pool, d, &mut scratch.x[..t_n * d], &scratch.o[..t_n * d]);
        ffn(pool, scratch, &mw.ffn, &ms.post_norm, eps, t_n, d);

        let x = &scratch.x[..t_n * d];
        head(
            pool,
            x,
            &ms.head_norm,
            eps,
            &mw.shared_head_head,
            cfg.n_vocab,
            want,
            out,
        );
        st.mtp_n_past += t_n;
        Ok(())
    }
}

/// The output end of a forward: `out.hidden` = `norm(x)` for every row of `x` ([T][n_embd]),
/// and `out.logits` = `head · hidden` for the rows `want` names.
#[allow(clippy::too_many_arguments)]
fn head(
    pool: &Pool,
    x: &[f32],
    norm: &[f32],
    eps: f32,
    head: &TensorView<'_>,
    nv: usize,
    want: Logits,
    out: &mut ForwardOutput,
) {
    let d = norm.len();
    let t_n = x.len() / d;
    let hidden = grow(&mut out.hidden, t_n * d);
    norm_rows(pool, x, norm, eps, hidden);
    out.hidden.truncate(t_n * d);
    let rows = want.rows(t_n);
    let logits = grow(&mut out.logits, rows.len() * nv);
    if !rows.is_empty() {
        pool.matmul(
            mat(head),
            &out.hidden[rows.start * d..rows.end * d],
            rows.len(),
            logits,
        );
    }
    out.logits.truncate(rows.len() * nv);
}

/// Dequantizes token `tok`'s embedding row.
fn embed(table: &TensorView<'_>, tok: u32, out: &mut [f32]) {
    let row = table
        .row(tok as u64)
        .expect("token id checked against n_vocab, which is the table's row count");
    simd::dequantize_row(table.info.ty, row, out);
}

/// Fewest tokens for which the row-wise norm / residual add are split over the pool.
const PAR_ROWS: usize = 8;

/// RMSNorm of every `w.len()`-sized row, rows split over the pool for a batch (the same
/// per-row arithmetic either way).
fn norm_rows(pool: &Pool, x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    if out.len() / d < PAR_ROWS {
        for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            rms_norm(xr, w, eps, or);
        }
        return;
    }
    for_each_chunk_mut(pool, out, d, &|t, or| {
        rms_norm(&x[t * d..(t + 1) * d], w, eps, or)
    });
}

/// `x += o` (rows of `d`, split over the pool for a batch).
fn add_into(pool: &Pool, d: usize, x: &mut [f32], o: &[f32]) {
    if x.len() / d < PAR_ROWS {
        for (a, &b) in x.iter_mut().zip(o) {
            *a += b;
        }
        return;
    }
    for_each_chunk_mut(pool, x, d, &|t, xr| {
        for (a, &b) in xr.iter_mut().zip(&o[t * d..(t + 1) * d]) {
            *a += b;
        }
    });
}

/// `x += down(swiglu(gate·n, up·n))` with `n = RMSNorm(x)·post_norm`.
fn ffn(
    pool: &Pool,
    s: &mut Scratch,
    fw: &FfnWeights<'_>,
    post_norm: &[f32],
    eps: f32,
    t_n: usize,
    d: usize,
) {
    let n_ff = fw.gate.info.rows() as usize;
    let xn = grow(&mut s.xn, t_n * d);
    {
        let _p = simd::prof::scope("norm");
        norm_rows(pool, &s.x[..t_n * d], post_norm, eps, xn);
    }
    let hid = grow(&mut s.hid, t_n * n_ff);
    {
        let _p = simd::prof::scope("ffn.gate_up");
        pool.ffn_gate_up_swiglu(mat(&fw.gate), mat(&fw.up), xn, t_n, hid);
    }
    let o = grow(&mut s.o, t_n * d);
    {
        let _p = simd::prof::scope("ffn.down");
        pool.matmul(mat(&fw.down), hid, t_n, o);
    }
    {
        let _p = simd::prof::scope("add");
        add_into(pool, d, &mut s.x[..t_n * d], &s.o[..t_n * d]);
    }
}

/// The scratch buffers the attention block needs, borrowed apart from `x`/`o`.
struct AttnScratch<'s> {
    xn: &'s [f32],
    qg: &'s mut Vec<f32>,
    k: &'s mut Vec<f32>,
    v: &'s mut Vec<f32>,
    q: &'s mut Vec<f32>,
    ao: &'s mut Vec<f32>,
    o: &'s mut Vec<f32>,
}

fn scratch_parts(s: &mut Scratch) -> AttnScratch<'_> {
    AttnScratch {
        xn: &s.xn,
        qg: &mut s.p0,
        k: &mut s.p1,
        v: &mut s.p2,
        q: &mut s.p3,
        ao: &mut s.y,
        o: &mut s.o,
    }
}

/// Gated attention (spec §3) for T tokens at positions `pos0..`: writes their K/V into the
/// cache, attends causally, gates, and projects into `s.o` [T][n_embd].
#[allow(clippy::too_many_arguments)]
fn attention(
    cfg: &Config,
    pool: &Pool,
    s: AttnScratch<'_>,
    aw: &AttnWeights<'_>,
    asm: &AttnSmall,
    k_cache: &mut [f16],
    v_cache: &mut [f16],
    pos0: usize,
    t_n: usize,
) {
    let dims = AttnDims {
        n_head: cfg.n_head,
        n_head_kv: cfg.n_head_kv,
        head_dim: cfg.head_dim,
    };
    let (hd, qd, kvd) = (dims.head_dim, dims.q_dim(), dims.kv_row());
    let xn = &s.xn[..t_n * cfg.n_embd];
    let qg = grow(s.qg, t_n * 2 * qd);
    let k = grow(s.k, t_n * kvd);
    let v = grow(s.v, t_n * kvd);
    {
        let _p = simd::prof::scope("attn.q+k+v");
        pool.matmul_many(
            xn,
            t_n,
            &mut [
                (mat(&aw.attn_q), &mut *qg),
                (mat(&aw.attn_k), &mut *k),
                (mat(&aw.attn_v), &mut *v),
            ],
        );
    }
    // Per head, the query and the gate are interleaved: [q_h (hd) | gate_h (hd)].
    let q = grow(s.q, t_n * 2 * qd);
    let (qs, gates) = q.split_at_mut(t_n * qd);
    // Per token (in parallel over tokens; each token's arithmetic as before): split the
    // query and gate, q/k RMSNorm, RoPE at the token's position, K/V into the f16 cache.
    let rope_at = |t: usize| {
        let mut cs = vec![(0.0f32, 0.0f32); cfg.n_rot / 2];
        rope_table_sections(
            pos0 + t,
            cfg.n_rot,
            cfg.rope_freq_base,
            cfg.rope_sections,
            &mut cs,
        );
        cs
    };
    let qg: &[f32] = qg;
    let _pp = simd::prof::scope("attn.prep");
    for_each_chunk_mut2(pool, qs, qd, gates, qd, &|t, qt, gt| {
        let src = &qg[t * 2 * qd..(t + 1) * 2 * qd];
        for h in 0..dims.n_head {
            qt[h * hd..(h + 1) * hd].copy_from_slice(&src[h * 2 * hd..h * 2 * hd + hd]);
            gt[h * hd..(h + 1) * hd].copy_from_slice(&src[h * 2 * hd + hd..(h + 1) * 2 * hd]);
        }
        rms_norm_chunks_inplace(qt, &asm.q_norm, cfg.rms_eps);
        rope_neox_inplace(qt, hd, &rope_at(t));
    });
    let kc = &mut k_cache[pos0 * kvd..(pos0 + t_n) * kvd];
    for_each_chunk_mut2(pool, k, kvd, kc, kvd, &|t, kt, kc| {
        rms_norm_chunks_inplace(kt, &asm.k_norm, cfg.rms_eps);
        rope_neox_inplace(kt, hd, &rope_at(t));
        for (dst, &src) in kc.iter_mut().zip(kt.iter()) {
            *dst = f16::from_f32(src);
        }
    });
    let v: &[f32] = v;
    let vc = &mut v_cache[pos0 * kvd..(pos0 + t_n) * kvd];
    for_each_chunk_mut(pool, vc, kvd, &|t, vc| {
        for (dst, &src) in vc.iter_mut().zip(&v[t * kvd..(t + 1) * kvd]) {
            *dst = f16::from_f32(src);
        }
    });
    drop(_pp);
    let ao = grow(s.ao, t_n * qd);
    let _p = simd::prof::scope("attn.core");
    if t_n == 1 {
        attend_one(pool, &dims, qs, gates, k_cache, v_cache, pos0 + 1, ao);
    } else {
        // The K/V projections are in the cache now; their buffer holds the head-major results.
        attend_batch(pool, &dims, qs, gates, k_cache, v_cache, pos0, t_n, s.k, ao);
    }
    drop(_p);
    let o = grow(s.o, t_n * cfg.n_embd);
    {
        let _p = simd::prof::scope("attn.o");
        pool.matmul(mat(&aw.attn_output), ao, t_n, o);
    }
}
