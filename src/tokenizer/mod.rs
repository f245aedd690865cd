//! The Qwen3.5 tokenizer, built from GGUF metadata and identical in output to llama.cpp's
//! (`llama-vocab.cpp`, BPE vocab with the `qwen35` / `qwen2` pre-tokenizers).
//!
//! Pipeline (`tokenize`): special-token partition ([`special`]) → per raw fragment, lax UTF-8
//! decoding and pre-tokenization ([`pretok`]) → byte-level BPE per piece ([`bpe`]).
//! Detokenization and streaming live in [`decode`], chat templates in [`chat`].

mod bpe;
mod byte_level;
pub mod chat;
mod decode;
mod gguf_load;
mod pretok;
mod special;
mod unicode;
mod unicode_table;
mod vocab;

use std::collections::{BTreeSet, HashMap};

pub use chat::{ChatError, ChatMessage, ChatOptions};
pub use decode::StreamDecoder;
pub use pretok::PreTokenizer;
pub use vocab::{SpecialIds, TokenType};

use bpe::{Bpe, BpeScratch};
use special::{Fragment, Special};

/// A token id.
pub type TokenId = u32;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer model {0:?} is not supported (only \"gpt2\", byte-level BPE)")]
    UnsupportedModel(String),
    #[error("pre-tokenizer {0:?} is not supported (only \"qwen35\" and \"qwen2\")")]
    UnsupportedPreTokenizer(String),
    #[error("the vocabulary is empty")]
    EmptyVocab,
    #[error("token_type has {got} entries but there are {want} tokens")]
    TokenTypeCount { got: usize, want: usize },
    #[error("token text {text:?} appears twice (ids {first} and {second})")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },
    #[error("input decodes to codepoint U+{0:X}, beyond U+10FFFF (llama.cpp aborts here)")]
    InvalidCodepoint(u32),
    #[error("token id {id} is outside the vocabulary of {n_vocab} tokens")]
    TokenOutOfRange { id: u32, n_vocab: usize },
    #[error("GGUF tokenizer metadata: {0}")]
    Gguf(String),
}

