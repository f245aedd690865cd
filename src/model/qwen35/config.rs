//! Typed qwen35 hyperparameters read from GGUF metadata, with the derived sizes the forward
//! pass needs. Keys, defaults and the layer schedule follow `spec/qwen35-architecture.md`
//! §2, §2.1 and §3 (llama.cpp `llama_model_qwen35::load_arch_hparams`).

use crate::gguf::{Array, GgufFile, Value};

use super::ModelError;

/// `general.architecture` of the models this module describes.
pub const ARCH: &str = "qwen35";

/// What a block computes besides its dense FFN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerType {
    /// Gated-DeltaNet (linear attention with a recurrent state).
    Gdn,
    /// Gated full attention with a KV cache.
    Attention,
}

/// Hyperparameters of a qwen35 model. Counts and widths are element counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Token count (`tokenizer.ggml.tokens` length, else `token_embd.weight` ne1).
    pub n_vocab: usize,
    /// `context_length`: the trained context.
    pub n_ctx_train: usize,
    /// `embedding_length`: the hidden size.
    pub n_embd: usize,
    /// `block_count`: trunk blocks plus MTP blocks.
    pub n_block: usize,
    /// `nextn_predict_layers`: MTP blocks after the trunk (0 or 1 in practice).
    pub n_nextn: usize,
    /// `feed_forward_length`: the dense SwiGLU width.
    pub n_ff: usize,
    /// `attention.head_count`: query heads of the attention layers.
    pub n_head: usize,
    /// `attention.head_count_kv`.
    pub n_head_kv: usize,
    /// `attention.key_length` (= `value_length`): attention head dim.
    pub head_dim: usize,
    /// `rope.dimension_count`: rotated dims at the start of each head.
    pub n_rot: usize,
    /// `rope.dimension_sections` (IMROPE; text-only input uses only the sum).
    pub rope_sections: [u32; 4],
    /// `rope.freq_base`.
    pub rope_freq_base: f32,
    /// `attention.layer_norm_rms_epsilon` (also the GDN L2-norm eps).
    pub rms_eps: f32,
    /// `ssm.conv_kernel`: causal conv taps.
    pub ssm_d_conv: usize,
    /// `ssm.state_size`: GDN head dim d_k (= d_v).
    pub ssm_d_state: usize,
    /// `ssm.group_count`: GDN key heads H_k.
    pub ssm_n_group: usize,
    /// `ssm.time_step_rank`: GDN value heads H_v.
    pub ssm_dt_rank: usize,
    /// `ssm.inner_size`: value_dim = H_v·d_v.
    pub ssm_d_inner: usize,
    /// Per block (all `n_block`): true where the block is a GDN layer. MTP blocks are false.
    pub recurrent: Vec<bool>,
}

