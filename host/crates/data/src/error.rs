//! The error type of reading and parsing task data files.

use std::io;
use std::path::PathBuf;

/// A failure to read or parse a task data file.
///
/// Every message starts with the file's path, followed by the line number
/// when one record is at fault: `data.jsonl:17: missing field "question"`.
/// An item of a JSON array is also named by its index and, when it has one,
/// its `qid`: `train.json:40: item at index 3 (qid "b7f2"): missing field
/// "answer"`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file does not exist.
    #[error("{}: file not found", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The file exists but could not be read (a directory, no permission).
    #[error("{}: failed to read: {error}", path.display())]
    Read {
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The file contains no records: it is empty, only whitespace, or an
    /// empty JSON array.
    #[error("{}: file is empty, expected at least one record", path.display())]
    Empty {
        /// The path as given.
        path: PathBuf,
    },
    /// Neither the content nor the extension identifies the format.
    #[error(
        "{}: cannot detect the data format because {reason}, so pass the \
         format explicitly (gsm8k, strategyqa or jsonl)",
        path.display()
    )]
    UnknownFormat {
        /// The path as given.
        path: PathBuf,
        /// The reason detection failed, naming what was found instead.
        reason: String,
    },
    /// One record is malformed: a line of a JSONL file, or invalid JSON or
    /// UTF-8 at that line.
    #[error("{}:{line}: {message}", path.display())]
    Record {
        /// The path as given.
        path: PathBuf,
        /// The 1-based line number where the record starts.
        line: usize,
        /// The fault, with the value found and the form expected.
        message: String,
    },
    /// One item of a file's top-level JSON array is malformed.
    #[error("{}:{line}: item at index {index}{}: {message}", path.display(), qid_suffix(qid.as_deref()))]
    Item {
        /// The path as given.
        path: PathBuf,
        /// The 1-based line number where the item starts.
        line: usize,
        /// The item's 0-based index in the array.
        index: usize,
        /// The item's `qid` field, when it is a string.
        qid: Option<String>,
        /// The fault, with the value found and the form expected.
        message: String,
    },
    /// The file does not parse in the format given for it, and its text
    /// looks like another format.
    #[error(
        "{error}; the file was read as {given} because of --data-format, but it looks like \
         {detected}: pass --data-format {detected}, or leave the format to detection"
    )]
    WrongFormat {
        /// The error of parsing in the given format. Not named `source`, so
        /// that error chains do not print it a second time.
        error: Box<LoadError>,
        /// The format the file was read as.
        given: crate::Format,
        /// The format detected from the text.
        detected: crate::Format,
    },
    /// The same file is given twice.
    #[error(
        "{}: the same file as {}, given twice; leave one out",
        path.display(),
        first_path.display()
    )]
    RepeatedFile {
        /// The later path, as given.
        path: PathBuf,
        /// The earlier path to the same file.
        first_path: PathBuf,
    },
    /// Two files given together hold the same bytes, as a copy of one file
    /// under another name does.
    #[error(
        "{}: the same contents as {}, so every instance would be loaded twice; leave one out",
        path.display(),
        first_path.display()
    )]
    RepeatedContents {
        /// The later file, as given.
        path: PathBuf,
        /// The earlier file with the same contents.
        first_path: PathBuf,
    },
    /// Two files loaded together contain an instance with the same id.
    #[error(
        "{}: instance id {id:?} is also in {}, so the two files cannot be loaded together; \
         give the records of a JSONL file their own `id` fields, or leave one file out",
        path.display(),
        first_path.display()
    )]
    DuplicateId {
        /// The later file, as given.
        path: PathBuf,
        /// The repeated id.
        id: String,
        /// The earlier file that contains the id.
        first_path: PathBuf,
    },
}

/// Formats ` (qid "...")` for an item that has a `qid`, or nothing.
fn qid_suffix(qid: Option<&str>) -> String {
    qid.map(|qid| format!(" (qid {qid:?})")).unwrap_or_default()
}

impl LoadError {
    /// Builds a [`LoadError::Record`] for line `line` of `path`.
    pub(crate) fn record(path: &std::path::Path, line: usize, message: impl Into<String>) -> Self {
        Self::Record {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}
