//! Multiple-choice question templates with four options, `A)` to `D)`, one
//! per line after the question.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};

use super::units::UNIT_FACTS;
use super::{Task, Template};
use crate::answer::choice::LETTERS;

/// The number of options of every question.
const OPTION_COUNT: usize = 4;

pub(super) const TEMPLATES: &[Template] = &[largest, smallest, sum, product, unit_conversion];

/// Writes the question with its options, and the letter of `correct`.
fn task(question: &str, options: &[u32], correct: u32) -> Task {
    let mut text = question.to_owned();
    let mut reference = String::new();
    for (letter, option) in LETTERS.iter().zip(options) {
        text.push_str(&format!("\n{letter}) {option}"));
        if *option == correct {
            reference = letter.to_string();
        }
    }
    Task {
        question: text,
        reference,
    }
}

/// Draws [`OPTION_COUNT`] distinct numbers from `low..=high`.
fn distinct(rng: &mut StdRng, low: u32, high: u32) -> Vec<u32> {
    rand::seq::index::sample(rng, (high - low + 1) as usize, OPTION_COUNT)
        .into_iter()
        .map(|offset| low + offset as u32)
        .collect()
}

/// Returns `correct` and three distinct positive distractors near it, shuffled.
fn options_around(rng: &mut StdRng, correct: u32, spread: u32) -> Vec<u32> {
    let mut options = vec![correct];
    while options.len() < OPTION_COUNT {
        let offset = rng.random_range(1..=spread);
        let candidate = if rng.random_bool(0.5) {
            correct + offset
        } else {
            correct.saturating_sub(offset)
        };
        if candidate > 0 && !options.contains(&candidate) {
            options.push(candidate);
        }
    }
    options.shuffle(rng);
    options
}

fn largest(rng: &mut StdRng) -> Task {
    let options = distinct(rng, 1, 99);
    let correct = options.iter().copied().max().unwrap_or_default();
    task("Which number is largest?", &options, correct)
}

fn smallest(rng: &mut StdRng) -> Task {
    let options = distinct(rng, 1, 99);
    let correct = options.iter().copied().min().unwrap_or_default();
    task("Which number is smallest?", &options, correct)
}

fn sum(rng: &mut StdRng) -> Task {
    let (a, b): (u32, u32) = (rng.random_range(10..=99), rng.random_range(10..=99));
    let options = options_around(rng, a + b, 10);
    task(&format!("What is {a} + {b}?"), &options, a + b)
}

fn product(rng: &mut StdRng) -> Task {
    let (a, b): (u32, u32) = (rng.random_range(3..=12), rng.random_range(3..=12));
    let options = options_around(rng, a * b, 12);
    task(&format!("What is {a} times {b}?"), &options, a * b)
}

fn unit_conversion(rng: &mut StdRng) -> Task {
    let fact = UNIT_FACTS.choose(rng).unwrap_or(&UNIT_FACTS[0]);
    let amount = fact.amount;

    // Nearby values alone would leave the true amount as the only round
    // number, so the distractors are other conversion factors and the
    // amount off by a factor of ten, of two or by one.
    let mut distractors: Vec<u32> = UNIT_FACTS.iter().map(|other| other.amount).collect();
    distractors.extend([amount * 10, amount * 2, amount + 1, amount - 1]);
    if amount.is_multiple_of(10) {
        distractors.push(amount / 10);
    }
    distractors.retain(|&candidate| candidate >= 2 && candidate != amount);
    distractors.sort_unstable();
    distractors.dedup();

    let mut options: Vec<u32> = distractors
        .choose_multiple(rng, OPTION_COUNT - 1)
        .copied()
        .collect();
    options.push(amount);
    options.shuffle(rng);
    task(
        &format!("How many {} are in {}?", fact.unit, fact.name),
        &options,
        amount,
    )
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::builtin::question_numbers;

    /// Returns the number after the reference letter.
    fn chosen(task: &Task) -> u32 {
        let prefix = format!("{}) ", task.reference);
        let line = task
            .question
            .lines()
            .find(|line| line.starts_with(&prefix))
            .unwrap();
        line[prefix.len()..].parse().unwrap()
    }

    fn options(task: &Task) -> Vec<u32> {
        task.question
            .lines()
            .skip(1)
            .map(|line| line[3..].parse().unwrap())
            .collect()
    }

    #[test]
    fn reference_letter_names_correct_option() {
        let mut rng = StdRng::seed_from_u64(0);
        for _ in 0..300 {
            let task = largest(&mut rng);
            assert_eq!(
                chosen(&task),
                *options(&task).iter().max().unwrap(),
                "{}",
                task.question
            );

            let task = smallest(&mut rng);
            assert_eq!(
                chosen(&task),
                *options(&task).iter().min().unwrap(),
                "{}",
                task.question
            );

            for template in [sum, product, unit_conversion] {
                let task = template(&mut rng);
                let mut distinct = options(&task);
                assert_eq!(distinct.len(), OPTION_COUNT, "{}", task.question);
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), OPTION_COUNT, "{}", task.question);
                assert!(
                    distinct.iter().all(|&option| option > 0),
                    "{}",
                    task.question
                );
            }
        }
    }

    #[test]
    fn unit_answer_matches_table() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..300 {
            let task = unit_conversion(&mut rng);
            let fact = UNIT_FACTS
                .iter()
                .find(|fact| {
                    task.question
                        .starts_with(&format!("How many {} are in {}?", fact.unit, fact.name))
                })
                .unwrap();
            assert_eq!(chosen(&task), fact.amount, "{}", task.question);
        }
    }

    #[test]
    fn sum_and_product_answers_correct() {
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..300 {
            let task = sum(&mut rng);
            let n = question_numbers(task.question.lines().next().unwrap());
            assert_eq!(chosen(&task), n[0] + n[1], "{}", task.question);

            let task = product(&mut rng);
            let n = question_numbers(task.question.lines().next().unwrap());
            assert_eq!(chosen(&task), n[0] * n[1], "{}", task.question);
        }
    }
}
