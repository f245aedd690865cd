//! Stop strings over streamed text. Text that could still turn out to be the start of a stop
//! string is held back, so a stop string never reaches the client, even split across tokens.

/// Feeds text deltas, returns what may be sent.
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet released (a possible stop-string prefix at its end).
    held: String,
    done: bool,
}

/// What one [`StopMatcher::push`] decided.
#[derive(Debug, PartialEq, Eq)]
pub struct Released {
    /// Text safe to send now.
    pub text: String,
    /// A stop string matched; `text` ends just before it and nothing more will come.
    pub stopped: bool,
}

impl StopMatcher {
    /// Empty stop strings are ignored.
    pub fn new(stops: Vec<String>) -> StopMatcher {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            done: false,
        }
    }

    pub fn push(&mut self, delta: &str) -> Released {
        if self.done {
            return Released {
                text: String::new(),
                stopped: true,
            };
        }
        self.held.push_str(delta);
        // The earliest full match wins.
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.done = true;
            let text = self.held[..at].to_string();
            self.held.clear();
            return Released {
                text,
                stopped: true,
            };
        }
        let keep = self.partial_suffix_len();
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        Released {
            text,
            stopped: false,
        }
    }

    /// Releases what is held at the end of generation.
    pub fn finish(&mut self) -> String {
        if self.done {
            return String::new();
        }
        std::mem::take(&mut self.held)
    }

    /// Length of the longest suffix of `held` that is a proper prefix of some stop string,
    /// always on a char boundary.
    fn partial_suffix_len(&self) -> usize {
        let h = &self.held;
        let mut best = 0;
        for s in &self.stops {
            let max = (s.len() - 1).min(h.len());
            for k in (best + 1..=max).rev() {
                let start = h.len() - k;
                if h.is_char_boundary(start) && s.starts_with(&h[start..]) {
                    best = k;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], deltas: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for d in deltas {
            let r = m.push(d);
            out.push_str(&r.text);
            if r.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn text_without_stop_strings_passes_through_unchanged() {
        assert_eq!(run(&[], &["ab", "c"]), ("abc".into(), false));
        assert_eq!(run(&["xyz"], &["ab", "c"]), ("abc".into(), false));
    }

    #[test]
    fn a_stop_string_split_across_deltas_is_cut_with_the_text_after_it() {
        assert_eq!(
            run(&["END"], &["hello E", "N", "D more"]),
            ("hello ".into(), true)
        );
    }

    #[test]
    fn a_held_back_partial_match_is_released_when_it_does_not_complete() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("abE").text, "ab");
        assert_eq!(m.push("x").text, "Ex");
        assert_eq!(m.push("EN").text, "");
        assert_eq!(m.finish(), "EN");
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins() {
        assert_eq!(run(&["cd", "b"], &["abcd"]), ("a".into(), true));
    }

    #[test]
    fn multibyte_text_is_never_split_inside_a_character() {
        assert_eq!(run(&["éx"], &["aé", "é", "b"]), ("aééb".into(), false));
        assert_eq!(run(&["éx"], &["aé", "éx"]), ("aé".into(), true));
    }

    #[test]
    fn empty_stop_strings_are_ignored() {
        assert_eq!(run(&[""], &["abc"]), ("abc".into(), false));
    }
}
