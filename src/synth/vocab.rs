//! Tokenizer metadata for synthetic models: a small byte-level BPE vocabulary learned from
//! an embedded text (`corpus.txt`), in the form llama.cpp's `gpt2` tokenizer loads
//! (`spec/gguf-file-format.md` §2), or the `tokenizer.*` keys copied from another GGUF.

use std::collections::HashMap;

use crate::gguf::{Array, GgufFile, Value};

/// `tokenizer.ggml.token_type` values.
pub const TOKEN_NORMAL: i32 = 1;
pub const TOKEN_CONTROL: i32 = 3;
pub const TOKEN_UNUSED: i32 = 5;

/// Control tokens, in id order after the learned tokens.
pub const CONTROL_TOKENS: [&str; 5] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
];

/// The embedded training text.
pub const CORPUS: &str = include_str!("corpus.txt");

/// ChatML with a thinking block, like the Qwen3.5 template without tools.
pub const CHAT_TEMPLATE: &str = "{%- for message in messages -%}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}\
{{- '<|im_start|>assistant\\n' -}}\
{%- if enable_thinking is defined and enable_thinking is false -%}\
{{- '<think>\\n\\n</think>\\n\\n' -}}\
{%- else -%}\
{{- '<think>\\n' -}}\
{%- endif -%}\
{%- endif -%}";

#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    #[error("a vocabulary of {n_vocab} tokens cannot hold the 256 byte tokens and {} control tokens", CONTROL_TOKENS.len())]
    TooSmall { n_vocab: usize },
    #[error("{source_file}: has no tokenizer.ggml.tokens string array")]
    NoTokens { source_file: String },
    #[error("{source_file}: {n_tokens} tokens do not fit the preset's vocabulary of {n_vocab}")]
    TooLarge {
        source_file: String,
        n_tokens: usize,
        n_vocab: usize,
    },
    #[error("{source_file}: {key} has {found} entries, expected one per token ({n_tokens})")]
    Length {
        source_file: String,
        key: String,
        found: usize,
        n_tokens: usize,
    },
}

/// GPT-2 `bytes_to_unicode`: bytes 0x21–0x7E, 0xA1–0xAC, 0xAE–0xFF map to themselves, the
/// other 68 to U+0100 upwards in byte order.
pub fn byte_to_unicode() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut next = 0x100u32;
    for b in 0..=255u8 {
        let printable = matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
        let cp = if printable {
            u32::from(b)
        } else {
            next += 1;
            next - 1
        };
        // every value is below U+0144, a valid scalar value
        out[b as usize] = char::from_u32(cp).unwrap_or('\u{fffd}');
    }
    out
}

/// GPT-2's byte-token order: the self-mapped bytes first, then the remapped ones.
pub fn byte_token_order() -> Vec<u8> {
    let printable = |b: &u8| matches!(*b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
    let mut v: Vec<u8> = (0..=255u8).filter(printable).collect();
    v.extend((0..=255u8).filter(|b| !printable(b)));
    v
}

/// Splits text roughly like the qwen35 pre-tokenizer (words with one leading non-letter,
/// single digits, punctuation runs, whitespace runs). It only shapes which merges are
/// learned; the runtime tokenizer uses the exact scanner.
fn pretokenize(text: &str) -> Vec<&str> {
    let cs: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |i: usize| cs.get(i).map_or(text.len(), |c| c.0);
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i].1;
        let next_alpha = cs.get(i + 1).is_some_and(|n| n.1.is_alphabetic());
        let mut j = i + 1;
        if c.is_alphabetic() || (!c.is_numeric() && c != '\n' && c != '\r' && next_alpha) {
            while j < cs.len() && cs[j].1.is_alphabetic() {
                j += 1;
            }
        } else if c.is_numeric() {
            // one digit per piece
        } else if c.is_whitespace() {
            while j < cs.len() && cs[j].1.is_whitespace() && !cs[j - 1].1.eq(&'\n') {
                j += 1;
            }
        } else {
            while j < cs.len() && !cs[j].1.is_alphanumeric() && !cs[j].1.is_whitespace() {
                j += 1;
            }
            while j < cs.len() && (cs[j].1 == '\n' || cs[j].1 == '\r') {
                j += 1;
            }
        }
        out.push(&text[cs[i].0..end_of(j)]);
        i = j;
    }
    out
}

