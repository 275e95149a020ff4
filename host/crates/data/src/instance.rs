//! One task instance (a question with its reference answer) and the kind of
//! answer it expects.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One question posed to the policy, with the reference answer used to
/// check its response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// An identifier unique within its data set: the StrategyQA `qid`,
    /// `gsm8k-<index>`, the JSONL `id`, or `builtin-<seed>-<index>`.
    pub id: String,
    /// The bare question, without the answer instruction that
    /// [`crate::prompt::render`] appends.
    pub prompt: String,
    /// The reference answer in the canonical form of its kind (see
    /// [`crate::answer::canonical_reference`]), or `None` when unknown.
    pub reference: Option<String>,
    /// A label used to group instances in reports and in the reward model
    /// selection, such as `gsm8k` or `yes-no`.
    pub category: Option<String>,
    /// How answers are extracted from a response and compared.
    pub answer_kind: AnswerKind,
}

/// The kind of answer an instance expects, which selects the extraction and
/// comparison rules in [`crate::answer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerKind {
    /// A number, compared numerically.
    Number,
    /// `yes` or `no`.
    YesNo,
    /// One option letter, `A` to `E`.
    Choice,
    /// Free text, compared after normalizing case, spaces and punctuation.
    Free,
}

impl AnswerKind {
    /// All kinds, in declaration order.
    pub const ALL: [AnswerKind; 4] = [Self::Number, Self::YesNo, Self::Choice, Self::Free];

    /// Returns the name used in JSON and on the command line: `number`,
    /// `yes-no`, `choice` or `free`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::YesNo => "yes-no",
            Self::Choice => "choice",
            Self::Free => "free",
        }
    }
}

impl fmt::Display for AnswerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown [`AnswerKind`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown answer kind {0:?}, expected number, yes-no, choice or free")]
pub struct UnknownAnswerKind(pub String);

impl FromStr for AnswerKind {
    type Err = UnknownAnswerKind;

    /// Parses a kind name as written by [`AnswerKind::as_str`].
    ///
    /// # Errors
    ///
    /// Returns [`UnknownAnswerKind`] for any other string.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownAnswerKind(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_kind_names_round_trip() {
        for kind in AnswerKind::ALL {
            assert_eq!(kind.as_str().parse::<AnswerKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }

    #[test]
    fn unknown_answer_kind_rejected() {
        let error = "boolean".parse::<AnswerKind>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown answer kind \"boolean\", expected number, yes-no, choice or free"
        );
    }

    #[test]
    fn instance_without_optional_fields_deserializes() {
        let json = r#"{"id":"a","prompt":"Is 4 even?","answer_kind":"yes-no"}"#;
        let instance: Instance = serde_json::from_str(json).unwrap();
        assert_eq!(instance.reference, None);
        assert_eq!(instance.category, None);
        assert_eq!(instance.answer_kind, AnswerKind::YesNo);
    }
}
