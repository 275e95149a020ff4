//! Rule-based scoring for the bundled reward models: final-answer
//! extraction and matching, repetition detection, and the scores of the
//! `verifier`, `self-consistency`, `format` and `length` plugins.
//!
//! Everything here is a pure function of text, so it is tested natively and
//! shared by several plugins (which cannot call each other). It is not for
//! scores that need a language model: those plugins call the host.

mod answer;
mod number;
mod repetition;
mod scores;

pub use answer::{Answer, AnswerKind, Extraction, extract};
pub use number::{last_number, parse_number};
pub use repetition::{duplicate_ngram_fraction, is_runaway, longest_line_run};
pub use scores::{
    LengthUnit, NEUTRAL_SCORE, RuleBased, consistency_scores, format_score, length_score,
    verifier_score,
};
