//! The generic JSONL reader: one JSON object a line with a `prompt`, for
//! task sets of our own.
//!
//! Fields:
//!
//! - `prompt` (string, required): the bare question.
//! - `reference` (string, number or boolean, optional): the reference
//!   answer. Numbers are written as strings, booleans as `yes` or `no`.
//! - `answer_kind` (optional): `number`, `yes-no`, `choice` or `free`. When
//!   absent it is inferred from the reference: a number gives `number`,
//!   yes/no/true/false gives `yes-no`, a single letter A to E gives
//!   `choice`, and anything else, or no reference, gives `free`.
//! - `category` (string, optional): a grouping label. When the field is
//!   absent it defaults to the file stem (`mine` for `tasks/mine.jsonl`),
//!   and `null` leaves the instance without a category.
//! - `id` (string or number, optional): defaults to `<file stem>-<index>`.
//!   Ids must be unique within the file, counting the defaults.
//!
//! Other fields are ignored. An [`Instance`] serialized with serde_json
//! reads back unchanged.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::answer::canonical_reference;
use crate::load::non_empty;
use crate::record::{Record, describe, jsonl_records, quote};
use crate::{AnswerKind, Instance, LoadError};

/// Loads a generic JSONL file.
///
/// # Errors
///
/// Returns the errors of [`crate::load`].
pub fn load(path: impl AsRef<Path>) -> Result<Vec<Instance>, LoadError> {
    crate::load(path, Some(crate::Format::Jsonl))
}

/// Parses the text of a generic JSONL file. Blank lines are skipped.
///
/// # Errors
///
/// Returns [`LoadError::Record`] naming the line of the first record that is
/// not a JSON object, lacks a non-empty string `prompt`, has a field of the
/// wrong type, an unknown `answer_kind`, a reference that does not fit
/// its answer kind, or an id that an earlier record already has, and
/// [`LoadError::Empty`] when there are no records.
pub fn parse(text: &str, source: &Path) -> Result<Vec<Instance>, LoadError> {
    let stem = source
        .file_stem()
        .map_or_else(|| "jsonl".into(), |stem| stem.to_string_lossy());
    let mut instances = Vec::new();
    let mut line_of_id: HashMap<String, usize> = HashMap::new();
    for (line, record) in jsonl_records(text) {
        let default_id = format!("{stem}-{}", instances.len());
        let instance = record
            .and_then(|record| parse_record(&record, default_id, &stem))
            .map_err(|message| LoadError::record(source, line, message))?;
        if let Some(first_line) = line_of_id.insert(instance.id.clone(), line) {
            return Err(LoadError::record(
                source,
                line,
                format!(
                    "id {:?} is already the id of line {first_line}; give each record its own \
                     \"id\", or leave the field out to number the records",
                    instance.id
                ),
            ));
        }
        instances.push(instance);
    }
    non_empty(instances, source)
}

fn parse_record(record: &Record, default_id: String, stem: &str) -> Result<Instance, String> {
    let prompt = record.non_empty_string("prompt")?.to_owned();
    let id = match record.get("id") {
        None => default_id,
        Some(Value::String(id)) if !id.trim().is_empty() => id.trim().to_owned(),
        Some(Value::Number(id)) => id.to_string(),
        Some(other) => {
            return Err(format!(
                "field \"id\" must be a non-empty string or a number, got {}",
                describe(other)
            ));
        }
    };
    let reference = match record.get("reference") {
        None => None,
        Some(Value::String(text)) => Some(text.trim().to_owned()),
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(Value::Bool(flag)) => Some(if *flag { "yes" } else { "no" }.to_owned()),
        Some(other) => {
            return Err(format!(
                "field \"reference\" must be a string, a number or a boolean, got {}",
                describe(other)
            ));
        }
    };
    let answer_kind = match record.optional_string("answer_kind")? {
        Some(name) => name
            .parse::<AnswerKind>()
            .map_err(|error| format!("field \"answer_kind\": {error}"))?,
        None => infer_answer_kind(reference.as_deref()),
    };
    let reference = reference
        .map(|reference| {
            canonical_reference(answer_kind, &reference).ok_or_else(|| {
                format!(
                    "field \"reference\" is {}, which is not a valid {answer_kind} answer",
                    quote(&reference)
                )
            })
        })
        .transpose()?;
    // `optional_string` reads an explicit null as `None`, so `has` checks
    // for the key itself to keep null apart from an absent field.
    let category = if record.has("category") {
        record.optional_string("category")?.map(str::to_owned)
    } else {
        Some(stem.to_owned())
    };
    Ok(Instance {
        id,
        prompt,
        reference,
        category,
        answer_kind,
    })
}

