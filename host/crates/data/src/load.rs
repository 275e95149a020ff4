//! Reading a task data file in any supported format, with the format given
//! or detected from the content and the extension.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use crate::{Instance, LoadError, gsm8k, jsonl, strategyqa};

/// A task data file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// GSM8K JSONL, one `{"question", "answer"}` object a line (see
    /// [`crate::gsm8k`]).
    Gsm8k,
    /// A StrategyQA JSON array of `{"qid", "question", "answer"}` items (see
    /// [`crate::strategyqa`]).
    StrategyQa,
    /// The generic JSONL format, one `{"prompt", ...}` object a line (see
    /// [`crate::jsonl`]).
    Jsonl,
}

impl Format {
    /// All formats, in declaration order.
    pub const ALL: [Format; 3] = [Self::Gsm8k, Self::StrategyQa, Self::Jsonl];

    /// Returns the name used on the command line: `gsm8k`, `strategyqa` or
    /// `jsonl`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Gsm8k => "gsm8k",
            Self::StrategyQa => "strategyqa",
            Self::Jsonl => "jsonl",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown [`Format`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown data format {0:?}, expected gsm8k, strategyqa or jsonl")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Parses a format name as written by [`Format::as_str`], ignoring case.
    ///
    /// # Errors
    ///
    /// Returns [`UnknownFormat`] for any other string.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownFormat(name.to_owned()))
    }
}

/// Loads every instance of the data file at `path`, in file order.
///
/// With `format` set to `None` the format is detected by [`detect_format`].
///
/// # Errors
///
/// Returns [`LoadError::NotFound`] or [`LoadError::Read`] when the file
/// cannot be read, [`LoadError::Empty`] when it contains no records,
/// [`LoadError::UnknownFormat`] when detection fails, and
/// [`LoadError::Record`] with the line number for the first malformed record
/// ([`LoadError::Item`], which adds the index and `qid`, for a StrategyQA
/// item).
pub fn load(path: impl AsRef<Path>, format: Option<Format>) -> Result<Vec<Instance>, LoadError> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    parse(&bytes, path, format)
}

/// Loads several data files into one set, in the order given and each file
/// in file order. Each file is read by [`load`] with its own format, so its
/// instances keep their answer kind and default category.
///
/// Records without an id are numbered by line (`gsm8k-<index>` in GSM8K,
/// `<file stem>-<index>` in JSONL), so two files can number alike. A later
/// file whose numbered ids collide with an earlier file's gets
/// `gsm8k-<file stem>-<index>` (GSM8K) ids instead, or a count after the
/// stem for the n-th file of that name (`gsm8k-test.2-<index>`,
/// `<file stem>.2-<index>`) when the plain name is taken too.
///
/// # Errors
///
/// Returns the first error of [`load`], [`LoadError::RepeatedFile`] when a
/// file is given twice (under any path), [`LoadError::RepeatedContents`]
/// when two files hold the same bytes, and [`LoadError::DuplicateId`]
/// when an instance id of one file is also an id in an earlier file.
pub fn load_all<P: AsRef<Path>>(
    sources: &[(P, Option<Format>)],
) -> Result<Vec<Instance>, LoadError> {
    let mut instances = Vec::new();
    let mut file_of_id: HashMap<String, usize> = HashMap::new();
    for (index, (path, format)) in sources.iter().enumerate() {
        let path = path.as_ref();
        let earlier = sources[..index]
            .iter()
            .find(|(earlier, _)| same_path(earlier.as_ref(), path));
        if let Some((first_path, _)) = earlier {
            return Err(LoadError::RepeatedFile {
                path: path.to_path_buf(),
                first_path: first_path.as_ref().to_path_buf(),
            });
        }
        let mut loaded = load(path, *format)?;
        // `load` has just read the file. If reading it again fails, the file
        // changed in between, and the copy check skips it.
        let contents = std::fs::read(path).ok();
        let twin = contents.as_ref().and_then(|contents| {
            sources[..index].iter().find(|(earlier, _)| {
                let earlier = earlier.as_ref();
                same_length(earlier, contents.len())
                    && std::fs::read(earlier).is_ok_and(|bytes| bytes == *contents)
            })
        });
        if let Some((first_path, _)) = twin {
            return Err(LoadError::RepeatedContents {
                path: path.to_path_buf(),
                first_path: first_path.as_ref().to_path_buf(),
            });
        }
        if loaded.iter().any(|i| file_of_id.contains_key(&i.id)) {
            qualify_numbered_ids(&mut loaded, path, &file_of_id);
        }
        // Only ids of earlier files count as duplicates, because a single
        // file may repeat an id.
        for instance in &loaded {
            if let Some(&first) = file_of_id.get(&instance.id) {
                return Err(LoadError::DuplicateId {
                    path: path.to_path_buf(),
                    id: instance.id.clone(),
                    first_path: sources[first].0.as_ref().to_path_buf(),
                });
            }
        }
        for instance in &loaded {
            file_of_id.entry(instance.id.clone()).or_insert(index);
        }
        instances.extend(loaded);
    }
    Ok(instances)
}