/// Everything the tokenizer is built from: the `tokenizer.*` GGUF keys as plain values.
#[derive(Clone, Debug, Default)]
pub struct TokenizerParts {
    /// `tokenizer.ggml.model`; must be `"gpt2"`.
    pub model: String,
    /// `tokenizer.ggml.pre`, e.g. `"qwen35"`.
    pub pre: String,
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`; `None` = all NORMAL.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`, index = rank.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.*_token_id` keys present in the file.
    pub special: SpecialIds,
    /// `tokenizer.ggml.add_bos_token` (default false for BPE).
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

pub struct Tokenizer {
    pre: PreTokenizer,
    texts: Vec<String>,
    types: Vec<TokenType>,
    by_text: HashMap<String, u32>,
    bpe: Bpe,
    specials: Vec<Special>,
    ids: SpecialIds,
    eog: BTreeSet<u32>,
    add_bos: bool,
    add_eos: bool,
    /// `token_to_piece(id, special=true)` for every token, like llama.cpp's piece cache.
    pieces: Vec<Vec<u8>>,
    chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("pre", &self.pre)
            .field("n_vocab", &self.texts.len())
            .field("eog", &self.eog)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer from plain metadata values, applying llama.cpp's load-time rules
    /// (empty token texts renamed, special tokens detected by text, the EOG set).
    pub fn from_parts(parts: TokenizerParts) -> Result<Self, TokenizerError> {
        if parts.model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(parts.model));
        }
        let pre = PreTokenizer::from_name(&parts.pre)
            .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(parts.pre.clone()))?;
        let n = parts.tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        let mut types: Vec<TokenType> = match &parts.token_types {
            Some(t) if t.len() < n => {
                return Err(TokenizerError::TokenTypeCount {
                    got: t.len(),
                    want: n,
                })
            }
            Some(t) => t[..n].iter().map(|&v| TokenType::from_i32(v)).collect(),
            None => vec![TokenType::Normal; n],
        };
        let mut texts = parts.tokens;
        let mut by_text: HashMap<String, u32> = HashMap::with_capacity(n);
        for (i, t) in texts.iter_mut().enumerate() {
            if t.is_empty() {
                *t = format!("[EMPTY_{i}]");
            }
            if let Some(first) = by_text.insert(t.clone(), i as u32) {
                return Err(TokenizerError::DuplicateToken {
                    text: t.clone(),
                    first,
                    second: i as u32,
                });
            }
        }
        let mut ids = parts.special;
        // llama.cpp warns about an out-of-range id and keeps its default; so do we.
        for (name, slot) in [
            ("bos", &mut ids.bos),
            ("eos", &mut ids.eos),
            ("eot", &mut ids.eot),
            ("eom", &mut ids.eom),
            ("unk", &mut ids.unk),
            ("sep", &mut ids.sep),
            ("pad", &mut ids.pad),
            ("fim_pre", &mut ids.fim_pre),
            ("fim_suf", &mut ids.fim_suf),
            ("fim_mid", &mut ids.fim_mid),
            ("fim_pad", &mut ids.fim_pad),
            ("fim_rep", &mut ids.fim_rep),
            ("fim_sep", &mut ids.fim_sep),
        ] {
            if let Some(id) = *slot {
                if id as usize >= n {
                    tracing::warn!(
                        name,
                        id,
                        n_vocab = n,
                        "special token id out of range; ignored"
                    );
                    *slot = None;
                }
            }
        }
        // gpt2 defaults: bos = eos = 11 when the keys are absent (llama.cpp).
        if ids.bos.is_none() && n > 11 {
            ids.bos = Some(11);
        }
        if ids.eos.is_none() && n > 11 {
            ids.eos = Some(11);
        }
        let eog = vocab::detect_specials(&texts, &mut types, &by_text, &mut ids);

        let bpe = Bpe::new(n as u32, &by_text, &parts.merges);
        let mut specials: Vec<Special> = texts
            .iter()
            .zip(&types)
            .enumerate()
            .filter_map(|(i, (t, ty))| match ty {
                TokenType::Control | TokenType::Unknown => Some(Special::new(i as u32, t, true)),
                TokenType::UserDefined => Some(Special::new(i as u32, t, false)),
                _ => None,
            })
            .collect();
        special::sort_specials(&mut specials);
        let pieces = texts
            .iter()
            .zip(&types)
            .map(|(t, &ty)| decode::piece_bytes(t, ty, true))
            .collect();
        Ok(Tokenizer {
            pre,
            texts,
            types,
            by_text,
            bpe,
            specials,
            ids,
            eog,
            add_bos: parts.add_bos.unwrap_or(false),
            add_eos: parts.add_eos.unwrap_or(false),
            pieces,
            chat_template: parts.chat_template,
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.texts.len()
    }
    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }
    /// The stored text of a token (byte-level form for NORMAL tokens).
    pub fn token_text(&self, id: TokenId) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }
    pub fn token_type(&self, id: TokenId) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }
    /// The id of the token whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<TokenId> {
        self.by_text.get(text).copied()
    }
    /// Special ids after llama.cpp's defaults and detection by text.
    pub fn special_ids(&self) -> &SpecialIds {
        &self.ids
    }
    pub fn bos(&self) -> Option<TokenId> {
        self.ids.bos
    }
    pub fn eos(&self) -> Option<TokenId> {
        self.ids.eos
    }
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// The end-of-generation set (`special_eog_ids`).
    pub fn eog_ids(&self) -> &BTreeSet<TokenId> {
        &self.eog
    }
    pub fn is_eog(&self, id: TokenId) -> bool {
        self.eog.contains(&id)
    }
    /// `tokenizer.chat_template`, if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Tokenizes UTF-8 text like `llama_tokenize(text, add_special, parse_special)`.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<TokenId>, TokenizerError> {
        self.tokenize_bytes(text.as_bytes(), add_special, parse_special)
    }

    /// Tokenizes arbitrary bytes. Invalid UTF-8 is handled as llama.cpp does (each bad byte
    /// becomes U+FFFD; overlong forms and surrogates pass through). Sequences that decode
    /// beyond U+10FFFF are an error (llama.cpp aborts the process on them).
    pub fn tokenize_bytes(
        &self,
        text: &[u8],
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<TokenId>, TokenizerError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.ids.bos);
        }
        let mut frags = Vec::new();
        special::partition(text, &self.specials, parse_special, &mut frags);
        let mut scratch = Scratch::default();
        for f in &frags {
            match *f {
                Fragment::Token(id) => out.push(id),
                Fragment::Text(s, e) => {
                    self.encode_fragment(&text[s..e], &mut scratch, &mut out)?
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.ids.eos);
        }
        Ok(out)
    }

    fn encode_fragment(
        &self,
        text: &[u8],
        sc: &mut Scratch,
        out: &mut Vec<TokenId>,
    ) -> Result<(), TokenizerError> {
        unicode::decode_lax(text, &mut sc.cps);
        sc.lens.clear();
        pretok::split(self.pre, &sc.cps, &mut sc.lens);
        let valid = std::str::from_utf8(text).is_ok();
        let mut at_cp = 0usize;
        let mut at_byte = 0usize;
        for &len in &sc.lens {
            let cps = &sc.cps[at_cp..at_cp + len];
            at_cp += len;
            if valid {
                // Re-encoding valid UTF-8 gives back the same bytes: slice instead.
                let nbytes: usize = cps.iter().map(|&c| utf8_len(c)).sum();
                let piece = &text[at_byte..at_byte + nbytes];
                at_byte += nbytes;
                self.bpe
                    .encode_piece(piece, &self.by_text, &mut sc.bpe, out);
            } else {
                sc.piece.clear();
                for &c in cps {
                    unicode::encode_lax(c, &mut sc.piece)
                        .ok_or(TokenizerError::InvalidCodepoint(c))?;
                }
                self.bpe
                    .encode_piece(&sc.piece, &self.by_text, &mut sc.bpe, out);
            }
        }
        Ok(())
    }

    /// The bytes of one token (`token_to_piece` with lstrip 0). CONTROL/UNKNOWN tokens render
    /// their text only when `special` is true.
    pub fn token_to_piece(&self, id: TokenId, special: bool) -> Result<&[u8], TokenizerError> {
        let ty = self.token_type(id).ok_or(TokenizerError::TokenOutOfRange {
            id,
            n_vocab: self.n_vocab(),
        })?;
        if !special && matches!(ty, TokenType::Control | TokenType::Unknown) {
            return Ok(&[]);
        }
        Ok(&self.pieces[id as usize])
    }

    /// Concatenates token pieces at byte level (`llama_detokenize` without clean-up, which
    /// qwen2/qwen35 do not use).
    pub fn detokenize(&self, ids: &[TokenId], special: bool) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_to_piece(id, special)?);
        }
        Ok(out)
    }

    /// [`Tokenizer::detokenize`] as a `String`, invalid UTF-8 replaced by U+FFFD.
    pub fn detokenize_lossy(
        &self,
        ids: &[TokenId],
        special: bool,
    ) -> Result<String, TokenizerError> {
        Ok(String::from_utf8_lossy(&self.detokenize(ids, special)?).into_owned())
    }
}

fn utf8_len(cp: u32) -> usize {
    match cp {
        0..=0x7F => 1,
        0x80..=0x7FF => 2,
        0x800..=0xFFFF => 3,
        _ => 4,
    }
}

#[derive(Default)]
struct Scratch {
    cps: Vec<u32>,
    lens: Vec<usize>,
    piece: Vec<u8>,
    bpe: BpeScratch,
}
