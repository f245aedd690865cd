//! Token → bytes (`token_to_piece`) and streaming UTF-8 assembly for generated text.

use super::byte_level::char_to_byte;
use super::vocab::TokenType;

/// The bytes of one token as llama.cpp's `token_to_piece` (BPE vocab, no lstrip) renders them.
/// `special` decides whether CONTROL/UNKNOWN tokens render their text; USER_DEFINED tokens
/// always do; UNUSED/UNDEFINED tokens render nothing.
pub(crate) fn piece_bytes(text: &str, ty: TokenType, special: bool) -> Vec<u8> {
    match ty {
        TokenType::Control | TokenType::Unknown => {
            if special {
                text.as_bytes().to_vec()
            } else {
                Vec::new()
            }
        }
        TokenType::UserDefined => text.as_bytes().to_vec(),
        TokenType::Normal => decode_byte_level(text),
        TokenType::Byte => {
            // "<0xXX>": llama.cpp parses characters 3..5 as hex (strtol, 0 when invalid).
            let hex = text.get(3..5).unwrap_or("");
            vec![u8::from_str_radix(hex, 16).unwrap_or(0)]
        }
        TokenType::Unused | TokenType::Undefined => Vec::new(),
    }
}

/// `llama_decode_text`: each character back to its byte; a character outside the byte map
/// becomes `[UNK_BYTE_0x<hex of its UTF-8><whole token text>]`.
fn decode_byte_level(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).as_bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// Assembles token pieces into text, holding back a UTF-8 sequence that is not complete yet
/// (a multi-byte character can span tokens). Bytes that can never become valid UTF-8 are
/// emitted as U+FFFD.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the bytes of one token; returns the text that is complete now (possibly empty).
    pub fn push(&mut self, piece: &[u8]) -> String {
        self.pending.extend_from_slice(piece);
        let keep = incomplete_tail_len(&self.pending);
        let ready = self.pending.len() - keep;
        let text = String::from_utf8_lossy(&self.pending[..ready]).into_owned();
        self.pending.drain(..ready);
        text
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Ends the stream: whatever is held back is emitted (as U+FFFD, being incomplete).
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// Length of a trailing prefix of a UTF-8 sequence that more bytes could still complete.
fn incomplete_tail_len(bytes: &[u8]) -> usize {
    // Look back at most 3 bytes for a lead byte.
    let n = bytes.len();
    for back in 1..=3.min(n) {
        let b = bytes[n - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead
        }
        let need = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return 0, // ASCII or an invalid lead: nothing to wait for
        };
        if back >= need {
            return 0; // the sequence is already complete (or invalid, lossy handles it)
        }
        // A valid prefix? Check the second byte's range for E0/ED/F0/F4 like from_utf8 does.
        let tail = &bytes[n - back..];
        return if std::str::from_utf8(tail).is_err() && valid_prefix(tail) {
            back
        } else {
            0
        };
    }
    0
}

/// Whether `tail` (lead byte + 0..2 continuation bytes) can be extended to valid UTF-8.
fn valid_prefix(tail: &[u8]) -> bool {
    if tail.len() < 2 {
        return true;
    }
    let (lead, second) = (tail[0], tail[1]);
    let ok2 = match lead {
        0xE0 => (0xA0..=0xBF).contains(&second),
        0xED => (0x80..=0x9F).contains(&second),
        0xF0 => (0x90..=0xBF).contains(&second),
        0xF4 => (0x80..=0x8F).contains(&second),
        _ => (0x80..=0xBF).contains(&second),
    };
    ok2 && tail[2..].iter().all(|&b| b & 0xC0 == 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_tokens_is_held_back_until_complete() {
        let mut d = StreamDecoder::new();
        let snow = "☃".as_bytes(); // E2 98 83
        assert_eq!(d.push(b"a"), "a");
        assert_eq!(d.push(&snow[..1]), "");
        assert_eq!(d.push(&snow[1..2]), "");
        assert_eq!(d.push(&snow[2..]), "☃");
        assert!(d.pending().is_empty());
    }

    #[test]
    fn impossible_bytes_are_replaced_at_once_and_a_dangling_tail_at_finish() {
        let mut d = StreamDecoder::new();
        assert_eq!(d.push(b"\xffx"), "\u{FFFD}x");
        // ED A0 can never be valid (surrogate): not held back.
        assert_eq!(d.push(b"\xed\xa0"), "\u{FFFD}\u{FFFD}");
        assert_eq!(d.push(b"\xf0\x9f"), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }

    #[test]
    fn control_text_renders_only_when_asked_but_user_defined_always() {
        assert_eq!(piece_bytes("<|im_end|>", TokenType::Control, false), b"");
        assert_eq!(
            piece_bytes("<|im_end|>", TokenType::Control, true),
            b"<|im_end|>"
        );
        assert_eq!(
            piece_bytes("<think>", TokenType::UserDefined, false),
            b"<think>"
        );
        assert_eq!(
            piece_bytes("ĠhelloĊ", TokenType::Normal, false),
            b" hello\n"
        );
        assert_eq!(piece_bytes("[PAD7]", TokenType::Unused, true), b"");
    }
}
