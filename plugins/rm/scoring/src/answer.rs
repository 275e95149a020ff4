//! Final-answer extraction: what a response answers, as a number, yes/no,
//! a multiple-choice letter or free text, and whether it states it with an
//! explicit marker.
//!
//! Markers, from the last one in the text: a GSM8K `#### X` line, or the
//! phrases "answer is X" and "answer: X" (any case). Without a marker, the
//! answer is the last item of the expected kind in the whole text.

/// A final answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A number, as in GSM8K.
    Number(f64),
    /// Yes (true) or no (false), as in StrategyQA.
    YesNo(bool),
    /// A multiple-choice letter, upper case.
    Choice(char),
    /// Anything else, lower-cased with surrounding space and final
    /// punctuation removed.
    Text(String),
}

impl Answer {
    /// Returns true when `self` and `other` are the same answer. Numbers
    /// match within a relative tolerance of 1e-6.
    pub fn matches(&self, other: &Answer) -> bool {
        match (self, other) {
            (Answer::Number(a), Answer::Number(b)) => {
                (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
            }
            _ => self == other,
        }
    }
}

/// The kind of answer to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// A number.
    Number,
    /// Yes or no (true or false).
    YesNo,
    /// A letter from A to J.
    Choice,
    /// Free text: the marker's text, else the last non-empty line.
    Text,
    /// Unknown: a number, else yes/no, else a letter, else text.
    Auto,
}

impl AnswerKind {
    /// Guesses the kind from a data-set category label, such as `gsm8k`,
    /// `strategyqa` or `mmlu`.
    pub fn from_category(category: &str) -> AnswerKind {
        let category = category.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| category.contains(w));
        if has(&["gsm8k", "math", "arithmetic", "number"]) {
            AnswerKind::Number
        } else if has(&["strategyqa", "yes-no", "yes_no", "yesno", "boolq"]) {
            AnswerKind::YesNo
        } else if has(&["mmlu", "choice", "arc", "mcq"]) {
            AnswerKind::Choice
        } else {
            AnswerKind::Auto
        }
    }

    /// Returns the kind of a reference answer: the kind of what
    /// [`extract`] finds in it with [`AnswerKind::Auto`].
    pub fn of_reference(reference: &str) -> AnswerKind {
        match extract(reference, AnswerKind::Auto).answer {
            Some(Answer::Number(_)) => AnswerKind::Number,
            Some(Answer::YesNo(_)) => AnswerKind::YesNo,
            Some(Answer::Choice(_)) => AnswerKind::Choice,
            Some(Answer::Text(_)) | None => AnswerKind::Text,
        }
    }
}

/// The result of [`extract`].
#[derive(Debug, Clone, PartialEq)]
pub struct Extraction {
    /// The final answer, if one of the requested kind was found.
    pub answer: Option<Answer>,
    /// True when the answer followed a `####` or "answer is" marker.
    pub explicit: bool,
}

/// Extracts the final answer of kind `kind` from `text`.
pub fn extract(text: &str, kind: AnswerKind) -> Extraction {
    if let Some(segment) = marker_segment(text)
        && let Some(answer) = answer_in(segment, kind, true)
    {
        return Extraction {
            answer: Some(answer),
            explicit: true,
        };
    }
    Extraction {
        answer: answer_in(text, kind, false),
        explicit: false,
    }
}

/// Returns the text after the last answer marker, up to the end of its
/// line.
fn marker_segment(text: &str) -> Option<&str> {
    let lower = text.to_ascii_lowercase();
    let mut best: Option<usize> = None;
    for marker in ["####", "answer is", "answer:"] {
        if let Some(position) = lower.rfind(marker) {
            let end = position + marker.len();
            best = Some(best.map_or(end, |b| b.max(end)));
        }
    }
    let rest = &text[best?..];
    let line = rest
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("");
    Some(line)
}

