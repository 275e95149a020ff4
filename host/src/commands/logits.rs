//! `laser-host logits`: the top logits at every position of token sequences,
//! one JSON line per position, for parity checks against other engines.

use std::fs;
use std::io::{BufWriter, Write};

use anyhow::{Context, Result, bail, ensure};

use crate::cli::LogitsArgs;

pub(crate) fn run(args: &LogitsArgs, verbose: bool) -> Result<()> {
    ensure!(args.top >= 1, "--top must be at least 1");
    let text = if args.tokens_file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("failed to read standard input")?
    } else {
        fs::read_to_string(&args.tokens_file)
            .with_context(|| format!("failed to read {}", args.tokens_file.display()))?
    };
    // Editors on Windows may start a UTF-8 file with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut sequences = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ids: Vec<u32> = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: expected a JSON array of token ids",
                args.tokens_file.display(),
                i + 1
            )
        })?;
        if ids.is_empty() {
            bail!(
                "{}:{}: empty token array",
                args.tokens_file.display(),
                i + 1
            );
        }
        sequences.push((i + 1, ids));
    }
    ensure!(
        !sequences.is_empty(),
        "{} holds no token sequences: expected one JSON array of token ids per line",
        args.tokens_file.display()
    );
    let mut engine = super::load_engine(&args.model, verbose)?;
    // Every line is checked before the first is run, so that a bad line
    // does not stop the output halfway.
    let vocab = engine.config.vocab_size;
    let context = engine.config.context_length;
    for (line, ids) in &sequences {
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            bail!(
                "{}:{line}: token id {bad} is outside the vocabulary of {vocab}",
                args.tokens_file.display()
            );
        }
        ensure!(
            ids.len() <= context,
            "{}:{line}: {} token ids, more than the model's context length of {context}",
            args.tokens_file.display(),
            ids.len()
        );
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for (seq_index, (line, ids)) in sequences.iter().enumerate() {
        let logits = engine.logits(ids)?;
        for (pos, row) in logits.iter().enumerate() {
            let top = top_k(row, args.top);
            let record = serde_json::json!({
                "sequence": seq_index,
                "line": line,
                "position": pos,
                "ids": top.iter().map(|&(id, _)| id).collect::<Vec<_>>(),
                "logits": top.iter().map(|&(_, logit)| logit).collect::<Vec<_>>(),
            });
            writeln!(out, "{record}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The `k` highest (id, logit) pairs, highest first; ties keep the lower id.
pub(crate) fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut indexed: Vec<(u32, f32)> = row
        .iter()
        .enumerate()
        .map(|(i, &x)| (i as u32, x))
        .collect();
    let k = k.min(indexed.len());
    indexed.select_nth_unstable_by(k.saturating_sub(1), |a, b| {
        b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
    });
    indexed.truncate(k);
    indexed.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    indexed
}
