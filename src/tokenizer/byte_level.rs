//! GPT-2 byte-level mapping (`bytes_to_unicode`): every byte becomes one printable codepoint,
//! so that vocabulary entries are valid UTF-8 strings.

use std::sync::OnceLock;

/// The codepoint each byte maps to: bytes 0x21–0x7E, 0xA1–0xAC and 0xAE–0xFF map to themselves;
/// the other 68, in increasing order, to U+0100, U+0101, …
pub(crate) fn byte_to_char(b: u8) -> char {
    byte_table()[b as usize]
}

/// The byte a mapped codepoint stands for, if it is one of the 256.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = u32::from(c);
    match cp {
        0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF => Some(cp as u8),
        0x100..=0x143 => Some(unmapped_bytes()[(cp - 0x100) as usize]),
        _ => None,
    }
}

fn is_self_mapped(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

fn unmapped_bytes() -> &'static [u8; 68] {
    static T: OnceLock<[u8; 68]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = [0u8; 68];
        let mut n = 0;
        for b in 0..=255u8 {
            if !is_self_mapped(b) {
                t[n] = b;
                n += 1;
            }
        }
        t
    })
}

fn byte_table() -> &'static [char; 256] {
    static T: OnceLock<[char; 256]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = ['\0'; 256];
        let mut n = 0u32;
        for b in 0..=255u8 {
            t[b as usize] = if is_self_mapped(b) {
                char::from(b)
            } else {
                n += 1;
                // 0x100 + n - 1 <= 0x143: always a valid scalar value.
                char::from_u32(0x100 + n - 1).unwrap_or('\u{FFFD}')
            };
        }
        t
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_and_newline_map_to_the_gpt2_symbols() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(0xAD), 'Ń');
        assert_eq!(byte_to_char(b'a'), 'a');
    }

    #[test]
    fn mapping_round_trips_for_all_bytes() {
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('\u{144}'), None);
        assert_eq!(char_to_byte(' '), None);
    }
}
