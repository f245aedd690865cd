//! Model shapes of the synthetic presets. Every matrix row length (`ne0`) is a multiple of
//! 256 so that every K-quant applies without llama.cpp's fallbacks: `n_embd` for most
//! weights, and `value_dim` (ssm_out), `n_head·head_dim` (attn_output), `n_ff` (ffn_down),
//! `2·n_embd` (eh_proj).

use crate::gguf::Value;
use crate::model::qwen35::config::{schedule_from_interval, Config, ARCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Preset {
    /// 8 trunk layers (6 GDN + 2 attention) + MTP, n_embd 256, H_v/H_k = 2: seconds to
    /// generate, runs everywhere; for tests.
    Tiny,
    /// 24 trunk layers + MTP, n_embd 2048, vocab 32K, tied embeddings: ~0.9 GB at Q4_K_M.
    Small,
    /// The exact Qwen3.5/3.6-27B shapes: 64 trunk layers + MTP, vocab 248320, untied.
    Qwen27B,
}

/// Everything about a preset that is not in [`Config`].
#[derive(Clone, Debug, PartialEq)]
pub struct PresetSpec {
    pub config: Config,
    /// Full-attention interval written as `full_attention_interval`.
    pub full_attention_interval: u32,
    /// Whether the LM head is `token_embd` (no `output.weight`).
    pub tied_output: bool,
    /// BPE merges to learn (the rest of the vocabulary is padding).
    pub n_merges: usize,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Tiny, Preset::Small, Preset::Qwen27B];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Small => "small",
            Preset::Qwen27B => "27b",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }

    pub fn spec(self) -> PresetSpec {
        struct S {
            n_vocab: usize,
            n_ctx: usize,
            n_embd: usize,
            n_layer: usize,
            n_ff: usize,
            n_head: usize,
            n_head_kv: usize,
            head_dim: usize,
            h_k: usize,
            h_v: usize,
            d_state: usize,
            tied: bool,
            n_merges: usize,
        }
        let s = match self {
            Preset::Tiny => S {
                n_vocab: 1024,
                n_ctx: 4096,
                n_embd: 256,
                n_layer: 8,
                n_ff: 512,
                n_head: 4,
                n_head_kv: 2,
                head_dim: 64,
                h_k: 2,
                h_v: 4,
                d_state: 64,
                tied: false,
                n_merges: 600,
            },
            Preset::Small => S {
                n_vocab: 32768,
                n_ctx: 32768,
                n_embd: 2048,
                n_layer: 24,
                n_ff: 6144,
                n_head: 16,
                n_head_kv: 4,
                head_dim: 128,
                h_k: 8,
                h_v: 16,
                d_state: 128,
                tied: true,
                n_merges: 1000,
            },
            Preset::Qwen27B => S {
                n_vocab: 248320,
                n_ctx: 262144,
                n_embd: 5120,
                n_layer: 64,
                n_ff: 17408,
                n_head: 24,
                n_head_kv: 4,
                head_dim: 256,
                h_k: 16,
                h_v: 48,
                d_state: 128,
                tied: false,
                n_merges: 1000,
            },
        };
        let interval = 4u32;
        let n_rot = s.head_dim / 4; // partial_rotary_factor 0.25
                                    // IMROPE sections split n_rot/2 rotation pairs 11:11:10 like the real model
        let half = (n_rot / 2) as u32;
        let t = half * 11 / 32;
        let rope_sections = [t, t, half - 2 * t, 0];
        let config = Config {
            n_vocab: s.n_vocab,
            n_ctx_train: s.n_ctx,
            n_embd: s.n_embd,
            n_block: s.n_layer + 1,
            n_nextn: 1,
            n_ff: s.n_ff,
            n_head: s.n_head,
            n_head_kv: s.n_head_kv,
            head_dim: s.head_dim,
            n_rot,
            rope_sections,
            rope_freq_base: 1.0e7,
            rms_eps: 1.0e-6,
            ssm_d_conv: 4,
            ssm_d_state: s.d_state,
            ssm_n_group: s.h_k,
            ssm_dt_rank: s.h_v,
            ssm_d_inner: s.h_v * s.d_state,
            recurrent: schedule_from_interval(s.n_layer as u64, 1, u64::from(interval)),
        };
        PresetSpec {
            config,
            full_attention_interval: interval,
            tied_output: s.tied,
            n_merges: s.n_merges,
        }
    }
}

