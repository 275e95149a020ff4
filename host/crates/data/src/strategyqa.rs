//! The StrategyQA reader: yes/no questions that need implicit multi-step
//! reasoning (Geva et al., 2021, "Did Aristotle Use a Laptop?",
//! eladsegal/strategyqa).
//!
//! The file is one JSON array. Each item has a `qid`, a `question` and a
//! boolean `answer`, which becomes the reference `yes` or `no`. Other fields
//! (`term`, `facts`, `decomposition`, `evidence`) are ignored.

use std::path::Path;

use serde_json::value::RawValue;

use crate::load::non_empty;
use crate::record::{Record, json_error_message};
use crate::{AnswerKind, Instance, LoadError};

/// The category of every StrategyQA instance.
pub const CATEGORY: &str = "strategyqa";

/// Loads a StrategyQA JSON file. Instances keep the item's `qid` as id.
///
/// # Errors
///
/// Returns the errors of [`crate::load`].
pub fn load(path: impl AsRef<Path>) -> Result<Vec<Instance>, LoadError> {
    crate::load(path, Some(crate::Format::StrategyQa))
}

/// Parses the text of a StrategyQA JSON file.
///
/// # Errors
///
/// Returns [`LoadError::Record`] at the line of the fault for invalid JSON
/// or a text that is not an array. Returns [`LoadError::Item`] with the
/// item's line, index and `qid` for an item that is not an object or lacks
/// a string `qid`, a string `question` or a boolean `answer`. Returns
/// [`LoadError::Empty`] for a blank text or an empty array.
pub fn parse(text: &str, source: &Path) -> Result<Vec<Instance>, LoadError> {
    let first = text.trim_start();
    if first.is_empty() {
        return Err(LoadError::Empty {
            path: source.to_path_buf(),
        });
    }
    if !first.starts_with('[') {
        let line = text[..text.len() - first.len()].matches('\n').count() + 1;
        let message = "expected a JSON array of {\"qid\", \"question\", \"answer\"} items";
        return Err(LoadError::record(source, line, message));
    }

    // Borrowed raw items point into `text`, so each item's byte offset, and
    // from it its line, is the distance between the two pointers.
    let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|error| {
        let message = format!(
            "invalid JSON at column {}: {}",
            error.column(),
            json_error_message(&error)
        );
        LoadError::record(source, error.line().max(1), message)
    })?;

    let mut instances = Vec::with_capacity(items.len());
    let mut line = 1;
    let mut counted_up_to = 0;
    for (index, item) in items.into_iter().enumerate() {
        let offset = (item.get().as_ptr() as usize).checked_sub(text.as_ptr() as usize);
        if let Some(skipped) = offset.and_then(|offset| text.get(counted_up_to..offset)) {
            line += skipped.matches('\n').count();
            counted_up_to += skipped.len();
        }
        let instance = parse_item(item.get()).map_err(|message| LoadError::Item {
            path: source.to_path_buf(),
            line,
            index,
            qid: item_qid(item.get()),
            message,
        })?;
        instances.push(instance);
    }
    non_empty(instances, source)
}

/// Returns the `qid` of an item when it is an object with a string `qid`,
/// to name the item in an error.
fn item_qid(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    value.get("qid")?.as_str().map(str::to_owned)
}

fn parse_item(text: &str) -> Result<Instance, String> {
    let record = Record::parse(text)?;
    let qid = record.non_empty_string("qid")?;
    let question = record.non_empty_string("question")?;
    let answer = record.boolean("answer")?;
    Ok(Instance {
        id: qid.to_owned(),
        prompt: question.to_owned(),
        reference: Some(if answer { "yes" } else { "no" }.to_owned()),
        category: Some(CATEGORY.to_owned()),
        answer_kind: AnswerKind::YesNo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Vec<Instance>, LoadError> {
        parse(text, Path::new("train.json"))
    }

    #[test]
    fn items_become_yes_no_instances() {
        let text = r#"[
            {"qid": "a1", "term": "x", "question": "Is water wet?", "answer": true, "facts": []},
            {"qid": "b2", "question": "Can fish fly?", "answer": false}
        ]"#;
        let instances = parse_text(text).unwrap();
        assert_eq!(instances.len(), 2);
        assert_eq!(instances[0].id, "a1");
        assert_eq!(instances[0].reference.as_deref(), Some("yes"));
        assert_eq!(instances[1].reference.as_deref(), Some("no"));
        assert_eq!(instances[1].category.as_deref(), Some("strategyqa"));
        assert_eq!(instances[1].answer_kind, AnswerKind::YesNo);
    }

    #[test]
    fn bad_item_names_line_index_and_qid() {
        let text = "[\n  {\"qid\": \"a\", \"question\": \"q\", \"answer\": true},\n  {\n    \"qid\": \"b\",\n    \"question\": \"q\",\n    \"answer\": \"yes\"\n  }\n]";
        let error = parse_text(text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "train.json:3: item at index 1 (qid \"b\"): field \"answer\" must be a boolean, \
             got the string \"yes\""
        );
        let LoadError::Item {
            path,
            line,
            index,
            qid,
            ..
        } = error
        else {
            panic!("expected an item error, got {error:?}");
        };
        assert_eq!(path, Path::new("train.json"));
        assert_eq!(line, 3);
        assert_eq!(index, 1);
        assert_eq!(qid.as_deref(), Some("b"));
    }

    #[test]
    fn one_line_items_named_by_index() {
        let text = r#"[{"qid": "a", "question": "q", "answer": true}, {"qid": "b", "question": "", "answer": true}]"#;
        let error = parse_text(text).unwrap_err();
        assert_eq!(
            error.to_string(),
            "train.json:1: item at index 1 (qid \"b\"): field \"question\" is empty"
        );
    }

    #[test]
    fn missing_qid_rejected() {
        let error = parse_text(r#"[{"question": "q", "answer": true}]"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "train.json:1: item at index 0: missing field \"qid\""
        );
    }

    #[test]
    fn non_string_qid_not_quoted() {
        let error = parse_text(r#"[{"qid": 7, "question": "q", "answer": true}]"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            "train.json:1: item at index 0: field \"qid\" must be a string, got the number 7"
        );
    }

    #[test]
    fn syntax_error_names_line() {
        let error = parse_text("[\n{\"qid\": \"a\",\n\"question\" \"q\"}]").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("train.json:3: invalid JSON at column 12: "),
            "{error}"
        );
    }

    #[test]
    fn non_array_rejected() {
        let error = parse_text("\n\n{\"qid\": \"a\"}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "train.json:3: expected a JSON array of {\"qid\", \"question\", \"answer\"} items"
        );
    }

    #[test]
    fn empty_array_rejected() {
        let error = parse_text("[ ]").unwrap_err();
        assert!(matches!(error, LoadError::Empty { .. }), "{error}");
    }

    #[test]
    fn non_object_item_rejected() {
        let error = parse_text("[\n1]").unwrap_err();
        assert_eq!(
            error.to_string(),
            "train.json:2: item at index 0: expected a JSON object, got the number 1"
        );
    }
}
