//! Prints a checkpoint's config, tensors and tokenizer facts, with the time
//! each step takes.
//!
//! Usage: `cargo run --release -p laser-model --example inspect -- PATH`,
//! where PATH is a `.gguf` file or a Hugging Face checkpoint folder.

use std::time::Instant;

use anyhow::{Context, Result};
use laser_model::{ChatMessage, Checkpoint};

fn main() -> Result<()> {
    let path = std::env::args().nth(1).context("usage: inspect PATH")?;

    let start = Instant::now();
    let checkpoint = Checkpoint::open(&path)?;
    println!("opened {path} in {:.1} ms", ms(start));
    println!("{:#?}", checkpoint.config());
    println!("weights: {}", checkpoint.weights_id()?);

    for name in checkpoint.tensor_names().into_iter().take(12) {
        let tensor = checkpoint.tensor(name)?;
        println!("  {name}: {} {:?}", tensor.dtype, tensor.shape);
    }

    let start = Instant::now();
    let tokenizer = checkpoint.tokenizer()?;
    println!("built tokenizer in {:.1} ms", ms(start));

    let text = "The quick brown fox jumps over the lazy dog. 1234 café 日本語\n".repeat(2000);
    let start = Instant::now();
    let ids = tokenizer.encode(&text, false)?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "encoded {} bytes into {} tokens in {:.1} ms ({:.1} MB/s)",
        text.len(),
        ids.len(),
        seconds * 1e3,
        text.len() as f64 / seconds / 1e6
    );

    let start = Instant::now();
    let embd = checkpoint.tensor("token_embd.weight")?.to_f32()?;
    println!(
        "dequantized token_embd.weight ({} values) in {:.1} ms",
        embd.len(),
        ms(start)
    );

    let template = checkpoint.chat_template()?;
    let prompt = template.render(&[ChatMessage::new("user", "Hi")], true)?;
    println!("chat prompt: {prompt:?}");
    Ok(())
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}