/// Returns whether the file at `path` is `length` bytes long.
fn same_length(path: &Path, length: usize) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| metadata.len() == length as u64)
}

/// Returns whether `a` and `b` name the same file, comparing canonical paths
/// where both exist.
fn same_path(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Renames the ids of a file whose records are all numbered by line
/// (`gsm8k-<index>` or `<file stem>-<index>`) to the first of
/// `<prefix><file stem>-<index>`, `<prefix><file stem>.2-<index>`, ... that
/// no id in `used_ids` uses, where the prefix is `gsm8k-` for GSM8K ids and
/// empty otherwise. Leaves other ids alone.
fn qualify_numbered_ids(
    instances: &mut [Instance],
    path: &Path,
    used_ids: &HashMap<String, usize>,
) {
    let Some(stem) = path.file_stem().and_then(|stem| stem.to_str()) else {
        return;
    };
    let numbered_as = |base: &str| {
        instances
            .iter()
            .enumerate()
            .all(|(index, instance)| instance.id == format!("{base}-{index}"))
    };
    let (prefix, first_count) = if numbered_as("gsm8k") {
        ("gsm8k-", 1)
    } else if numbered_as(stem) {
        // `<stem>-<index>` itself is taken, so the count starts at 2.
        ("", 2)
    } else {
        return;
    };
    // Each used id rules out at most one name, so one of these is free.
    for count in first_count..=used_ids.len() + 2 {
        let name = match count {
            1 => format!("{prefix}{stem}"),
            count => format!("{prefix}{stem}.{count}"),
        };
        let free =
            (0..instances.len()).all(|index| !used_ids.contains_key(&format!("{name}-{index}")));
        if free {
            for (index, instance) in instances.iter_mut().enumerate() {
                instance.id = format!("{name}-{index}");
            }
            return;
        }
    }
}

/// Parses the contents of a data file. `source` is used only in error
/// messages and for the extension when detecting the format.
///
/// # Errors
///
/// Returns the errors of [`load`] other than those of reading the file.
pub fn parse(
    bytes: &[u8],
    source: &Path,
    format: Option<Format>,
) -> Result<Vec<Instance>, LoadError> {
    let text = decode(bytes, source)?;
    let Some(given) = format else {
        return parse_as(text, source, detect_format(text, source)?);
    };
    parse_as(text, source, given).map_err(|error| match detect_format(text, source) {
        // A record error in a file whose text looks like another format
        // most likely comes from a wrong --data-format.
        Ok(detected) if detected != given && parse_as(text, source, detected).is_ok() => {
            LoadError::WrongFormat {
                error: Box::new(error),
                given,
                detected,
            }
        }
        _ => error,
    })
}

/// Parses `text` in `format`.
fn parse_as(text: &str, source: &Path, format: Format) -> Result<Vec<Instance>, LoadError> {
    match format {
        Format::Gsm8k => gsm8k::parse(text, source),
        Format::StrategyQa => strategyqa::parse(text, source),
        Format::Jsonl => jsonl::parse(text, source),
    }
}

/// Detects the format of a data file from its text, falling back on the
/// extension of `source`.
///
/// A text starting with `[` is StrategyQA. A text starting with `{` is JSONL:
/// generic when its first record has a `prompt` field, GSM8K when it has
/// `question` and `answer`. Any other text is StrategyQA when `source` ends
/// in `.json` and generic JSONL when it ends in `.jsonl`, so that the parser
/// reports what is wrong on which line.
///
/// # Errors
///
/// Returns [`LoadError::Empty`] for a blank text and
/// [`LoadError::UnknownFormat`] when neither rule applies.
pub fn detect_format(text: &str, source: &Path) -> Result<Format, LoadError> {
    let Some(first_char) = text.trim_start().chars().next() else {
        return Err(LoadError::Empty {
            path: source.to_path_buf(),
        });
    };
    if first_char == '[' {
        return Ok(Format::StrategyQa);
    }
    if first_char == '{' {
        return detect_jsonl_format(text, source);
    }

    let extension = source.extension().and_then(|extension| extension.to_str());
    match extension {
        Some(extension) if extension.eq_ignore_ascii_case("json") => Ok(Format::StrategyQa),
        Some(extension) if extension.eq_ignore_ascii_case("jsonl") => Ok(Format::Jsonl),
        _ => Err(LoadError::UnknownFormat {
            path: source.to_path_buf(),
            reason: format!(
                "the text starts with {first_char:?} rather than '[' (a JSON array) or '{{' \
                 (JSON Lines) and the extension is neither .json nor .jsonl"
            ),
        }),
    }
}

/// Tells GSM8K from generic JSONL by the fields of the first record. A first
/// line that is not a JSON object goes to the generic parser, which reports
/// it with its line number.
fn detect_jsonl_format(text: &str, source: &Path) -> Result<Format, LoadError> {
    let Some((line, first)) = crate::record::jsonl_records(text).next() else {
        return Err(LoadError::Empty {
            path: source.to_path_buf(),
        });
    };
    let Ok(first) = first else {
        return Ok(Format::Jsonl);
    };
    if first.has("prompt") {
        Ok(Format::Jsonl)
    } else if first.has("question") && first.has("answer") {
        Ok(Format::Gsm8k)
    } else {
        Err(LoadError::UnknownFormat {
            path: source.to_path_buf(),
            reason: format!(
                "the record on line {line} has neither a \"prompt\" field (jsonl) nor \
                 \"question\" and \"answer\" fields (gsm8k)"
            ),
        })
    }
}

/// Reads a whole file, telling a missing file from other read failures.
fn read_bytes(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => LoadError::NotFound {
            path: path.to_path_buf(),
        },
        _ => LoadError::Read {
            path: path.to_path_buf(),
            error,
        },
    })
}