/// Learns up to `n_merges` BPE merges (byte-level strings) from `text`. Pairs are merged by
/// count, ties broken by the pair's strings, and only pairs seen at least twice.
pub fn train_merges(text: &str, n_merges: usize) -> Vec<(String, String)> {
    let b2u = byte_to_unicode();
    let mut symbols: Vec<String> = (0..256).map(|b| b2u[b].to_string()).collect();
    let mut symbol_id: HashMap<String, u32> = symbols
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as u32))
        .collect();
    let mut word_counts: HashMap<Vec<u32>, usize> = HashMap::new();
    for piece in pretokenize(text) {
        let ids = piece.bytes().map(u32::from).collect();
        *word_counts.entry(ids).or_default() += 1;
    }
    let mut words: Vec<(Vec<u32>, usize)> = word_counts.into_iter().collect();
    words.sort();

    let mut merges = Vec::new();
    while merges.len() < n_merges {
        let mut pairs: HashMap<(u32, u32), usize> = HashMap::new();
        for (w, n) in &words {
            for p in w.windows(2) {
                *pairs.entry((p[0], p[1])).or_default() += n;
            }
        }
        let best = pairs
            .into_iter()
            .filter(|&(_, n)| n >= 2)
            .max_by(|(pa, na), (pb, nb)| {
                na.cmp(nb).then_with(|| {
                    let ka = (&symbols[pa.0 as usize], &symbols[pa.1 as usize]);
                    let kb = (&symbols[pb.0 as usize], &symbols[pb.1 as usize]);
                    kb.cmp(&ka)
                })
            });
        let Some(((l, r), _)) = best else { break };
        let merged = format!("{}{}", symbols[l as usize], symbols[r as usize]);
        let id = *symbol_id.entry(merged.clone()).or_insert_with(|| {
            symbols.push(merged);
            (symbols.len() - 1) as u32
        });
        merges.push((symbols[l as usize].clone(), symbols[r as usize].clone()));
        for (w, _) in &mut words {
            let mut k = 0;
            while k + 1 < w.len() {
                if w[k] == l && w[k + 1] == r {
                    w[k] = id;
                    w.remove(k + 1);
                }
                k += 1;
            }
        }
    }
    merges
}

/// A complete byte-level BPE vocabulary.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    /// "left right", rank = index.
    pub merges: Vec<String>,
    pub eos: u32,
    pub pad: u32,
    pub bos: u32,
}

impl Vocab {
    pub fn id(&self, token: &str) -> Option<u32> {
        self.tokens
            .iter()
            .position(|t| t == token)
            .map(|i| i as u32)
    }
}

/// Builds a vocabulary of exactly `n_vocab` tokens: 256 byte tokens, tokens of up to
/// `max_merges` learned merges, the control tokens, then `[PAD<id>]` UNUSED tokens.
pub fn build_vocab(n_vocab: usize, max_merges: usize) -> Result<Vocab, VocabError> {
    let n_fixed = 256 + CONTROL_TOKENS.len();
    if n_vocab < n_fixed {
        return Err(VocabError::TooSmall { n_vocab });
    }
    let b2u = byte_to_unicode();
    let mut tokens: Vec<String> = byte_token_order()
        .into_iter()
        .map(|b| b2u[b as usize].to_string())
        .collect();
    let mut token_types = vec![TOKEN_NORMAL; 256];
    let mut merges = Vec::new();
    let mut seen: std::collections::HashSet<String> = tokens.iter().cloned().collect();
    // Each merge adds at most one token; stop learning when the vocab is full.
    for (l, r) in train_merges(CORPUS, max_merges.min(n_vocab - n_fixed)) {
        let t = format!("{l}{r}");
        merges.push(format!("{l} {r}"));
        if seen.insert(t.clone()) {
            tokens.push(t);
            token_types.push(TOKEN_NORMAL);
        }
    }
    let first_control = tokens.len() as u32;
    for c in CONTROL_TOKENS {
        tokens.push(c.to_owned());
        token_types.push(TOKEN_CONTROL);
    }
    while tokens.len() < n_vocab {
        tokens.push(format!("[PAD{}]", tokens.len()));
        token_types.push(TOKEN_UNUSED);
    }
    Ok(Vocab {
        tokens,
        token_types,
        merges,
        eos: first_control + 2, // <|im_end|>
        pad: first_control,     // <|endoftext|>
        bos: first_control,
    })
}

/// The `tokenizer.*` keys for a built vocabulary.
pub fn tokenizer_metadata(v: &Vocab) -> Vec<(String, Value)> {
    vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("qwen35".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(Array::String(v.tokens.clone())),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(Array::I32(v.token_types.clone())),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(Array::String(v.merges.clone())),
        ),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(v.eos)),
        ("tokenizer.ggml.padding_token_id".into(), Value::U32(v.pad)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(v.bos)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        (
            "tokenizer.chat_template".into(),
            Value::String(CHAT_TEMPLATE.into()),
        ),
    ]
}

/// All `tokenizer.*` keys of `file`, with the per-token arrays padded by UNUSED `[PAD<id>]`
/// tokens to `n_vocab`.
pub fn tokenizer_metadata_from(
    file: &GgufFile,
    source_file: &str,
    n_vocab: usize,
) -> Result<Vec<(String, Value)>, VocabError> {
    let n_tokens = match file.get("tokenizer.ggml.tokens") {
        Some(Value::Array(Array::String(t))) => t.len(),
        _ => {
            return Err(VocabError::NoTokens {
                source_file: source_file.into(),
            })
        }
    };
    if n_tokens > n_vocab {
        return Err(VocabError::TooLarge {
            source_file: source_file.into(),
            n_tokens,
            n_vocab,
        });
    }
    let mut out = Vec::new();
    for (key, value) in file.metadata() {
        if !key.starts_with("tokenizer.") {
            continue;
        }
        let per_token = matches!(
            key.as_str(),
            "tokenizer.ggml.tokens" | "tokenizer.ggml.token_type" | "tokenizer.ggml.scores"
        );
        let mut value = value.clone();
        if per_token {
            let len_err = |found| VocabError::Length {
                source_file: source_file.into(),
                key: key.clone(),
                found,
                n_tokens,
            };
            match &mut value {
                Value::Array(Array::String(t)) if t.len() == n_tokens => {
                    t.extend((n_tokens..n_vocab).map(|i| format!("[PAD{i}]")));
                }
                Value::Array(Array::I32(t)) if t.len() == n_tokens => {
                    t.resize(n_vocab, TOKEN_UNUSED);
                }
                Value::Array(Array::F32(t)) if t.len() == n_tokens => t.resize(n_vocab, 0.0),
                Value::Array(a) => return Err(len_err(array_len(a))),
                _ => return Err(len_err(1)),
            }
        }
        out.push((key.clone(), value));
    }
    Ok(out)
}

