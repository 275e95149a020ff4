//! Prints matmul GFLOP/s over row counts for the model's shapes:
//! `cargo run --release --example profile_matmul`.

use laser_gpu::Gpu;
use laser_model::DType;

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new()?;
    for (dtype, n, k) in [
        (DType::Q4_1, 576, 576),
        (DType::Q4_1, 1536, 576),
        (DType::Q8_0, 49152, 576),
    ] {
        for m in [1u32, 2, 8, 32, 128, 512] {
            let gflops = laser_gpu::matmul::benchmark(&gpu, dtype, m, n, k, 3)?;
            let ms = 2.0 * f64::from(m) * f64::from(n) * f64::from(k) / gflops / 1e6;
            println!("{dtype} M={m} N={n} K={k}: {gflops:.2} GFLOP/s ({ms:.2} ms)");
        }
    }
    Ok(())
}
