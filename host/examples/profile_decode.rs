//! Splits one decode step's time into recording (CPU) and execution (GPU):
//! `cargo run --release --example profile_decode [MODEL]`.

use std::time::Instant;

use laser_gpu::Gpu;
use laser_host::engine::{Engine, SamplingConfig};

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .map_or_else(laser_host::fetch::default_model_path, Into::into);
    let mut engine = Engine::load(Gpu::new()?, &path)?;
    let prompt: Vec<u32> = (0..16).map(|i| 100 + i).collect();
    for batch in [1usize, 8] {
        let prompts = vec![prompt.clone(); batch];
        for tokens in [1u32, 9] {
            let sampling = SamplingConfig {
                max_new_tokens: tokens,
                ignore_eos: true,
                ..SamplingConfig::default()
            };
            let started = Instant::now();
            engine.generate(&prompts, &sampling)?;
            println!(
                "batch {batch}, {tokens} new tokens: {:.3} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let (record, run) = engine.profile_decode_step(8)?;
    println!("one decode step at batch 8: record {record:.4} s, execute {run:.4} s");
    Ok(())
}
