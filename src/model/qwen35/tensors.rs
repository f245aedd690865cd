//! Every qwen35 tensor name and shape in one table (`spec/qwen35-architecture.md` §4).
//! The loader validates against [`expected_tensors`], the synthetic writer writes exactly
//! that list, and `info` groups sizes by [`TensorKind`].
//!
//! Shapes are GGUF `ne` order, fastest dimension first: a matrix `{in, out}` holds `out`
//! rows of `in` values.

use super::config::{Config, LayerType};

/// What a tensor is, independent of its block index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TensorKind {
    TokenEmbd,
    OutputNorm,
    Output,
    AttnNorm,
    PostAttentionNorm,
    // GDN layers
    AttnQkv,
    AttnGate,
    SsmBeta,
    SsmAlpha,
    SsmConv1d,
    SsmDtBias,
    SsmA,
    SsmNorm,
    SsmOut,
    // attention layers and the MTP block
    AttnQ,
    AttnK,
    AttnV,
    AttnQNorm,
    AttnKNorm,
    AttnOutput,
    // dense FFN (every block)
    FfnGate,
    FfnUp,
    FfnDown,
    // MTP extras
    NextnEhProj,
    NextnEnorm,
    NextnHnorm,
    NextnSharedHeadNorm,
    NextnEmbedTokens,
    NextnSharedHeadHead,
}

/// Coarse groups for size accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TensorGroup {
    Embedding,
    LmHead,
    Norm,
    Gdn,
    Attention,
    Ffn,
    NextnExtra,
}

impl TensorKind {
    pub const ALL: [TensorKind; 29] = [
        TensorKind::TokenEmbd,
        TensorKind::OutputNorm,
        TensorKind::Output,
        TensorKind::AttnNorm,
        TensorKind::PostAttentionNorm,
        TensorKind::AttnQkv,
        TensorKind::AttnGate,
        TensorKind::SsmBeta,
        TensorKind::SsmAlpha,
        TensorKind::SsmConv1d,
        TensorKind::SsmDtBias,
        TensorKind::SsmA,
        TensorKind::SsmNorm,
        TensorKind::SsmOut,
        TensorKind::AttnQ,
        TensorKind::AttnK,
        TensorKind::AttnV,
        TensorKind::AttnQNorm,
        TensorKind::AttnKNorm,
        TensorKind::AttnOutput,
        TensorKind::FfnGate,
        TensorKind::FfnUp,
        TensorKind::FfnDown,
        TensorKind::NextnEhProj,
        TensorKind::NextnEnorm,
        TensorKind::NextnHnorm,
        TensorKind::NextnSharedHeadNorm,
        TensorKind::NextnEmbedTokens,
        TensorKind::NextnSharedHeadHead,
    ];

