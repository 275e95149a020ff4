//! The phrases that introduce a final answer in a response, and the text
//! segment each one introduces.

/// Markers that introduce the answer line itself: the lower-cased
/// [`crate::prompt::ANSWER_MARKER`] that the prompt instructions ask for (also in `Final answer:` and `**Answer:**`), its
/// Markdown variant `**Answer**:`, and LaTeX `\boxed{...}`, which math-tuned
/// models write out of habit.
pub(super) const ANSWER_LINE: &[&str] = &["answer:", "answer**:", "boxed{"];

/// Phrases that announce the answer inside a sentence.
pub(super) const ANSWER_PHRASE: &[&str] = &["answer is", "answer would be", "answer will be"];

/// The marker of GSM8K's final solution line.
pub(super) const GSM8K_LINE: &[&str] = &[crate::gsm8k::FINAL_ANSWER_MARKER];

/// Words that name an option in multiple-choice prose: "option B".
pub(super) const OPTION_WORD: &[&str] = &["option", "choice"];

/// Returns, for each occurrence of any of `markers` in `text` (ASCII case
/// ignored), the text after it up to the end of the first non-blank line,
/// from the last occurrence to the first.
pub(super) fn segments_after<'a>(text: &'a str, markers: &[&str]) -> Vec<&'a str> {
    // ASCII lowercasing keeps every byte offset, so offsets found in `lower`
    // are char boundaries of `text`, because each marker ends in ASCII.
    let lower = text.to_ascii_lowercase();
    let mut ends: Vec<usize> = markers
        .iter()
        .flat_map(|marker| {
            lower
                .match_indices(marker)
                .map(|(start, found)| start + found.len())
        })
        .collect();
    ends.sort_unstable_by(|a, b| b.cmp(a));
    ends.dedup();
    ends.into_iter()
        .map(|end| first_line(&text[end..]))
        .collect()
}

/// Returns the first non-blank line of `text`, trimmed.
fn first_line(text: &str) -> &str {
    let text = text.trim_start();
    text.split('\n').next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_line_matches_prompt_marker() {
        assert_eq!(
            ANSWER_LINE[0],
            crate::prompt::ANSWER_MARKER.to_ascii_lowercase()
        );
    }

    #[test]
    fn segments_run_last_to_first() {
        let text = "Answer: 1\nsome work\nFINAL ANSWER:\n\n  2 apples \nmore";
        assert_eq!(segments_after(text, ANSWER_LINE), vec!["2 apples", "1"]);
    }

    #[test]
    fn segment_of_trailing_marker_is_empty() {
        assert_eq!(segments_after("the answer is", ANSWER_PHRASE), vec![""]);
    }

    #[test]
    fn segments_found_after_multibyte_text() {
        assert_eq!(
            segments_after("Ünïcode — answer: ✓ 5", ANSWER_LINE),
            vec!["✓ 5"]
        );
    }
}
