//! The built-in task set: questions generated from templates and small
//! tables written for this project, with answers computed by the generator,
//! so that training and evaluation run without downloading a data set.
//!
//! Three categories take turns, so their counts differ by at most one:
//!
//! - `arithmetic` ([`AnswerKind::Number`]): one- and two-step word problems
//!   (addition, subtraction, multiplication, division, prices).
//! - `yes-no` ([`AnswerKind::YesNo`]): prime numbers, parity, divisibility,
//!   comparisons, sums, and unit facts ("Is a week longer than 5 days?"),
//!   with yes and no about equally likely.
//! - `multiple-choice` ([`AnswerKind::Choice`]): four options `A)` to `D)`,
//!   one per line (largest, smallest, sum, product, unit conversion).
//!
//! Like loaded data, each prompt is the bare question: [`crate::prompt::render`]
//! appends the instruction to end with `Answer: <answer>`. References are in
//! canonical form (an integer, `yes`/`no`, or a letter).

mod arithmetic;
mod choice;
mod units;
mod yes_no;

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{AnswerKind, Instance};

/// The category of the arithmetic word problems.
pub const ARITHMETIC: &str = "arithmetic";
/// The category of the yes/no questions.
pub const YES_NO: &str = "yes-no";
/// The category of the multiple-choice questions.
pub const MULTIPLE_CHOICE: &str = "multiple-choice";
/// The categories in the order they take turns.
pub const CATEGORIES: [&str; 3] = [ARITHMETIC, YES_NO, MULTIPLE_CHOICE];

/// How many times a generator is asked for a question not seen before
/// before a repeat is accepted. Each category has well over 10,000
/// distinct questions, so repeats need sets far larger than that.
const MAX_ATTEMPTS: usize = 100;

/// The largest count the command line accepts for [`builtin`]. An instance
/// takes an estimated few hundred bytes, so this bounds the set near
/// 300 MB, where a count of billions fails to allocate. Generating 300,000
/// instances, all distinct, took about 1 s in a release build on a shared
/// 2-core machine.
pub const MAX_BUILTIN_COUNT: usize = 1_000_000;

/// A generated question and its canonical reference answer.
struct Task {
    question: String,
    reference: String,
}

/// A template: draws the numbers and names of one question.
type Template = fn(&mut StdRng) -> Task;

/// Generates `count` instances from `seed`. The same seed gives the same
/// instances, and a shorter set is a prefix of a longer one with the same
/// seed. Instance `i` has the id `builtin-<seed>-<i>` and the category
/// `CATEGORIES[i % 3]`.
///
/// NOTE: generation draws from `rand`'s `StdRng`, so a given seed yields the
/// same set only within the `rand` release series pinned in `Cargo.lock`.
pub fn builtin(seed: u64, count: usize) -> Vec<Instance> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = HashSet::new();
    (0..count)
        .map(|index| {
            let (category, templates, answer_kind) = match index % CATEGORIES.len() {
                0 => (ARITHMETIC, arithmetic::TEMPLATES, AnswerKind::Number),
                1 => (YES_NO, yes_no::TEMPLATES, AnswerKind::YesNo),
                _ => (MULTIPLE_CHOICE, choice::TEMPLATES, AnswerKind::Choice),
            };
            let task = generate_unseen(templates, &mut rng, &mut seen);
            Instance {
                id: format!("builtin-{seed}-{index}"),
                prompt: task.question,
                reference: Some(task.reference),
                category: Some(category.to_owned()),
                answer_kind,
            }
        })
        .collect()
}

/// Draws a template and a question from it until the question is new, or
/// [`MAX_ATTEMPTS`] times.
fn generate_unseen(templates: &[Template], rng: &mut StdRng, seen: &mut HashSet<String>) -> Task {
    let mut attempts = 0;
    loop {
        let template = templates[rng.random_range(0..templates.len())];
        let task = template(rng);
        attempts += 1;
        if seen.insert(task.question.clone()) || attempts >= MAX_ATTEMPTS {
            return task;
        }
    }
}

/// Returns the numbers of a generated question in order, for the tests
/// that recompute answers.
#[cfg(test)]
fn question_numbers(question: &str) -> Vec<u32> {
    crate::answer::number::scan(question)
        .iter()
        .map(|number| number.canonical.parse().unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::is_correct;

    #[test]
    fn categories_balanced() {
        let instances = builtin(11, 301);
        for (position, category) in CATEGORIES.iter().enumerate() {
            let count = instances
                .iter()
                .filter(|i| i.category.as_deref() == Some(*category))
                .count();
            assert_eq!(count, if position == 0 { 101 } else { 100 }, "{category}");
        }
    }

    #[test]
    fn same_seed_same_instances() {
        assert_eq!(builtin(5, 60), builtin(5, 60));
        assert_ne!(builtin(5, 60), builtin(6, 60));
    }

    #[test]
    fn shorter_set_is_prefix() {
        let long = builtin(8, 90);
        assert_eq!(builtin(8, 30), long[..30]);
    }

    #[test]
    fn prompts_and_ids_unique() {
        let instances = builtin(1, 3000);
        let prompts: HashSet<&str> = instances.iter().map(|i| i.prompt.as_str()).collect();
        assert_eq!(prompts.len(), instances.len());
        let ids: HashSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids.len(), instances.len());
    }

    #[test]
    fn references_canonical_and_checkable() {
        for instance in builtin(2, 600) {
            let reference = instance.reference.clone().unwrap();
            let canonical = crate::answer::canonical_reference(instance.answer_kind, &reference);
            assert_eq!(
                canonical.as_deref(),
                Some(reference.as_str()),
                "{}",
                instance.prompt
            );
            let response = format!(
                "Let me think.\n{} {reference}",
                crate::prompt::ANSWER_MARKER
            );
            assert!(is_correct(&instance, &response), "{}", instance.prompt);
        }
    }

    #[test]
    fn yes_and_no_both_common() {
        let instances = builtin(4, 3000);
        let yes_no: Vec<&Instance> = instances
            .iter()
            .filter(|i| i.answer_kind == AnswerKind::YesNo)
            .collect();
        let yes = yes_no
            .iter()
            .filter(|i| i.reference.as_deref() == Some("yes"))
            .count();
        let share = yes as f64 / yes_no.len() as f64;
        assert!((0.4..=0.6).contains(&share), "yes share {share}");
    }

    #[test]
    fn choice_letters_all_used() {
        let instances = builtin(4, 600);
        let letters: HashSet<&str> = instances
            .iter()
            .filter(|i| i.answer_kind == AnswerKind::Choice)
            .filter_map(|i| i.reference.as_deref())
            .collect();
        assert_eq!(letters, HashSet::from(["A", "B", "C", "D"]));
    }
}
