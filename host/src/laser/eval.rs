//! Held-out accuracy: the policy answers each prompt greedily, and the
//! answer is extracted and checked against the reference (numbers as in
//! GSM8K, yes/no, multiple-choice letters).

use std::collections::BTreeMap;

use anyhow::Result;
use laser_data::Instance;
use serde::Serialize;

use crate::engine::{Engine, SamplingConfig};

/// Accuracy overall and per category.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Accuracy {
    pub correct: usize,
    pub total: usize,
    /// category → (correct, total)
    pub per_category: BTreeMap<String, (usize, usize)>,
}

impl Accuracy {
    /// The fraction correct, 0 when nothing was checked.
    pub fn rate(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }
}

/// Answers every instance greedily, `batch_size` prompts at a time, and
/// checks the answers. `on_batch` is called with the number done so far.
///
/// # Errors
///
/// Fails when the engine fails.
pub fn evaluate(
    engine: &mut Engine,
    instances: &[Instance],
    batch_size: usize,
    max_new_tokens: u32,
    mut on_batch: impl FnMut(usize),
) -> Result<Accuracy> {
    let sampling = SamplingConfig {
        max_new_tokens,
        ..SamplingConfig::default()
    };
    let mut accuracy = Accuracy::default();
    let mut done = 0;
    for chunk in instances.chunks(batch_size.max(1)) {
        let prompts: Vec<Vec<u32>> = chunk
            .iter()
            .map(|i| engine.chat_prompt(&laser_data::prompt::render(i)))
            .collect::<Result<_>>()?;
        let generations = engine.generate(&prompts, &sampling)?;
        for (instance, generation) in chunk.iter().zip(&generations) {
            let ok = laser_data::is_correct(instance, &generation.text);
            accuracy.correct += usize::from(ok);
            accuracy.total += 1;
            let category = instance.category.clone().unwrap_or_else(|| "none".into());
            let entry = accuracy.per_category.entry(category).or_default();
            entry.0 += usize::from(ok);
            entry.1 += 1;
        }
        done += chunk.len();
        on_batch(done);
    }
    Ok(accuracy)
}
