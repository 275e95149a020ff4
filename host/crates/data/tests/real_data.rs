//! Loads the full GSM8K and StrategyQA training files kept beside the
//! checkout in `shared/data/`, which the project does not commit.

use std::path::PathBuf;

use laser_data::answer::{canonical_number, is_correct};
use laser_data::{AnswerKind, EvalSize, Format, load, split_instances};

const GSM8K_TRAIN_COUNT: usize = 7_473;
const STRATEGYQA_TRAIN_COUNT: usize = 2_061;

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/data");
    assert!(
        dir.is_dir(),
        "test data not found at {}, expected shared/data beside the checkout",
        dir.display()
    );
    dir
}

#[test]
fn gsm8k_train_loads_fully() {
    let path = data_dir().join("gsm8k/train.jsonl");
    let instances = load(&path, None).unwrap();
    assert_eq!(instances.len(), GSM8K_TRAIN_COUNT);
    for instance in &instances {
        let reference = instance.reference.as_deref().unwrap();
        assert!(
            canonical_number(reference).is_some(),
            "{}: {reference:?}",
            instance.id
        );
        assert_eq!(instance.answer_kind, AnswerKind::Number, "{}", instance.id);
        assert_eq!(
            instance.category.as_deref(),
            Some("gsm8k"),
            "{}",
            instance.id
        );
    }
    assert_eq!(instances[0].reference.as_deref(), Some("72"));
}

#[test]
fn gsm8k_solutions_check_as_correct() {
    // Each reference solution, calculator notes and all, is a correct response.
    let path = data_dir().join("gsm8k/train.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let instances = load(&path, Some(Format::Gsm8k)).unwrap();
    let solutions = text.lines().filter(|line| !line.trim().is_empty());
    for (instance, line) in instances.iter().zip(solutions) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let solution = record["answer"].as_str().unwrap();
        assert!(is_correct(instance, solution), "{}", instance.id);
    }
}

#[test]
fn strategyqa_train_loads_fully() {
    let path = data_dir().join("strategyqa/train.json");
    let instances = load(&path, None).unwrap();
    assert_eq!(instances.len(), STRATEGYQA_TRAIN_COUNT);
    let yes = instances
        .iter()
        .filter(|i| i.reference.as_deref() == Some("yes"))
        .count();
    let no = instances
        .iter()
        .filter(|i| i.reference.as_deref() == Some("no"))
        .count();
    assert_eq!(yes + no, STRATEGYQA_TRAIN_COUNT);
    assert!(instances.iter().all(|i| i.answer_kind == AnswerKind::YesNo));
    assert_eq!(instances[0].id, "2bc9c4f9c19c167187f2");
}

#[test]
fn strategyqa_split_keeps_repeats_apart() {
    let path = data_dir().join("strategyqa/train.json");
    let instances = load(&path, None).unwrap();
    let split = split_instances(instances, EvalSize::Fraction(0.1), 0).unwrap();
    assert_eq!(split.train.len() + split.eval.len(), STRATEGYQA_TRAIN_COUNT);
    assert_eq!(split.eval.len(), 206);
    let eval: std::collections::HashSet<&str> =
        split.eval.iter().map(|i| i.prompt.as_str()).collect();
    assert!(
        split
            .train
            .iter()
            .all(|i| !eval.contains(i.prompt.as_str()))
    );
}
