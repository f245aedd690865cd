//! Where the bytes of a qwen35 model are: the trunk (everything that must stay close to the
//! compute: attention, GDN, norms, embeddings, LM head, MTP) versus the dense FFN of each
//! trunk layer (what the placement planner moves between GPU and CPU), plus the per-token
//! KV cache and per-sequence recurrent state (spec §2.1).

use std::collections::BTreeMap;

use crate::gguf::{GgmlType, GgufFile};

use super::config::Config;
use super::tensors::{TensorGroup, TensorKind};

/// Bytes of one f16 KV-cache value.
const KV_ELEM_BYTES: u64 = 2;
/// Bytes of one f32 recurrent-state value.
const STATE_ELEM_BYTES: u64 = 4;

/// One tensor's identity and size, from a file or from a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct SizedTensor {
    pub name: String,
    pub ty: GgmlType,
    pub n_elements: u64,
    pub n_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SizeBreakdown {
    /// Data bytes of all tensors.
    pub total_bytes: u64,
    /// `token_embd` (read by row lookup, one row per token).
    pub embedding_bytes: u64,
    /// `output` (0 when tied to `token_embd`).
    pub lm_head_bytes: u64,
    /// RMSNorm weights of the trunk layers and `output_norm`.
    pub norm_bytes: u64,
    /// Attention mixers of the trunk attention layers.
    pub attention_bytes: u64,
    /// GDN mixers of the trunk GDN layers.
    pub gdn_bytes: u64,
    /// The whole MTP block(s), FFN included.
    pub mtp_bytes: u64,
    /// Dense FFN (gate + up + down) bytes of each trunk layer.
    pub ffn_bytes_per_layer: Vec<u64>,
    /// Sum of `ffn_bytes_per_layer`.
    pub ffn_bytes: u64,
    /// Largest single trunk FFN matrix (sizes the prefill weight-streaming slots).
    pub ffn_max_matrix_bytes: u64,
    /// Tensors that are not part of a qwen35 model.
    pub other_bytes: u64,
    /// Element counts, for parameter fractions.
    pub total_params: u64,
    pub ffn_params: u64,
    /// f16 K and V of all trunk attention layers, per token.
    pub kv_bytes_per_token: u64,
    /// f16 K and V of the MTP block(s), per token (a separate cache).
    pub mtp_kv_bytes_per_token: u64,
    /// f32 conv states of all GDN layers, per sequence.
    pub conv_state_bytes: u64,
    /// f32 delta-rule states of all GDN layers, per sequence.
    pub ssm_state_bytes: u64,
}

impl SizeBreakdown {
    /// Accounts every tensor by name (`blk.{i}` with `i >= n_layer()` is MTP).
    pub fn compute(cfg: &Config, tensors: impl IntoIterator<Item = SizedTensor>) -> Self {
        let n_layer = cfg.n_layer();
        let mut s = SizeBreakdown {
            ffn_bytes_per_layer: vec![0; n_layer],
            ..Default::default()
        };
        for t in tensors {
            s.total_bytes += t.n_bytes;
            s.total_params += t.n_elements;
            let Some((kind, block)) = TensorKind::parse(&t.name) else {
                s.other_bytes += t.n_bytes;
                continue;
            };
            if block.is_some_and(|b| b >= n_layer) {
                s.mtp_bytes += t.n_bytes;
                continue;
            }
            match kind.group() {
                TensorGroup::Embedding => s.embedding_bytes += t.n_bytes,
                TensorGroup::LmHead => s.lm_head_bytes += t.n_bytes,
                TensorGroup::Norm => s.norm_bytes += t.n_bytes,
                TensorGroup::Gdn => s.gdn_bytes += t.n_bytes,
                TensorGroup::Attention => s.attention_bytes += t.n_bytes,
                TensorGroup::NextnExtra => s.mtp_bytes += t.n_bytes,
                TensorGroup::Ffn => match block {
                    Some(b) => {
                        s.ffn_bytes_per_layer[b] += t.n_bytes;
                        s.ffn_bytes += t.n_bytes;
                        s.ffn_max_matrix_bytes = s.ffn_max_matrix_bytes.max(t.n_bytes);
                        s.ffn_params += t.n_elements;
                    }
                    None => s.other_bytes += t.n_bytes,
                },
            }
        }
        let kv_per_layer = 2 * cfg.attn_kv_dim() as u64 * KV_ELEM_BYTES;
        s.kv_bytes_per_token = kv_per_layer * cfg.n_attention_layers() as u64;
        s.mtp_kv_bytes_per_token = kv_per_layer * cfg.n_nextn as u64;
        let n_gdn = cfg.n_gdn_layers() as u64;
        s.conv_state_bytes = n_gdn * cfg.gdn_conv_state_len() as u64 * STATE_ELEM_BYTES;
        s.ssm_state_bytes = n_gdn * cfg.gdn_ssm_state_len() as u64 * STATE_ELEM_BYTES;
        s
    }

    /// Sizes of the tensors of an opened file.
    pub fn from_gguf(file: &GgufFile, cfg: &Config) -> Self {
        Self::compute(cfg, sized_tensors(file))
    }

    /// Everything except the trunk FFN: attention, GDN, norms, embeddings, LM head, MTP.
    pub fn trunk_bytes(&self) -> u64 {
        self.total_bytes - self.ffn_bytes - self.other_bytes
    }

    /// Recurrent state of one sequence (conv + SSM), f32.
    pub fn recurrent_state_bytes(&self) -> u64 {
        self.conv_state_bytes + self.ssm_state_bytes
    }

    /// One speculative-rollback snapshot slot holds a whole recurrent state.
    pub fn snapshot_slot_bytes(&self) -> u64 {
        self.recurrent_state_bytes()
    }

    /// Share of all parameters that sit in the trunk FFN.
    pub fn ffn_param_fraction(&self) -> f64 {
        if self.total_params == 0 {
            0.0
        } else {
            self.ffn_params as f64 / self.total_params as f64
        }
    }
}

/// The tensors of a file as [`SizedTensor`]s.
pub fn sized_tensors(file: &GgufFile) -> impl Iterator<Item = SizedTensor> + '_ {
    file.tensors().iter().map(|t| SizedTensor {
        name: t.name.clone(),
        ty: t.ty,
        n_elements: t.n_elements(),
        n_bytes: t.n_bytes,
    })
}

/// How many tensors of each kind have each type, e.g. `ffn_down: Q6_K x 33, Q4_K x 32`.
/// Types are listed most frequent first.
pub fn type_mix(
    tensors: impl IntoIterator<Item = SizedTensor>,
) -> Vec<(String, Vec<(GgmlType, usize)>)> {
    // Keyed by kind first so the report follows the table order; unknown names go last.
    type Key = (bool, Option<TensorKind>, String);
    let mut by_kind: BTreeMap<Key, Vec<(GgmlType, usize)>> = BTreeMap::new();
    for t in tensors {
        let key = match TensorKind::parse(&t.name) {
            Some((k, _)) => (false, Some(k), k.label().to_owned()),
            None => (true, None, t.name.clone()),
        };
        let entry = by_kind.entry(key).or_default();
        match entry.iter_mut().find(|(ty, _)| *ty == t.ty) {
            Some((_, n)) => *n += 1,
            None => entry.push((t.ty, 1)),
        }
    }
    by_kind
        .into_iter()
        .map(|((_, _, label), mut v)| {
            v.sort_by_key(|t| std::cmp::Reverse(t.1));
            (label, v)
        })
        .collect()
}
