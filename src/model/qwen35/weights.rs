//! The qwen35 weights as zero-copy views into the GGUF mmap, grouped per layer kind.
//! Names and shapes come from the table in [`super::tensors`]; [`Qwen35Weights::load`]
//! checks every tensor's presence, shape and type and reports all problems at once.
//!
//! Shapes below are GGUF `ne` (fastest first): `{in, out}` is `out` rows of `in` values, so
//! `y[o] = Σ_i W[o][i]·x[i]`. Sizes for the 27B in brackets.
//!
//! **GDN value-head order (tiled).** Every tensor indexed by GDN value head (the V rows of
//! `attn_qkv`, the rows of `attn_gate`, `ssm_beta`, `ssm_alpha`, `ssm_dt.bias`, `ssm_a`,
//! the V channels of `ssm_conv1d` and the input columns of `ssm_out`) is stored in the
//! converter's *tiled* order: GGUF value head `j` pairs with key/query head `j % H_k`, not
//! `j / (H_v/H_k)` as in the HF checkpoint (spec §4.2).

use crate::gguf::{GgmlType, GgufFile, TensorView};

use super::config::{Config, LayerType};
use super::error::{ModelError, TensorProblem};
use super::tensors::{expected_tensors, TensorKind};

/// Gated-DeltaNet mixer of one layer.
pub struct GdnWeights<'a> {
    /// {n_embd, 2·key_dim + value_dim} [5120, 10240]. Rows: q (H_k·d_k) | k (H_k·d_k) |
    /// v (H_v·d_v, tiled head order).
    pub attn_qkv: TensorView<'a>,
    /// {n_embd, value_dim} [5120, 6144]: z gate of the gated norm, tiled head order.
    pub attn_gate: TensorView<'a>,
    /// {n_embd, H_v} [5120, 48]: β = sigmoid(x·W), tiled head order.
    pub ssm_beta: TensorView<'a>,
    /// {n_embd, H_v} [5120, 48]: the decay input, tiled head order.
    pub ssm_alpha: TensorView<'a>,
    /// {d_conv, conv_dim} F32 [4, 10240]: row c = the taps of channel c; tap k multiplies
    /// the input at time t−(d_conv−1)+k. V channels in tiled head order.
    pub ssm_conv1d: TensorView<'a>,
    /// {H_v} F32 [48]: dt bias, tiled head order.
    pub ssm_dt_bias: TensorView<'a>,
    /// {H_v} F32 [48]: stored as −exp(A_log), so negative; tiled head order.
    pub ssm_a: TensorView<'a>,
    /// {d_v} F32 [128]: gated RMSNorm weight shared by all heads (not +1 folded).
    pub ssm_norm: TensorView<'a>,
    /// {value_dim, n_embd} [6144, 5120]: input columns in tiled head order.
    pub ssm_out: TensorView<'a>,
}

/// Gated full attention (trunk attention layers and the MTP block).
pub struct AttnWeights<'a> {
    /// {n_embd, 2·n_head·head_dim} [5120, 12288]: per head h, rows [h·2d, h·2d+d) are
    /// the query and [h·2d+d, h·2d+2d) the output gate (d = head_dim).
    pub attn_q: TensorView<'a>,
    /// {n_embd, n_head_kv·head_dim} [5120, 1024].
    pub attn_k: TensorView<'a>,
    /// {n_embd, n_head_kv·head_dim} [5120, 1024].
    pub attn_v: TensorView<'a>,
    /// {head_dim} F32 [256]: per-head RMSNorm of q (+1 folded).
    pub attn_q_norm: TensorView<'a>,
    /// {head_dim} F32 [256]: per-head RMSNorm of k (+1 folded).
    pub attn_k_norm: TensorView<'a>,
    /// {n_head·head_dim, n_embd} [6144, 5120].
    pub attn_output: TensorView<'a>,
}

/// Dense SwiGLU FFN: down(silu(gate·x) ⊙ up·x).
pub struct FfnWeights<'a> {
    /// {n_embd, n_ff} [5120, 17408].
    pub gate: TensorView<'a>,
    /// {n_embd, n_ff} [5120, 17408].
    pub up: TensorView<'a>,
    /// {n_ff, n_embd} [17408, 5120].
    pub down: TensorView<'a>,
}

