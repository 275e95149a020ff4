//! Repetition detection for degenerate generations that loop on a phrase
//! or a line.

use std::collections::HashSet;

/// Share of duplicate n-grams above which [`is_runaway`] reports a loop.
const RUNAWAY_NGRAM_FRACTION: f64 = 0.5;

/// Consecutive identical lines from which [`is_runaway`] reports a loop.
const RUNAWAY_LINE_RUN: usize = 3;

/// Returns the share of word n-grams of `text` that repeat an earlier one:
/// 1 - distinct / total, in [0, 1). Words are compared lower-cased, and a
/// text shorter than `n` words returns 0.
///
/// # Panics
///
/// Panics if `n` is zero.
pub fn duplicate_ngram_fraction(text: &str, n: usize) -> f64 {
    assert!(n > 0, "n-gram length must be at least 1");
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    if words.len() < n {
        return 0.0;
    }
    let total = words.len() - n + 1;
    let distinct: HashSet<&[String]> = words.windows(n).collect();
    1.0 - distinct.len() as f64 / total as f64
}

/// Returns the length of the longest run of consecutive identical
/// non-empty lines (compared after trimming).
pub fn longest_line_run(text: &str) -> usize {
    let mut longest = 0;
    let mut run = 0;
    let mut previous: Option<&str> = None;
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        run = if previous == Some(line) { run + 1 } else { 1 };
        longest = longest.max(run);
        previous = Some(line);
    }
    longest
}

/// Returns true for runaway repetition: more than half of the word 4-grams
/// are duplicates, or a line repeats 3 or more times in a row.
pub fn is_runaway(text: &str) -> bool {
    duplicate_ngram_fraction(text, 4) > RUNAWAY_NGRAM_FRACTION
        || longest_line_run(text) >= RUNAWAY_LINE_RUN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_text_has_no_duplicates() {
        let text = "the quick brown fox jumps over the lazy dog";
        assert_eq!(duplicate_ngram_fraction(text, 4), 0.0);
        assert!(!is_runaway(text));
    }

    #[test]
    fn looping_phrase_detected() {
        let text = "so the answer is so the answer is so the answer is so the answer is";
        let fraction = duplicate_ngram_fraction(text, 4);
        assert!(
            fraction > 0.5,
            "duplicate fraction {fraction} too low for a loop"
        );
        assert!(is_runaway(text));
    }

    #[test]
    fn repeated_lines_detected() {
        let text = "Step 1: add.\nWait.\nWait.\nWait.\n#### 4";
        assert_eq!(longest_line_run(text), 3);
        assert!(is_runaway(text));
    }

    #[test]
    fn short_text_is_zero() {
        assert_eq!(duplicate_ngram_fraction("one two", 4), 0.0);
    }
}
