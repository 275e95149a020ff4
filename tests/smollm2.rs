//! Parity of the GPU engine with reference outputs for the real model,
//! SmolLM2-135M-Instruct Q4_1: an exact f32 forward pass (NumPy) and
//! llama.cpp's greedy decoding, stored in `shared/reference/smollm2/`
//! beside the checkout.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use laser_gpu::Gpu;
use laser_host::engine::Engine;
use laser_host::engine::reference::ReferenceModel;
use laser_host::fetch;
use laser_model::checkpoint::Checkpoint;
use serde::Deserialize;

fn model_path() -> PathBuf {
    let path =
        std::env::var_os("LASER_HOST_MODEL").map_or_else(fetch::default_model_path, PathBuf::from);
    assert!(
        path.exists(),
        "model {} not found: run `laser-host models fetch` first",
        path.display()
    );
    path
}

fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/smollm2")
}

/// One engine shared by every test in this file; loading takes seconds.
fn engine() -> &'static Mutex<Engine> {
    static ENGINE: OnceLock<Mutex<Engine>> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let engine = Engine::load(Gpu::new().unwrap(), &model_path()).unwrap();
        Mutex::new(engine)
    })
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(name: &str) -> Vec<T> {
    let path = reference_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("failed to read {}: {err}", path.display()));
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[derive(Deserialize)]
struct TopFive {
    top5: Vec<u32>,
    logits: Vec<f32>,
}

#[derive(Deserialize)]
struct TeacherForced {
    tokens: Vec<u32>,
    prompt_len: usize,
    positions: Vec<TopFive>,
}

#[derive(Deserialize)]
struct Greedy {
    prompt_tokens: Vec<u32>,
    greedy_tokens: Vec<u32>,
}

fn argmax(row: &[f32]) -> u32 {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
        .unwrap() as u32
}

#[test]
fn teacher_forced_logits_match_f32_reference() {
    let records: Vec<TeacherForced> = read_jsonl("smollm2_f32_teacher_forced.jsonl");
    let mut engine = engine().lock().unwrap();
    let (mut agree, mut total, mut worst) = (0usize, 0usize, 0f32);
    for record in &records {
        let logits = engine.logits(&record.tokens).unwrap();
        for (j, expected) in record.positions.iter().enumerate() {
            let row = &logits[record.prompt_len - 1 + j];
            for (&id, &logit) in expected.top5.iter().zip(&expected.logits) {
                worst = worst.max((row[id as usize] - logit).abs());
            }
            agree += usize::from(argmax(row) == expected.top5[0]);
            total += 1;
        }
    }
    let agreement = agree as f64 / total as f64;
    println!(
        "top-5 logits max error {worst}, top-1 agreement {agreement:.4} over {total} positions"
    );
    assert!(worst <= 2e-2, "max logit error {worst} exceeds 2e-2");
    assert!(agreement >= 0.99, "top-1 agreement {agreement} below 0.99");
}

#[test]
fn greedy_top1_agrees_with_llama_cpp() {
    let records: Vec<Greedy> = read_jsonl("smollm2_q4_1_greedy.jsonl");
    let mut engine = engine().lock().unwrap();
    let (mut agree, mut total) = (0usize, 0usize);
    for record in &records {
        let sequence = [record.prompt_tokens.as_slice(), &record.greedy_tokens].concat();
        let logits = engine.logits(&sequence).unwrap();
        for (j, &token) in record.greedy_tokens.iter().enumerate() {
            agree += usize::from(argmax(&logits[record.prompt_tokens.len() - 1 + j]) == token);
            total += 1;
        }
    }
    let agreement = agree as f64 / total as f64;
    println!("top-1 agreement with llama.cpp {agreement:.4} over {total} positions");
    assert!(agreement >= 0.93, "top-1 agreement {agreement} below 0.93");
}

#[test]
fn new_prompts_match_cpu_reference() {
    let checkpoint = Checkpoint::open(model_path()).unwrap();
    let reference = ReferenceModel::from_checkpoint(&checkpoint).unwrap();
    let mut engine = engine().lock().unwrap();
    let prompts = [
        engine.chat_prompt("Name three primary colors.").unwrap(),
        engine
            .tokenizer
            .encode(
                "Natalia sold 48 clips in April and half as many in May.",
                false,
            )
            .unwrap(),
    ];
    for tokens in &prompts {
        let gpu = engine.logits(tokens).unwrap();
        let cpu = reference.logits(tokens);
        let mut worst = 0f32;
        for (g, c) in gpu.iter().zip(&cpu) {
            for (a, b) in g.iter().zip(c) {
                worst = worst.max((a - b).abs());
            }
            assert_eq!(argmax(g), argmax(c));
        }
        assert!(worst <= 2e-2, "max logit error {worst} exceeds 2e-2");
    }
}
