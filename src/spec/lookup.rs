//! Prompt lookup: guesses that the text repeats. The longest recent n-gram that ends the
//! sequence is looked up among earlier occurrences, and what followed it last time becomes
//! the draft. One hash map per n-gram size maps an n-gram to the position right after its
//! most recent occurrence; each new token adds one entry per size (O(1), no rescans).

use std::collections::HashMap;

use super::drafter::Drafter;
use super::target::Target;
use super::SpecError;

/// Longest n-gram the index keeps (4 tokens pack exactly into a u128 key).
pub const MAX_NGRAM: usize = 4;

pub struct LookupDrafter {
    ngram_min: usize,
    ngram_max: usize,
    /// `maps[g − 1]`: n-gram of g tokens → position of the token that followed it.
    maps: Vec<HashMap<u128, u32>>,
    /// Tokens of the history already indexed (n-grams ending before position `indexed`).
    indexed: usize,
}

fn key(gram: &[u32]) -> u128 {
    gram.iter().fold(0u128, |k, &t| (k << 32) | t as u128)
}

impl LookupDrafter {
    /// N-grams of `ngram_min..=ngram_max` tokens (1 <= min <= max <= [`MAX_NGRAM`]);
    /// `capacity` is the expected sequence length, reserved up front.
    pub fn new(ngram_min: usize, ngram_max: usize, capacity: usize) -> Result<Self, SpecError> {
        if ngram_min == 0 || ngram_min > ngram_max || ngram_max > MAX_NGRAM {
            return Err(SpecError::BadNgram {
                min: ngram_min,
                max: ngram_max,
            });
        }
        Ok(LookupDrafter {
            ngram_min,
            ngram_max,
            maps: (0..ngram_max)
                .map(|_| HashMap::with_capacity(capacity))
                .collect(),
            indexed: 0,
        })
    }

    /// Indexes history tokens not seen yet: for each new position p, the n-grams ending
    /// just before p now point at p. A history that got shorter (a new sequence) restarts.
    fn index(&mut self, history: &[u32]) {
        if history.len() < self.indexed {
            self.maps.iter_mut().for_each(HashMap::clear);
            self.indexed = 0;
        }
        for p in self.indexed..history.len() {
            for g in self.ngram_min..=self.ngram_max.min(p) {
                self.maps[g - 1].insert(key(&history[p - g..p]), p as u32);
            }
        }
        self.indexed = history.len();
    }

    /// Where the continuation of the sequence's longest indexed suffix starts, if any.
    fn find(&self, history: &[u32]) -> Option<usize> {
        let len = history.len();
        (self.ngram_min..=self.ngram_max.min(len))
            .rev()
            .find_map(|g| self.maps[g - 1].get(&key(&history[len - g..])))
            .map(|&p| p as usize)
    }
}

impl Drafter for LookupDrafter {
    fn name(&self) -> &'static str {
        "lookup"
    }

    fn draft(
        &mut self,
        _: &mut dyn Target,
        history: &[u32],
        n: usize,
        out: &mut Vec<u32>,
    ) -> Result<(), SpecError> {
        out.clear();
        // Indexing registers an n-gram only once its follower is known, so the suffix that
        // ends the history is not in the index yet and a match is an earlier occurrence.
        let len = history.len();
        self.index(history);
        if let Some(p) = self.find(history) {
            // A match close to the end copies past it into its own output (periodic text).
            for i in 0..n {
                let at = p + i;
                out.push(if at < len { history[at] } else { out[at - len] });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoTarget;
    impl Target for NoTarget {
        fn n_embd(&self) -> usize {
            0
        }
        fn n_vocab(&self) -> usize {
            0
        }
        fn has_mtp(&self) -> bool {
            false
        }
        fn n_past(&self) -> usize {
            0
        }
        fn n_ctx(&self) -> usize {
            0
        }
        fn n_threads(&self) -> usize {
            0
        }
        fn max_drafts(&self) -> usize {
            0
        }
        fn forward(
            &mut self,
            _: &[u32],
            _: crate::model::qwen35::Logits,
            _: &mut crate::model::qwen35::ForwardOutput,
        ) -> Result<(), SpecError> {
            unreachable!("lookup never runs the model")
        }
        fn verify(
            &mut self,
            _: &[u32],
            _: &mut crate::model::qwen35::ForwardOutput,
        ) -> Result<(), SpecError> {
            unreachable!("lookup never runs the model")
        }
        fn keep(&mut self, _: usize) -> Result<(), SpecError> {
            unreachable!("lookup never runs the model")
        }
        fn mtp_forward(
            &mut self,
            _: usize,
            _: &[u32],
            _: &[f32],
            _: crate::model::qwen35::Logits,
            _: &mut crate::model::qwen35::ForwardOutput,
        ) -> Result<(), SpecError> {
            unreachable!("lookup never runs the model")
        }
    }

    fn draft(l: &mut LookupDrafter, h: &[u32], n: usize) -> Vec<u32> {
        let mut out = Vec::new();
        l.draft(&mut NoTarget, h, n, &mut out).unwrap();
        out
    }

    #[test]
    fn the_longest_matching_ngram_wins_and_its_most_recent_occurrence_is_used() {
        let mut l = LookupDrafter::new(1, 3, 64).unwrap();
        // "7 8 9" occurred with follower 1 and later (as "5 8 9") with follower 2: the
        // 3-gram match picks 1, although the 2-gram "8 9" last led to 2.
        let h = [7, 8, 9, 1, 1, 5, 8, 9, 2, 2, 7, 8, 9];
        assert_eq!(draft(&mut l, &h, 3), vec![1, 1, 5]);
        let h2 = [3, 8, 9, 1, 5, 8, 9, 2, 4, 6, 8, 9];
        let mut l2 = LookupDrafter::new(1, 3, 64).unwrap();
        assert_eq!(draft(&mut l2, &h2, 2), vec![2, 4]);
    }

    #[test]
    fn a_sequence_without_repeats_gets_no_draft() {
        let mut l = LookupDrafter::new(1, 3, 64).unwrap();
        assert!(draft(&mut l, &[1, 2, 3, 4, 5], 4).is_empty());
    }

    #[test]
    fn periodic_text_is_extended_past_the_end_of_the_history() {
        let mut l = LookupDrafter::new(1, 2, 64).unwrap();
        assert_eq!(draft(&mut l, &[4, 5, 4, 5], 5), vec![4, 5, 4, 5, 4]);
    }

    #[test]
    fn the_index_grows_incrementally_and_matches_a_fresh_index() {
        let h: Vec<u32> = (0..300u32).map(|i| (i * 7 + i / 13) % 11).collect();
        let mut inc = LookupDrafter::new(1, 4, 512).unwrap();
        for len in 1..h.len() {
            let a = draft(&mut inc, &h[..len], 4);
            let mut fresh = LookupDrafter::new(1, 4, 512).unwrap();
            assert_eq!(a, draft(&mut fresh, &h[..len], 4), "at length {len}");
        }
    }

    #[test]
    fn bad_ngram_sizes_are_refused() {
        assert!(LookupDrafter::new(0, 2, 8).is_err());
        assert!(LookupDrafter::new(3, 2, 8).is_err());
        assert!(LookupDrafter::new(1, 5, 8).is_err());
    }
}
