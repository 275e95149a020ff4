//! Prints matmul GFLOP/s over row counts for the model's shapes:
//! `cargo run --release --example profile_matmul [M,M,...]`.

use laser_gpu::Gpu;
use laser_model::DType;

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new()?;
    let rows: Vec<u32> = match std::env::args().nth(1) {
        Some(list) => list.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![1, 2, 4, 8, 16, 32, 64, 128, 512],
    };
    for (dtype, n, k) in [
        (DType::Q4_1, 576, 576),
        (DType::Q4_1, 1536, 576),
        (DType::Q8_0, 49152, 576),
    ] {
        for &m in &rows {
            let work = 2.0 * f64::from(m) * f64::from(n) * f64::from(k);
            let iterations = (1e9 / work).clamp(3.0, 200.0) as u32;
            let gflops = laser_gpu::matmul::benchmark(&gpu, dtype, m, n, k, iterations)?;
            let ms = work / gflops / 1e6;
            println!("{dtype} M={m} N={n} K={k}: {gflops:.2} GFLOP/s ({ms:.2} ms)");
        }
    }
    Ok(())
}
