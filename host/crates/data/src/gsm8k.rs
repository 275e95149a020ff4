//! The GSM8K reader: grade-school math word problems (Cobbe et al., 2021,
//! "Training Verifiers to Solve Math Word Problems", openai/grade-school-math).
//!
//! Each line is one JSON object with a `question` and an `answer`. The
//! answer is a worked solution with `<<a=b>>` calculator notes inline and a
//! last line `#### <number>`, where the number may carry thousands
//! separators (`#### 1,080`) or a sign (`#### -7`). That number, without
//! separators, is the reference.

use std::path::Path;

use crate::load::non_empty;
use crate::record::{jsonl_records, quote};
use crate::{AnswerKind, Instance, LoadError, answer};

/// The category of every GSM8K instance.
pub const CATEGORY: &str = "gsm8k";

/// The marker that starts the final line of a GSM8K solution.
pub const FINAL_ANSWER_MARKER: &str = "####";

/// Loads a GSM8K JSONL file. Instances get the ids `gsm8k-0`, `gsm8k-1`, …
/// in file order.
///
/// # Errors
///
/// Returns the errors of [`crate::load`].
pub fn load(path: impl AsRef<Path>) -> Result<Vec<Instance>, LoadError> {
    crate::load(path, Some(crate::Format::Gsm8k))
}

/// Parses the text of a GSM8K JSONL file. Blank lines are skipped, and
/// fields other than `question` and `answer` are ignored.
///
/// # Errors
///
/// Returns [`LoadError::Record`] naming the line of the first record that is
/// not a JSON object, lacks a string `question` or `answer`, or whose answer
/// does not end in a `#### <number>` line, and [`LoadError::Empty`] when
/// there are no records.
pub fn parse(text: &str, source: &Path) -> Result<Vec<Instance>, LoadError> {
    let mut instances = Vec::new();
    for (line, record) in jsonl_records(text) {
        let instance = record
            .and_then(|record| {
                let question = record.non_empty_string("question")?;
                let reference = reference_from_solution(record.string("answer")?)?;
                Ok(Instance {
                    id: format!("gsm8k-{}", instances.len()),
                    prompt: question.to_owned(),
                    reference: Some(reference),
                    category: Some(CATEGORY.to_owned()),
                    answer_kind: AnswerKind::Number,
                })
            })
            .map_err(|message| LoadError::record(source, line, message))?;
        instances.push(instance);
    }
    non_empty(instances, source)
}

/// Returns the canonical number of the last non-blank line of a GSM8K
/// solution, which must read `#### <number>`.
///
/// # Errors
///
/// Returns a message quoting the line when it lacks the marker or the rest
/// is not exactly one number.
pub fn reference_from_solution(solution: &str) -> Result<String, String> {
    let last_line = solution
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("");
    let Some(number) = last_line.strip_prefix(FINAL_ANSWER_MARKER) else {
        return Err(format!(
            "field \"answer\" must end with a line \"{FINAL_ANSWER_MARKER} <number>\", got the line {}",
            quote(last_line)
        ));
    };
    answer::canonical_number(number).ok_or_else(|| {
        format!(
            "field \"answer\" ends with {}, but {} is not a number",
            quote(last_line),
            quote(number.trim())
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Vec<Instance>, LoadError> {
        parse(text, Path::new("data.jsonl"))
    }

    #[test]
    fn reference_taken_from_final_line() {
        let line = r#"{"question": "How many?", "answer": "2 + 3 = <<2+3=5>>5\n#### 1,080"}"#;
        let instances = parse_text(line).unwrap();
        assert_eq!(instances.len(), 1);
        assert_eq!(instances[0].id, "gsm8k-0");
        assert_eq!(instances[0].prompt, "How many?");
        assert_eq!(instances[0].reference.as_deref(), Some("1080"));
        assert_eq!(instances[0].category.as_deref(), Some("gsm8k"));
        assert_eq!(instances[0].answer_kind, AnswerKind::Number);
    }

    #[test]
    fn negative_and_decimal_references() {
        assert_eq!(reference_from_solution("x\n#### -7").unwrap(), "-7");
        assert_eq!(reference_from_solution("x\n#### 2.50\n\n").unwrap(), "2.5");
        assert_eq!(reference_from_solution("#### $1,200").unwrap(), "1200");
    }

    #[test]
    fn missing_question_names_line() {
        let text = "{\"question\": \"q\", \"answer\": \"#### 1\"}\n\n{\"answer\": \"#### 2\"}\n";
        let error = parse_text(text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "data.jsonl:3: missing field \"question\""
        );
    }

    #[test]
    fn missing_final_line_rejected() {
        let error = parse_text(r#"{"question": "q", "answer": "it is 4"}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "data.jsonl:1: field \"answer\" must end with a line \"#### <number>\", got the line \"it is 4\""
        );
    }

    #[test]
    fn non_number_final_line_rejected() {
        let error = parse_text("{\"question\": \"q\", \"answer\": \"#### four\"}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "data.jsonl:1: field \"answer\" ends with \"#### four\", but \"four\" is not a number"
        );
    }

    #[test]
    fn invalid_json_names_line() {
        let text = "{\"question\": \"q\", \"answer\": \"#### 1\"}\n{\"question\": \n";
        let error = parse_text(text).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("data.jsonl:2: invalid JSON at column "),
            "{error}"
        );
    }

    #[test]
    fn ids_count_records_not_lines() {
        let text = "\n{\"question\": \"a\", \"answer\": \"#### 1\"}\n\n{\"question\": \"b\", \"answer\": \"#### 2\"}";
        let ids: Vec<String> = parse_text(text)
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["gsm8k-0", "gsm8k-1"]);
    }
}