pub enum LayerKind<'a> {
    Gdn(GdnWeights<'a>),
    Attention(AttnWeights<'a>),
}

/// One trunk layer: `h += mixer(attn_norm(h)); h += ffn(post_attention_norm(h))`.
pub struct Layer<'a> {
    /// Block index in the GGUF (`blk.{index}`).
    pub index: usize,
    /// {n_embd} F32: input RMSNorm (+1 folded).
    pub attn_norm: TensorView<'a>,
    pub kind: LayerKind<'a>,
    /// {n_embd} F32: pre-FFN RMSNorm (+1 folded).
    pub post_attention_norm: TensorView<'a>,
    pub ffn: FfnWeights<'a>,
}

/// The MTP (NextN) block: `eh_proj(concat(enorm(emb), hnorm(h)))` then an attention layer
/// and FFN, then `shared_head_norm` and the LM head.
pub struct MtpWeights<'a> {
    /// Block index (`n_layer()`, 64 for the 27B).
    pub index: usize,
    pub attn_norm: TensorView<'a>,
    pub attn: AttnWeights<'a>,
    pub post_attention_norm: TensorView<'a>,
    pub ffn: FfnWeights<'a>,
    /// {2·n_embd, n_embd} [10240, 5120]: input is [enorm(embedding) | hnorm(hidden)].
    pub eh_proj: TensorView<'a>,
    /// {n_embd} F32.
    pub enorm: TensorView<'a>,
    /// {n_embd} F32.
    pub hnorm: TensorView<'a>,
    /// {n_embd} F32; `output_norm` when the file has none.
    pub shared_head_norm: TensorView<'a>,
    /// {n_embd, n_vocab}; `token_embd` when the file has none (Qwen3.5 has none).
    pub embed_tokens: TensorView<'a>,
    /// {n_embd, n_vocab}; the model's `output` when the file has none (Qwen3.5 has none).
    pub shared_head_head: TensorView<'a>,
}

pub struct Qwen35Weights<'a> {
    /// {n_embd, n_vocab} [5120, 248320]: row t is token t's embedding.
    pub token_embd: TensorView<'a>,
    /// {n_embd} F32: final RMSNorm (+1 folded).
    pub output_norm: TensorView<'a>,
    /// {n_embd, n_vocab}: the LM head; `token_embd` when the file has no `output.weight`.
    pub output: TensorView<'a>,
    /// True when `output` is `token_embd` (tied embeddings).
    pub output_tied: bool,
    /// Trunk layers `0..n_layer()`.
    pub layers: Vec<Layer<'a>>,
    /// The first MTP block, if `nextn_predict_layers > 0`.
    pub mtp: Option<MtpWeights<'a>>,
}

/// Human-readable list of the types a weight matrix may have.
const MATRIX_TYPES: &str = "one of F32, F16, BF16, Q8_0, Q4_K, Q5_K, Q6_K";

fn matrix_type_ok(ty: GgmlType) -> bool {
    GgmlType::ALL_WEIGHT_TYPES.contains(&ty)
}

