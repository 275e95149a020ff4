//! `laser-host eval`: greedy accuracy on a held-out split.

use anyhow::Result;

use crate::cli::EvalArgs;
use crate::laser::eval;

pub(crate) fn run(args: &EvalArgs, verbose: bool) -> Result<()> {
    anyhow::ensure!(args.eval_size >= 1, "--eval-size must be at least 1");
    let instances =
        crate::laser::load_instances(&args.data, &args.data_format, args.seed, args.builtin_count)?;
    let count = args.eval_size.min(instances.len().saturating_sub(1)).max(1);
    let split =
        laser_data::split_instances(instances, laser_data::EvalSize::Count(count), args.seed)?;
    let mut engine = super::load_engine(&args.model, verbose)?;
    let bar = indicatif::ProgressBar::new(split.eval.len() as u64);
    let accuracy = eval::evaluate(
        &mut engine,
        &split.eval,
        args.batch_size,
        args.max_new_tokens,
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    println!(
        "accuracy {:.3} ({} of {})",
        accuracy.rate(),
        accuracy.correct,
        accuracy.total
    );
    for (category, (correct, total)) in &accuracy.per_category {
        println!(
            "  {category}: {:.3} ({correct} of {total})",
            *correct as f64 / (*total).max(1) as f64
        );
    }
    Ok(())
}
