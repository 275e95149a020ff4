//! Seeded train/eval splits with no item on both sides.
//!
//! The items are shuffled with a generator seeded by `seed`, and the first
//! ones go to the eval side until it has the requested count. The same
//! items and seed always give the same split.
//!
//! NOTE: the shuffle uses `rand`'s `StdRng`, whose algorithm is fixed within
//! a `rand` release series (0.9 here) but may change in a later series, so
//! splits are reproducible only for the version pinned in `Cargo.lock`.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::Instance;

/// The size of the eval side of a split.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EvalSize {
    /// Exactly this many items.
    Count(usize),
    /// This fraction of the items, in `0.0..=1.0`, rounded to the nearest
    /// count.
    Fraction(f64),
}

/// A train/eval split. Both sides keep the shuffled order.
#[derive(Clone, Debug, PartialEq)]
pub struct Split<T> {
    /// The items to train on.
    pub train: Vec<T>,
    /// The held-out items to evaluate on.
    pub eval: Vec<T>,
}

/// The error of a split request that cannot be met.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// The eval count is larger than the number of items.
    #[error("eval count {count} is larger than the {available} items available")]
    CountTooLarge {
        /// The requested eval count.
        count: usize,
        /// The number of items.
        available: usize,
    },
    /// The eval fraction is not a number in `0.0..=1.0`.
    #[error("eval fraction {0} is invalid, expected a number from 0 to 1")]
    InvalidFraction(f64),
}

impl EvalSize {
    /// Returns the eval count for `available` items.
    ///
    /// # Errors
    ///
    /// Returns [`SplitError`] for a count above `available` or a fraction
    /// outside `0.0..=1.0`.
    pub fn count(self, available: usize) -> Result<usize, SplitError> {
        match self {
            Self::Count(count) if count > available => {
                Err(SplitError::CountTooLarge { count, available })
            }
            Self::Count(count) => Ok(count),
            Self::Fraction(fraction) if !(0.0..=1.0).contains(&fraction) => {
                Err(SplitError::InvalidFraction(fraction))
            }
            // The product is at most `available`, so the cast cannot overflow.
            Self::Fraction(fraction) => Ok((available as f64 * fraction).round() as usize),
        }
    }
}

/// Splits `items` into train and eval sides by position: each item lands on
/// exactly one side.
///
/// # Errors
///
/// Returns [`SplitError`] when `eval` cannot be met (see [`EvalSize::count`]).
pub fn split<T>(items: Vec<T>, eval: EvalSize, seed: u64) -> Result<Split<T>, SplitError> {
    let groups = items.into_iter().map(|item| vec![item]).collect();
    split_groups(groups, eval, seed)
}

/// Splits instances so that no prompt text appears on both sides: instances
/// with the same prompt (StrategyQA's training file repeats one question)
/// move together.
///
/// The eval side receives whole groups in shuffled order, skipping any group
/// that would take it past the requested count, so it has exactly that
/// count unless the groups left cannot make it up.
///
/// # Errors
///
/// Returns [`SplitError`] when `eval` cannot be met (see [`EvalSize::count`]).
pub fn split_instances(
    instances: Vec<Instance>,
    eval: EvalSize,
    seed: u64,
) -> Result<Split<Instance>, SplitError> {
    let mut group_of_prompt: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<Vec<Instance>> = Vec::new();
    for instance in instances {
        let next_group = groups.len();
        let group = *group_of_prompt
            .entry(instance.prompt.clone())
            .or_insert(next_group);
        if group == next_group {
            groups.push(Vec::new());
        }
        groups[group].push(instance);
    }
    split_groups(groups, eval, seed)
}

