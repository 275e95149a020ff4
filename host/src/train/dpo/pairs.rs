//! The pairs file of `dpo`: JSONL with one `{"prompt", "chosen",
//! "rejected"}` object a line. It is read as the `--data` files are: UTF-8
//! with an optional byte order mark, LF or CRLF line ends, and blank lines
//! skipped. Errors name the file and the line.

use std::path::Path;

use anyhow::{Context, Result, anyhow, ensure};
use laser_model::chat::{ChatMessage, ChatTemplate};
use laser_model::tokenizer::Tokenizer;
use serde_json::Value;

use crate::train::batch::TokenizedPair;

/// The expected form of every line, quoted in error messages.
const EXPECTED: &str =
    "expected a JSON object with string fields \"prompt\", \"chosen\" and \"rejected\"";

/// The maximum length, in chars, of a string quoted in an error message.
const MAX_QUOTED_CHARS: usize = 40;

/// One line of a pairs file.
#[derive(Debug, PartialEq, Eq)]
struct PairRecord {
    prompt: String,
    chosen: String,
    rejected: String,
}

/// Reads a JSONL file of `{"prompt", "chosen", "rejected"}` objects and
/// tokenizes each: the prompt as a user turn with the chat template and
/// the assistant prefix, each response followed by the first
/// end-of-sequence token.
///
/// # Errors
///
/// Fails when the file cannot be read or contains no pairs, or, naming the
/// line, when it is not UTF-8, a line is not such an object, or a text
/// does not tokenize.
pub fn load_pairs(
    path: &Path,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
) -> Result<Vec<TokenizedPair>> {
    let eos = tokenizer.eos_ids().first().copied();
    let mut pairs = Vec::new();
    for (line, record) in read_records(path)? {
        let tokenize = || -> Result<TokenizedPair> {
            let prompt_text = template.render(&[ChatMessage::new("user", record.prompt)], true)?;
            let response = |text: &str| -> Result<Vec<u32>> {
                let mut tokens = tokenizer.encode(text, false)?;
                tokens.extend(eos);
                Ok(tokens)
            };
            Ok(TokenizedPair {
                prompt: tokenizer.encode(&prompt_text, true)?,
                chosen: response(&record.chosen)?,
                rejected: response(&record.rejected)?,
            })
        };
        let pair = tokenize()
            .with_context(|| format!("{}:{line}: failed to tokenize the pair", path.display()))?;
        pairs.push(pair);
    }
    ensure!(
        !pairs.is_empty(),
        "{} contains no preference pairs; {EXPECTED} on each line",
        path.display()
    );
    Ok(pairs)
}

/// Reads the records of the pairs file at `path`, each with its 1-based
/// line number.
fn read_records(path: &Path) -> Result<Vec<(usize, PairRecord)>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    let at_line = |line: usize, message: String| anyhow!("{}:{line}: {message}", path.display());
    let text = laser_data::load::decode(&bytes, path)?;
    let mut records = Vec::new();
    // `trim` also drops the `\r` of a CRLF line end.
    for (index, line) in text.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let record = parse_record(line).map_err(|message| at_line(index + 1, message))?;
        records.push((index + 1, record));
    }
    Ok(records)
}

/// Parses one non-blank line. On failure returns a message that names
/// what was found and what is expected.
fn parse_record(line: &str) -> Result<PairRecord, String> {
    let value: Value = serde_json::from_str(line).map_err(|error| {
        // serde_json ends its message with the position, which the caller
        // reports as the line, so only the column is kept.
        let message = error.to_string();
        let suffix = format!(" at line {} column {}", error.line(), error.column());
        let message = message.strip_suffix(&suffix).unwrap_or(&message);
        format!(
            "invalid JSON at column {}: {message}; {EXPECTED}",
            error.column()
        )
    })?;
    let Value::Object(mut fields) = value else {
        return Err(format!("{EXPECTED}, got {}", describe(&value)));
    };
    let mut field = |name: &str| match fields.remove(name) {
        None | Some(Value::Null) => Err(format!("missing field \"{name}\"; {EXPECTED}")),
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(format!(
            "field \"{name}\" must be a string, got {}",
            describe(&other)
        )),
    };
    Ok(PairRecord {
        prompt: field("prompt")?,
        chosen: field("chosen")?,
        rejected: field("rejected")?,
    })
}

/// Describes a JSON value by its type and a short excerpt.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) => {
            let mut excerpt: String = text.chars().take(MAX_QUOTED_CHARS).collect();
            if excerpt.len() < text.len() {
                excerpt.push('…');
            }
            format!("the string {excerpt:?}")
        }
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `bytes` to a pairs file and returns its records or the error
    /// message.
    fn read(bytes: &[u8]) -> Result<Vec<(usize, PairRecord)>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairs.jsonl");
        std::fs::write(&path, bytes).unwrap();
        read_records(&path).map_err(|error| {
            let message = format!("{error:#}");
            message.replace(&path.display().to_string(), "pairs.jsonl")
        })
    }

    fn record(prompt: &str, chosen: &str, rejected: &str) -> PairRecord {
        PairRecord {
            prompt: prompt.into(),
            chosen: chosen.into(),
            rejected: rejected.into(),
        }
    }

    #[test]
    fn bom_and_crlf_accepted() {
        let text = b"\xEF\xBB\xBF{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\r\n\
                     \r\n\
                     {\"prompt\": \"d\", \"chosen\": \"e\", \"rejected\": \"f\"}\r\n";
        let records = read(text).unwrap();
        assert_eq!(
            records,
            vec![(1, record("a", "b", "c")), (3, record("d", "e", "f"))]
        );
    }

    #[test]
    fn invalid_utf8_names_line() {
        let text = b"{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n\
                     {\"prompt\": \"\xFF\"}\n";
        let error = read(text).unwrap_err();
        assert_eq!(
            error,
            "pairs.jsonl:2: invalid UTF-8 (byte 0xFF at offset 60), expected UTF-8 text"
        );
    }

    #[test]
    fn array_line_names_expected_object() {
        let text = b"{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n[\"x\", \"y\"]\n";
        let error = read(text).unwrap_err();
        assert_eq!(error, format!("pairs.jsonl:2: {EXPECTED}, got an array"));
    }

    #[test]
    fn wrong_field_type_names_field() {
        let error = read(b"{\"prompt\": \"a\", \"chosen\": 4, \"rejected\": \"c\"}\n").unwrap_err();
        assert_eq!(
            error,
            "pairs.jsonl:1: field \"chosen\" must be a string, got the number 4"
        );
    }

    #[test]
    fn missing_field_names_field() {
        let error = read(b"{\"prompt\": \"a\", \"chosen\": \"b\"}\n").unwrap_err();
        assert_eq!(
            error,
            format!("pairs.jsonl:1: missing field \"rejected\"; {EXPECTED}")
        );
    }

    #[test]
    fn invalid_json_names_line_and_column() {
        let error = read(b"\n{\"prompt\": \"a\",}\n").unwrap_err();
        assert!(
            error.starts_with("pairs.jsonl:2: invalid JSON at column "),
            "{error}"
        );
        assert!(error.ends_with(EXPECTED), "{error}");
    }
}