impl Config {
    /// Reads and checks the hyperparameters of an opened GGUF.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        let n_vocab_hint = match file.get("tokenizer.ggml.tokens") {
            Some(Value::Array(Array::String(tokens))) => Some(tokens.len() as u64),
            Some(v) => {
                return Err(ModelError::KeyType {
                    key: "tokenizer.ggml.tokens".into(),
                    expected: "array of string",
                    found: v.type_name(),
                })
            }
            None => file
                .tensor_info("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied()),
        };
        Self::from_metadata(|k| file.get(k), n_vocab_hint)
    }

    /// Reads the hyperparameters from any key lookup; `n_vocab` comes from the caller
    /// because it lives in the tokenizer keys or the embedding shape, not in `qwen35.*`.
    pub fn from_metadata<'a>(
        get: impl Fn(&str) -> Option<&'a Value>,
        n_vocab: Option<u64>,
    ) -> Result<Self, ModelError> {
        let md = Md { get: &get };
        let arch = md.string("general.architecture")?;
        if arch != ARCH {
            return Err(ModelError::Architecture { found: arch });
        }
        let k = |s: &str| format!("{ARCH}.{s}");

        let n_block = md.uint(&k("block_count"))?;
        let n_nextn = md.uint_or(&k("nextn_predict_layers"), 0)?;
        if n_nextn >= n_block {
            return Err(ModelError::BadValue {
                key: k("nextn_predict_layers"),
                value: n_nextn.to_string(),
                reason: format!("leaves no trunk layers out of block_count {n_block}"),
            });
        }
        if let Some(n_expert) = md.opt_uint(&k("expert_count"))? {
            if n_expert > 0 {
                return Err(ModelError::BadValue {
                    key: k("expert_count"),
                    value: n_expert.to_string(),
                    reason: "mixture-of-experts (qwen35moe) models are not supported".into(),
                });
            }
        }
        let n_embd = md.uint(&k("embedding_length"))?;
        let n_head = md.per_layer(&k("attention.head_count"), n_block)?;
        let n_head_kv = match md.get(&k("attention.head_count_kv")) {
            Some(_) => md.per_layer(&k("attention.head_count_kv"), n_block)?,
            None => n_head,
        };
        let n_ff = md.per_layer(&k("feed_forward_length"), n_block)?;
        let default_head = n_embd.checked_div(n_head).unwrap_or(0);
        let head_dim = md.uint_or(&k("attention.key_length"), default_head)?;
        let head_dim_v = md.uint_or(&k("attention.value_length"), default_head)?;
        if head_dim != head_dim_v {
            return Err(ModelError::Inconsistent(format!(
                "attention.key_length {head_dim} differs from attention.value_length {head_dim_v}"
            )));
        }
        let n_rot = md.uint_or(&k("rope.dimension_count"), head_dim)?;
        let rope_sections = md.rope_sections(&k("rope.dimension_sections"))?;
        let rope_freq_base = md.float_or(&k("rope.freq_base"), 10_000.0)?;
        let rms_eps = md.float(&k("attention.layer_norm_rms_epsilon"))?;

        let ssm_d_conv = md.uint(&k("ssm.conv_kernel"))?;
        let ssm_d_inner = md.uint(&k("ssm.inner_size"))?;
        let ssm_d_state = md.uint(&k("ssm.state_size"))?;
        let ssm_dt_rank = md.uint(&k("ssm.time_step_rank"))?;
        let ssm_n_group = md.uint(&k("ssm.group_count"))?;

        let n_layer = n_block - n_nextn;
        let recurrent = match md.get(&k("attention.recurrent_layers")) {
            Some(v) => md.bool_per_layer(&k("attention.recurrent_layers"), v, n_block)?,
            None => {
                let interval = md.uint_or(&k("full_attention_interval"), 4)?;
                if interval == 0 {
                    return Err(ModelError::BadValue {
                        key: k("full_attention_interval"),
                        value: "0".into(),
                        reason: "must be at least 1".into(),
                    });
                }
                schedule_from_interval(n_layer, n_nextn, interval)
            }
        };

        let n_vocab = n_vocab.ok_or_else(|| ModelError::MissingKey {
            key: "tokenizer.ggml.tokens".into(),
        })?;

        let cfg = Config {
            n_vocab: to_usize("tokenizer.ggml.tokens", n_vocab)?,
            n_ctx_train: to_usize(&k("context_length"), md.uint(&k("context_length"))?)?,
            n_embd: to_usize(&k("embedding_length"), n_embd)?,
            n_block: to_usize(&k("block_count"), n_block)?,
            n_nextn: to_usize(&k("nextn_predict_layers"), n_nextn)?,
            n_ff: to_usize(&k("feed_forward_length"), n_ff)?,
            n_head: to_usize(&k("attention.head_count"), n_head)?,
            n_head_kv: to_usize(&k("attention.head_count_kv"), n_head_kv)?,
            head_dim: to_usize(&k("attention.key_length"), head_dim)?,
            n_rot: to_usize(&k("rope.dimension_count"), n_rot)?,
            rope_sections,
            rope_freq_base,
            rms_eps,
            ssm_d_conv: to_usize(&k("ssm.conv_kernel"), ssm_d_conv)?,
            ssm_d_state: to_usize(&k("ssm.state_size"), ssm_d_state)?,
            ssm_n_group: to_usize(&k("ssm.group_count"), ssm_n_group)?,
            ssm_dt_rank: to_usize(&k("ssm.time_step_rank"), ssm_dt_rank)?,
            ssm_d_inner: to_usize(&k("ssm.inner_size"), ssm_d_inner)?,
            recurrent,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks that the dimensions fit together (the forward pass relies on every one).
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Inconsistent(m));
        let positive = [
            ("n_vocab", self.n_vocab),
            ("embedding_length", self.n_embd),
            ("feed_forward_length", self.n_ff),
            ("attention.head_count", self.n_head),
            ("attention.head_count_kv", self.n_head_kv),
            ("attention.key_length", self.head_dim),
            ("ssm.conv_kernel", self.ssm_d_conv),
            ("ssm.state_size", self.ssm_d_state),
            ("ssm.group_count", self.ssm_n_group),
            ("ssm.time_step_rank", self.ssm_dt_rank),
        ];
        for (name, v) in positive {
            if v == 0 {
                return bad(format!("{name} is 0"));
            }
        }
        if self.n_nextn >= self.n_block {
            return bad(format!(
                "nextn_predict_layers {} leaves no trunk layer of {}",
                self.n_nextn, self.n_block
            ));
        }
        if self.n_head % self.n_head_kv != 0 {
            return bad(format!(
                "head_count {} is not a multiple of head_count_kv {}",
                self.n_head, self.n_head_kv
            ));
        }
        if self.n_rot > self.head_dim || self.n_rot % 2 != 0 {
            return bad(format!(
                "rope.dimension_count {} must be even and at most key_length {}",
                self.n_rot, self.head_dim
            ));
        }
        if self.ssm_dt_rank % self.ssm_n_group != 0 {
            return bad(format!(
                "ssm.time_step_rank (H_v) {} is not a multiple of ssm.group_count (H_k) {}",
                self.ssm_dt_rank, self.ssm_n_group
            ));
        }
        if self.ssm_d_inner != self.ssm_dt_rank * self.ssm_d_state {
            return bad(format!(
                "ssm.inner_size {} != time_step_rank {} x state_size {} (d_v must equal d_k)",
                self.ssm_d_inner, self.ssm_dt_rank, self.ssm_d_state
            ));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return bad(format!(
                "attention.layer_norm_rms_epsilon {} is not a positive number",
                self.rms_eps
            ));
        }
        if !(self.rope_freq_base.is_finite() && self.rope_freq_base > 0.0) {
            return bad(format!(
                "rope.freq_base {} is not a positive number",
                self.rope_freq_base
            ));
        }
        if self.recurrent.len() != self.n_block {
            return bad(format!(
                "{} layer kinds for block_count {}",
                self.recurrent.len(),
                self.n_block
            ));
        }
        if let Some(i) = (self.n_layer()..self.n_block).find(|&i| self.recurrent[i]) {
            return bad(format!(
                "MTP block {i} is marked recurrent; MTP blocks are attention blocks"
            ));
        }
        Ok(())
    }

    /// Trunk layers, run by the main forward pass (`block_count − nextn_predict_layers`).
    pub fn n_layer(&self) -> usize {
        self.n_block - self.n_nextn
    }

    /// Kind of trunk layer `i` (`i < n_layer()`); MTP blocks are attention blocks.
    pub fn layer_type(&self, i: usize) -> LayerType {
        if self.recurrent.get(i).copied().unwrap_or(false) {
            LayerType::Gdn
        } else {
            LayerType::Attention
        }
    }

    /// Index of the first MTP block, if the model has one.
    pub fn mtp_block(&self) -> Option<usize> {
        (self.n_nextn > 0).then(|| self.n_layer())
    }

    pub fn n_gdn_layers(&self) -> usize {
        (0..self.n_layer())
            .filter(|&i| self.layer_type(i) == LayerType::Gdn)
            .count()
    }

    /// Trunk attention layers (the MTP block is not counted).
    pub fn n_attention_layers(&self) -> usize {
        self.n_layer() - self.n_gdn_layers()
    }

    /// H_k·d_k: width of the GDN q and k projections.
    pub fn gdn_key_dim(&self) -> usize {
        self.ssm_n_group * self.ssm_d_state
    }

    /// H_v·d_v: width of the GDN v projection and the gated-norm output.
    pub fn gdn_value_dim(&self) -> usize {
        self.ssm_d_inner
    }

    /// d_v (= d_k).
    pub fn gdn_head_v_dim(&self) -> usize {
        self.ssm_d_inner / self.ssm_dt_rank
    }

    /// 2·key_dim + value_dim: conv channels and `attn_qkv` rows.
    pub fn gdn_conv_dim(&self) -> usize {
        2 * self.gdn_key_dim() + self.gdn_value_dim()
    }

    /// r = H_v / H_k. In a GGUF, value head `j` reads key head `j % H_k` (tiled order).
    pub fn gdn_v_per_k(&self) -> usize {
        self.ssm_dt_rank / self.ssm_n_group
    }

    /// f32 values of the conv state per GDN layer per sequence: (d_conv − 1)·conv_dim.
    pub fn gdn_conv_state_len(&self) -> usize {
        (self.ssm_d_conv - 1) * self.gdn_conv_dim()
    }

    /// f32 values of the delta-rule state per GDN layer per sequence: H_v·d_k·d_v.
    pub fn gdn_ssm_state_len(&self) -> usize {
        self.ssm_d_state * self.ssm_d_inner
    }

    /// 2·n_head·head_dim: `attn_q` rows (query and gate interleaved per head).
    pub fn attn_q_proj_dim(&self) -> usize {
        2 * self.n_head * self.head_dim
    }

    /// n_head_kv·head_dim: `attn_k` / `attn_v` rows.
    pub fn attn_kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// n_head·head_dim: `attn_output` input width.
    pub fn attn_out_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Query heads per KV head.
    pub fn gqa(&self) -> usize {
        self.n_head / self.n_head_kv
    }
}

