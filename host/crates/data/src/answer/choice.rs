//! Multiple-choice answers: one option letter from A to E.
//!
//! A letter counts when it stands alone, with no letter or digit on either
//! side. An upper-case letter always counts (`B`, `(B)`, `B)`, `B.`, `**B**`).
//! A lower-case one counts only in the forms `(b)` or `b)`, so that the
//! article "a" in "the answer is a number" is not read as option A.

use super::markers::{ANSWER_LINE, ANSWER_PHRASE, OPTION_WORD, segments_after};
use super::normalize_free;

/// The option letters, in order.
pub const LETTERS: [char; 5] = ['A', 'B', 'C', 'D', 'E'];

/// One option letter found in a text.
struct LetterMatch {
    letter: char,
    /// The byte offset of the letter.
    start: usize,
    /// Whether a `)` follows the letter, as in `B)` and `(B)`.
    parenthesized: bool,
}

/// Extracts an option letter from a response. The first letter after the
/// last marker whose line has one wins, trying `Answer:` markers, then "the
/// answer is" phrases, then "option" and "choice". Without one, a response
/// that opens with a letter gives it, unless the letter starts prose (see
/// [`starts_prose`]), and otherwise the last `B)` or `(B)` counts.
pub(super) fn extract(response: &str) -> Option<char> {
    for markers in [ANSWER_LINE, ANSWER_PHRASE, OPTION_WORD] {
        let found = segments_after(response, markers)
            .into_iter()
            .find_map(|segment| letters(segment).next().map(|found| found.letter));
        if found.is_some() {
            return found;
        }
    }

    let leading = response.len()
        - response
            .trim_start_matches(|c: char| !c.is_alphanumeric())
            .len();
    let mut found = letters(response).peekable();
    let opens_with_option = |first: &LetterMatch| {
        first.start == leading && !starts_prose(first.letter, &response[first.start + 1..])
    };
    if let Some(first) = found.next_if(opens_with_option) {
        return Some(first.letter);
    }
    found
        .filter(|letter| letter.parenthesized)
        .last()
        .map(|letter| letter.letter)
}

/// Returns whether an upper-case `letter` that opens a response, followed
/// by `rest`, starts a sentence of prose instead of naming an option: the
/// article in "A rectangle has four sides" (but not "A is largest"), or an
/// abbreviation such as "E.g.".
fn starts_prose(letter: char, rest: &str) -> bool {
    let mut chars = rest.chars();
    match chars.next() {
        Some(' ') if letter == 'A' => {
            let word: String = chars.take_while(|c| c.is_alphabetic()).collect();
            word.starts_with(char::is_lowercase) && word != "is"
        }
        Some('.') => chars.next().is_some_and(char::is_alphabetic),
        _ => false,
    }
}

/// Returns the letter of the option whose text is the answer on the last
/// non-blank `Answer:` line of `response`, for options listed one per line
/// in `prompt` as `B) text`. Texts are compared after the normalization of
/// free-text answers.
pub(super) fn letter_of_option_text(prompt: &str, response: &str) -> Option<char> {
    let answer = segments_after(response, ANSWER_LINE)
        .into_iter()
        .find(|segment| !segment.is_empty())?;
    let answer = normalize_free(answer);
    prompt.lines().find_map(|line| {
        let mut chars = line.trim().chars();
        let letter = chars.next()?;
        let is_option = LETTERS.contains(&letter) && chars.next() == Some(')');
        (is_option && normalize_free(chars.as_str()) == answer).then_some(letter)
    })
}

/// Returns the canonical letter of a text that is one letter A to E, in
/// either case, optionally as `(B)` or `B)`.
pub(super) fn canonical_letter(text: &str) -> Option<char> {
    let text = text.trim();
    let text = text.strip_prefix('(').unwrap_or(text);
    let text = text.strip_suffix(')').unwrap_or(text);
    let mut chars = text.chars();
    let letter = chars.next()?.to_ascii_uppercase();
    (chars.next().is_none() && LETTERS.contains(&letter)).then_some(letter)
}

/// Finds the option letters of a text, left to right.
fn letters(text: &str) -> impl Iterator<Item = LetterMatch> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    (0..chars.len()).filter_map(move |i| {
        let (start, letter) = chars[i];
        let before = i.checked_sub(1).map(|j| chars[j].1);
        let after = chars.get(i + 1).map(|&(_, c)| c);
        if !LETTERS.contains(&letter.to_ascii_uppercase())
            || before.is_some_and(char::is_alphanumeric)
            || after.is_some_and(char::is_alphanumeric)
        {
            return None;
        }
        let parenthesized = after == Some(')');
        let counts = letter.is_ascii_uppercase() || parenthesized;
        counts.then(|| LetterMatch {
            letter: letter.to_ascii_uppercase(),
            start,
            parenthesized,
        })
    })
}