    /// The full name for global tensors; the part after `blk.{i}.` for block tensors.
    pub const fn suffix(self) -> &'static str {
        use TensorKind::*;
        match self {
            TokenEmbd => "token_embd.weight",
            OutputNorm => "output_norm.weight",
            Output => "output.weight",
            AttnNorm => "attn_norm.weight",
            PostAttentionNorm => "post_attention_norm.weight",
            AttnQkv => "attn_qkv.weight",
            AttnGate => "attn_gate.weight",
            SsmBeta => "ssm_beta.weight",
            SsmAlpha => "ssm_alpha.weight",
            SsmConv1d => "ssm_conv1d.weight",
            SsmDtBias => "ssm_dt.bias",
            SsmA => "ssm_a",
            SsmNorm => "ssm_norm.weight",
            SsmOut => "ssm_out.weight",
            AttnQ => "attn_q.weight",
            AttnK => "attn_k.weight",
            AttnV => "attn_v.weight",
            AttnQNorm => "attn_q_norm.weight",
            AttnKNorm => "attn_k_norm.weight",
            AttnOutput => "attn_output.weight",
            FfnGate => "ffn_gate.weight",
            FfnUp => "ffn_up.weight",
            FfnDown => "ffn_down.weight",
            NextnEhProj => "nextn.eh_proj.weight",
            NextnEnorm => "nextn.enorm.weight",
            NextnHnorm => "nextn.hnorm.weight",
            NextnSharedHeadNorm => "nextn.shared_head_norm.weight",
            NextnEmbedTokens => "nextn.embed_tokens.weight",
            NextnSharedHeadHead => "nextn.shared_head_head.weight",
        }
    }

    /// Short label for reports: the suffix without `.weight`.
    pub fn label(self) -> &'static str {
        let s = self.suffix();
        s.strip_suffix(".weight").unwrap_or(s)
    }

    pub const fn is_global(self) -> bool {
        matches!(
            self,
            TensorKind::TokenEmbd | TensorKind::OutputNorm | TensorKind::Output
        )
    }

    /// Stored as F32 in every GGUF llama.cpp writes (norms, biases, `ssm_a`, the conv):
    /// 1-D tensors, names ending in `_norm.weight`, names not ending in `weight`, and
    /// `ssm_conv1d` (spec §4.6).
    pub const fn is_f32_only(self) -> bool {
        use TensorKind::*;
        matches!(
            self,
            OutputNorm
                | AttnNorm
                | PostAttentionNorm
                | SsmConv1d
                | SsmDtBias
                | SsmA
                | SsmNorm
                | AttnQNorm
                | AttnKNorm
                | NextnEnorm
                | NextnHnorm
                | NextnSharedHeadNorm
        )
    }

    pub const fn group(self) -> TensorGroup {
        use TensorKind::*;
        match self {
            TokenEmbd | NextnEmbedTokens => TensorGroup::Embedding,
            Output | NextnSharedHeadHead => TensorGroup::LmHead,
            OutputNorm | AttnNorm | PostAttentionNorm | NextnEnorm | NextnHnorm
            | NextnSharedHeadNorm => TensorGroup::Norm,
            AttnQkv | AttnGate | SsmBeta | SsmAlpha | SsmConv1d | SsmDtBias | SsmA | SsmNorm
            | SsmOut => TensorGroup::Gdn,
            AttnQ | AttnK | AttnV | AttnQNorm | AttnKNorm | AttnOutput => TensorGroup::Attention,
            FfnGate | FfnUp | FfnDown => TensorGroup::Ffn,
            NextnEhProj => TensorGroup::NextnExtra,
        }
    }

    /// GGUF name; `block` is ignored for global tensors and required for block tensors.
    pub fn name(self, block: Option<usize>) -> String {
        match (self.is_global(), block) {
            (true, _) | (false, None) => self.suffix().to_owned(),
            (false, Some(i)) => format!("blk.{i}.{}", self.suffix()),
        }
    }

    /// Splits a GGUF tensor name into its kind and block index; `None` for names that are
    /// not part of a qwen35 model.
    pub fn parse(name: &str) -> Option<(TensorKind, Option<usize>)> {
        if let Some(rest) = name.strip_prefix("blk.") {
            let (idx, suffix) = rest.split_once('.')?;
            let block: usize = idx.parse().ok()?;
            let kind = TensorKind::ALL
                .into_iter()
                .find(|k| !k.is_global() && k.suffix() == suffix)?;
            return Some((kind, Some(block)));
        }
        TensorKind::ALL
            .into_iter()
            .find(|k| k.is_global() && k.suffix() == name)
            .map(|k| (k, None))
    }

    /// Expected shape (`ne`, fastest first).
    pub fn dims(self, cfg: &Config) -> Vec<u64> {
        use TensorKind::*;
        let e = cfg.n_embd as u64;
        let d = |x: usize| x as u64;
        match self {
            TokenEmbd | Output | NextnEmbedTokens | NextnSharedHeadHead => {
                vec![e, d(cfg.n_vocab)]
            }
            OutputNorm | AttnNorm | PostAttentionNorm | NextnEnorm | NextnHnorm
            | NextnSharedHeadNorm => vec![e],
            AttnQkv => vec![e, d(cfg.gdn_conv_dim())],
            AttnGate => vec![e, d(cfg.gdn_value_dim())],
            SsmBeta | SsmAlpha => vec![e, d(cfg.ssm_dt_rank)],
            SsmConv1d => vec![d(cfg.ssm_d_conv), d(cfg.gdn_conv_dim())],
            SsmDtBias | SsmA => vec![d(cfg.ssm_dt_rank)],
            SsmNorm => vec![d(cfg.gdn_head_v_dim())],
            SsmOut => vec![d(cfg.gdn_value_dim()), e],
            AttnQ => vec![e, d(cfg.attn_q_proj_dim())],
            AttnK | AttnV => vec![e, d(cfg.attn_kv_dim())],
            AttnQNorm | AttnKNorm => vec![d(cfg.head_dim)],
            AttnOutput => vec![d(cfg.attn_out_dim()), e],
            FfnGate | FfnUp => vec![e, d(cfg.n_ff)],
            FfnDown => vec![d(cfg.n_ff), e],
            NextnEhProj => vec![2 * e, e],
        }
    }
}