/// Infers the answer kind from the shape of a reference, as listed in the
/// module documentation.
fn infer_answer_kind(reference: Option<&str>) -> AnswerKind {
    let Some(reference) = reference else {
        return AnswerKind::Free;
    };
    [AnswerKind::Number, AnswerKind::YesNo, AnswerKind::Choice]
        .into_iter()
        .find(|&kind| canonical_reference(kind, reference).is_some())
        .unwrap_or(AnswerKind::Free)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Vec<Instance>, LoadError> {
        parse(text, Path::new("tasks/mine.jsonl"))
    }

    fn parse_one(line: &str) -> Instance {
        let mut instances = parse_text(line).unwrap();
        assert_eq!(instances.len(), 1);
        instances.remove(0)
    }

    #[test]
    fn answer_kind_inferred_from_reference() {
        let cases = [
            (r#""1,200""#, AnswerKind::Number, "1200"),
            ("42", AnswerKind::Number, "42"),
            (r#""True""#, AnswerKind::YesNo, "yes"),
            ("false", AnswerKind::YesNo, "no"),
            (r#""c""#, AnswerKind::Choice, "C"),
            (r#""Paris""#, AnswerKind::Free, "Paris"),
        ];
        for (reference, kind, canonical) in cases {
            let instance = parse_one(&format!(r#"{{"prompt": "p", "reference": {reference}}}"#));
            assert_eq!(instance.answer_kind, kind, "{reference}");
            assert_eq!(
                instance.reference.as_deref(),
                Some(canonical),
                "{reference}"
            );
        }
    }

    #[test]
    fn prompt_only_is_free_without_reference() {
        let instance = parse_one(r#"{"prompt": "  Write a haiku.  ", "extra": [1, 2]}"#);
        assert_eq!(instance.prompt, "Write a haiku.");
        assert_eq!(instance.reference, None);
        assert_eq!(instance.category.as_deref(), Some("mine"));
        assert_eq!(instance.answer_kind, AnswerKind::Free);
        assert_eq!(instance.id, "mine-0");
    }

    #[test]
    fn explicit_fields_kept() {
        let instance = parse_one(
            r#"{"id": 7, "prompt": "p", "reference": "12", "answer_kind": "free", "category": "c"}"#,
        );
        assert_eq!(instance.id, "7");
        assert_eq!(instance.answer_kind, AnswerKind::Free);
        assert_eq!(instance.reference.as_deref(), Some("12"));
        assert_eq!(instance.category.as_deref(), Some("c"));
    }

    #[test]
    fn null_category_means_none() {
        let instance = parse_one(r#"{"prompt": "p", "category": null}"#);
        assert_eq!(instance.category, None);
    }

    #[test]
    fn reference_must_fit_kind() {
        let error = parse_text(r#"{"prompt": "p", "reference": "many", "answer_kind": "number"}"#)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "tasks/mine.jsonl:1: field \"reference\" is \"many\", which is not a valid number answer"
        );
    }

    #[test]
    fn unknown_answer_kind_rejected() {
        let error = parse_text("\n{\"prompt\": \"p\", \"answer_kind\": \"bool\"}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "tasks/mine.jsonl:2: field \"answer_kind\": unknown answer kind \"bool\", expected \
             number, yes-no, choice or free"
        );
    }

    #[test]
    fn missing_prompt_names_line() {
        let error = parse_text("{\"prompt\": \"a\"}\n{\"question\": \"b\"}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "tasks/mine.jsonl:2: missing field \"prompt\""
        );
    }

    #[test]
    fn empty_prompt_rejected() {
        let error = parse_text(r#"{"prompt": "   "}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "tasks/mine.jsonl:1: field \"prompt\" is empty"
        );
    }

    #[test]
    fn duplicate_id_names_both_lines() {
        let text = "{\"id\": \"q-0\", \"prompt\": \"a\"}\n\n{\"id\": \"q-0\", \"prompt\": \"b\"}";
        let error = parse_text(text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "tasks/mine.jsonl:3: id \"q-0\" is already the id of line 1; give each record its \
             own \"id\", or leave the field out to number the records"
        );
    }

    #[test]
    fn explicit_id_clashing_with_default_rejected() {
        let text = "{\"prompt\": \"a\"}\n{\"id\": \"mine-0\", \"prompt\": \"b\"}";
        let error = parse_text(text).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("tasks/mine.jsonl:2: id \"mine-0\""),
            "{error}"
        );
    }

    #[test]
    fn serialized_instances_read_back() {
        let mut instances = crate::builtin(3, 12);
        instances[0].category = None;
        let text: String = instances
            .iter()
            .map(|instance| serde_json::to_string(instance).unwrap() + "\n")
            .collect();
        assert_eq!(parse_text(&text).unwrap(), instances);
    }
}