/// llama.cpp's schedule when `attention.recurrent_layers` is absent: block `i` is GDN iff it
/// is a trunk block and `(i + 1) % interval != 0`.
pub fn schedule_from_interval(n_layer: u64, n_nextn: u64, interval: u64) -> Vec<bool> {
    (0..n_layer + n_nextn)
        .map(|i| i < n_layer && (i + 1) % interval != 0)
        .collect()
}

fn to_usize(key: &str, v: u64) -> Result<usize, ModelError> {
    usize::try_from(v).map_err(|_| ModelError::BadValue {
        key: key.into(),
        value: v.to_string(),
        reason: "does not fit in usize".into(),
    })
}

/// Typed accessors over a key lookup, each error naming the key.
struct Md<'f, F> {
    get: &'f F,
}

impl<'a, F: Fn(&str) -> Option<&'a Value>> Md<'_, F> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        (self.get)(key)
    }

    fn require(&self, key: &str) -> Result<&'a Value, ModelError> {
        self.get(key)
            .ok_or_else(|| ModelError::MissingKey { key: key.into() })
    }

    fn string(&self, key: &str) -> Result<String, ModelError> {
        let v = self.require(key)?;
        v.as_str().map(str::to_owned).ok_or(ModelError::KeyType {
            key: key.into(),
            expected: "string",
            found: v.type_name(),
        })
    }

    fn as_uint(key: &str, v: &Value) -> Result<u64, ModelError> {
        match v {
            Value::Array(_) | Value::String(_) | Value::Bool(_) | Value::F32(_) | Value::F64(_) => {
                Err(ModelError::KeyType {
                    key: key.into(),
                    expected: "unsigned integer",
                    found: v.type_name(),
                })
            }
            _ => v.as_u64().ok_or_else(|| ModelError::BadValue {
                key: key.into(),
                value: format!("{:?}", v.as_i64()),
                reason: "must not be negative".into(),
            }),
        }
    }

    fn uint(&self, key: &str) -> Result<u64, ModelError> {
        Self::as_uint(key, self.require(key)?)
    }

    fn opt_uint(&self, key: &str) -> Result<Option<u64>, ModelError> {
        self.get(key).map(|v| Self::as_uint(key, v)).transpose()
    }

    fn uint_or(&self, key: &str, default: u64) -> Result<u64, ModelError> {
        Ok(self.opt_uint(key)?.unwrap_or(default))
    }

    fn float(&self, key: &str) -> Result<f32, ModelError> {
        let v = self.require(key)?;
        v.as_f32().ok_or(ModelError::KeyType {
            key: key.into(),
            expected: "f32",
            found: v.type_name(),
        })
    }

    fn float_or(&self, key: &str, default: f32) -> Result<f32, ModelError> {
        match self.get(key) {
            Some(_) => self.float(key),
            None => Ok(default),
        }
    }

    /// A scalar, or an array of one value per block whose values are all equal
    /// (llama.cpp `get_key_or_arr`; hybrid-run does not support varying widths).
    fn per_layer(&self, key: &str, n_block: u64) -> Result<u64, ModelError> {
        let v = self.require(key)?;
        let Value::Array(arr) = v else {
            return Self::as_uint(key, v);
        };
        let vals = int_array(arr).ok_or(ModelError::KeyType {
            key: key.into(),
            expected: "unsigned integer or array of integers",
            found: v.type_name(),
        })?;
        if vals.len() as u64 != n_block {
            return Err(ModelError::BadValue {
                key: key.into(),
                value: format!("array of {}", vals.len()),
                reason: format!("needs one entry per block ({n_block})"),
            });
        }
        let first = vals.first().copied().unwrap_or(0);
        if vals.iter().any(|&x| x != first) {
            return Err(ModelError::BadValue {
                key: key.into(),
                value: format!("{vals:?}"),
                reason: "per-layer values differ; only uniform layers are supported".into(),
            });
        }
        u64::try_from(first).map_err(|_| ModelError::BadValue {
            key: key.into(),
            value: first.to_string(),
            reason: "must not be negative".into(),
        })
    }

    fn bool_per_layer(&self, key: &str, v: &Value, n_block: u64) -> Result<Vec<bool>, ModelError> {
        let n = n_block as usize;
        let vals: Vec<bool> = match v {
            Value::Bool(b) => vec![*b; n],
            Value::Array(Array::Bool(b)) => b.clone(),
            Value::Array(a) => match int_array(a) {
                Some(ints) => ints.iter().map(|&x| x != 0).collect(),
                None => {
                    return Err(ModelError::KeyType {
                        key: key.into(),
                        expected: "bool or array of bool",
                        found: v.type_name(),
                    })
                }
            },
            _ => {
                return Err(ModelError::KeyType {
                    key: key.into(),
                    expected: "bool or array of bool",
                    found: v.type_name(),
                })
            }
        };
        if vals.len() != n {
            return Err(ModelError::BadValue {
                key: key.into(),
                value: format!("array of {}", vals.len()),
                reason: format!("needs one entry per block ({n_block})"),
            });
        }
        Ok(vals)
    }

    /// IMROPE sections: an integer array of at most 4 entries, zero-padded.
    fn rope_sections(&self, key: &str) -> Result<[u32; 4], ModelError> {
        let v = self.require(key)?;
        let ints = match v {
            Value::Array(a) => int_array(a),
            _ => None,
        }
        .ok_or(ModelError::KeyType {
            key: key.into(),
            expected: "array of integers",
            found: v.type_name(),
        })?;
        if ints.is_empty() || ints.len() > 4 {
            return Err(ModelError::BadValue {
                key: key.into(),
                value: format!("{ints:?}"),
                reason: "needs 1 to 4 entries".into(),
            });
        }
        let mut out = [0u32; 4];
        for (o, &x) in out.iter_mut().zip(&ints) {
            *o = u32::try_from(x).map_err(|_| ModelError::BadValue {
                key: key.into(),
                value: format!("{ints:?}"),
                reason: "sections must be non-negative".into(),
            })?;
        }
        Ok(out)
    }
}

/// Integer arrays of any width as i128 (so u64 and i64 both fit); `None` for other arrays.
fn int_array(a: &Array) -> Option<Vec<i128>> {
    fn conv<T: Copy + Into<i128>>(v: &[T]) -> Vec<i128> {
        v.iter().map(|&x| x.into()).collect()
    }
    Some(match a {
        Array::U8(v) => conv(v),
        Array::I8(v) => conv(v),
        Array::U16(v) => conv(v),
        Array::I16(v) => conv(v),
        Array::U32(v) => conv(v),
        Array::I32(v) => conv(v),
        Array::U64(v) => conv(v),
        Array::I64(v) => conv(v),
        _ => return None,
    })
}