/// One tensor a qwen35 model has or may have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub kind: TensorKind,
    /// Block index; `None` for global tensors.
    pub block: Option<usize>,
    pub name: String,
    pub dims: Vec<u64>,
    /// False for tensors llama.cpp treats as optional (with a fallback).
    pub required: bool,
}

impl TensorSpec {
    fn new(cfg: &Config, kind: TensorKind, block: Option<usize>, required: bool) -> Self {
        TensorSpec {
            kind,
            block,
            name: kind.name(block),
            dims: kind.dims(cfg),
            required,
        }
    }

    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Kinds in a trunk layer of the given type (norms, mixer, FFN), in the order written.
pub fn layer_kinds(ty: LayerType) -> &'static [TensorKind] {
    use TensorKind::*;
    match ty {
        LayerType::Gdn => &[
            AttnNorm,
            AttnQkv,
            AttnGate,
            SsmBeta,
            SsmAlpha,
            SsmConv1d,
            SsmDtBias,
            SsmA,
            SsmNorm,
            SsmOut,
            PostAttentionNorm,
            FfnGate,
            FfnUp,
            FfnDown,
        ],
        LayerType::Attention => &[
            AttnNorm,
            AttnQ,
            AttnK,
            AttnV,
            AttnQNorm,
            AttnKNorm,
            AttnOutput,
            PostAttentionNorm,
            FfnGate,
            FfnUp,
            FfnDown,
        ],
    }
}

/// The MTP block: an attention layer plus the NextN extras. The last two are optional and
/// fall back to `token_embd` / `output`.
pub const MTP_EXTRA_KINDS: [TensorKind; 6] = [
    TensorKind::NextnEhProj,
    TensorKind::NextnEnorm,
    TensorKind::NextnHnorm,
    TensorKind::NextnSharedHeadNorm,
    TensorKind::NextnEmbedTokens,
    TensorKind::NextnSharedHeadHead,
];

/// Every tensor the model can have, in writing order: `token_embd`, the trunk blocks, the
/// MTP blocks, `output_norm`, `output`. Optional tensors are included with
/// `required: false` (`output`, `nextn.shared_head_norm`, `nextn.embed_tokens`,
/// `nextn.shared_head_head`).
pub fn expected_tensors(cfg: &Config) -> Vec<TensorSpec> {
    let mut out = vec![TensorSpec::new(cfg, TensorKind::TokenEmbd, None, true)];
    for i in 0..cfg.n_layer() {
        for &k in layer_kinds(cfg.layer_type(i)) {
            out.push(TensorSpec::new(cfg, k, Some(i), true));
        }
    }
    for i in cfg.n_layer()..cfg.n_block {
        for &k in layer_kinds(LayerType::Attention) {
            out.push(TensorSpec::new(cfg, k, Some(i), true));
        }
        for k in MTP_EXTRA_KINDS {
            let required = matches!(
                k,
                TensorKind::NextnEhProj | TensorKind::NextnEnorm | TensorKind::NextnHnorm
            );
            out.push(TensorSpec::new(cfg, k, Some(i), required));
        }
    }
    out.push(TensorSpec::new(cfg, TensorKind::OutputNorm, None, true));
    out.push(TensorSpec::new(cfg, TensorKind::Output, None, false));
    out
}
