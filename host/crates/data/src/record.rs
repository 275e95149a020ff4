//! One JSON record of a data file: the walk over the lines of a JSONL text,
//! and typed field access whose error messages name the field and the value
//! found.

use serde_json::{Map, Value};

/// The maximum length, in chars, of a bad value quoted in an error message.
const MAX_QUOTED_CHARS: usize = 60;

/// A parsed JSON object.
pub(crate) struct Record(Map<String, Value>);

impl Record {
    /// Parses `text` as one JSON object.
    ///
    /// # Errors
    ///
    /// Returns a message for invalid JSON or a value that is not an object.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|error| {
            format!(
                "invalid JSON at column {}: {}",
                error.column(),
                json_error_message(&error)
            )
        })?;
        match value {
            Value::Object(fields) => Ok(Self(fields)),
            other => Err(format!("expected a JSON object, got {}", describe(&other))),
        }
    }

    /// Returns whether the record has field `name`, whatever its value.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Returns the value of field `name`, or `None` when absent or null.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|value| !value.is_null())
    }

    /// Returns string field `name`.
    ///
    /// # Errors
    ///
    /// Returns a message when the field is missing or not a string.
    pub(crate) fn string(&self, name: &str) -> Result<&str, String> {
        match self.get(name) {
            None => Err(format!("missing field \"{name}\"")),
            Some(value) => value
                .as_str()
                .ok_or_else(|| wrong_type(name, "a string", value)),
        }
    }

    /// Returns string field `name` with surrounding whitespace trimmed.
    ///
    /// # Errors
    ///
    /// Returns a message when the field is missing, not a string, or only
    /// whitespace.
    pub(crate) fn non_empty_string(&self, name: &str) -> Result<&str, String> {
        let text = self.string(name)?.trim();
        if text.is_empty() {
            return Err(format!("field \"{name}\" is empty"));
        }
        Ok(text)
    }

    /// Returns string field `name`, or `None` when absent or null.
    ///
    /// # Errors
    ///
    /// Returns a message when the field is present but not a string.
    pub(crate) fn optional_string(&self, name: &str) -> Result<Option<&str>, String> {
        self.get(name)
            .map(|value| {
                value
                    .as_str()
                    .ok_or_else(|| wrong_type(name, "a string", value))
            })
            .transpose()
    }

    /// Returns boolean field `name`.
    ///
    /// # Errors
    ///
    /// Returns a message when the field is missing or not a boolean.
    pub(crate) fn boolean(&self, name: &str) -> Result<bool, String> {
        match self.get(name) {
            None => Err(format!("missing field \"{name}\"")),
            Some(value) => value
                .as_bool()
                .ok_or_else(|| wrong_type(name, "a boolean", value)),
        }
    }
}

/// Yields each non-blank line of a JSONL text with its 1-based line number
/// and its parse result. A trailing `\r` is removed, so CRLF files work.
pub(crate) fn jsonl_records(text: &str) -> impl Iterator<Item = (usize, Result<Record, String>)> {
    text.split('\n')
        .enumerate()
        .map(|(index, line)| (index + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty())
        .map(|(line_number, line)| (line_number, Record::parse(line)))
}

/// Returns serde_json's message without its " at line L column C" suffix,
/// because callers report the position in the file themselves.
pub(crate) fn json_error_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match message.strip_suffix(&suffix) {
        Some(stripped) => stripped.to_owned(),
        None => message,
    }
}

/// Quotes `text` for an error message, cut to [`MAX_QUOTED_CHARS`] chars.
pub(crate) fn quote(text: &str) -> String {
    let mut excerpt: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    if excerpt.len() < text.len() {
        excerpt.push('…');
    }
    format!("{excerpt:?}")
}

/// Describes a JSON value by its type and a short excerpt.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) => format!("the string {}", quote(text)),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

fn wrong_type(name: &str, expected: &str, found: &Value) -> String {
    format!(
        "field \"{name}\" must be {expected}, got {}",
        describe(found)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_field_named() {
        let record = Record::parse(r#"{"answer": "4"}"#).unwrap();
        let error = record.string("question").err().unwrap();
        assert_eq!(error, "missing field \"question\"");
    }

    #[test]
    fn wrong_type_shows_value() {
        let record = Record::parse(r#"{"answer": 5}"#).unwrap();
        let error = record.string("answer").err().unwrap();
        assert_eq!(error, "field \"answer\" must be a string, got the number 5");
    }

    #[test]
    fn null_counts_as_absent() {
        let record = Record::parse(r#"{"reference": null}"#).unwrap();
        assert_eq!(record.optional_string("reference"), Ok(None));
    }

    #[test]
    fn non_object_rejected() {
        let error = Record::parse("[1, 2]").err().unwrap();
        assert_eq!(error, "expected a JSON object, got an array");
    }

    #[test]
    fn invalid_json_has_column_once() {
        let error = Record::parse(r#"{"a": }"#).err().unwrap();
        assert!(error.starts_with("invalid JSON at column 7: "), "{error}");
        assert!(!error.contains(" at line "), "{error}");
    }

    #[test]
    fn jsonl_lines_numbered_and_blanks_skipped() {
        let text = "{\"a\": 1}\r\n\n   \n{\"b\": 2}\n";
        let lines: Vec<usize> = jsonl_records(text).map(|(line, _)| line).collect();
        assert_eq!(lines, vec![1, 4]);
    }

    #[test]
    fn long_values_cut_when_quoted() {
        let quoted = quote(&"x".repeat(200));
        assert_eq!(quoted.chars().count(), MAX_QUOTED_CHARS + 3);
        assert!(quoted.ends_with("…\""));
    }
}
