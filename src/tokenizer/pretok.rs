//! Pre-tokenization: the hand-written scanners `unicode_regex_split_custom_qwen2` and
//! `unicode_regex_split_custom_qwen35` of llama.cpp, which stand in for the regex
//!
//! ```text
//! (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//!
//! (qwen2 is the same without `\p{M}`). We port the scanner, not the regex: where the two
//! differ, llama.cpp's scanner is the reference.

use super::unicode::{flags, CpFlags};

/// Which pre-tokenizer a vocabulary uses (`tokenizer.ggml.pre`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    /// `qwen2` (Qwen2, Qwen3, Qwen3-Next): letters only in words.
    Qwen2,
    /// `qwen35` (Qwen3.5 / 3.6): letters and combining marks in words.
    Qwen35,
}

impl PreTokenizer {
    /// Maps a `tokenizer.ggml.pre` value; `None` for pre-tokenizers we do not implement.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            // The same set of names llama.cpp maps to LLAMA_VOCAB_PRE_TYPE_QWEN2.
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" => Some(Self::Qwen2),
            "qwen35" => Some(Self::Qwen35),
            _ => None,
        }
    }
}

/// Splits `cps` (one fragment) into pieces; pushes the length of each piece, in codepoints.
pub(crate) fn split(pre: PreTokenizer, cps: &[u32], out: &mut Vec<usize>) {
    let marks = pre == PreTokenizer::Qwen35;
    let end = cps.len();
    let cpt = |p: usize| -> Option<u32> { cps.get(p).copied() };
    let fl = |p: usize| -> CpFlags { cps.get(p).map_or(CpFlags::NONE, |&c| flags(c)) };
    // letter, or (qwen35) mark
    let wordish = |f: CpFlags| f.is_letter() || (marks && f.is_mark());
    let lower = |c: Option<u32>| -> Option<u32> {
        // Only ASCII capitals lower-case to one of s t m d r v e l (checked by the table
        // generator against llama.cpp's lowercase map).
        c.map(|c| {
            if (0x41..=0x5A).contains(&c) {
                c + 0x20
            } else {
                c
            }
        })
    };
    let is_crlf = |c: Option<u32>| matches!(c, Some(0x0D) | Some(0x0A));

    let mut prev_end = 0usize;
    let mut emit = |to: usize, out: &mut Vec<usize>| -> usize {
        let len = to - prev_end;
        if len > 0 {
            out.push(len);
        }
        prev_end = to;
        len
    };

    let mut pos = 0usize;
    while pos < end {
        let c = cps[pos];
        let f = flags(c);

        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if c == u32::from(b'\'') && pos + 1 < end {
            let next = lower(cpt(pos + 1));
            if matches!(next, Some(0x73) | Some(0x74) | Some(0x6D) | Some(0x64)) {
                pos += emit(pos + 2, out);
                continue;
            }
            if pos + 2 < end {
                let next2 = lower(cpt(pos + 2));
                let pair = (next, next2);
                if pair == (Some(0x72), Some(0x65))
                    || pair == (Some(0x76), Some(0x65))
                    || pair == (Some(0x6C), Some(0x6C))
                {
                    pos += emit(pos + 3, out);
                    continue;
                }
            }
        }

        // [^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+
        if !(c == 0x0D || c == 0x0A || f.is_number()) && (wordish(f) || wordish(fl(pos + 1))) {
            pos += 1;
            while wordish(fl(pos)) {
                pos += 1;
            }
            emit(pos, out);
            continue;
        }

        // \p{N}
        if f.is_number() {
            pos += 1;
            emit(pos, out);
            continue;
        }

        // <space>?[^\s\p{L}\p{M}\p{N}]+[\r\n]*
        let other = |g: CpFlags| !(g.is_whitespace() || wordish(g) || g.is_number());
        let mut f2 = if c == 0x20 { fl(pos + 1) } else { f };
        if other(f2) && f.any() {
            if c == 0x20 {
                pos += 1;
            }
            while other(f2) && f2.any() {
                pos += 1;
                f2 = fl(pos);
            }
            while is_crlf(cpt(pos)) {
                pos += 1;
            }
            emit(pos, out);
            continue;
        }

        let mut n_ws = 0usize;
        let mut last_crlf_end = 0usize;
        while fl(pos + n_ws).is_whitespace() {
            if is_crlf(cpt(pos + n_ws)) {
                last_crlf_end = pos + n_ws + 1;
            }
            n_ws += 1;
        }

        // \s*[\r\n]+
        if last_crlf_end > 0 {
            pos = last_crlf_end;
            emit(pos, out);
            continue;
        }

        // \s+(?!\S)
        if n_ws > 1 && pos + n_ws < end {
            pos += n_ws - 1;
            emit(pos, out);
            continue;
        }

        // \s+
        if n_ws > 0 {
            pos += n_ws;
            emit(pos, out);
            continue;
        }

        // no match: one codepoint
        pos += 1;
        emit(pos, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(pre: PreTokenizer, s: &str) -> Vec<String> {
        let cps: Vec<u32> = s.chars().map(u32::from).collect();
        let mut lens = Vec::new();
        split(pre, &cps, &mut lens);
        let chars: Vec<char> = s.chars().collect();
        let mut at = 0;
        lens.iter()
            .map(|&n| {
                let p: String = chars[at..at + n].iter().collect();
                at += n;
                p
            })
            .collect()
    }

    #[test]
    fn words_take_one_leading_non_letter_and_digits_stand_alone() {
        assert_eq!(
            pieces(PreTokenizer::Qwen35, "Hello, world! 1234"),
            vec!["Hello", ",", " world", "!", " ", "1", "2", "3", "4"]
        );
    }

    #[test]
    fn contractions_are_case_insensitive() {
        assert_eq!(
            pieces(PreTokenizer::Qwen35, "I'M you'Ll"),
            vec!["I", "'M", " you", "'Ll"]
        );
    }

    #[test]
    fn whitespace_runs_leave_the_last_space_for_the_next_word() {
        assert_eq!(pieces(PreTokenizer::Qwen35, "a   b"), vec!["a", "  ", " b"]);
        assert_eq!(
            pieces(PreTokenizer::Qwen35, "a  \n\n b "),
            vec!["a", "  \n\n", " b", " "]
        );
        assert_eq!(pieces(PreTokenizer::Qwen35, "x   "), vec!["x", "   "]);
    }

    #[test]
    fn punctuation_runs_absorb_following_newlines() {
        assert_eq!(
            pieces(PreTokenizer::Qwen35, "a;;\n\nb"),
            vec!["a", ";;\n\n", "b"]
        );
    }

    #[test]
    fn qwen35_keeps_combining_marks_in_words_but_qwen2_does_not() {
        // 'e' + U+0301 COMBINING ACUTE ACCENT + 't'
        let s = "e\u{301}t";
        assert_eq!(pieces(PreTokenizer::Qwen35, s), vec![s]);
        assert_eq!(pieces(PreTokenizer::Qwen2, s), vec!["e", "\u{301}t"]);
    }
}
