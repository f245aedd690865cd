//! Reading the `tokenizer.*` keys of a GGUF file into [`TokenizerParts`].

use crate::gguf::{Array, GgufFile, Value};

use super::{SpecialIds, Tokenizer, TokenizerError, TokenizerParts};

fn bad(key: &str, what: &str, v: &Value) -> TokenizerError {
    TokenizerError::Gguf(format!("{key}: expected {what}, found {}", v.type_name()))
}

fn opt_str(f: &GgufFile, key: &str) -> Result<Option<String>, TokenizerError> {
    match f.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| bad(key, "a string", v)),
    }
}

fn opt_id(f: &GgufFile, key: &str) -> Result<Option<u32>, TokenizerError> {
    match f.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .map(Some)
            .ok_or_else(|| bad(key, "a token id (u32)", v)),
    }
}

fn opt_bool(f: &GgufFile, key: &str) -> Result<Option<bool>, TokenizerError> {
    match f.get(key) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| bad(key, "a bool", v)),
    }
}

fn string_array(f: &GgufFile, key: &str) -> Result<Option<Vec<String>>, TokenizerError> {
    match f.get(key) {
        None => Ok(None),
        Some(v) => match v.as_array() {
            Some(Array::String(s)) => Ok(Some(s.clone())),
            _ => Err(bad(key, "an array of strings", v)),
        },
    }
}

impl TokenizerParts {
    /// Collects the tokenizer keys of `f`. Missing `tokenizer.ggml.tokens` / `merges` are errors
    /// naming the key.
    pub fn from_gguf(f: &GgufFile) -> Result<Self, TokenizerError> {
        const P: &str = "tokenizer.ggml.";
        let model = opt_str(f, "tokenizer.ggml.model")?
            .ok_or_else(|| TokenizerError::Gguf("tokenizer.ggml.model is missing".into()))?;
        let pre = opt_str(f, "tokenizer.ggml.pre")?.unwrap_or_else(|| "default".into());
        let tokens = string_array(f, "tokenizer.ggml.tokens")?
            .ok_or_else(|| TokenizerError::Gguf("tokenizer.ggml.tokens is missing".into()))?;
        let merges = string_array(f, "tokenizer.ggml.merges")?
            .ok_or_else(|| TokenizerError::Gguf("tokenizer.ggml.merges is missing".into()))?;
        let token_types = match f.get("tokenizer.ggml.token_type") {
            None => None,
            Some(v) => match v.as_array() {
                Some(Array::I32(t)) => Some(t.clone()),
                _ => return Err(bad("tokenizer.ggml.token_type", "an array of i32", v)),
            },
        };
        let id = |name: &str| opt_id(f, &format!("{P}{name}"));
        let special = SpecialIds {
            bos: id("bos_token_id")?,
            eos: id("eos_token_id")?,
            eot: id("eot_token_id")?,
            eom: id("eom_token_id")?,
            unk: id("unknown_token_id")?,
            sep: id("seperator_token_id")?,
            pad: id("padding_token_id")?,
            fim_pre: id("fim_pre_token_id")?,
            fim_suf: id("fim_suf_token_id")?,
            fim_mid: id("fim_mid_token_id")?,
            fim_pad: id("fim_pad_token_id")?,
            fim_rep: id("fim_rep_token_id")?,
            fim_sep: id("fim_sep_token_id")?,
        };
        Ok(TokenizerParts {
            model,
            pre,
            tokens,
            token_types,
            merges,
            special,
            add_bos: opt_bool(f, "tokenizer.ggml.add_bos_token")?,
            add_eos: opt_bool(f, "tokenizer.ggml.add_eos_token")?,
            chat_template: opt_str(f, "tokenizer.chat_template")?,
        })
    }
}

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Self, TokenizerError> {
        Tokenizer::from_parts(TokenizerParts::from_gguf(f)?)
    }
}
