//! Byte-level BPE merging as `llm_tokenizer_bpe_session::tokenize` does it.
//!
//! llama.cpp works on symbol *texts*; we intern every text that can occur (vocabulary entries,
//! both sides of every merge and every merge result) as an integer, so pairs are looked up by
//! two integers. Texts that are not vocabulary entries get ids at or above `n_vocab`; a final
//! symbol with such an id falls back to single-byte lookups, exactly like llama.cpp.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::byte_level::byte_to_char;

/// A small multiplicative hasher for integer keys (the std SipHash is several times slower
/// here and we need no DoS resistance: keys come from the model file).
#[derive(Default)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(crate) type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

#[derive(Clone, Copy)]
struct Merge {
    rank: u32,
    result: u32,
}

pub(crate) struct Bpe {
    n_vocab: u32,
    /// Texts of interned non-vocabulary symbols; id = n_vocab + index.
    extra: Vec<String>,
    /// Symbol id of each byte's mapped character.
    byte_sym: [u32; 256],
    merges: IntMap<(u32, u32), Merge>,
}

#[derive(Clone, Copy)]
struct Sym {
    id: u32,
    prev: i32,
    next: i32,
    alive: bool,
}

/// A queued pair: (rank, left index, right index, left id, right id); the heap pops the lowest
/// rank first and, among equal ranks, the leftmost pair (llama.cpp's comparator).
type QueuedPair = Reverse<(u32, u32, u32, u32, u32)>;

/// Reusable buffers for one tokenization call.
#[derive(Default)]
pub(crate) struct BpeScratch {
    syms: Vec<Sym>,
    heap: BinaryHeap<QueuedPair>,
}

impl Bpe {
    /// `by_text` maps every vocabulary text to its id (`n_vocab` entries). `merges` are the
    /// `"left right"` strings; the index is the rank.
    pub(crate) fn new(n_vocab: u32, by_text: &HashMap<String, u32>, merges: &[String]) -> Self {
        let mut extra: Vec<String> = Vec::new();
        let mut extra_ids: HashMap<String, u32> = HashMap::new();
        let mut intern = |text: &str| -> u32 {
            if let Some(&id) = by_text.get(text) {
                return id;
            }
            if let Some(&id) = extra_ids.get(text) {
                return id;
            }
            let id = n_vocab + extra.len() as u32;
            extra.push(text.to_owned());
            extra_ids.insert(text.to_owned(), id);
            id
        };
        let mut byte_sym = [0u32; 256];
        for (b, slot) in byte_sym.iter_mut().enumerate() {
            let c = byte_to_char(b as u8);
            *slot = intern(c.encode_utf8(&mut [0u8; 4]));
        }
        let mut map: IntMap<(u32, u32), Merge> = IntMap::default();
        map.reserve(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // llama.cpp: split at the first space after position 0; no space -> ("", ""),
            // which can never match a symbol, so we skip it.
            let Some(pos) = m.as_bytes().iter().skip(1).position(|&b| b == b' ') else {
                continue;
            };
            let pos = pos + 1;
            let (left, right) = (&m[..pos], &m[pos + 1..]);
            if left.is_empty() || right.is_empty() {
                // cannot match: symbols are never empty
                continue;
            }
            let l = intern(left);
            let r = intern(right);
            let mut joined = String::with_capacity(m.len() - 1);
            joined.push_str(left);
            joined.push_str(right);
            let result = intern(&joined);
            // The first occurrence of a pair keeps its rank (std::map::emplace).
            map.entry((l, r)).or_insert(Merge {
                rank: rank as u32,
                result,
            });
        }
        Bpe {
            n_vocab,
            extra,
            byte_sym,
            merges: map,
        }
    }

