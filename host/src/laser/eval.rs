//! Held-out accuracy: the policy answers each prompt greedily, and the
//! answer is extracted and checked against the reference (numbers as in
//! GSM8K, yes/no, multiple-choice letters).

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::Result;
use laser_data::Instance;
use laser_plugins::{RewardModelPlugin, ScoredInstance};
use serde::Serialize;

use crate::engine::{Engine, MAX_ROWS, SamplingConfig};

/// Accuracy overall and per category, over the instances with a reference
/// answer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Accuracy {
    pub correct: usize,
    /// The responses checked against a reference.
    pub total: usize,
    /// The responses left out because their instance has no reference.
    pub no_reference: usize,
    /// category → (correct, total)
    pub per_category: BTreeMap<String, (usize, usize)>,
    /// Every graded response, in instance order, for `eval --responses`.
    #[serde(skip)]
    pub responses: Vec<GradedResponse>,
}

/// One held-out instance with the response that was graded, a line of the
/// file `eval --responses` writes.
#[derive(Clone, Debug, Serialize)]
pub struct GradedResponse {
    pub id: String,
    pub category: Option<String>,
    pub prompt: String,
    pub reference: Option<String>,
    pub response: String,
    /// Whether the response's answer matches the reference; `None` without
    /// a reference.
    pub correct: Option<bool>,
}

impl Accuracy {
    /// The fraction correct, 0 when nothing was checked. Callers check
    /// `total` first, so that 0 is never shown as a measured accuracy.
    pub fn rate(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }

    /// Grades `response` to `instance` with [`laser_data::grade`] and
    /// counts it. An instance without a reference is left out of the
    /// counts, though its response is kept.
    fn record(&mut self, instance: &Instance, response: &str) {
        let grade = laser_data::grade(instance, response);
        self.responses.push(GradedResponse {
            id: instance.id.clone(),
            category: instance.category.clone(),
            prompt: instance.prompt.clone(),
            reference: instance.reference.clone(),
            response: response.to_string(),
            correct: grade,
        });
        let Some(ok) = grade else {
            self.no_reference += 1;
            return;
        };
        self.correct += usize::from(ok);
        self.total += 1;
        let category = instance.category.clone().unwrap_or_else(|| "none".into());
        let entry = self.per_category.entry(category).or_default();
        entry.0 += usize::from(ok);
        entry.1 += 1;
    }
}

/// The sampling and the picking reward model of [`evaluate_best_of_n`].
pub struct BestOfN<'a> {
    /// The reward model that picks among the samples.
    pub rm: &'a mut RewardModelPlugin,
    /// Samples per prompt.
    pub n: u32,
    pub temperature: f32,
    pub seed: u64,
}

/// Samples `best_of.n` responses per instance, lets the reward model pick
/// the highest-scored one (the first on ties), and checks that one. The
/// engine is locked only while it generates, because the reward model may
/// call back into it.
///
/// # Errors
///
/// Fails when the engine fails, or the reward model fails or returns
/// scores of the wrong shape.
pub fn evaluate_best_of_n(
    engine: &Mutex<Engine>,
    instances: &[Instance],
    batch_size: usize,
    max_new_tokens: u32,
    best_of: &mut BestOfN<'_>,
    mut on_batch: impl FnMut(usize),
) -> Result<Accuracy> {
    let n = best_of.n as usize;
    // One generate call takes at most MAX_ROWS sequences: n per prompt.
    let batch_size = batch_size.clamp(1, (MAX_ROWS as usize / n.max(1)).max(1));
    let mut accuracy = Accuracy::default();
    let mut done = 0;
    for (index, chunk) in instances.chunks(batch_size).enumerate() {
        let generations = {
            let mut engine = super::lock_engine(engine)?;
            let prompts: Vec<Vec<u32>> = chunk
                .iter()
                .map(|i| engine.chat_prompt(&laser_data::prompt::render(i)))
                .collect::<Result<_>>()?;
            let repeated: Vec<Vec<u32>> = prompts
                .iter()
                .flat_map(|p| std::iter::repeat_n(p.clone(), n))
                .collect();
            let sampling = SamplingConfig {
                temperature: best_of.temperature,
                seed: best_of.seed ^ ((index as u64) << 20),
                max_new_tokens,
                ..SamplingConfig::default()
            };
            engine.generate(&repeated, &sampling)?
        };
        let scored: Vec<ScoredInstance> = chunk
            .iter()
            .zip(generations.chunks(n))
            .map(|(instance, samples)| ScoredInstance {
                instance: laser_plugins::Instance {
                    id: instance.id.clone(),
                    prompt: instance.prompt.clone(),
                    reference: instance.reference.clone(),
                    category: instance.category.clone(),
                },
                candidates: samples.iter().map(|g| g.text.clone()).collect(),
            })
            .collect();
        let scores = best_of
            .rm
            .score(&scored)
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        for ((instance, samples), row) in chunk.iter().zip(generations.chunks(n)).zip(&scores) {
            let best = row
                .iter()
                .enumerate()
                .fold(0, |best, (i, s)| if *s > row[best] { i } else { best });
            accuracy.record(instance, &samples[best].text);
        }
        done += chunk.len();
        on_batch(done);
    }
    Ok(accuracy)
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
            accuracy.record(instance, &generation.text);
        }
        done += chunk.len();
        on_batch(done);
    }
    Ok(accuracy)
}

/// Returns the held-out instances that have a reference answer, warning how
/// many were left out because they have none and so cannot be checked.
pub(crate) fn keep_referenced(instances: Vec<Instance>) -> Vec<Instance> {
    let held_out = instances.len();
    let referenced: Vec<Instance> = instances
        .into_iter()
        .filter(|instance| instance.reference.is_some())
        .collect();
    let left_out = held_out - referenced.len();
    if referenced.is_empty() && held_out > 0 {
        eprintln!(
            "warning: held-out accuracy cannot be measured: none of the {held_out} held-out \
             instances has a reference answer"
        );
    } else if left_out > 0 {
        eprintln!(
            "warning: {left_out} of the {held_out} held-out instances have no reference answer, \
             so the accuracy leaves them out"
        );
    }
    referenced
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(reference: Option<&str>) -> Instance {
        Instance {
            id: "t".to_owned(),
            prompt: "How many?".to_owned(),
            reference: reference.map(str::to_owned),
            category: Some("c".to_owned()),
            answer_kind: laser_data::AnswerKind::Number,
        }
    }

    #[test]
    fn accuracy_leaves_out_unreferenced() {
        let mut accuracy = Accuracy::default();
        accuracy.record(&instance(Some("3")), "The answer is 3.");
        accuracy.record(&instance(Some("4")), "The answer is 3.");
        accuracy.record(&instance(None), "The answer is 3.");
        assert_eq!(accuracy.correct, 1);
        assert_eq!(accuracy.total, 2);
        assert_eq!(accuracy.no_reference, 1);
        assert_eq!(accuracy.per_category["c"], (1, 2));
        assert!((accuracy.rate() - 0.5).abs() < 1e-12);
        let graded: Vec<Option<bool>> = accuracy.responses.iter().map(|r| r.correct).collect();
        assert_eq!(graded, [Some(true), Some(false), None]);
    }

    #[test]
    fn keep_referenced_drops_unreferenced() {
        let kept = keep_referenced(vec![instance(None), instance(Some("3")), instance(None)]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].reference.as_deref(), Some("3"));
        assert!(keep_referenced(vec![instance(None)]).is_empty());
    }
}
