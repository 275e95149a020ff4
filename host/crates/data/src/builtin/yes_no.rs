//! Yes/no question templates about numbers and units, each drawing yes and
//! no with equal probability.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::units::UNIT_FACTS;
use super::{Task, Template};

pub(super) const TEMPLATES: &[Template] = &[
    prime,
    parity,
    divisibility,
    comparison,
    sum,
    unit_comparison,
];

fn task(question: String, yes: bool) -> Task {
    Task {
        question,
        reference: if yes { "yes" } else { "no" }.to_owned(),
    }
}

/// Returns whether `n` is prime, by trial division.
pub(super) fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn prime(rng: &mut StdRng) -> Task {
    let yes = rng.random_bool(0.5);
    // About a fifth of 2..=200 is prime, so a few dozen draws suffice.
    let n = loop {
        let n = rng.random_range(2..=200);
        if is_prime(n) == yes {
            break n;
        }
    };
    task(format!("Is {n} a prime number?"), yes)
}

fn parity(rng: &mut StdRng) -> Task {
    let n: u32 = rng.random_range(1..=999);
    let parity = *["even", "odd"].choose(rng).unwrap_or(&"even");
    let yes = n.is_multiple_of(2) == (parity == "even");
    task(format!("Is {n} an {parity} number?"), yes)
}

fn divisibility(rng: &mut StdRng) -> Task {
    let divisor: u32 = rng.random_range(3..=9);
    let yes = rng.random_bool(0.5);
    let remainder = if yes { 0 } else { rng.random_range(1..divisor) };
    let n = divisor * rng.random_range(3..=60) + remainder;
    task(format!("Is {n} divisible by {divisor}?"), yes)
}

fn comparison(rng: &mut StdRng) -> Task {
    let a: u32 = rng.random_range(1..=999);
    let b = loop {
        let b = rng.random_range(1..=999);
        if b != a {
            break b;
        }
    };
    if rng.random_bool(0.5) {
        task(format!("Is {a} greater than {b}?"), a > b)
    } else {
        task(format!("Is {a} less than {b}?"), a < b)
    }
}

fn sum(rng: &mut StdRng) -> Task {
    let (a, b): (u32, u32) = (rng.random_range(2..=99), rng.random_range(2..=99));
    let yes = rng.random_bool(0.5);
    let stated = if yes {
        a + b
    } else if rng.random_bool(0.5) {
        a + b + rng.random_range(1..=10)
    } else {
        a + b - rng.random_range(1..=3)
    };
    task(format!("Is {a} + {b} equal to {stated}?"), yes)
}

fn unit_comparison(rng: &mut StdRng) -> Task {
    let fact = UNIT_FACTS.choose(rng).unwrap_or(&UNIT_FACTS[0]);
    let amount = fact.amount;
    let yes = rng.random_bool(0.5);
    // "Is a week longer than 5 days?" is true when the count is below the amount.
    let n = if yes {
        rng.random_range((amount / 2).max(2)..amount)
    } else {
        rng.random_range(amount + 1..=amount + (amount / 2).max(1))
    };
    let (name, comparative, unit) = (fact.name, fact.comparative, fact.unit);
    task(format!("Is {name} {comparative} {n} {unit}?"), yes)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::builtin::question_numbers;

    #[test]
    fn primes_below_30() {
        let primes: Vec<u32> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(primes, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
    }

    /// Recomputes each template's answer from its question.
    #[test]
    fn answers_match_questions() {
        let mut rng = StdRng::seed_from_u64(0);
        for _ in 0..300 {
            let task = prime(&mut rng);
            assert_eq!(
                task.reference == "yes",
                is_prime(question_numbers(&task.question)[0]),
                "{}",
                task.question
            );

            let task = parity(&mut rng);
            let even = question_numbers(&task.question)[0].is_multiple_of(2);
            assert_eq!(
                task.reference == "yes",
                even == task.question.contains("even"),
                "{}",
                task.question
            );

            let task = divisibility(&mut rng);
            let n = question_numbers(&task.question);
            assert_eq!(
                task.reference == "yes",
                n[0].is_multiple_of(n[1]),
                "{}",
                task.question
            );

            let task = comparison(&mut rng);
            let n = question_numbers(&task.question);
            let expected = if task.question.contains("greater") {
                n[0] > n[1]
            } else {
                n[0] < n[1]
            };
            assert_eq!(task.reference == "yes", expected, "{}", task.question);

            let task = sum(&mut rng);
            let n = question_numbers(&task.question);
            assert_eq!(
                task.reference == "yes",
                n[0] + n[1] == n[2],
                "{}",
                task.question
            );
        }
    }

    #[test]
    fn unit_answers_match_table() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..500 {
            let task = unit_comparison(&mut rng);
            let fact = UNIT_FACTS
                .iter()
                .find(|fact| task.question.starts_with(&format!("Is {} ", fact.name)))
                .unwrap();
            let n = question_numbers(&task.question)[0];
            assert_ne!(n, fact.amount, "{}", task.question);
            assert!(n >= 2, "{}", task.question);
            assert_eq!(
                task.reference == "yes",
                n < fact.amount,
                "{}",
                task.question
            );
        }
    }
}
