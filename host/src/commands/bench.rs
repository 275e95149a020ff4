//! `laser-host bench engine`: matmul GFLOP/s, prefill and decode tokens/s,
//! and GPU memory, on whatever adapter is selected.

mod train;

use std::time::Instant;

use anyhow::{Result, ensure};
use laser_model::DType;

use crate::cli::BenchEngineArgs;
use crate::engine::{Engine, SamplingConfig};

pub(crate) use train::train;

pub(crate) fn engine(args: &BenchEngineArgs, verbose: bool) -> Result<()> {
    let mut engine = super::load_engine(&args.model, verbose)?;
    // The decode measurements use the first 16 prompt tokens.
    let context = engine.config.context_length as u32;
    ensure!(
        args.prefill_tokens <= context,
        "--prefill-tokens {} is longer than the model's context of {context} tokens; \
         pass {context} or less",
        args.prefill_tokens
    );
    ensure!(
        16 + args.decode_tokens <= context,
        "--decode-tokens {} does not fit the model's context of {context} tokens after the \
         16-token prompt; pass {} or less",
        args.decode_tokens,
        context.saturating_sub(16)
    );
    // The largest decode batch's KV cache, allocated now so that a batch
    // too large for the device fails before the first measurement.
    engine.reserve_kv_cache(args.batch, 16 + args.decode_tokens)?;
    println!("adapter: {}", engine.gpu.describe());
    println!("kernels: {}", engine.gpu.describe_kernels());

    // Matmul throughput: the square reference shape, then the model's own
    // shapes at decode (M = 1) and prefill (M = 512) sizes.
    if !args.skip_matmul {
        let gflops = laser_gpu::matmul::benchmark(&engine.gpu, DType::F32, 1024, 1024, 1024, 5)?;
        println!("matmul f32 1024x1024x1024: {gflops:.1} GFLOP/s");
        print_model_shapes(&engine)?;
    }

    // Prefill: one prompt of `prefill_tokens` tokens, one new token. The
    // ids stay inside the vocabulary of small test models too.
    let prompt: Vec<u32> = (0..args.prefill_tokens)
        .map(|i| (100 + i % 1000) % engine.config.vocab_size as u32)
        .collect();
    let once = SamplingConfig {
        max_new_tokens: 1,
        ignore_eos: true,
        ..SamplingConfig::default()
    };
    engine.generate(&[prompt[..8].to_vec()], &once)?;
    let mut rates = Vec::new();
    for _ in 0..args.repeat {
        let started = Instant::now();
        engine.generate(std::slice::from_ref(&prompt), &once)?;
        rates.push(f64::from(args.prefill_tokens) / started.elapsed().as_secs_f64());
    }
    println!(
        "prefill {} tokens: {} tokens/s",
        args.prefill_tokens,
        median_and_range(&mut rates)
    );

    // Decode at batch 1 and at `batch`: time the decode steps alone by
    // subtracting a one-token run from a run of `decode_tokens` tokens.
    let batches = if args.batch == 1 {
        vec![1]
    } else {
        vec![1, args.batch]
    };
    for batch in batches {
        let prompts = vec![prompt[..16].to_vec(); batch as usize];
        let time = |engine: &mut Engine, tokens: u32| -> Result<f64> {
            let sampling = SamplingConfig {
                temperature: 0.8,
                max_new_tokens: tokens,
                ignore_eos: true,
                ..SamplingConfig::default()
            };
            let started = Instant::now();
            engine.generate(&prompts, &sampling)?;
            Ok(started.elapsed().as_secs_f64())
        };
        let mut rates = Vec::new();
        for _ in 0..args.repeat {
            let base = time(&mut engine, 1)?;
            let full = time(&mut engine, args.decode_tokens + 1)?;
            rates.push(f64::from(batch * args.decode_tokens) / (full - base).max(1e-9));
        }
        let summary = median_and_range(&mut rates);
        let median = rates[rates.len() / 2];
        println!(
            "decode batch {batch}: {summary} tokens/s ({:.1} per sequence)",
            median / f64::from(batch)
        );
    }
    println!(
        "GPU memory held by the engine: {} MiB",
        engine.gpu_bytes() >> 20
    );
    Ok(())
}

/// Sorts `values` and formats their median, with the range when there is
/// more than one: `26.1 (23.4-27.5)`.
fn median_and_range(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    match (values.first(), values.last()) {
        (Some(low), Some(high)) if values.len() > 1 => {
            format!("{median:.1} ({low:.1}-{high:.1})")
        }
        _ => format!("{median:.1}"),
    }
}

/// Prints GFLOP/s and microseconds a product for the model's weight shapes
/// at decode (M = 1) and prefill (M = 512) sizes.
fn print_model_shapes(engine: &Engine) -> Result<()> {
    let (c, f) = (engine.config.n_embd as u32, engine.config.n_ff as u32);
    let v = engine.config.vocab_size as u32;
    let kv = (engine.config.n_head_kv * engine.config.head_dim) as u32;
    let shapes = [
        ("attn_q", DType::Q4_1, c, c),
        ("attn_k", DType::Q4_1, kv, c),
        ("ffn_up", DType::Q4_1, f, c),
        ("ffn_down", DType::Q4_1, c, f),
        ("lm_head", DType::Q8_0, v, c),
    ];
    for (name, dtype, n, k) in shapes {
        for m in [1u32, 512] {
            // Up to 400 products, about 2 GFLOP in all, so that the wait
            // for the GPU does not dominate: one product at M = 1 takes
            // well under a millisecond.
            let work = 2.0 * f64::from(m) * f64::from(n) * f64::from(k);
            let iterations = (2e9 / work).clamp(5.0, 400.0) as u32;
            let gflops = laser_gpu::matmul::benchmark(&engine.gpu, dtype, m, n, k, iterations)?;
            let micros = work / gflops / 1e3;
            println!(
                "matmul {dtype} {name} M={m} N={n} K={k}: {gflops:.1} GFLOP/s ({micros:.0} us a product)"
            );
        }
    }

    Ok(())
}
