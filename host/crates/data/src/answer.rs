//! Answer extraction and checking, shared by evaluation and the verifier
//! reward.
//!
//! [`extract`] reads the final answer of a response in the canonical form of
//! its [`AnswerKind`], and [`is_correct`] compares it with the instance's
//! reference. The rules favor the `Answer: ...` line that
//! [`crate::prompt::render`] asks for and fall back on weaker cues:
//!
//! - numbers: GSM8K's `#### <number>` line, else the line after an answer
//!   marker, else the last number in the text. See [`number`] for what reads
//!   as a number and [`numbers_equal`] for the comparison.
//! - yes/no: the first yes/no word after an answer marker, else a leading
//!   yes/no word, else the last one. `true` and `false` count as yes and no.
//! - multiple choice: a letter A to E after an answer marker or "option",
//!   else a leading letter that does not start prose (the article in "A
//!   rectangle ..."), else the last `B)` or `(B)`. [`is_correct`] also
//!   maps an answer that repeats an option's text to that option's letter.
//! - free text: the rest of the `Answer:` line, else the last non-blank line,
//!   compared after normalizing case, spaces and end punctuation.
//!
//! The answer markers are `Answer:` (in any case, also `**Answer**:`),
//! `\boxed{`, and the phrases "answer is", "answer would be" and "answer
//! will be". When a marker occurs more than once, the last one whose line
//! contains an answer wins.

pub(crate) mod choice;
mod markers;
pub mod number;
mod yes_no;

#[cfg(test)]
mod tests;

use crate::{AnswerKind, Instance};
use markers::{ANSWER_LINE, ANSWER_PHRASE, GSM8K_LINE, segments_after};
pub use number::{TOLERANCE, canonical_number, numbers_equal};

/// Extracts the final answer of `response` in the canonical form of `kind`:
/// a number such as `-1200.5`, `yes` or `no`, an upper-case letter, or the
/// free-text answer as written. Returns `None` when the response contains
/// no answer of that kind.
pub fn extract(kind: AnswerKind, response: &str) -> Option<String> {
    match kind {
        AnswerKind::Number => extract_number(response),
        AnswerKind::YesNo => yes_no::extract(response).map(str::to_owned),
        AnswerKind::Choice => choice::extract(response).map(String::from),
        AnswerKind::Free => extract_free(response),
    }
}

/// Returns whether `response` answers `instance` correctly, or `None` when
/// the instance has no reference to check it against. Accuracy leaves such
/// instances out rather than counting them wrong.
pub fn grade(instance: &Instance, response: &str) -> Option<bool> {
    instance
        .reference
        .as_ref()
        .map(|_| is_correct(instance, response))
}

/// Returns whether `response` answers `instance` correctly. An instance
/// without a reference, or with a reference that is invalid for its kind,
/// is never answered correctly; [`grade`] keeps the first case apart.
///
/// For a multiple-choice instance whose response has no option letter, an
/// `Answer:` line that repeats the text of one option (`Answer: 45` for
/// `B) 45`) counts as that option's letter, when the prompt lists its
/// options one per line.
pub fn is_correct(instance: &Instance, response: &str) -> bool {
    let Some(reference) = instance.reference.as_deref() else {
        return false;
    };
    if check(instance.answer_kind, reference, response) {
        return true;
    }
    if instance.answer_kind != AnswerKind::Choice || choice::extract(response).is_some() {
        return false;
    }
    let by_text = choice::letter_of_option_text(&instance.prompt, response);
    by_text.is_some_and(|letter| {
        canonical_reference(AnswerKind::Choice, reference) == Some(letter.to_string())
    })
}

/// Returns whether `response` contains the answer `reference` of kind `kind`.
pub fn check(kind: AnswerKind, reference: &str, response: &str) -> bool {
    let Some(expected) = canonical_reference(kind, reference) else {
        return false;
    };
    let Some(answer) = extract(kind, response) else {
        return false;
    };
    match kind {
        AnswerKind::Number => numbers_equal(&answer, &expected),
        AnswerKind::YesNo | AnswerKind::Choice => answer == expected,
        AnswerKind::Free => normalize_free(&answer) == normalize_free(&expected),
    }
}

/// Returns the canonical form of a reference answer of kind `kind`, or
/// `None` when it is not a valid answer of that kind.
///
/// Numbers lose separators, `$` and redundant zeros (`$1,200.50` becomes
/// `1200.5`). Yes/no answers become `yes` or `no`, from yes, no, true or
/// false in any case. Letters become upper case, from `b`, `(B)` or `B)`.
/// Free text is trimmed and must not be empty.
pub fn canonical_reference(kind: AnswerKind, reference: &str) -> Option<String> {
    match kind {
        AnswerKind::Number => canonical_number(reference),
        AnswerKind::YesNo => {
            let word = reference.trim();
            yes_no::canonical_word(word.strip_suffix('.').unwrap_or(word)).map(str::to_owned)
        }
        AnswerKind::Choice => choice::canonical_letter(reference).map(String::from),
        AnswerKind::Free => {
            let text = reference.trim();
            (!text.is_empty()).then(|| text.to_owned())
        }
    }
}

/// Extracts a number from the last `####` line that starts with one, else
/// from the last such `Answer:` line, else from the last such "answer is"
/// sentence. Without any, the last number in the text is the answer.
fn extract_number(response: &str) -> Option<String> {
    // A Markdown heading such as `#### Step 2` is not GSM8K's final line, so
    // a `####` line counts only when a number opens it.
    let final_line = segments_after(response, GSM8K_LINE)
        .into_iter()
        .find_map(|segment| {
            let first = number::scan(segment).into_iter().next()?;
            (first.start == 0).then_some(first.canonical)
        });
    if final_line.is_some() {
        return final_line;
    }

    for markers in [ANSWER_LINE, ANSWER_PHRASE] {
        let found = segments_after(response, markers)
            .into_iter()
            .find_map(number_in_segment);
        if found.is_some() {
            return found;
        }
    }
    number::scan(response).pop().map(|number| number.canonical)
}

/// Returns the first number of an answer segment. When the segment states
/// a computation such as `3 + 4 = 7` or `42 (6 * 7 = 42)`, the number right
/// after the last `=` is the result.
fn number_in_segment(segment: &str) -> Option<String> {
    let numbers = number::scan(segment);
    if let Some(equals) = segment.rfind('=')
        && let Some(result) = numbers.iter().find(|number| number.start > equals)
    {
        return Some(result.canonical.clone());
    }
    numbers.into_iter().next().map(|number| number.canonical)
}

/// Extracts free text: the rest of the last non-blank `Answer:` line, else
/// the last non-blank line of the response.
fn extract_free(response: &str) -> Option<String> {
    let from_marker = segments_after(response, ANSWER_LINE)
        .into_iter()
        .find(|segment| !segment.is_empty());
    let line = from_marker.or_else(|| {
        response
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty())
    })?;
    Some(line.to_owned())
}

/// Lower-cases, collapses whitespace, and strips Markdown emphasis, quotes,
/// LaTeX braces and end punctuation, so that `**Paris.**` matches `paris`.
fn normalize_free(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let joined = words.join(" ").to_lowercase();
    joined
        .trim_matches(|c: char| {
            matches!(
                c,
                '*' | '_' | '`' | '"' | '\'' | '$' | '{' | '}' | '.' | '!' | '?' | ',' | ';' | ':'
            )
        })
        .trim()
        .to_owned()
}
