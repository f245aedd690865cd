//! Splitting raw text at special-token occurrences (`tokenizer_st_partition`).
//!
//! Every CONTROL, USER_DEFINED and UNKNOWN token is a special token. They are tried longest
//! text first (ties by id; llama.cpp's `std::sort` leaves ties unspecified); each one splits
//! every remaining raw fragment at all of its exact, non-overlapping occurrences, left to right.
//! Without `parse_special`, CONTROL and UNKNOWN tokens are skipped and USER_DEFINED ones still
//! match.

use memchr::memmem;

/// A piece of the input after partitioning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Raw text: a byte range of the input.
    Text(usize, usize),
    /// A special token matched in the text.
    Token(u32),
}

/// One special token as the partitioner needs it.
pub(crate) struct Special {
    pub(crate) id: u32,
    pub(crate) text: Vec<u8>,
    /// CONTROL or UNKNOWN: only matched with `parse_special`.
    pub(crate) needs_parse_special: bool,
    finder: memmem::Finder<'static>,
}

impl Special {
    pub(crate) fn new(id: u32, text: &str, needs_parse_special: bool) -> Self {
        Special {
            id,
            text: text.as_bytes().to_vec(),
            needs_parse_special,
            finder: memmem::Finder::new(text.as_bytes()).into_owned(),
        }
    }
}

/// Sorts specials as llama.cpp's cache: longest text first (then by id, to be deterministic).
pub(crate) fn sort_specials(specials: &mut [Special]) {
    specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
}

pub(crate) fn partition(
    text: &[u8],
    specials: &[Special],
    parse_special: bool,
    out: &mut Vec<Fragment>,
) {
    out.clear();
    if text.is_empty() {
        return;
    }
    out.push(Fragment::Text(0, text.len()));
    let mut next: Vec<Fragment> = Vec::new();
    for sp in specials {
        if sp.needs_parse_special && !parse_special {
            continue;
        }
        if sp.text.is_empty() {
            continue;
        }
        // Fast path: nothing to split if no raw fragment contains the token.
        let hit = out.iter().any(|f| match *f {
            Fragment::Text(s, e) => sp.finder.find(&text[s..e]).is_some(),
            Fragment::Token(_) => false,
        });
        if !hit {
            continue;
        }
        next.clear();
        for f in out.iter() {
            match *f {
                Fragment::Token(_) => next.push(*f),
                Fragment::Text(s, e) => {
                    let mut at = s;
                    while at < e {
                        let Some(m) = sp.finder.find(&text[at..e]) else {
                            break;
                        };
                        let m = at + m;
                        if m > at {
                            next.push(Fragment::Text(at, m));
                        }
                        next.push(Fragment::Token(sp.id));
                        at = m + sp.text.len();
                    }
                    if at < e {
                        next.push(Fragment::Text(at, e));
                    }
                }
            }
        }
        std::mem::swap(out, &mut next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials() -> Vec<Special> {
        let mut v = vec![
            Special::new(10, "<|im_start|>", true),
            Special::new(11, "<think>", false),
            Special::new(12, "<|im_end|>", true),
        ];
        sort_specials(&mut v);
        v
    }

    #[test]
    fn control_tokens_match_only_with_parse_special() {
        let text = b"<|im_start|>hi<think>x<|im_end|>";
        let mut out = Vec::new();
        partition(text, &specials(), true, &mut out);
        assert_eq!(
            out,
            vec![
                Fragment::Token(10),
                Fragment::Text(12, 14),
                Fragment::Token(11),
                Fragment::Text(21, 22),
                Fragment::Token(12)
            ]
        );
        partition(text, &specials(), false, &mut out);
        assert_eq!(
            out,
            vec![
                Fragment::Text(0, 14),
                Fragment::Token(11),
                Fragment::Text(21, 32)
            ]
        );
    }

    #[test]
    fn longer_tokens_win_over_shorter_overlapping_ones() {
        let mut v = vec![Special::new(1, "ab", false), Special::new(2, "bcd", false)];
        sort_specials(&mut v);
        let mut out = Vec::new();
        // "bcd" is tried first although "ab" starts earlier.
        partition(b"abcd", &v, false, &mut out);
        assert_eq!(out, vec![Fragment::Text(0, 1), Fragment::Token(2)]);
    }
}