/// Decodes a file as UTF-8, dropping a leading byte order mark. Other
/// readers of line-based files (`dpo`'s pairs) use it too, so that every
/// file laser-host reads accepts the same text.
///
/// # Errors
///
/// Returns [`LoadError::Record`] naming the line of the first invalid byte.
pub fn decode<'a>(bytes: &'a [u8], source: &Path) -> Result<&'a str, LoadError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|error| {
        let valid = &bytes[..error.valid_up_to()];
        let line = valid.iter().filter(|&&byte| byte == b'\n').count() + 1;
        let byte = bytes[error.valid_up_to()];
        LoadError::record(
            source,
            line,
            format!(
                "invalid UTF-8 (byte 0x{byte:02X} at offset {}), expected UTF-8 text",
                error.valid_up_to()
            ),
        )
    })
}

/// Returns `instances`, or [`LoadError::Empty`] when there are none.
pub(crate) fn non_empty(
    instances: Vec<Instance>,
    source: &Path,
) -> Result<Vec<Instance>, LoadError> {
    if instances.is_empty() {
        return Err(LoadError::Empty {
            path: source.to_path_buf(),
        });
    }
    Ok(instances)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use proptest::prelude::*;

    use super::*;
    use crate::AnswerKind;

    #[test]
    fn wrong_format_names_the_detected_one() {
        let text = r#"[{"qid": "q1", "question": "Is ice cold?", "answer": true}]"#;
        let error = parse(
            text.as_bytes(),
            Path::new("train.json"),
            Some(Format::Gsm8k),
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("train.json:1: "), "{error}");
        assert!(error.contains("--data-format strategyqa"), "{error}");
    }

    fn detect(text: &str, name: &str) -> Result<Format, LoadError> {
        detect_format(text, Path::new(name))
    }

    #[test]
    fn format_detected_from_content() {
        assert_eq!(
            detect("\n [{\"qid\": 1}]", "a.txt").unwrap(),
            Format::StrategyQa
        );
        let gsm8k = "\n{\"question\": \"q\", \"answer\": \"#### 1\"}\n";
        assert_eq!(detect(gsm8k, "a.json").unwrap(), Format::Gsm8k);
        let generic = "{\"prompt\": \"p\", \"question\": \"q\", \"answer\": \"a\"}";
        assert_eq!(detect(generic, "a.txt").unwrap(), Format::Jsonl);
    }

    #[test]
    fn format_falls_back_on_extension() {
        assert_eq!(detect("oops", "a.json").unwrap(), Format::StrategyQa);
        assert_eq!(detect("oops", "a.JSONL").unwrap(), Format::Jsonl);
        let error = detect("oops", "a.csv").unwrap_err();
        assert!(matches!(error, LoadError::UnknownFormat { .. }), "{error}");
    }

    #[test]
    fn format_unknown_fields_rejected() {
        let error = detect("{\"text\": \"q\"}", "a.jsonl").unwrap_err();
        assert_eq!(
            error.to_string(),
            "a.jsonl: cannot detect the data format because the record on line 1 has neither a \
             \"prompt\" field (jsonl) nor \"question\" and \"answer\" fields (gsm8k), so pass the \
             format explicitly (gsm8k, strategyqa or jsonl)"
        );
    }

    #[test]
    fn format_names_parse() {
        for format in Format::ALL {
            assert_eq!(format.as_str().parse::<Format>(), Ok(format));
        }
        assert_eq!("GSM8K".parse::<Format>(), Ok(Format::Gsm8k));
        assert!("csv".parse::<Format>().is_err());
    }

    #[test]
    fn missing_file_reported() {
        let error = load("/nonexistent/data.jsonl", None).unwrap_err();
        assert_eq!(error.to_string(), "/nonexistent/data.jsonl: file not found");
    }

    #[test]
    fn directory_reported_as_read_failure() {
        let directory = tempfile::tempdir().unwrap();
        let error = load(directory.path(), Some(Format::Jsonl)).unwrap_err();
        assert!(matches!(error, LoadError::Read { .. }), "{error}");
    }

    #[test]
    fn empty_and_blank_files_reported() {
        for contents in ["", "  \n\n\t\n", "\u{FEFF}"] {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            file.write_all(contents.as_bytes()).unwrap();
            for format in [
                None,
                Some(Format::Gsm8k),
                Some(Format::Jsonl),
                Some(Format::StrategyQa),
            ] {
                let error = load(file.path(), format).unwrap_err();
                assert!(
                    matches!(error, LoadError::Empty { .. }),
                    "{format:?}: {error}"
                );
            }
        }
    }

    #[test]
    fn invalid_utf8_names_line() {
        let bytes = b"{\"prompt\": \"a\"}\n{\"prompt\": \"\xFF\"}\n";
        let error = parse(bytes, Path::new("d.jsonl"), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "d.jsonl:2: invalid UTF-8 (byte 0xFF at offset 28), expected UTF-8 text"
        );
    }

    #[test]
    fn byte_order_mark_ignored() {
        let bytes = "\u{FEFF}{\"prompt\": \"What is 2 + 2?\", \"reference\": \"4\"}\n".as_bytes();
        let instances = parse(bytes, Path::new("d.jsonl"), None).unwrap();
        assert_eq!(instances.len(), 1);
    }

    /// Writes a GSM8K, a StrategyQA and a generic JSONL file of two
    /// records each into `dir`, and returns their paths in that order.
    fn write_three_formats(dir: &Path) -> [std::path::PathBuf; 3] {
        let gsm8k = dir.join("train.jsonl");
        std::fs::write(
            &gsm8k,
            "{\"question\": \"What is 2 + 3?\", \"answer\": \"2+3=5\\n#### 5\"}\n\
             {\"question\": \"What is 4 * 4?\", \"answer\": \"#### 16\"}\n",
        )
        .unwrap();
        let strategyqa = dir.join("train.json");
        std::fs::write(
            &strategyqa,
            r#"[{"qid": "q1", "question": "Is ice cold?", "answer": true},
                {"qid": "q2", "question": "Can a cat fly?", "answer": false}]"#,
        )
        .unwrap();
        let generic = dir.join("capitals.jsonl");
        std::fs::write(
            &generic,
            "{\"prompt\": \"Capital of France?\", \"reference\": \"Paris\"}\n\
             {\"prompt\": \"Is 7 prime?\", \"reference\": \"yes\", \"category\": \"primes\"}\n",
        )
        .unwrap();
        [gsm8k, strategyqa, generic]
    }

    #[test]
    fn load_all_keeps_each_file_kind() {
        let dir = tempfile::tempdir().unwrap();
        let [gsm8k, strategyqa, generic] = write_three_formats(dir.path());
        let sources = [(gsm8k, None), (strategyqa, None), (generic, None)];
        let instances = load_all(&sources).unwrap();

        let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids,
            ["gsm8k-0", "gsm8k-1", "q1", "q2", "capitals-0", "capitals-1"]
        );
        let categories: Vec<Option<&str>> =
            instances.iter().map(|i| i.category.as_deref()).collect();
        assert_eq!(
            categories,
            [
                Some("gsm8k"),
                Some("gsm8k"),
                Some("strategyqa"),
                Some("strategyqa"),
                Some("capitals"),
                Some("primes"),
            ]
        );
        let kinds: Vec<AnswerKind> = instances.iter().map(|i| i.answer_kind).collect();
        assert_eq!(
            kinds,
            [
                AnswerKind::Number,
                AnswerKind::Number,
                AnswerKind::YesNo,
                AnswerKind::YesNo,
                AnswerKind::Free,
                AnswerKind::YesNo,
            ]
        );
        assert!(crate::is_correct(&instances[0], "So 5.\nAnswer: 5"));
        assert!(crate::is_correct(
            &instances[3],
            "Cats have no wings.\nAnswer: No"
        ));
        assert!(crate::is_correct(&instances[4], "Answer: paris."));
    }

    #[test]
    fn two_gsm8k_files_get_distinct_ids() {
        let dir = tempfile::tempdir().unwrap();
        let line = "{\"question\": \"What is 2 + 3?\", \"answer\": \"#### 5\"}\n";
        let train = dir.path().join("train.jsonl");
        let test = dir.path().join("test.jsonl");
        std::fs::write(&train, line).unwrap();
        std::fs::write(&test, line.replace("2 + 3", "2 + 4")).unwrap();
        let instances = load_all(&[(train, None), (test, None)]).unwrap();
        let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["gsm8k-0", "gsm8k-test-0"]);
    }

    #[test]
    fn same_named_gsm8k_files_get_distinct_ids() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|folder| {
                let line =
                    format!("{{\"question\": \"What is {folder}?\", \"answer\": \"#### 5\"}}\n");
                let folder = dir.path().join(folder);
                std::fs::create_dir(&folder).unwrap();
                let path = folder.join("test.jsonl");
                std::fs::write(&path, line).unwrap();
                (path, None)
            })
            .collect();
        let instances = load_all(&paths).unwrap();
        let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["gsm8k-0", "gsm8k-test-0", "gsm8k-test.2-0"]);
    }

    #[test]
    fn load_all_applies_given_format() {
        let dir = tempfile::tempdir().unwrap();
        let [gsm8k, strategyqa, _] = write_three_formats(dir.path());
        let sources = [(gsm8k, Some(Format::Jsonl)), (strategyqa, None)];
        let error = load_all(&sources).unwrap_err().to_string();
        let expected = format!("{}:1: missing field \"prompt\"; ", sources[0].0.display());
        assert!(error.starts_with(&expected), "{error}");
        assert!(error.contains("--data-format gsm8k"), "{error}");
    }

    #[test]
    fn load_all_rejects_file_given_twice() {
        let dir = tempfile::tempdir().unwrap();
        let [gsm8k, strategyqa, _] = write_three_formats(dir.path());
        let sources = [(&gsm8k, None), (&strategyqa, None), (&gsm8k, None)];
        let error = load_all(&sources).unwrap_err();
        let expected = format!(
            "{}: the same file as {}, given twice; leave one out",
            gsm8k.display(),
            gsm8k.display()
        );
        assert_eq!(error.to_string(), expected);

        // Another path to the same file is the same file.
        let dotted = gsm8k
            .parent()
            .unwrap()
            .join(".")
            .join(gsm8k.file_name().unwrap());
        let error = load_all(&[(&gsm8k, None), (&dotted, None)]).unwrap_err();
        assert!(matches!(error, LoadError::RepeatedFile { .. }), "{error}");
    }

    #[test]
    fn load_all_rejects_a_copy_under_another_name() {
        let dir = tempfile::tempdir().unwrap();
        let [gsm8k, strategyqa, _] = write_three_formats(dir.path());
        let copy = dir.path().join("copy.jsonl");
        std::fs::copy(&gsm8k, &copy).unwrap();
        let sources = [(&gsm8k, None), (&strategyqa, None), (&copy, None)];
        let error = load_all(&sources).unwrap_err();
        let expected = format!(
            "{}: the same contents as {}, so every instance would be loaded twice; leave one out",
            copy.display(),
            gsm8k.display()
        );
        assert_eq!(error.to_string(), expected);

        // One changed final number makes it another file.
        let text = std::fs::read_to_string(&gsm8k).unwrap();
        std::fs::write(&copy, text.replace("#### 16", "#### 17")).unwrap();
        let instances = load_all(&sources).unwrap();
        assert_eq!(instances.len(), 6);
    }

    #[test]
    fn same_named_jsonl_files_get_distinct_ids() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = ["a", "b"]
            .iter()
            .map(|folder| {
                let folder = dir.path().join(folder);
                std::fs::create_dir(&folder).unwrap();
                let path = folder.join("q.jsonl");
                std::fs::write(
                    &path,
                    format!("{{\"prompt\": \"Say hi to {}.\"}}\n", folder.display()),
                )
                .unwrap();
                (path, None)
            })
            .collect();
        let instances = load_all(&paths).unwrap();
        let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["q-0", "q.2-0"]);
    }

    #[test]
    fn qualified_ids_skip_names_already_taken() {
        // c/test.jsonl would become gsm8k-test.2, which g/test.2.jsonl
        // took first.
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = [
            ("a", "test.jsonl"),
            ("b", "test.jsonl"),
            ("g", "test.2.jsonl"),
            ("c", "test.jsonl"),
        ]
        .iter()
        .map(|(folder, name)| {
            let line = format!("{{\"question\": \"What is {folder}?\", \"answer\": \"#### 5\"}}\n");
            let folder = dir.path().join(folder);
            std::fs::create_dir(&folder).unwrap();
            let path = folder.join(name);
            std::fs::write(&path, line).unwrap();
            (path, None)
        })
        .collect();
        let instances = load_all(&paths).unwrap();
        let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "gsm8k-0",
                "gsm8k-test-0",
                "gsm8k-test.2-0",
                "gsm8k-test.3-0"
            ]
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let source = Path::new("random.jsonl");
            for format in [None, Some(Format::Gsm8k), Some(Format::StrategyQa), Some(Format::Jsonl)] {
                let _ = parse(&bytes, source, format);
            }
        }

        #[test]
        fn json_like_text_never_panics(text in "[\\[\\]{}\",:0-9a-z #\n\\\\]{0,200}") {
            let source = Path::new("random.json");
            for format in [None, Some(Format::Gsm8k), Some(Format::StrategyQa), Some(Format::Jsonl)] {
                let _ = parse(text.as_bytes(), source, format);
            }
        }

        #[test]
        fn field_shaped_lines_never_panic(
            question in any::<String>(),
            answer in any::<String>(),
            flag in any::<bool>(),
        ) {
            let lines = [
                serde_json::json!({"question": question, "answer": answer}).to_string(),
                serde_json::json!({"prompt": question, "reference": answer}).to_string(),
                serde_json::json!([{"qid": answer, "question": question, "answer": flag}]).to_string(),
            ];
            for line in lines {
                for format in [None, Some(Format::Gsm8k), Some(Format::StrategyQa), Some(Format::Jsonl)] {
                    let _ = parse(line.as_bytes(), Path::new("fields.jsonl"), format);
                }
            }
        }
    }
}
