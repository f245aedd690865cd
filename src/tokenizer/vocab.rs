//! Token types and the special-token bookkeeping of `llama_vocab::impl::load`: attributes,
//! detection of EOT/FIM tokens by text, and the end-of-generation set.

use std::collections::{BTreeSet, HashMap};

/// `tokenizer.ggml.token_type` values (`llama_token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    /// Maps the GGUF integer; values outside 1..=6 are UNDEFINED, as in llama.cpp.
    pub fn from_i32(v: i32) -> Self {
        match v {
            1 => Self::Normal,
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Undefined,
        }
    }
}

/// Special token ids as read from metadata (`None` = key absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
}

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// Applies llama.cpp's text-based detection: fills `eot`, `fim_pad`, `fim_rep`, `fim_sep` when
/// the metadata did not give them, forces every detected token to CONTROL, and returns the
/// end-of-generation set.
pub(crate) fn detect_specials(
    texts: &[String],
    types: &mut [TokenType],
    by_text: &HashMap<String, u32>,
    ids: &mut SpecialIds,
) -> BTreeSet<u32> {
    // llama.cpp walks an unordered map, so which of several candidates wins is unspecified;
    // we take the first one in list order, which makes `<|im_end|>` the EOT of Qwen.
    let find = |slot: &mut Option<u32>, list: &[&str], types: &mut [TokenType]| {
        if slot.is_some() {
            return;
        }
        for t in list {
            if let Some(&id) = by_text.get(*t) {
                *slot = Some(id);
                force_control(types, id);
                return;
            }
        }
    };
    find(&mut ids.eot, EOT_TEXTS, types);
    find(&mut ids.fim_pad, FIM_PAD_TEXTS, types);
    find(&mut ids.fim_rep, FIM_REP_TEXTS, types);
    find(&mut ids.fim_sep, FIM_SEP_TEXTS, types);

    let mut eog = BTreeSet::new();
    eog.extend(ids.fim_pad);
    eog.extend(ids.fim_rep);
    eog.extend(ids.fim_sep);
    for t in EOG_TEXTS {
        if let Some(&id) = by_text.get(*t) {
            eog.insert(id);
            force_control(types, id);
        }
    }
    eog.extend(ids.eos);
    eog.extend(ids.eot);
    eog.extend(ids.eom);
    eog.retain(|&id| (id as usize) < texts.len());
    eog
}

fn force_control(types: &mut [TokenType], id: u32) {
    if let Some(t) = types.get_mut(id as usize) {
        if *t != TokenType::Control {
            tracing::warn!(
                id,
                "control-looking token was not CONTROL; overriding its type"
            );
            *t = TokenType::Control;
        }
    }
}
