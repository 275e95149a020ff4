//! `laser-host merge`: merges a LoRA adapter into the base model and
//! writes a Hugging Face folder.

use anyhow::Result;
use laser_model::checkpoint::Checkpoint;

use crate::cli::MergeArgs;
use crate::train::{merge, peft};

pub(crate) fn run(args: &MergeArgs, _verbose: bool) -> Result<()> {
    // The files written would replace those of a run or an earlier merge.
    super::ensure_empty_out(&args.out)?;
    super::eval::reject_run_folder(&args.adapter)?;
    let path = super::model_path(&args.model)?;
    let checkpoint = Checkpoint::open(&path)?;
    let (layout, params) = peft::load(&args.adapter, checkpoint.config())?;
    merge::merge(&checkpoint, &layout, &params, &args.out)?;
    eprintln!(
        "merged {} into {}: model.safetensors, config.json, tokenizer.json",
        args.adapter.display(),
        args.out.display()
    );
    Ok(())
}