    /// Merges one pre-tokenized piece (raw UTF-8 bytes) and appends its token ids.
    pub(crate) fn encode_piece(
        &self,
        piece: &[u8],
        by_text: &HashMap<String, u32>,
        scratch: &mut BpeScratch,
        out: &mut Vec<u32>,
    ) {
        if piece.is_empty() {
            return;
        }
        let syms = &mut scratch.syms;
        let heap = &mut scratch.heap;
        syms.clear();
        heap.clear();
        let n = piece.len();
        for (i, &b) in piece.iter().enumerate() {
            syms.push(Sym {
                id: self.byte_sym[b as usize],
                prev: i as i32 - 1,
                next: if i + 1 == n { -1 } else { i as i32 + 1 },
                alive: true,
            });
        }
        let push = |heap: &mut BinaryHeap<_>, syms: &[Sym], l: i32, r: i32| {
            if l < 0 || r < 0 {
                return;
            }
            let (lid, rid) = (syms[l as usize].id, syms[r as usize].id);
            if let Some(m) = self.merges.get(&(lid, rid)) {
                heap.push(Reverse((m.rank, l as u32, r as u32, lid, rid)));
            }
        };
        for i in 1..n {
            push(heap, syms, i as i32 - 1, i as i32);
        }
        while let Some(Reverse((_rank, l, r, lid, rid))) = heap.pop() {
            let (l, r) = (l as usize, r as usize);
            let (ls, rs) = (syms[l], syms[r]);
            // Stale: a side was merged away or grew since the pair was queued.
            if !ls.alive || !rs.alive || ls.id != lid || rs.id != rid {
                continue;
            }
            let Some(m) = self.merges.get(&(lid, rid)) else {
                continue;
            };
            syms[l].id = m.result;
            syms[r].alive = false;
            syms[l].next = rs.next;
            if rs.next >= 0 {
                syms[rs.next as usize].prev = l as i32;
            }
            push(heap, syms, ls.prev, l as i32);
            push(heap, syms, l as i32, rs.next);
        }
        let mut i = 0i32;
        while i >= 0 {
            let s = syms[i as usize];
            if s.id < self.n_vocab {
                out.push(s.id);
            } else {
                // Not a vocabulary entry: llama.cpp looks up each byte of the (mapped) text as
                // a one-byte token and drops bytes that are not tokens.
                let text = &self.extra[(s.id - self.n_vocab) as usize];
                for &b in text.as_bytes() {
                    if b.is_ascii() {
                        let one = [b];
                        // ASCII is valid UTF-8.
                        if let Ok(s1) = std::str::from_utf8(&one) {
                            if let Some(&id) = by_text.get(s1) {
                                out.push(id);
                            }
                        }
                    }
                }
            }
            i = s.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(tokens: &[&str]) -> HashMap<String, u32> {
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect()
    }

    #[test]
    fn lowest_rank_merges_first_and_leftmost_breaks_ties() {
        // "aaa": merge "a a" (rank 0) applies to the leftmost pair first -> "aa" + "a".
        let v = vocab(&["a", "aa", "b", "ab"]);
        let bpe = Bpe::new(4, &v, &["a a".into(), "a b".into()]);
        let mut out = Vec::new();
        let mut s = BpeScratch::default();
        bpe.encode_piece(b"aaa", &v, &mut s, &mut out);
        assert_eq!(out, vec![1, 0]);
        out.clear();
        // "aab": "a a" has rank 0 < "a b" rank 1 -> "aa" "b"
        bpe.encode_piece(b"aab", &v, &mut s, &mut out);
        assert_eq!(out, vec![1, 2]);
    }

    #[test]
    fn merge_result_missing_from_vocab_falls_back_to_one_byte_tokens() {
        // "x y" merges to "xy", which is not a token: llama.cpp emits the byte tokens.
        let v = vocab(&["x", "y"]);
        let bpe = Bpe::new(2, &v, &["x y".into()]);
        let mut out = Vec::new();
        bpe.encode_piece(b"xy", &v, &mut BpeScratch::default(), &mut out);
        assert_eq!(out, vec![0, 1]);
    }
}
