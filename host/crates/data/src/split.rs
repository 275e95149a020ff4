//! Seeded train/eval splits with no item on both sides.
//!
//! The items are shuffled with a generator seeded by `seed`, and the first
//! ones go to the eval side until it has the requested count. The same
//! items and seed always give the same split.
//!
//! NOTE: the shuffle uses `rand`'s `StdRng`, whose algorithm is fixed within
//! a `rand` release series (0.9 here) but may change in a later series, so
//! splits are reproducible only for the version pinned in `Cargo.lock`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

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
    /// No choice of whole groups of identical prompts adds up to the eval
    /// count, so the count cannot be met without putting one prompt on both
    /// sides.
    #[error("{}", unreachable_message(self))]
    CountUnreachable {
        /// The requested eval count.
        count: usize,
        /// The number of items.
        available: usize,
        /// The number of items whose prompt appears more than once.
        repeated: usize,
        /// The ids of the items in the largest group of identical prompts,
        /// at most three, or empty when the items have no ids.
        example_ids: Vec<String>,
        /// The reachable eval counts nearest to `count`, below and above it,
        /// that leave at least one item on each side.
        nearest: (Option<usize>, Option<usize>),
    },
}

/// Formats the message of [`SplitError::CountUnreachable`].
fn unreachable_message(error: &SplitError) -> String {
    let SplitError::CountUnreachable {
        count,
        available,
        repeated,
        example_ids,
        nearest,
    } = error
    else {
        return String::new();
    };
    let mut message = format!(
        "cannot hold out exactly {count} of {available} instances without putting identical \
         prompts on both sides: {repeated} instances share their prompt with another"
    );
    if !example_ids.is_empty() {
        let ids: Vec<String> = example_ids.iter().map(|id| format!("{id:?}")).collect();
        let _ = write!(message, " (such as ids {})", ids.join(", "));
    }
    let counts: Vec<String> = [nearest.0, nearest.1]
        .into_iter()
        .flatten()
        .map(|count| count.to_string())
        .collect();
    if counts.is_empty() {
        message.push_str(
            "; no eval count keeps them together and leaves instances on both sides, so \
             remove the repeated records",
        );
    } else {
        let _ = write!(
            message,
            "; choose an eval size of {}, or remove the repeated records",
            counts.join(" or ")
        );
    }
    message
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
/// that would take it past the requested count. When the groups left cannot
/// make up the count that way, the eval side instead takes, for each group
/// size, a number of groups that together reach the count exactly, again
/// the first ones in shuffled order.
///
/// # Errors
///
/// Returns [`SplitError`] when `eval` cannot be met (see [`EvalSize::count`]),
/// and [`SplitError::CountUnreachable`] when no choice of whole groups adds
/// up to the eval count.
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
    let example_ids: Vec<String> = groups
        .iter()
        .filter(|group| group.len() > 1)
        .max_by_key(|group| group.len())
        .map(|group| group.iter().take(3).map(|i| i.id.clone()).collect())
        .unwrap_or_default();
    split_groups(groups, eval, seed).map_err(|error| match error {
        SplitError::CountUnreachable {
            count,
            available,
            repeated,
            nearest,
            ..
        } => SplitError::CountUnreachable {
            count,
            available,
            repeated,
            example_ids,
            nearest,
        },
        other => other,
    })
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

    // Greedy first: it meets the count whenever enough small groups are
    // left, and keeps the split of such data as it always was.
    let mut eval_len = 0;
    for group in &groups {
        if eval_len + group.len() <= eval_count {
            eval_len += group.len();
        }
    }
    let mut groups_to_take = if eval_len == eval_count {
        None
    } else {
        Some(exact_group_counts(&groups, eval_count, available)?)
    };

    let mut split = Split {
        train: Vec::with_capacity(available - eval_count),
        eval: Vec::with_capacity(eval_count),
    };
    for group in groups {
        let to_eval = match &mut groups_to_take {
            None => split.eval.len() + group.len() <= eval_count,
            Some(counts) => match counts.get_mut(&group.len()) {
                Some(left) if *left > 0 => {
                    *left -= 1;
                    true
                }
                _ => false,
            },
        };
        if to_eval {
            split.eval.extend(group);
        } else {
            split.train.extend(group);
        }
    }
    Ok(split)
}