/// Checks presence, shape and type of every tensor the config implies; all problems at once.
pub fn validate(file: &GgufFile, cfg: &Config) -> Result<(), ModelError> {
    let mut problems = Vec::new();
    for spec in expected_tensors(cfg) {
        let Some(info) = file.tensor_info(&spec.name) else {
            if spec.required {
                problems.push(TensorProblem::Missing {
                    name: spec.name,
                    expected_dims: spec.dims,
                });
            }
            continue;
        };
        if info.dims != spec.dims {
            problems.push(TensorProblem::Shape {
                name: spec.name.clone(),
                expected_dims: spec.dims.clone(),
                found_dims: info.dims.clone(),
            });
        }
        if spec.kind.is_f32_only() {
            if info.ty != GgmlType::F32 {
                problems.push(TensorProblem::Type {
                    name: spec.name,
                    found: info.ty,
                    allowed: "F32",
                });
            }
        } else if !matrix_type_ok(info.ty) {
            problems.push(TensorProblem::Type {
                name: spec.name,
                found: info.ty,
                allowed: MATRIX_TYPES,
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ModelError::Tensors { problems })
    }
}

impl<'a> Qwen35Weights<'a> {
    /// Validates every tensor (see [`validate`]) and returns the views.
    pub fn load(file: &'a GgufFile, cfg: &Config) -> Result<Self, ModelError> {
        validate(file, cfg)?;
        let t = Fetch { file };
        let token_embd = t.get(TensorKind::TokenEmbd, None)?;
        let (output, output_tied) = match t.opt(TensorKind::Output, None) {
            Some(v) => (v, false),
            None => (t.get(TensorKind::TokenEmbd, None)?, true),
        };
        let output_norm = t.get(TensorKind::OutputNorm, None)?;

        let mut layers = Vec::with_capacity(cfg.n_layer());
        for i in 0..cfg.n_layer() {
            let b = Some(i);
            let kind = match cfg.layer_type(i) {
                LayerType::Gdn => LayerKind::Gdn(GdnWeights {
                    attn_qkv: t.get(TensorKind::AttnQkv, b)?,
                    attn_gate: t.get(TensorKind::AttnGate, b)?,
                    ssm_beta: t.get(TensorKind::SsmBeta, b)?,
                    ssm_alpha: t.get(TensorKind::SsmAlpha, b)?,
                    ssm_conv1d: t.get(TensorKind::SsmConv1d, b)?,
                    ssm_dt_bias: t.get(TensorKind::SsmDtBias, b)?,
                    ssm_a: t.get(TensorKind::SsmA, b)?,
                    ssm_norm: t.get(TensorKind::SsmNorm, b)?,
                    ssm_out: t.get(TensorKind::SsmOut, b)?,
                }),
                LayerType::Attention => LayerKind::Attention(t.attn(i)?),
            };
            layers.push(Layer {
                index: i,
                attn_norm: t.get(TensorKind::AttnNorm, b)?,
                kind,
                post_attention_norm: t.get(TensorKind::PostAttentionNorm, b)?,
                ffn: t.ffn(i)?,
            });
        }

        let mtp = match cfg.mtp_block() {
            None => None,
            Some(i) => {
                let b = Some(i);
                Some(MtpWeights {
                    index: i,
                    attn_norm: t.get(TensorKind::AttnNorm, b)?,
                    attn: t.attn(i)?,
                    post_attention_norm: t.get(TensorKind::PostAttentionNorm, b)?,
                    ffn: t.ffn(i)?,
                    eh_proj: t.get(TensorKind::NextnEhProj, b)?,
                    enorm: t.get(TensorKind::NextnEnorm, b)?,
                    hnorm: t.get(TensorKind::NextnHnorm, b)?,
                    shared_head_norm: match t.opt(TensorKind::NextnSharedHeadNorm, b) {
                        Some(v) => v,
                        None => t.get(TensorKind::OutputNorm, None)?,
                    },
                    embed_tokens: match t.opt(TensorKind::NextnEmbedTokens, b) {
                        Some(v) => v,
                        None => t.get(TensorKind::TokenEmbd, None)?,
                    },
                    shared_head_head: match t.opt(TensorKind::NextnSharedHeadHead, b) {
                        Some(v) => v,
                        None => match t.opt(TensorKind::Output, None) {
                            Some(v) => v,
                            None => t.get(TensorKind::TokenEmbd, None)?,
                        },
                    },
                })
            }
        };

        Ok(Qwen35Weights {
            token_embd,
            output_norm,
            output,
            output_tied,
            layers,
            mtp,
        })
    }
}

/// Looks tensors up by kind; `get` reports a missing tensor as a typed error (it cannot
/// happen after [`validate`], but no `unwrap` is needed to say so).
struct Fetch<'a> {
    file: &'a GgufFile,
}

impl<'a> Fetch<'a> {
    fn opt(&self, kind: TensorKind, block: Option<usize>) -> Option<TensorView<'a>> {
        self.file.tensor(&kind.name(block))
    }

    fn get(&self, kind: TensorKind, block: Option<usize>) -> Result<TensorView<'a>, ModelError> {
        let name = kind.name(block);
        self.file.tensor(&name).ok_or(ModelError::Tensors {
            problems: vec![TensorProblem::Missing {
                name,
                expected_dims: Vec::new(),
            }],
        })
    }

    fn attn(&self, i: usize) -> Result<AttnWeights<'a>, ModelError> {
        let b = Some(i);
        Ok(AttnWeights {
            attn_q: self.get(TensorKind::AttnQ, b)?,
            attn_k: self.get(TensorKind::AttnK, b)?,
            attn_v: self.get(TensorKind::AttnV, b)?,
            attn_q_norm: self.get(TensorKind::AttnQNorm, b)?,
            attn_k_norm: self.get(TensorKind::AttnKNorm, b)?,
            attn_output: self.get(TensorKind::AttnOutput, b)?,
        })
    }

    fn ffn(&self, i: usize) -> Result<FfnWeights<'a>, ModelError> {
        let b = Some(i);
        Ok(FfnWeights {
            gate: self.get(TensorKind::FfnGate, b)?,
            up: self.get(TensorKind::FfnUp, b)?,
            down: self.get(TensorKind::FfnDown, b)?,
        })
    }
}