/// Finds an answer of `kind` in `text`. A whole marker segment is short,
/// so `whole_segment` allows the text kind to take all of it.
fn answer_in(text: &str, kind: AnswerKind, whole_segment: bool) -> Option<Answer> {
    match kind {
        AnswerKind::Number => crate::last_number(text).map(Answer::Number),
        AnswerKind::YesNo => last_yes_no(text).map(Answer::YesNo),
        AnswerKind::Choice => last_choice(text, whole_segment)
            .or_else(|| choice_token(text))
            .map(Answer::Choice),
        AnswerKind::Text => text_answer(text, whole_segment).map(Answer::Text),
        AnswerKind::Auto => auto_answer(text, whole_segment),
    }
}

/// Tries, in order: a text that is exactly one number, yes/no, or a letter,
/// then (in a marker segment or a one-line text) the text itself, and
/// finally the last number anywhere.
fn auto_answer(text: &str, whole_segment: bool) -> Option<Answer> {
    let trimmed = strip_final_punctuation(text);
    if let Some(number) = crate::parse_number(trimmed) {
        return Some(Answer::Number(number));
    }
    if let Some(value) = yes_no_word(trimmed) {
        return Some(Answer::YesNo(value));
    }
    if let Some(letter) = choice_token(trimmed) {
        return Some(Answer::Choice(letter));
    }
    if whole_segment {
        if let Some(number) = crate::last_number(text) {
            return Some(Answer::Number(number));
        }
        if let Some(value) = last_yes_no(text) {
            return Some(Answer::YesNo(value));
        }
    }
    if whole_segment || !text.trim().contains('\n') {
        return text_answer(text, true).map(Answer::Text);
    }
    crate::last_number(text).map(Answer::Number)
}

/// Returns the last standalone yes/no/true/false word.
fn last_yes_no(text: &str) -> Option<bool> {
    words(text).rev().find_map(yes_no_word)
}

/// Reads `yes`, `no`, `true` or `false` in any case.
fn yes_no_word(word: &str) -> Option<bool> {
    match word.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

/// Returns the last multiple-choice letter: `(B)`, `B)` or `B.` anywhere,
/// or a standalone capital letter A-J in a marker segment.
fn last_choice(text: &str, whole_segment: bool) -> Option<char> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = None;
    for i in 0..chars.len() {
        let c = chars[i];
        if !('A'..='J').contains(&c) {
            continue;
        }
        let before = if i == 0 { ' ' } else { chars[i - 1] };
        let after = chars.get(i + 1).copied().unwrap_or(' ');
        if before.is_alphanumeric() || after.is_alphanumeric() {
            continue;
        }
        let bracketed = before == '(' && after == ')';
        let labelled = (before.is_whitespace() || i == 0) && matches!(after, ')' | '.' | ':');
        let bare = whole_segment && !after.is_alphanumeric();
        // "I" and "A" are also words; in running text they count only when
        // bracketed or labelled.
        if bracketed || labelled || bare {
            found = Some(c);
        }
    }
    found
}

/// Reads a whole text that is one choice token: `B`, `(B)`, `B)` or `B.`.
fn choice_token(text: &str) -> Option<char> {
    let inner = text
        .trim()
        .trim_start_matches('(')
        .trim_end_matches([')', '.', ':']);
    let mut chars = inner.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if ('A'..='J').contains(&c) => Some(c),
        _ => None,
    }
}

/// Returns the normalised free-text answer: the whole segment, or the last
/// non-empty line.
fn text_answer(text: &str, whole_segment: bool) -> Option<String> {
    let source = if whole_segment {
        text
    } else {
        text.lines().rev().find(|line| !line.trim().is_empty())?
    };
    let normalised = strip_final_punctuation(source).to_lowercase();
    if normalised.is_empty() {
        None
    } else {
        Some(normalised)
    }
}

/// Trims space and final `.`, `!`, `?`, `*` and quotes.
fn strip_final_punctuation(text: &str) -> &str {
    text.trim().trim_matches(|c: char| {
        matches!(c, '.' | '!' | '?' | '*' | '"' | '\'') || c.is_whitespace()
    })
}