fn array_len(a: &Array) -> usize {
    match a {
        Array::U8(v) => v.len(),
        Array::I8(v) => v.len(),
        Array::U16(v) => v.len(),
        Array::I16(v) => v.len(),
        Array::U32(v) => v.len(),
        Array::I32(v) => v.len(),
        Array::F32(v) => v.len(),
        Array::Bool(v) => v.len(),
        Array::String(v) => v.len(),
        Array::U64(v) => v.len(),
        Array::I64(v) => v.len(),
        Array::F64(v) => v.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_mapping_is_a_bijection_with_gpt2_landmarks() {
        let m = byte_to_unicode();
        assert_eq!(m[b' ' as usize], 'Ġ');
        assert_eq!(m[b'\n' as usize], 'Ċ');
        assert_eq!(m[b'a' as usize], 'a');
        assert_eq!(m[0], '\u{100}');
        let set: std::collections::HashSet<char> = m.iter().copied().collect();
        assert_eq!(set.len(), 256);
        let order = byte_token_order();
        assert_eq!(order[0], b'!');
        assert_eq!(order.len(), 256);
    }

    #[test]
    fn training_learns_frequent_english_pairs_first_and_is_deterministic() {
        let m = train_merges(CORPUS, 300);
        assert_eq!(m, train_merges(CORPUS, 300));
        assert!(m.len() >= 300, "learned only {}", m.len());
        // " t" + "he" style merges must appear early in English text
        let first: Vec<String> = m.iter().take(20).map(|(l, r)| format!("{l}{r}")).collect();
        assert!(
            first.iter().any(|t| t == "Ġt" || t == "th" || t == "he"),
            "{first:?}"
        );
        // every merge's parts are made of byte-level symbols only
        let b2u: std::collections::HashSet<char> = byte_to_unicode().into_iter().collect();
        assert!(m
            .iter()
            .all(|(l, r)| l.chars().chain(r.chars()).all(|c| b2u.contains(&c))));
    }

    #[test]
    fn built_vocab_has_unique_tokens_controls_and_padding() {
        let v = build_vocab(1024, 600).expect("big enough");
        assert_eq!(v.tokens.len(), 1024);
        assert_eq!(v.token_types.len(), 1024);
        let set: std::collections::HashSet<&String> = v.tokens.iter().collect();
        assert_eq!(set.len(), 1024, "llama.cpp requires unique token texts");
        assert_eq!(v.tokens[v.eos as usize], "<|im_end|>");
        assert_eq!(v.tokens[v.pad as usize], "<|endoftext|>");
        assert_eq!(v.token_types[v.eos as usize], TOKEN_CONTROL);
        assert_eq!(v.tokens[1023], "[PAD1023]");
        assert_eq!(v.token_types[1023], TOKEN_UNUSED);
        // every merge result is a token
        for m in &v.merges {
            let (l, r) = m.split_once(' ').expect("merge has a space");
            assert!(set.contains(&format!("{l}{r}")), "{m}");
        }
    }

    #[test]
    fn tiny_vocabularies_are_rejected_and_small_ones_have_no_merges() {
        assert!(matches!(
            build_vocab(100, 10),
            Err(VocabError::TooSmall { n_vocab: 100 })
        ));
        let v = build_vocab(261, 10).expect("exactly the fixed tokens");
        assert!(v.merges.is_empty());
        assert_eq!(v.tokens.len(), 261);
    }

    #[test]
    fn chat_template_renders_chatml_with_a_thinking_prompt() {
        let env = minijinja::Environment::new();
        let tmpl = env
            .template_from_str(CHAT_TEMPLATE)
            .expect("template parses");
        let out = tmpl
            .render(minijinja::context! {
                messages => vec![minijinja::context!{ role => "user", content => "hi" }],
                add_generation_prompt => true,
            })
            .expect("renders");
        assert_eq!(
            out,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n"
        );
        let out = tmpl
            .render(minijinja::context! {
                messages => Vec::<minijinja::Value>::new(),
                add_generation_prompt => true,
                enable_thinking => false,
            })
            .expect("renders");
        assert_eq!(out, "<|im_start|>assistant\n<think>\n\n</think>\n\n");
    }
}