/// Returns, for each group size, how many groups of that size the eval side
/// takes so that it has exactly `eval_count` items.
///
/// This is a bounded subset-sum over the distinct group sizes, solved for
/// every total up to `available` so that the error can name the nearest
/// totals that work. It takes O(sizes × available) time.
fn exact_group_counts<T>(
    groups: &[Vec<T>],
    eval_count: usize,
    available: usize,
) -> Result<BTreeMap<usize, usize>, SplitError> {
    let mut groups_of_size: BTreeMap<usize, usize> = BTreeMap::new();
    for group in groups.iter().filter(|group| !group.is_empty()) {
        *groups_of_size.entry(group.len()).or_default() += 1;
    }

    // `last_size[total]` is the size of the last group added to first reach
    // `total`, and `Some(0)` for the empty choice. Sizes are added in
    // ascending order, and `used[total]` counts the groups of the current
    // size in the choice that reaches `total`, so that no size is used more
    // often than it occurs.
    let mut last_size: Vec<Option<usize>> = vec![None; available + 1];
    last_size[0] = Some(0);
    let mut used = vec![0usize; available + 1];
    for (&size, &occurrences) in &groups_of_size {
        used.fill(0);
        for total in size..=available {
            let rest = total - size;
            if last_size[total].is_none() && last_size[rest].is_some() && used[rest] < occurrences {
                last_size[total] = Some(size);
                used[total] = used[rest] + 1;
            }
        }
    }

    if last_size[eval_count].is_none() {
        let fits = |total: &usize| *total > 0 && *total < available && last_size[*total].is_some();
        let below = (0..eval_count).rev().find(fits);
        let above = (eval_count + 1..available).find(fits);
        return Err(SplitError::CountUnreachable {
            count: eval_count,
            available,
            repeated: groups.iter().map(Vec::len).filter(|&len| len > 1).sum(),
            example_ids: Vec::new(),
            nearest: (below, above),
        });
    }

    // Walking back along `last_size` yields a valid choice: each total was
    // reached from a smaller one that was reached first.
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    let mut total = eval_count;
    while total > 0 {
        let size = last_size[total].unwrap_or(total);
        *counts.entry(size).or_default() += 1;
        total -= size;
    }
    Ok(counts)
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

    /// Returns `prompts` distinct instances, each repeated `copies` times.
    fn repeated_instances(prompts: usize, copies: usize) -> Vec<Instance> {
        let originals = crate::builtin(2, prompts);
        (0..copies)
            .flat_map(|copy| {
                originals.iter().map(move |instance| Instance {
                    id: format!("{}-{copy}", instance.id),
                    ..instance.clone()
                })
            })
            .collect()
    }

    #[test]
    fn pairs_of_prompts_fill_even_count() {
        let split = split_instances(repeated_instances(4, 2), EvalSize::Count(2), 0).unwrap();
        assert_eq!(split.eval.len(), 2);
        assert_eq!(split.train.len(), 6);
        assert_eq!(split.eval[0].prompt, split.eval[1].prompt);
    }

    #[test]
    fn larger_groups_used_when_greedy_falls_short() {
        // One prompt three times and three prompts twice: 4 = 2 + 2 works,
        // though the greedy pass may take the group of three first.
        let mut instances = repeated_instances(1, 3);
        let tripled = instances[0].prompt.clone();
        let pairs = repeated_instances(4, 2);
        instances.extend(pairs.into_iter().filter(|i| i.prompt != tripled));
        assert_eq!(instances.len(), 9);
        for seed in 0..20 {
            let split = split_instances(instances.clone(), EvalSize::Count(4), seed).unwrap();
            assert_eq!(split.eval.len(), 4, "seed {seed}");
            let train: HashSet<&str> = split.train.iter().map(|i| i.prompt.as_str()).collect();
            let eval: HashSet<&str> = split.eval.iter().map(|i| i.prompt.as_str()).collect();
            assert!(train.is_disjoint(&eval), "seed {seed}");
        }
    }

    #[test]
    fn unreachable_count_names_duplicates() {
        let error = split_instances(repeated_instances(4, 2), EvalSize::Count(1), 0).unwrap_err();
        let SplitError::CountUnreachable {
            count,
            available,
            repeated,
            ref example_ids,
            nearest,
        } = error
        else {
            panic!("unexpected error {error:?}");
        };
        assert_eq!(count, 1);
        assert_eq!(available, 8);
        assert_eq!(repeated, 8);
        assert_eq!(example_ids.len(), 2);
        assert_eq!(nearest, (None, Some(2)));
        let message = error.to_string();
        assert!(
            message.starts_with("cannot hold out exactly 1 of 8 instances"),
            "{message}"
        );
        assert!(message.contains("choose an eval size of 2"), "{message}");
        assert!(
            message.contains(&format!("{:?}", example_ids[0])),
            "{message}"
        );
    }

    #[test]
    fn single_prompt_group_cannot_split() {
        let error = split_instances(repeated_instances(1, 5), EvalSize::Count(2), 0).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("no eval count keeps them together"),
            "{message}"
        );
    }

    proptest! {
        #[test]
        fn grouped_split_exact_or_impossible(
            sizes in proptest::collection::vec(1usize..6, 0..12),
            count_seed in any::<usize>(),
            seed in any::<u64>(),
        ) {
            let available: usize = sizes.iter().sum();
            let count = count_seed % (available + 1);
            let groups: Vec<Vec<usize>> = sizes
                .iter()
                .enumerate()
                .map(|(group, &size)| vec![group; size])
                .collect();
            // Every subset of the groups, by brute force.
            let reachable = (0u32..1 << sizes.len()).any(|mask| {
                let total: usize = (0..sizes.len())
                    .filter(|bit| mask & (1 << bit) != 0)
                    .map(|bit| sizes[bit])
                    .sum();
                total == count
            });
            match split_groups(groups, EvalSize::Count(count), seed) {
                Ok(split) => {
                    prop_assert!(reachable);
                    prop_assert_eq!(split.eval.len(), count);
                    prop_assert_eq!(split.train.len(), available - count);
                    let train: HashSet<usize> = split.train.iter().copied().collect();
                    let eval: HashSet<usize> = split.eval.iter().copied().collect();
                    prop_assert!(train.is_disjoint(&eval));
                }
                Err(SplitError::CountUnreachable { .. }) => prop_assert!(!reachable),
                Err(error) => prop_assert!(false, "unexpected error {error}"),
            }
        }

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
