//! Codepoint classification and UTF-8 handling exactly as llama.cpp's `unicode.cpp` does it.
//!
//! The category table is generated (see `unicode_table.rs`) from Unicode 15.1.0, the version
//! llama.cpp's own tables were built from; `scripts/gen-unicode-tables.py --check-against` proves
//! that the two agree on every codepoint.

use std::sync::OnceLock;

use super::unicode_table::{CATEGORY_RUNS, WHITESPACE};

/// Category flags of one codepoint, with llama.cpp's bit layout (`unicode_cpt_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpFlags(u16);

impl CpFlags {
    const UNDEFINED: u16 = 0x0001;
    const NUMBER: u16 = 0x0002;
    const LETTER: u16 = 0x0004;
    const MARK: u16 = 0x0010;
    const WHITESPACE: u16 = 0x0100;

    /// Flags of a position outside the fragment: all bits clear.
    pub(crate) const NONE: CpFlags = CpFlags(0);

    pub(crate) fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }
    pub(crate) fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }
    pub(crate) fn is_mark(self) -> bool {
        self.0 & Self::MARK != 0
    }
    pub(crate) fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }
    /// `as_uint() != 0` in llama.cpp: true for every real codepoint (unassigned ones carry the
    /// UNDEFINED bit), false only for [`CpFlags::NONE`].
    pub(crate) fn any(self) -> bool {
        self.0 != 0
    }
}

/// Codepoints below this get a dense lookup table; the rest use a binary search of the runs.
const DENSE_LIMIT: u32 = 0x20000;

fn dense_table() -> &'static [u16] {
    static TABLE: OnceLock<Vec<u16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = vec![0u16; DENSE_LIMIT as usize];
        for (i, &(start, flags)) in CATEGORY_RUNS.iter().enumerate() {
            let end = CATEGORY_RUNS
                .get(i + 1)
                .map_or(DENSE_LIMIT, |&(next, _)| next)
                .min(DENSE_LIMIT);
            if start >= DENSE_LIMIT {
                break;
            }
            for slot in &mut table[start as usize..end as usize] {
                *slot = u16::from(flags);
            }
        }
        for &cp in WHITESPACE.iter() {
            table[cp as usize] |= CpFlags::WHITESPACE;
        }
        table
    })
}

/// `unicode_cpt_flags_from_cpt`: codepoints beyond U+10FFFF (possible from lax UTF-8 decoding)
/// are UNDEFINED.
pub(crate) fn flags(cp: u32) -> CpFlags {
    if cp < DENSE_LIMIT {
        return CpFlags(dense_table()[cp as usize]);
    }
    if cp >= 0x110000 {
        return CpFlags(CpFlags::UNDEFINED);
    }
    // The table's first run starts at 0, so the partition point is at least 1.
    let idx = CATEGORY_RUNS.partition_point(|&(start, _)| start <= cp) - 1;
    CpFlags(u16::from(CATEGORY_RUNS[idx].1))
}

/// The replacement character llama.cpp substitutes for each undecodable byte.
pub(crate) const REPLACEMENT: u32 = 0xFFFD;

