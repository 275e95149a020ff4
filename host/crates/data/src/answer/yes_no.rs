//! Yes/no answers: the words `yes`, `no`, `true` and `false`, case ignored,
//! standing alone (not inside `eyes`, `not` or `know`).

use super::markers::{ANSWER_LINE, ANSWER_PHRASE, segments_after};

/// Returns `yes` or `no` for a yes/no word, or `None` for any other word.
pub(super) fn canonical_word(word: &str) -> Option<&'static str> {
    let word = word.to_ascii_lowercase();
    match word.as_str() {
        "yes" | "true" => Some("yes"),
        "no" | "false" => Some("no"),
        _ => None,
    }
}

/// Extracts `yes` or `no` from a response. The first yes/no word after the
/// last answer marker whose line has one wins (`Answer:` markers before
/// "the answer is" phrases). Without one, a response that opens with a
/// yes/no word gives that word, and otherwise the last yes/no word counts.
pub(super) fn extract(response: &str) -> Option<&'static str> {
    for markers in [ANSWER_LINE, ANSWER_PHRASE] {
        let found = segments_after(response, markers)
            .into_iter()
            .find_map(first_yes_no);
        if found.is_some() {
            return found;
        }
    }

    let mut words = words(response);
    let first = words.next()?;
    canonical_word(first).or_else(|| words.filter_map(canonical_word).last())
}

fn first_yes_no(text: &str) -> Option<&'static str> {
    words(text).find_map(canonical_word)
}

/// Splits a text into runs of letters and digits.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
}
