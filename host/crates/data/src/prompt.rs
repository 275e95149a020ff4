//! The answer instruction appended to every question before it goes to the
//! policy, kept in one place so that training, evaluation and the answer
//! extractor agree on it.
//!
//! Convention: an [`Instance`]'s `prompt` is the bare question, and
//! [`render`] appends one instruction per [`AnswerKind`], each asking for a
//! final line `Answer: <answer>` that [`crate::answer`] reads back. The
//! result is the user message; chat templates are applied elsewhere.

use crate::{AnswerKind, Instance};

/// The marker that opens the final answer line. [`crate::answer`] matches it
/// with ASCII case ignored.
pub const ANSWER_MARKER: &str = "Answer:";

/// Returns the instruction appended to questions of kind `kind`.
pub const fn instruction(kind: AnswerKind) -> &'static str {
    match kind {
        AnswerKind::Number => {
            "Solve the problem step by step, then give the final answer on the last line \
             as 'Answer: <number>'."
        }
        AnswerKind::YesNo => {
            "Think it through briefly, then give the final answer on the last line as \
             'Answer: yes' or 'Answer: no'."
        }
        AnswerKind::Choice => {
            "Think it through briefly, then give the final answer on the last line as \
             'Answer: <letter>', using the letter of one option."
        }
        AnswerKind::Free => "Give the final answer on the last line as 'Answer: <answer>'.",
    }
}

/// Renders the user message for `instance`: its question, a blank line, and
/// the instruction for its answer kind.
pub fn render(instance: &Instance) -> String {
    render_question(&instance.prompt, instance.answer_kind)
}

/// Renders the user message for a bare question of kind `kind`.
pub fn render_question(question: &str, kind: AnswerKind) -> String {
    format!("{}\n\n{}", question.trim_end(), instruction(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instruction_names_marker() {
        for kind in AnswerKind::ALL {
            assert!(
                instruction(kind).contains(&format!("'{ANSWER_MARKER} ")),
                "{kind}"
            );
        }
    }

    #[test]
    fn rendered_prompt_ends_with_instruction() {
        let rendered = render_question("Is 17 a prime number?\n", AnswerKind::YesNo);
        assert_eq!(
            rendered,
            "Is 17 a prime number?\n\nThink it through briefly, then give the final answer on \
             the last line as 'Answer: yes' or 'Answer: no'."
        );
    }

    #[test]
    fn marker_matches_extractor() {
        for kind in AnswerKind::ALL {
            let response = match kind {
                AnswerKind::Number => format!("{ANSWER_MARKER} 12"),
                AnswerKind::YesNo => format!("{ANSWER_MARKER} yes"),
                AnswerKind::Choice => format!("{ANSWER_MARKER} C"),
                AnswerKind::Free => format!("{ANSWER_MARKER} Paris"),
            };
            assert!(crate::answer::extract(kind, &response).is_some(), "{kind}");
        }
    }
}