/// Splits into words of letters only.
fn words(text: &str) -> impl DoubleEndedIterator<Item = &str> {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Option<Answer> {
        extract(text, AnswerKind::Number).answer
    }

    #[test]
    fn gsm8k_marker_wins() {
        let text = "Natalia sold 48 clips in April and 24 in May.\n#### 72\nCheck: 3 steps.";
        let found = extract(text, AnswerKind::Number);
        assert_eq!(found.answer, Some(Answer::Number(72.0)));
        assert!(found.explicit);
    }

    #[test]
    fn marker_strips_dollar_and_commas() {
        assert_eq!(
            number("So she earns\n#### $1,250"),
            Some(Answer::Number(1250.0))
        );
    }

    #[test]
    fn answer_is_phrase() {
        let found = extract("5 + 5 = 10, so the answer is 10.", AnswerKind::Number);
        assert_eq!(found.answer, Some(Answer::Number(10.0)));
        assert!(found.explicit);
    }

    #[test]
    fn last_number_fallback() {
        let found = extract("First 3, then 4, total 7 apples", AnswerKind::Number);
        assert_eq!(found.answer, Some(Answer::Number(7.0)));
        assert!(!found.explicit);
    }

    #[test]
    fn no_number_found() {
        assert_eq!(number("I cannot tell."), None);
    }

    #[test]
    fn yes_no_cases() {
        let cases = [
            (
                "Aristotle died before laptops existed. So the answer is no.",
                Some(false),
            ),
            ("Yes, because eels live in water.", Some(true)),
            ("Answer: True", Some(true)),
            ("#### No", Some(false)),
            ("It depends.", None),
        ];
        for (text, expected) in cases {
            let found = extract(text, AnswerKind::YesNo).answer;
            assert_eq!(found, expected.map(Answer::YesNo), "yes/no of {text:?}");
        }
    }

    #[test]
    fn choice_cases() {
        let cases = [
            ("The answer is (C).", Some('C')),
            ("Options A and B are wrong.\nAnswer: D", Some('D')),
            ("I think B) fits best", Some('B')),
            ("A cat is not a dog.", None),
            ("#### E", Some('E')),
            ("B", Some('B')),
        ];
        for (text, expected) in cases {
            let found = extract(text, AnswerKind::Choice).answer;
            assert_eq!(found, expected.map(Answer::Choice), "choice of {text:?}");
        }
    }

    #[test]
    fn reference_kinds() {
        let cases = [
            ("72", AnswerKind::Number),
            (
                "She sold 48/2 = 24 clips in May.\n#### 72",
                AnswerKind::Number,
            ),
            ("true", AnswerKind::YesNo),
            ("No", AnswerKind::YesNo),
            ("(B)", AnswerKind::Choice),
            ("Paris", AnswerKind::Text),
        ];
        for (reference, expected) in cases {
            assert_eq!(
                AnswerKind::of_reference(reference),
                expected,
                "kind of {reference:?}"
            );
        }
    }

    #[test]
    fn category_kinds() {
        assert_eq!(AnswerKind::from_category("GSM8K"), AnswerKind::Number);
        assert_eq!(AnswerKind::from_category("strategyqa"), AnswerKind::YesNo);
        assert_eq!(
            AnswerKind::from_category("mmlu/physics"),
            AnswerKind::Choice
        );
        assert_eq!(AnswerKind::from_category("chat"), AnswerKind::Auto);
    }

    #[test]
    fn text_answer_normalised() {
        let found = extract("Let me think.\nThe answer is Paris!", AnswerKind::Text);
        assert_eq!(found.answer, Some(Answer::Text("paris".to_owned())));
    }

    #[test]
    fn numbers_match_with_tolerance() {
        assert!(Answer::Number(18.0).matches(&Answer::Number(18.000_000_1)));
        assert!(!Answer::Number(18.0).matches(&Answer::Number(18.1)));
        assert!(!Answer::Number(1.0).matches(&Answer::YesNo(true)));
    }
}
