//! Op-level parity with llama.cpp: every CPU op of the qwen35 forward pass, fed with the
//! inputs llama.cpp itself computed (dumped through `cb_eval`), must give llama.cpp's output
//! bit for bit. This localises any divergence of the whole-model test
//! (`parity_llamacpp.rs`) to one op, instead of a cascade through the recurrent state.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use half::f16;
use hybrid_run::gguf::{GgufFile, TensorView};
use hybrid_run::model::qwen35::{Config, LayerKind, Qwen35Weights};
use hybrid_run::ops::act::{sigmoid, silu_inplace, softplus};
use hybrid_run::ops::attention::{attend_one, AttnDims};
use hybrid_run::ops::gdn::{conv_step, delta_rule_step};
use hybrid_run::ops::norm::{l2_norm_inplace, rms_norm, rms_norm_chunks_inplace};
use hybrid_run::ops::rope::{rope_neox_inplace, rope_table_sections};
use hybrid_run::simd::{MatRef, Pool};
use hybrid_run::synth::{Preset, QuantMix};

/// One tensor llama.cpp dumped: decode call `step`, graph name, shape.
struct Entry {
    step: usize,
    file: String,
    name: String,
}

struct Dump {
    dir: PathBuf,
    entries: Vec<Entry>,
}

impl Dump {
    fn load(dir: &Path) -> Dump {
        let ix: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        let entries = ix
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Entry {
                step: e["step"].as_u64().unwrap() as usize,
                file: e["file"].as_str().unwrap().to_string(),
                name: e["name"].as_str().unwrap().to_string(),
            })
            .collect();
        Dump {
            dir: dir.to_path_buf(),
            entries,
        }
    }

    /// The `nth` tensor named `name` computed in decode call `step` (graph order).
    fn get_nth(&self, step: usize, name: &str, nth: usize) -> Vec<f32> {
        let e = self
            .entries
            .iter()
            .filter(|e| e.step == step && e.name == name)
            .nth(nth)
            .unwrap_or_else(|| panic!("no tensor #{nth} named {name} in step {step}"));
        let raw = std::fs::read(self.dir.join(&e.file)).unwrap();
        raw.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn get(&self, step: usize, name: &str) -> Vec<f32> {
        self.get_nth(step, name, 0)
    }
}

/// Mismatch statistics per op name.
#[derive(Default)]
struct Tally {
    ops: BTreeMap<String, (usize, usize, f32)>, // (elements, differing, max |diff| / max |ref|)
}

impl Tally {
    fn check(&mut self, op: &str, ours: &[f32], theirs: &[f32]) {
        assert_eq!(ours.len(), theirs.len(), "{op}: lengths");
        let e = self.ops.entry(op.to_string()).or_default();
        e.0 += ours.len();
        e.1 += ours
            .iter()
            .zip(theirs)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        e.2 = e.2.max(rel_err(ours, theirs));
    }

    fn report(&self) -> Vec<String> {
        let mut bad = Vec::new();
        for (op, (n, d, r)) in &self.ops {
            eprintln!("  {op:24} {d:6}/{n:7} differ, max rel err {r:.2e}");
            if *d > 0 {
                bad.push(op.clone());
            }
        }
        bad
    }
}