/// Shuffles the groups and fills the eval side with whole groups.
fn split_groups<T>(
    mut groups: Vec<Vec<T>>,
    eval: EvalSize,
    seed: u64,
) -> Result<Split<T>, SplitError> {
    let available = groups.iter().map(Vec::len).sum();
    let eval_count = eval.count(available)?;

    groups.shuffle(&mut StdRng::seed_from_u64(seed));

    let mut split = Split {
        train: Vec::with_capacity(available - eval_count),
        eval: Vec::with_capacity(eval_count),
    };
    for group in groups {
        if split.eval.len() + group.len() <= eval_count {
            split.eval.extend(group);
        } else {
            split.train.extend(group);
        }
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn sides_disjoint_and_complete() {
        let split = split((0..1000).collect(), EvalSize::Count(137), 7).unwrap();
        assert_eq!(split.eval.len(), 137);
        assert_eq!(split.train.len(), 863);
        let train: HashSet<i32> = split.train.iter().copied().collect();
        let eval: HashSet<i32> = split.eval.iter().copied().collect();
        assert!(train.is_disjoint(&eval));
        let all: HashSet<i32> = train.union(&eval).copied().collect();
        assert_eq!(all, (0..1000).collect());
    }

    #[test]
    fn same_seed_same_split() {
        let first = split((0..500).collect::<Vec<_>>(), EvalSize::Fraction(0.2), 42).unwrap();
        let second = split((0..500).collect::<Vec<_>>(), EvalSize::Fraction(0.2), 42).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn different_seed_different_split() {
        let first = split((0..500).collect::<Vec<_>>(), EvalSize::Fraction(0.2), 1).unwrap();
        let second = split((0..500).collect::<Vec<_>>(), EvalSize::Fraction(0.2), 2).unwrap();
        assert_ne!(first.eval, second.eval);
    }

    #[test]
    fn eval_is_shuffled() {
        let split = split((0..500).collect::<Vec<_>>(), EvalSize::Count(50), 3).unwrap();
        assert_ne!(split.eval, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn fraction_rounds_to_nearest() {
        assert_eq!(EvalSize::Fraction(0.25).count(10), Ok(3));
        assert_eq!(EvalSize::Fraction(0.0).count(10), Ok(0));
        assert_eq!(EvalSize::Fraction(1.0).count(10), Ok(10));
    }

    #[test]
    fn invalid_sizes_rejected() {
        assert_eq!(
            EvalSize::Count(11).count(10),
            Err(SplitError::CountTooLarge {
                count: 11,
                available: 10
            })
        );
        assert!(EvalSize::Fraction(1.5).count(10).is_err());
        assert!(EvalSize::Fraction(-0.1).count(10).is_err());
        assert!(EvalSize::Fraction(f64::NAN).count(10).is_err());
        let message = EvalSize::Fraction(2.0).count(1).unwrap_err().to_string();
        assert_eq!(
            message,
            "eval fraction 2 is invalid, expected a number from 0 to 1"
        );
    }

    #[test]
    fn repeated_prompts_stay_together() {
        let mut instances = crate::builtin(5, 300);
        let copies: Vec<Instance> = instances[..40]
            .iter()
            .map(|instance| Instance {
                id: format!("{}-copy", instance.id),
                ..instance.clone()
            })
            .collect();
        instances.extend(copies);

        let split = split_instances(instances, EvalSize::Count(100), 9).unwrap();
        assert_eq!(split.eval.len(), 100);
        assert_eq!(split.train.len(), 240);
        let train: HashSet<&str> = split.train.iter().map(|i| i.prompt.as_str()).collect();
        let eval: HashSet<&str> = split.eval.iter().map(|i| i.prompt.as_str()).collect();
        assert!(train.is_disjoint(&eval));
    }

    proptest! {
        #[test]
        fn any_split_partitions_items(len in 0usize..300, fraction in 0.0f64..=1.0, seed in any::<u64>()) {
            let split = split((0..len).collect::<Vec<_>>(), EvalSize::Fraction(fraction), seed).unwrap();
            prop_assert_eq!(split.eval.len(), (len as f64 * fraction).round() as usize);
            let mut all: Vec<usize> = split.train.iter().chain(&split.eval).copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, (0..len).collect::<Vec<_>>());
        }
    }
}
