//! Arithmetic word problem templates with whole-number answers.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::{Task, Template};

const NAMES: &[&str] = &[
    "Maya", "Liam", "Sofia", "Noah", "Aisha", "Kenji", "Elena", "Omar", "Priya", "Lucas", "Zara",
    "Mateo", "Hana", "Ivan", "Leila", "Tom",
];

/// Countable things, in the plural.
const ITEMS: &[&str] = &[
    "apples", "pencils", "stickers", "marbles", "cookies", "books", "stamps", "shells", "cards",
    "balloons",
];

/// Containers as (plural, singular).
const CONTAINERS: &[(&str, &str)] = &[
    ("boxes", "box"),
    ("bags", "bag"),
    ("packs", "pack"),
    ("jars", "jar"),
];

/// Things with a price, in the singular.
const GOODS: &[&str] = &[
    "notebook", "sandwich", "ticket", "toy car", "puzzle", "scarf",
];

pub(super) const TEMPLATES: &[Template] = &[
    addition,
    subtraction,
    multiplication,
    division,
    add_then_subtract,
    multiply_then_add,
    price,
];

fn pick<'a>(rng: &mut StdRng, options: &[&'a str]) -> &'a str {
    options.choose(rng).copied().unwrap_or_default()
}

fn task(question: String, answer: u32) -> Task {
    Task {
        question,
        reference: answer.to_string(),
    }
}

fn addition(rng: &mut StdRng) -> Task {
    let (name, item) = (pick(rng, NAMES), pick(rng, ITEMS));
    let (a, b) = (rng.random_range(2..=60), rng.random_range(2..=60));
    let question =
        format!("{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?");
    task(question, a + b)
}

fn subtraction(rng: &mut StdRng) -> Task {
    let (name, item) = (pick(rng, NAMES), pick(rng, ITEMS));
    let a = rng.random_range(10..=90);
    let b = rng.random_range(1..a);
    let question = format!(
        "{name} had {a} {item} and gave {b} of them to a friend. How many {item} does {name} have left?"
    );
    task(question, a - b)
}

fn multiplication(rng: &mut StdRng) -> Task {
    let (name, item) = (pick(rng, NAMES), pick(rng, ITEMS));
    let (containers, container) = *CONTAINERS.choose(rng).unwrap_or(&CONTAINERS[0]);
    let (a, b) = (rng.random_range(2..=12), rng.random_range(2..=12));
    let question = format!(
        "{name} buys {a} {containers} of {item}. Each {container} holds {b} {item}. \
         How many {item} does {name} buy in all?"
    );
    task(question, a * b)
}

fn division(rng: &mut StdRng) -> Task {
    let (name, item) = (pick(rng, NAMES), pick(rng, ITEMS));
    let (each, friends) = (rng.random_range(2..=12), rng.random_range(2..=9));
    let total = each * friends;
    let question = format!(
        "{name} shares {total} {item} equally among {friends} friends. How many {item} does each friend get?"
    );
    task(question, each)
}

fn add_then_subtract(rng: &mut StdRng) -> Task {
    let (name, item) = (pick(rng, NAMES), pick(rng, ITEMS));
    let (a, b) = (rng.random_range(5..=50), rng.random_range(2..=30));
    let c = rng.random_range(1..a + b);
    let question = format!(
        "{name} has {a} {item}, buys {b} more, and then gives {c} to a friend. \
         How many {item} does {name} have now?"
    );
    task(question, a + b - c)
}

fn multiply_then_add(rng: &mut StdRng) -> Task {
    let (name, item) = (pick(rng, NAMES), pick(rng, ITEMS));
    let (containers, _) = *CONTAINERS.choose(rng).unwrap_or(&CONTAINERS[0]);
    let (a, b, c) = (
        rng.random_range(2..=9),
        rng.random_range(2..=12),
        rng.random_range(1..=20),
    );
    let question = format!(
        "{name} buys {a} {containers} with {b} {item} in each and already had {c} {item}. \
         How many {item} does {name} have in total?"
    );
    task(question, a * b + c)
}

fn price(rng: &mut StdRng) -> Task {
    let (name, good) = (pick(rng, NAMES), pick(rng, GOODS));
    let (unit_price, quantity, fee) = (
        rng.random_range(2..=25),
        rng.random_range(2..=8),
        rng.random_range(1..=9),
    );
    let question = format!(
        "A {good} costs ${unit_price}. {name} buys {quantity} of them and pays ${fee} for delivery. \
         How many dollars does {name} spend in total?"
    );
    task(question, unit_price * quantity + fee)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::builtin::question_numbers;

    /// Computes a template's answer from the numbers in its question, in the
    /// order they appear.
    type Recompute = fn(&[i64]) -> i64;

    #[test]
    fn answers_match_question_numbers() {
        let cases: &[(Template, Recompute)] = &[
            (addition, |n| n[0] + n[1]),
            (subtraction, |n| n[0] - n[1]),
            (multiplication, |n| n[0] * n[1]),
            (division, |n| n[0] / n[1]),
            (add_then_subtract, |n| n[0] + n[1] - n[2]),
            (multiply_then_add, |n| n[0] * n[1] + n[2]),
            (price, |n| n[0] * n[1] + n[2]),
        ];
        let mut rng = StdRng::seed_from_u64(0);
        for (template, answer) in cases {
            for _ in 0..200 {
                let task = template(&mut rng);
                let numbers: Vec<i64> = question_numbers(&task.question)
                    .into_iter()
                    .map(i64::from)
                    .collect();
                let expected = answer(&numbers);
                assert!(expected >= 0, "{}", task.question);
                assert_eq!(task.reference, expected.to_string(), "{}", task.question);
            }
        }
    }

    #[test]
    fn division_is_exact() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let task = division(&mut rng);
            let numbers = question_numbers(&task.question);
            assert_eq!(numbers[0] % numbers[1], 0, "{}", task.question);
        }
    }
}
