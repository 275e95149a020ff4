//! Prints matmul GFLOP/s over row counts for the model's shapes:
//! `cargo run --release --example profile_matmul [M,M,...] [--transposed]`.
//!
//! Beside the wall-clock figure it prints the CPU time the process spent,
//! which on a CPU adapter (lavapipe) shifts less than wall time when other
//! processes share the cores.

use laser_gpu::Gpu;
use laser_model::DType;

/// Returns the user plus system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the whole line, in clock ticks of 1/100 s.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<f64> = after
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0.0))
        .collect();
    if fields.len() < 13 {
        return 0.0;
    }
    (fields[11] + fields[12]) / 100.0
}

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new()?;
    let rows: Vec<u32> = match std::env::args().nth(1).filter(|arg| !arg.starts_with("--")) {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![1, 2, 4, 8, 16, 32, 64, 128, 512],
    };
    // `--transposed` measures the backward product dy · w instead.
    let transposed = std::env::args().any(|arg| arg == "--transposed");
    for (dtype, n, k) in [
        (DType::Q4_1, 576, 576),
        (DType::Q4_1, 1536, 576),
        (DType::Q8_0, 49152, 576),
    ] {
        for &m in &rows {
            let work = 2.0 * f64::from(m) * f64::from(n) * f64::from(k);
            let iterations = (2e9 / work).clamp(3.0, 400.0) as u32;
            let cpu_before = cpu_seconds();
            let gflops = if transposed {
                laser_gpu::matmul::benchmark_transposed(&gpu, dtype, m, n, k, iterations)?
            } else {
                laser_gpu::matmul::benchmark(&gpu, dtype, m, n, k, iterations)?
            };
            let cpu = cpu_seconds() - cpu_before;
            let ms = work / gflops / 1e6;
            let cpu_gflops = work * f64::from(iterations + 1) / cpu / 1e9;
            let kind = if transposed { "transposed " } else { "" };
            println!(
                "{kind}{dtype} M={m} N={n} K={k}: {gflops:.2} GFLOP/s ({ms:.2} ms), \
                 {cpu_gflops:.2} GFLOP per CPU second"
            );
        }
    }
    Ok(())
}
