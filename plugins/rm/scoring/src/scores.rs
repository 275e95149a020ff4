//! The scores of the rule-based reward models. Each takes what the host
//! sends for one prompt (its reference, its category and the candidates)
//! and returns finite scores in candidate order.

use crate::{Answer, AnswerKind, duplicate_ngram_fraction, extract, longest_line_run};

/// The score of a candidate that cannot be judged, as the verifier gives
/// when the prompt has no reference.
pub const NEUTRAL_SCORE: f64 = 0.5;

/// The rule-based reward models, by their plugin names; `noisy` wraps one
/// of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleBased {
    /// `verifier`: see [`verifier_score`].
    Verifier,
    /// `self-consistency`: see [`consistency_scores`].
    SelfConsistency,
    /// `format`: see [`format_score`].
    Format,
    /// `length`: see [`length_score`], in characters.
    Length,
}

impl RuleBased {
    /// Returns the reward model named `name`, if it is rule-based.
    pub fn from_name(name: &str) -> Option<RuleBased> {
        match name {
            "verifier" => Some(RuleBased::Verifier),
            "self-consistency" => Some(RuleBased::SelfConsistency),
            "format" => Some(RuleBased::Format),
            "length" => Some(RuleBased::Length),
            _ => None,
        }
    }

    /// Scores one prompt's candidates.
    pub fn scores(
        self,
        reference: Option<&str>,
        category: Option<&str>,
        candidates: &[String],
    ) -> Vec<f64> {
        match self {
            RuleBased::Verifier => candidates
                .iter()
                .map(|c| verifier_score(c, reference))
                .collect(),
            RuleBased::SelfConsistency => consistency_scores(candidates, reference, category),
            RuleBased::Format => candidates
                .iter()
                .map(|c| format_score(c, reference, category))
                .collect(),
            RuleBased::Length => candidates
                .iter()
                .map(|c| length_score(c, LengthUnit::Chars))
                .collect(),
        }
    }
}

/// Returns the kind of answer to expect: that of the reference when there
/// is one, else the category's guess, else [`AnswerKind::Auto`].
fn expected_kind(reference: Option<&str>, category: Option<&str>) -> AnswerKind {
    match (reference, category) {
        (Some(reference), _) => AnswerKind::of_reference(reference),
        (None, Some(category)) => AnswerKind::from_category(category),
        (None, None) => AnswerKind::Auto,
    }
}

/// Returns 1 when the candidate's final answer matches the reference's,
/// 0 when it differs or none is found, and [`NEUTRAL_SCORE`] without a
/// reference. The reference's own final answer is extracted the same way,
/// so a full GSM8K solution ending in `#### 72` works as a reference.
pub fn verifier_score(candidate: &str, reference: Option<&str>) -> f64 {
    let Some(reference) = reference else {
        return NEUTRAL_SCORE;
    };
    let kind = AnswerKind::of_reference(reference);
    let expected = extract(reference, kind).answer;
    let found = extract(candidate, kind).answer;
    match (expected, found) {
        (Some(expected), Some(found)) if found.matches(&expected) => 1.0,
        (Some(_), _) => 0.0,
        (None, _) => NEUTRAL_SCORE,
    }
}

/// Returns, for each candidate, the share of the other candidates whose
/// final answer matches its own, in [0, 1]. A candidate without a final
/// answer scores 0, and so does a lone candidate. The reference only
/// decides which kind of answer to look for, never the score.
pub fn consistency_scores(
    candidates: &[String],
    reference: Option<&str>,
    category: Option<&str>,
) -> Vec<f64> {
    let kind = expected_kind(reference, category);
    let answers: Vec<Option<Answer>> = candidates.iter().map(|c| extract(c, kind).answer).collect();
    let others = candidates.len().saturating_sub(1);
    answers
        .iter()
        .enumerate()
        .map(|(i, answer)| {
            let Some(answer) = answer else {
                return 0.0;
            };
            if others == 0 {
                return 0.0;
            }
            let agreeing = answers
                .iter()
                .enumerate()
                .filter(|(j, other)| *j != i && other.as_ref().is_some_and(|o| o.matches(answer)))
                .count();
            agreeing as f64 / others as f64
        })
        .collect()
}