/// The `general.*` and `qwen35.*` keys describing `spec` (tokenizer keys are separate).
pub fn model_metadata(
    spec: &PresetSpec,
    name: &str,
    file_type: u32,
    quantized: bool,
) -> Vec<(String, Value)> {
    let c = &spec.config;
    let k = |s: &str| format!("{ARCH}.{s}");
    let u = |x: usize| Value::U32(x as u32);
    let mut md = vec![
        (
            "general.architecture".to_string(),
            Value::String(ARCH.into()),
        ),
        ("general.name".into(), Value::String(name.into())),
        ("general.file_type".into(), Value::U32(file_type)),
    ];
    if quantized {
        md.push(("general.quantization_version".into(), Value::U32(2)));
    }
    md.extend([
        (k("context_length"), u(c.n_ctx_train)),
        (k("embedding_length"), u(c.n_embd)),
        (k("block_count"), u(c.n_block)),
        (k("nextn_predict_layers"), u(c.n_nextn)),
        (k("feed_forward_length"), u(c.n_ff)),
        (k("attention.head_count"), u(c.n_head)),
        (k("attention.head_count_kv"), u(c.n_head_kv)),
        (k("attention.key_length"), u(c.head_dim)),
        (k("attention.value_length"), u(c.head_dim)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(c.rms_eps)),
        (k("rope.dimension_count"), u(c.n_rot)),
        (
            k("rope.dimension_sections"),
            Value::Array(crate::gguf::Array::I32(
                c.rope_sections.iter().map(|&x| x as i32).collect(),
            )),
        ),
        (k("rope.freq_base"), Value::F32(c.rope_freq_base)),
        (k("ssm.conv_kernel"), u(c.ssm_d_conv)),
        (k("ssm.state_size"), u(c.ssm_d_state)),
        (k("ssm.group_count"), u(c.ssm_n_group)),
        (k("ssm.time_step_rank"), u(c.ssm_dt_rank)),
        (k("ssm.inner_size"), u(c.ssm_d_inner)),
        (
            k("full_attention_interval"),
            Value::U32(spec.full_attention_interval),
        ),
    ]);
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_consistent_and_has_256_multiple_rows() {
        for p in Preset::ALL {
            let spec = p.spec();
            let c = &spec.config;
            c.validate().unwrap_or_else(|e| panic!("{}: {e}", p.name()));
            for spec in crate::model::qwen35::expected_tensors(c) {
                if spec.dims.len() >= 2 && !spec.kind.is_f32_only() {
                    assert_eq!(spec.dims[0] % 256, 0, "{} {}", p.name(), spec.name);
                }
            }
        }
    }

    #[test]
    fn tiny_exercises_the_tiled_head_order_and_a_mixed_schedule() {
        let c = Preset::Tiny.spec().config;
        assert_eq!(c.gdn_v_per_k(), 2);
        assert_eq!(c.n_layer(), 8);
        assert_eq!((c.n_gdn_layers(), c.n_attention_layers()), (6, 2));
        assert_eq!(c.mtp_block(), Some(8));
    }

    #[test]
    fn the_27b_preset_has_the_published_shapes() {
        let c = Preset::Qwen27B.spec().config;
        assert_eq!(
            (c.n_embd, c.n_ff, c.n_vocab, c.n_layer()),
            (5120, 17408, 248320, 64)
        );
        assert_eq!(
            (c.n_head, c.n_head_kv, c.head_dim, c.n_rot),
            (24, 4, 256, 64)
        );
        assert_eq!((c.ssm_n_group, c.ssm_dt_rank, c.ssm_d_state), (16, 48, 128));
        assert_eq!(c.rope_sections, [11, 11, 10, 0]);
        assert_eq!(c.gdn_conv_dim(), 10240);
        assert_eq!((c.n_gdn_layers(), c.n_attention_layers()), (48, 16));
    }
}