/// `unicode_cpts_from_utf8`: a lax decoder. Overlong forms, surrogates and values up to
/// 0x1FFFFF are accepted as they are; a byte that cannot start a complete sequence becomes
/// U+FFFD and decoding resumes at the next byte.
pub(crate) fn decode_lax(bytes: &[u8], out: &mut Vec<u32>) {
    out.clear();
    out.reserve(bytes.len());
    let mut i = 0;
    let cont = |b: u8| b & 0xC0 == 0x80;
    while i < bytes.len() {
        let b0 = bytes[i];
        let (cp, len) = if b0 & 0x80 == 0 {
            (u32::from(b0), 1)
        } else if b0 & 0x40 == 0 {
            (REPLACEMENT, 0)
        } else if b0 & 0x20 == 0 {
            if i + 1 < bytes.len() && cont(bytes[i + 1]) {
                (
                    (u32::from(b0 & 0x1F) << 6) | u32::from(bytes[i + 1] & 0x3F),
                    2,
                )
            } else {
                (REPLACEMENT, 0)
            }
        } else if b0 & 0x10 == 0 {
            if i + 2 < bytes.len() && cont(bytes[i + 1]) && cont(bytes[i + 2]) {
                let cp = (u32::from(b0 & 0x0F) << 12)
                    | (u32::from(bytes[i + 1] & 0x3F) << 6)
                    | u32::from(bytes[i + 2] & 0x3F);
                (cp, 3)
            } else {
                (REPLACEMENT, 0)
            }
        } else if b0 & 0x08 == 0 {
            if i + 3 < bytes.len() && cont(bytes[i + 1]) && cont(bytes[i + 2]) && cont(bytes[i + 3])
            {
                let cp = (u32::from(b0 & 0x07) << 18)
                    | (u32::from(bytes[i + 1] & 0x3F) << 12)
                    | (u32::from(bytes[i + 2] & 0x3F) << 6)
                    | u32::from(bytes[i + 3] & 0x3F);
                (cp, 4)
            } else {
                (REPLACEMENT, 0)
            }
        } else {
            (REPLACEMENT, 0)
        };
        out.push(cp);
        i += len.max(1);
    }
}

/// `unicode_cpt_to_utf8`: encodes any value up to U+10FFFF, surrogates included. Returns `None`
/// above that (llama.cpp throws there and aborts the process).
pub(crate) fn encode_lax(cp: u32, out: &mut Vec<u8>) -> Option<()> {
    match cp {
        0..=0x7F => out.push(cp as u8),
        0x80..=0x7FF => out.extend_from_slice(&[0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]),
        0x800..=0xFFFF => out.extend_from_slice(&[
            0xE0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
        0x10000..=0x10FFFF => out.extend_from_slice(&[
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_of_rare_codepoints_match_unicode_15_1() {
        // U+0CF3 (Kannada sign, new in 15.0) is a mark; U+2FFC (ideographic description
        // character, new in 15.1) is a symbol, neither letter nor number.
        assert!(flags(0x0CF3).is_mark());
        let f = flags(0x2FFC);
        assert!(f.any() && !f.is_letter() && !f.is_number() && !f.is_mark());
        // U+31350 CJK Extension H (15.0) is a letter; U+2EBF0 Extension I (15.1) too.
        assert!(flags(0x31350).is_letter());
        assert!(flags(0x2EBF0).is_letter());
        // Unassigned, private use, beyond Unicode: defined flags but no class.
        assert!(flags(0x0378).any() && !flags(0x0378).is_letter());
        assert!(flags(0xE000).any() && !flags(0xE000).is_letter());
        assert!(flags(0x1FFFFF).any() && !flags(0x1FFFFF).is_letter());
        // U+1F600 emoji is a symbol.
        assert!(!flags(0x1F600).is_letter());
        assert!(flags('½' as u32).is_number());
    }

    #[test]
    fn whitespace_is_llama_cpp_set_not_rust_set() {
        for cp in [
            0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000, 0x200A, 0x3000,
        ] {
            assert!(flags(cp).is_whitespace(), "U+{cp:04X}");
        }
        // U+180E, U+200B and U+FEFF are not whitespace for llama.cpp.
        for cp in [0x180E, 0x200B, 0xFEFF, 0x1C, 0x1F] {
            assert!(!flags(cp).is_whitespace(), "U+{cp:04X}");
        }
    }

    #[test]
    fn lax_decoder_replaces_each_bad_byte_and_keeps_overlong_and_surrogates() {
        let mut out = Vec::new();
        decode_lax(b"a\xffb\xc3", &mut out);
        assert_eq!(out, vec![0x61, REPLACEMENT, 0x62, REPLACEMENT]);
        decode_lax(b"\xc0\x80\xed\xa0\x80\xf7\xbf\xbf\xbf", &mut out);
        assert_eq!(out, vec![0, 0xD800, 0x1FFFFF]);
        let mut bytes = Vec::new();
        assert!(encode_lax(0xD800, &mut bytes).is_some());
        assert_eq!(bytes, b"\xed\xa0\x80");
        assert!(encode_lax(0x110000, &mut bytes).is_none());
    }
}
