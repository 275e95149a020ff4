//! Sizes of call arguments and results, as the input and output limits
//! count them: bytes of string and list contents, plus 8 bytes for each
//! string or list (the canonical ABI's pointer and length). Records add
//! nothing of their own.

use crate::{ArmInfo, Instance, PluginInfo, ScoredInstance};

const HEADER: usize = 8;

pub(crate) fn string(text: &str) -> usize {
    HEADER + text.len()
}

fn option_string(text: &Option<String>) -> usize {
    // An option adds a discriminant; 4 bytes with alignment.
    4 + text.as_deref().map_or(0, string)
}

fn instance(instance: &Instance) -> usize {
    string(&instance.id)
        + string(&instance.prompt)
        + option_string(&instance.reference)
        + option_string(&instance.category)
}

/// Size of a `score` batch.
pub(crate) fn scored_batch(batch: &[ScoredInstance]) -> usize {
    HEADER
        + batch
            .iter()
            .map(|item| {
                let candidates: usize = item.candidates.iter().map(|c| string(c)).sum();
                instance(&item.instance) + HEADER + candidates
            })
            .sum::<usize>()
}

fn strings(texts: &[String]) -> usize {
    HEADER + texts.iter().map(|t| string(t)).sum::<usize>()
}

/// Size of an `info` result.
pub(crate) fn info(info: &PluginInfo) -> usize {
    string(&info.name)
        + string(&info.version)
        + string(&info.description)
        + strings(&info.models)
        + strings(&info.tags)
}

/// Size of a list of lists of numbers of `width` bytes each.
pub(crate) fn matrix<T>(rows: &[Vec<T>]) -> usize {
    let width = std::mem::size_of::<T>();
    HEADER
        + rows
            .iter()
            .map(|row| HEADER + width * row.len())
            .sum::<usize>()
}

/// Size of a `choose` call's arguments.
pub(crate) fn choose(contexts: &[Vec<f32>], arms: &[ArmInfo]) -> usize {
    let arms_size: usize = arms
        .iter()
        .map(|arm| {
            let tags: usize = arm.tags.iter().map(|t| string(t)).sum();
            string(&arm.name) + string(&arm.version) + HEADER + tags + 1
        })
        .sum();
    matrix(contexts) + HEADER + arms_size
}