/// Returns a format score in [0, 1], the mean of two halves:
/// - the answer: 1 for a final answer after a `####` or "answer is"
///   marker, 0.5 for one found without a marker, 0 for none;
/// - the repetition: 1 - 2 * (share of duplicate word 4-grams), floored at
///   0, and 0 outright when a line repeats 3 or more times in a row.
///
/// An empty or blank candidate scores 0.
pub fn format_score(candidate: &str, reference: Option<&str>, category: Option<&str>) -> f64 {
    if candidate.trim().is_empty() {
        return 0.0;
    }
    let extraction = extract(candidate, expected_kind(reference, category));
    let answer = match (&extraction.answer, extraction.explicit) {
        (Some(_), true) => 1.0,
        (Some(_), false) => 0.5,
        (None, _) => 0.0,
    };
    let repetition = if longest_line_run(candidate) >= 3 {
        0.0
    } else {
        (1.0 - 2.0 * duplicate_ngram_fraction(candidate, 4)).max(0.0)
    };
    0.5 * (answer + repetition)
}

/// The unit in which [`length_score`] counts; in a config, `"chars"` or
/// `"words"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthUnit {
    /// Unicode scalar values.
    #[default]
    Chars,
    /// Whitespace-separated words.
    Words,
}

/// Returns the candidate's length in `unit`: longer is better, which makes
/// this a deliberately weak reward model.
pub fn length_score(candidate: &str, unit: LengthUnit) -> f64 {
    match unit {
        LengthUnit::Chars => candidate.chars().count() as f64,
        LengthUnit::Words => candidate.split_whitespace().count() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn verifier_numbers() {
        let reference = Some("48 / 2 = 24 in May, 48 + 24 = 72.\n#### 72");
        assert_eq!(verifier_score("She sold 72 clips.", reference), 1.0);
        assert_eq!(verifier_score("#### 72.00", reference), 1.0);
        assert_eq!(verifier_score("#### $1,072", reference), 0.0);
        assert_eq!(verifier_score("I am not sure.", reference), 0.0);
    }

    #[test]
    fn verifier_yes_no() {
        assert_eq!(verifier_score("So the answer is yes.", Some("true")), 1.0);
        assert_eq!(verifier_score("No.", Some("true")), 0.0);
    }

    #[test]
    fn verifier_choice() {
        assert_eq!(verifier_score("The answer is (B).", Some("B")), 1.0);
        assert_eq!(verifier_score("Answer: C", Some("B")), 0.0);
    }

    #[test]
    fn verifier_without_reference_neutral() {
        assert_eq!(verifier_score("#### 5", None), NEUTRAL_SCORE);
    }

    #[test]
    fn consistency_majority() {
        let candidates = strings(&["#### 5", "so 5", "#### 6", "no idea"]);
        let scores = consistency_scores(&candidates, None, Some("gsm8k"));
        let expected = [1.0 / 3.0, 1.0 / 3.0, 0.0, 0.0];
        for (i, (got, want)) in scores.iter().zip(expected).enumerate() {
            assert!(
                (got - want).abs() < 1e-12,
                "candidate {i}: score {got}, expected {want}"
            );
        }
    }

    #[test]
    fn consistency_lone_candidate_zero() {
        assert_eq!(
            consistency_scores(&strings(&["#### 5"]), None, None),
            vec![0.0]
        );
    }

    #[test]
    fn format_prefers_explicit_answer() {
        let explicit = format_score("Add them: 2 + 2.\n#### 4", None, Some("gsm8k"));
        let implicit = format_score("Add them: 2 + 2 gives 4", None, Some("gsm8k"));
        let missing = format_score("Add them up.", None, Some("gsm8k"));
        assert_eq!(explicit, 1.0);
        assert_eq!(implicit, 0.75);
        assert_eq!(missing, 0.5);
    }

    #[test]
    fn format_punishes_loops() {
        let looping = "I think I think I think I think I think I think I think\n#### 4";
        let score = format_score(looping, None, Some("gsm8k"));
        assert!(score <= 0.5, "looping candidate scored {score}");
        assert_eq!(format_score("   ", None, None), 0.0);
    }

    #[test]
    fn length_units() {
        assert_eq!(length_score("two words", LengthUnit::Words), 2.0);
        assert_eq!(length_score("héllo", LengthUnit::Chars), 5.0);
    }

    #[test]
    fn rule_names() {
        assert_eq!(RuleBased::from_name("format"), Some(RuleBased::Format));
        assert_eq!(RuleBased::from_name("judge"), None);
    }
}