fn to_f32(v: &TensorView<'_>) -> Vec<f32> {
    let mut out = vec![0.0f32; v.info.n_elements() as usize];
    hybrid_run::simd::dequantize_row(v.info.ty, v.data, &mut out);
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

fn matmul(pool: &Pool, w: &TensorView<'_>, x: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; w.info.rows() as usize];
    pool.matmul(mat(w), x, 1, &mut out);
    out
}

fn rms(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    rms_norm(x, w, eps, &mut y);
    y
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// Runs llama.cpp on `prompt` token by token with tensor dumps and checks every op.
fn check_ops(mix: QuantMix, seed: u64, n_tokens: usize) -> Tally {
    let dir = tempfile::tempdir().unwrap();
    let path = synth(dir.path(), Preset::Tiny, mix, seed);
    let file = GgufFile::open(&path).unwrap();
    let cfg = Config::from_gguf(&file).unwrap();
    let prompt = prompt_ids(seed ^ 0x0d5, n_tokens, 256, cfg.n_vocab as u32 / 2);
    let dump_dir = dir.path().join("dump");
    run_oracle_with(
        &path,
        &prompt,
        1,
        &dir.path().join("oracle"),
        &OracleOpts {
            dump: Some(dump_dir.clone()),
            ..OracleOpts::default()
        },
    );
    let dump = Dump::load(&dump_dir);
    let w = Qwen35Weights::load(&file, &cfg).unwrap();
    let pool = Pool::new(1);
    let eps = cfg.rms_eps;
    let mut t = Tally::default();
    let (d_k, h_k, h_v) = (cfg.ssm_d_state, cfg.ssm_n_group, cfg.ssm_dt_rank);
    let hd = cfg.head_dim;
    let kvd = cfg.n_head_kv * hd;
    let n_layer = w.layers.len();
    let mut k_cache: Vec<Vec<f16>> = vec![Vec::new(); n_layer];
    let mut v_cache: Vec<Vec<f16>> = vec![Vec::new(); n_layer];
    for step in 0..n_tokens {
        let pos = step;
        let g = |name: &str| dump.get(step, name);
        for (il, lw) in w.layers.iter().enumerate() {
            let x_in = if il == 0 {
                g("model.input_embed")
            } else {
                g(&format!("l_out-{}", il - 1))
            };
            let attn_norm = g(&format!("attn_norm-{il}"));
            t.check(
                "attn_norm",
                &rms(&x_in, &to_f32(&lw.attn_norm), eps),
                &attn_norm,
            );
            let layer_out = match &lw.kind {
                LayerKind::Gdn(gw) => {
                    let qkv = g(&format!("linear_attn_qkv_mixed-{il}"));
                    t.check("matmul qkv", &matmul(&pool, &gw.attn_qkv, &attn_norm), &qkv);
                    let z = g(&format!("z-{il}"));
                    t.check("matmul z", &matmul(&pool, &gw.attn_gate, &attn_norm), &z);
                    let alpha = g(&format!("alpha-{il}"));
                    t.check(
                        "matmul alpha",
                        &matmul(&pool, &gw.ssm_alpha, &attn_norm),
                        &alpha,
                    );
                    let beta = g(&format!("beta-{il}"));
                    t.check(
                        "matmul beta",
                        &matmul(&pool, &gw.ssm_beta, &attn_norm),
                        &beta,
                    );

                    // conv: conv_input is [K][C] with time fastest.
                    let ci = g(&format!("conv_input-{il}"));
                    let kk = cfg.ssm_d_conv;
                    let c = ci.len() / kk;
                    let mut state = vec![0.0f32; (kk - 1) * c];
                    let mut mixed = vec![0.0f32; c];
                    for ch in 0..c {
                        for k in 0..kk - 1 {
                            state[k * c + ch] = ci[ch * kk + k];
                        }
                        mixed[ch] = ci[ch * kk + kk - 1];
                    }
                    let mut conv = vec![0.0f32; c];
                    conv_step(&mut state, &mixed, &to_f32(&gw.ssm_conv1d), kk, &mut conv);
                    t.check("ssm_conv", &conv, &g(&format!("conv_output_raw-{il}")));
                    let mut cs = g(&format!("conv_output_raw-{il}"));
                    silu_inplace(&mut cs);
                    t.check("silu conv", &cs, &g(&format!("conv_output_silu-{il}")));
                    for qk in ["q", "k"] {
                        let mut x = g(&format!("{qk}_conv-{il}"));
                        for head in x.chunks_exact_mut(d_k) {
                            l2_norm_inplace(head, eps);
                        }
                        t.check("l2_norm", &x, &g(&format!("{qk}_conv_predelta-{il}")));
                    }
                    let dt = to_f32(&gw.ssm_dt_bias);
                    let a_log = to_f32(&gw.ssm_a);
                    let sp: Vec<f32> = (0..h_v).map(|j| softplus(alpha[j] + dt[j])).collect();
                    t.check("softplus", &sp, &g(&format!("a_softplus-{il}")));
                    let gate = g(&format!("gate-{il}"));
                    let gate_ours: Vec<f32> = (0..h_v).map(|j| sp[j] * a_log[j]).collect();
                    t.check("gate", &gate_ours, &gate);
                    let beta_s = g(&format!("beta_sigmoid-{il}"));
                    let bs_ours: Vec<f32> = beta.iter().map(|&b| sigmoid(b)).collect();
                    t.check("sigmoid beta", &bs_ours, &beta_s);

                    let q = g(&format!("q_conv_predelta-{il}"));
                    let k = g(&format!("k_conv_predelta-{il}"));
                    let v = g(&format!("v_conv_predelta-{il}"));
                    let mut s = g(&format!("state_predelta-{il}"));
                    let mut o = vec![0.0f32; h_v * d_k];
                    for j in 0..h_v {
                        let i = j % h_k;
                        delta_rule_step(
                            &mut s[j * d_k * d_k..(j + 1) * d_k * d_k],
                            &q[i * d_k..(i + 1) * d_k],
                            &k[i * d_k..(i + 1) * d_k],
                            &v[j * d_k..(j + 1) * d_k],
                            gate[j],
                            beta_s[j],
                            &mut o[j * d_k..(j + 1) * d_k],
                        );
                    }
                    let go = g(&format!("attn_output-{il}"));
                    t.check("gated_delta_net out", &o, &go);
                    t.check("gated_delta_net state", &s, &g(&format!("new_state-{il}")));

                    let mut y = go.clone();
                    rms_norm_chunks_inplace(&mut y, &to_f32(&gw.ssm_norm), eps);
                    let mut zs = z.clone();
                    for zc in zs.chunks_mut(d_k) {
                        silu_inplace(zc);
                    }
                    for (yi, zi) in y.iter_mut().zip(&zs) {
                        *yi *= zi;
                    }
                    let fo = g(&format!("final_output-{il}"));
                    t.check("gated rms_norm", &y, &fo);
                    let lo = g(&format!("linear_attn_out-{il}"));
                    t.check("matmul ssm_out", &matmul(&pool, &gw.ssm_out, &fo), &lo);
                    lo
                }
                LayerKind::Attention(aw) => {
                    let qf = g(&format!("Qcur_full-{il}"));
                    t.check("matmul q", &matmul(&pool, &aw.attn_q, &attn_norm), &qf);
                    let kc = dump.get_nth(step, &format!("Kcur-{il}"), 0);
                    t.check("matmul k", &matmul(&pool, &aw.attn_k, &attn_norm), &kc);
                    let vc = dump.get_nth(step, &format!("Vcur-{il}"), 0);
                    t.check("matmul v", &matmul(&pool, &aw.attn_v, &attn_norm), &vc);
                    let mut qn = g(&format!("Qcur_reshaped-{il}"));
                    rms_norm_chunks_inplace(&mut qn, &to_f32(&aw.attn_q_norm), eps);
                    let qn_ref = g(&format!("Qcur_normed-{il}"));
                    t.check("q_norm", &qn, &qn_ref);
                    let mut kn = kc.clone();
                    rms_norm_chunks_inplace(&mut kn, &to_f32(&aw.attn_k_norm), eps);
                    let kn_ref = g(&format!("Kcur_normed-{il}"));
                    t.check("k_norm", &kn, &kn_ref);
                    let mut cs = vec![(0.0f32, 0.0f32); cfg.n_rot / 2];
                    rope_table_sections(
                        pos,
                        cfg.n_rot,
                        cfg.rope_freq_base,
                        cfg.rope_sections,
                        &mut cs,
                    );
                    let mut qr = qn_ref.clone();
                    rope_neox_inplace(&mut qr, hd, &cs);
                    let qr_ref = g(&format!("Qcur-{il}"));
                    t.check("rope", &qr, &qr_ref);
                    let mut kr = kn_ref.clone();
                    rope_neox_inplace(&mut kr, hd, &cs);
                    // The roped K is the second tensor named Kcur-il (the first is the matmul).
                    let kr_ref = dump.get_nth(step, &format!("Kcur-{il}"), 1);
                    t.check("rope", &kr, &kr_ref);
                    k_cache[il].extend(kr_ref.iter().map(|&x| f16::from_f32(x)));
                    v_cache[il].extend(vc.iter().map(|&x| f16::from_f32(x)));
                    let dims = AttnDims {
                        n_head: cfg.n_head,
                        n_head_kv: cfg.n_head_kv,
                        head_dim: hd,
                    };
                    // attend_one applies the sigmoid gate; a zero gate gives exactly 0.5, and
                    // doubling undoes it exactly, leaving the flash-attention output.
                    let ones = vec![0.0f32; dims.q_dim()];
                    let mut pre = vec![0.0f32; dims.q_dim()];
                    attend_one(
                        &pool,
                        &dims,
                        &qr_ref,
                        &ones,
                        &k_cache[il],
                        &v_cache[il],
                        pos + 1,
                        &mut pre,
                    );
                    let pre: Vec<f32> = pre.iter().map(|&x| x * 2.0).collect();
                    t.check("flash_attn", &pre, &g(&format!("attn_pregate-{il}")));
                    assert_eq!(k_cache[il].len(), (pos + 1) * kvd);
                    let gate: Vec<f32> = (0..cfg.n_head)
                        .flat_map(|h| qf[h * 2 * hd + hd..(h + 1) * 2 * hd].to_vec())
                        .collect();
                    let gs: Vec<f32> = gate.iter().map(|&x| sigmoid(x)).collect();
                    t.check("sigmoid gate", &gs, &g(&format!("gate_sigmoid-{il}")));
                    let ag = g(&format!("attn_gated-{il}"));
                    let pre_ref = g(&format!("attn_pregate-{il}"));
                    let ag_ours: Vec<f32> = pre_ref.iter().zip(&gs).map(|(a, b)| a * b).collect();
                    t.check("gate mul", &ag_ours, &ag);
                    let ao = g(&format!("attn_output-{il}"));
                    t.check(
                        "matmul attn_output",
                        &matmul(&pool, &aw.attn_output, &ag),
                        &ao,
                    );
                    ao
                }
            };
            let res = g(&format!("attn_residual-{il}"));
            t.check("residual add", &add(&layer_out, &x_in), &res);
            let pn = g(&format!("attn_post_norm-{il}"));
            t.check(
                "post_norm",
                &rms(&res, &to_f32(&lw.post_attention_norm), eps),
                &pn,
            );
            let fg = g(&format!("ffn_gate-{il}"));
            t.check("matmul ffn_gate", &matmul(&pool, &lw.ffn.gate, &pn), &fg);
            let fu = g(&format!("ffn_up-{il}"));
            t.check("matmul ffn_up", &matmul(&pool, &lw.ffn.up, &pn), &fu);
            let sw = g(&format!("ffn_swiglu-{il}"));
            let mut sw_ours = vec![0.0f32; sw.len()];
            pool.ffn_gate_up_swiglu(mat(&lw.ffn.gate), mat(&lw.ffn.up), &pn, 1, &mut sw_ours);
            t.check("fused gate/up swiglu", &sw_ours, &sw);
            let fo = g(&format!("ffn_out-{il}"));
            t.check("matmul ffn_down", &matmul(&pool, &lw.ffn.down, &sw), &fo);
            t.check(
                "ffn residual add",
                &add(&fo, &res),
                &g(&format!("l_out-{il}")),
            );
        }
        let last = g(&format!("l_out-{}", n_layer - 1));
        let rn = g("result_norm");
        t.check(
            "output_norm",
            &rms(&last, &to_f32(&w.output_norm), eps),
            &rn,
        );
        t.check(
            "matmul lm_head",
            &matmul(&pool, &w.output, &rn),
            &g("result_output"),
        );
    }
    t
}

fn run(mix: QuantMix) {
    if !have_llamacpp() {
        eprintln!(
            "skipped: llama-cpp-python is not installed (scripts/setup-llamacpp.sh installs it)"
        );
        return;
    }
    for seed in [11u64, fresh_seed()] {
        eprintln!("{} seed {seed}:", mix.name());
        let t = check_ops(mix, seed, 6);
        let bad = t.report();
        assert!(
            bad.is_empty(),
            "{}: ops differing from llama.cpp: {bad:?}",
            mix.name()
        );
    }
}

#[test]
fn f32_ops_match_llamacpp_bit_for_bit() {
    run(QuantMix::F32);
}

#[test]
fn q8_0_ops_match_llamacpp_bit_for_bit() {
    run(QuantMix::Q8_0);
}

#[test]
fn q4_k_m_ops_match_llamacpp_bit_for_bit() {
    run(QuantMix::Q4KM);
}

#[test]
fn q5_k_m_ops_match_llamacpp_bit_for_bit() {
    run(QuantMix::Q5KM);
}

#[test]
fn q6_k_ops_match_llamacpp_bit_for_bit() {
    run(QuantMix::Q6K);
}
