//! `report.md` for a run folder, with SVG plots drawn by plotters: each
//! arm's share of choices over time and per category, the bandit reward,
//! the training loss, and held-out accuracy per iteration.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use plotters::prelude::*;

use super::checkpoint::{CategoryCounts, METRICS_FILE, RunState, SELECTIONS_FILE};
use super::{BatchMetrics, RunConfig, Selection};
use crate::atomic;

/// A named series of (x, y) points.
type Series = (String, Vec<(f64, f64)>);

/// Writes `report.md` and its plots into the run folder `dir`.
///
/// # Errors
///
/// Fails when the run's JSONL files cannot be read or the report cannot be
/// written.
pub fn write(
    dir: &Path,
    config: &RunConfig,
    state: &RunState,
    arms: &[String],
    disabled: &[(String, String)],
) -> Result<()> {
    // Lines past the state's counts belong to a batch still in progress.
    let metrics: Vec<BatchMetrics> = read_jsonl(&dir.join(METRICS_FILE), state.metrics_lines)?;
    let selections: Vec<Selection> = read_jsonl(&dir.join(SELECTIONS_FILE), state.selection_lines)?;
    let mut labels: Vec<String> = arms.to_vec();
    // Spread weights show as `ensemble`; only selectors that spread them
    // need the column.
    if selections.iter().any(|s| s.arm == ENSEMBLE) {
        labels.push(ENSEMBLE.into());
    }

    // Share of each arm per batch, in batch order.
    let share: Vec<Series> = labels
        .iter()
        .map(|arm| {
            let points = metrics
                .iter()
                .enumerate()
                .map(|(x, m)| {
                    let count = m.arm_counts.get(arm).copied().unwrap_or(0);
                    (x as f64, count as f64 / m.instances.max(1) as f64)
                })
                .collect();
            (arm.clone(), points)
        })
        .filter(|(_, points): &Series| points.iter().any(|&(_, y)| y > 0.0))
        .collect();
    line_chart(
        &dir.join("arm_share.svg"),
        "share of choices per batch",
        "batch",
        &share,
        Some((0.0, 1.0)),
    )?;

    let reward: Vec<Series> = vec![(
        "bandit reward".into(),
        metrics
            .iter()
            .enumerate()
            .filter_map(|(x, m)| m.bandit_reward.map(|r| (x as f64, r)))
            .collect(),
    )];
    line_chart(
        &dir.join("bandit_reward.svg"),
        "mean raw bandit reward per batch",
        "batch",
        &reward,
        None,
    )?;

    let loss: Vec<Series> = vec![(
        "loss".into(),
        metrics
            .iter()
            .enumerate()
            .filter_map(|(x, m)| m.loss.map(|l| (x as f64, l)))
            .collect(),
    )];
    let has_loss = !loss[0].1.is_empty();
    if has_loss {
        line_chart(
            &dir.join("loss.svg"),
            "DPO + NLL loss per batch",
            "batch",
            &loss,
            None,
        )?;
    }

    let mut accuracy_points = Vec::new();
    if let Some(before) = state.eval_before {
        accuracy_points.push((0.0, before));
    }
    for (i, &a) in state.eval_per_iteration.iter().enumerate() {
        accuracy_points.push(((i + 1) as f64, a));
    }
    let mut pick_points = Vec::new();
    // Correct picks and checked picks per iteration.
    let mut per_iteration: BTreeMap<u32, (f64, usize)> = BTreeMap::new();
    for m in &metrics {
        if let Some(a) = m.pick_accuracy {
            let entry = per_iteration.entry(m.iteration).or_default();
            entry.0 += a * m.pick_weight() as f64;
            entry.1 += m.pick_weight();
        }
    }
    for (iteration, (sum, count)) in per_iteration {
        pick_points.push((f64::from(iteration + 1), sum / count as f64));
    }
    let accuracy = vec![
        ("held-out greedy".to_string(), accuracy_points),
        ("picked responses".to_string(), pick_points),
    ];
    line_chart(
        &dir.join("accuracy.svg"),
        "accuracy per iteration",
        "iteration",
        &accuracy,
        Some((0.0, 1.0)),
    )?;

    // Share of each arm per category.
    let mut by_category: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for s in &selections {
        let category = s.category.clone().unwrap_or_else(|| "none".into());
        *by_category
            .entry(category)
            .or_default()
            .entry(s.arm.clone())
            .or_default() += 1;
    }
    category_chart(
        &dir.join("arm_share_by_category.svg"),
        &by_category,
        &labels,
    )?;

    let mut md = String::new();
    writeln!(md, "# LASeR run report\n")?;
    writeln!(
        md,
        "Mode `{}`, selector `{}`, reward models {}, {} iteration(s), batch {}, n {}, seed {}.\n",
        config.mode.name(),
        config.selector,
        arms.iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", "),
        config.iterations,
        config.batch_size,
        config.n,
        config.seed
    )?;
    if state.iteration < config.iterations {
        writeln!(
            md,
            "The run is not finished: it has done {} of {} iteration(s) and {} batch(es) of \
             iteration {}. `--resume` continues it.\n",
            state.iteration,
            config.iterations,
            state.next_batch,
            state.iteration + 1
        )?;
    }
    if !disabled.is_empty() {
        writeln!(md, "## Reward models disabled during the run\n")?;
        for (name, reason) in disabled {
            writeln!(md, "- `{name}`: {reason}")?;
        }
        writeln!(md)?;
    }
    writeln!(md, "## Accuracy\n")?;
    // The held-out split can be smaller than --eval-size: it leaves at
    // least one training instance, and prompts too long or without a
    // reference answer are skipped.
    let eval_count = state
        .eval_before_by_category
        .as_ref()
        .map_or(config.eval_size, |counts| {
            counts.values().map(|(_, total)| total).sum()
        });
    match state.eval_before {
        Some(before) => writeln!(
            md,
            "- held-out greedy accuracy before: {before:.3} ({eval_count} prompts)"
        )?,
        None if config.eval_size == 0 => writeln!(md, "- held-out evaluation was off")?,
        None => writeln!(
            md,
            "- held-out accuracy was not measured: no held-out instance both fits the \
             context and has a reference answer"
        )?,
    }
    if let Some(after) = state.eval_per_iteration.last() {
        writeln!(md, "- held-out greedy accuracy after: {after:.3}")?;
    }
    write_category_accuracy(&mut md, state)?;
    let picks: Vec<bool> = selections.iter().filter_map(|s| s.correct).collect();
    if !picks.is_empty() {
        let rate = picks.iter().filter(|&&c| c).count() as f64 / picks.len() as f64;
        writeln!(
            md,
            "- accuracy of the picked responses: {rate:.3} over {}",
            picks.len()
        )?;
    }
    writeln!(md, "\n![accuracy](accuracy.svg)\n")?;
    writeln!(md, "## Which reward model was picked\n")?;
    writeln!(md, "![share over time](arm_share.svg)\n")?;
    write_arm_table(&mut md, &labels, &selections)?;
    writeln!(
        md,
        "Share of each category's prompts that went to each reward model:\n"
    )?;
    writeln!(md, "| category | prompts | {} |", labels.join(" | "))?;
    writeln!(md, "|---|---|{}", "---|".repeat(labels.len()))?;
    for (category, counts) in &by_category {
        let total: usize = counts.values().sum();
        let cells: Vec<String> = labels
            .iter()
            .map(|l| {
                format!(
                    "{:.2}",
                    counts.get(l).copied().unwrap_or(0) as f64 / total.max(1) as f64
                )
            })
            .collect();
        let category = table_cell(category);
        writeln!(md, "| {category} | {total} | {} |", cells.join(" | "))?;
    }
    writeln!(md, "\n![share per category](arm_share_by_category.svg)\n")?;
    writeln!(
        md,
        "## Bandit reward\n\n![bandit reward](bandit_reward.svg)\n"
    )?;
    // A batch went without reward when none of its prompts got one.
    let mut rewarded: BTreeMap<(u32, usize), bool> = BTreeMap::new();
    for s in &selections {
        *rewarded.entry((s.iteration, s.batch)).or_default() |= s.reward.is_some();
    }
    let idle: Vec<String> = rewarded
        .iter()
        .filter(|(_, rewarded)| !**rewarded)
        .map(|((iteration, batch), _)| format!("iteration {} batch {}", iteration + 1, batch + 1))
        .collect();
    if !idle.is_empty() {
        writeln!(
            md,
            "Batches without a reward, where the selector was not updated (every response \
             tied, the reward model failed, or the selector spread its weights over several \
             reward models): {}.\n",
            idle.join(", ")
        )?;
    }
    if has_loss {
        writeln!(md, "## Training loss\n\n![loss](loss.svg)\n")?;
    }
    writeln!(md, "## Cost\n")?;
    let calls: usize = metrics.iter().map(|m| m.rm_calls).sum();
    let candidates: usize = metrics.iter().map(|m| m.rm_candidates).sum();
    let tokens: usize = metrics.iter().map(|m| m.rm_tokens).sum();
    writeln!(
        md,
        "- reward-model calls: {calls}, candidates scored: {candidates}, tokens scored: {tokens}"
    )?;
    let mut phases: BTreeMap<&str, f64> = BTreeMap::new();
    for m in &metrics {
        for (phase, s) in &m.seconds {
            *phases.entry(phase).or_default() += s;
        }
    }
    for (phase, s) in phases {
        writeln!(md, "- {phase}: {s:.1} s")?;
    }
    atomic::write(&dir.join("report.md"), md.as_bytes())
}

/// Writes the report of the run in `dir` from its files alone, without
/// changing them, so that it works on a run that is still going and on
/// one that was stopped. Arms come from `plugins.json`, then any others
/// the selections name; reasons for disabled reward models are not
/// recorded there, so that section is left out.
///
/// # Errors
///
/// Fails when `dir` contains no run or its files are damaged.
pub fn write_from_folder(dir: &Path) -> Result<()> {
    let state = RunState::read(dir)?;
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path)
        .with_context(|| format!("no run in {}: {} is missing", dir.display(), path.display()))?;
    let config: RunConfig =
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?;
    let mut arms: Vec<String> = Vec::new();
    let path = dir.join("plugins.json");
    if let Ok(text) = fs::read_to_string(&path) {
        let plugins: Vec<serde_json::Value> = serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged", path.display()))?;
        for plugin in plugins {
            if plugin["role"] == "reward-model"
                && let Some(label) = plugin["name"].as_str()
            {
                let name = label.split('@').next().unwrap_or(label);
                arms.push(name.to_owned());
            }
        }
    }
    let selections: Vec<Selection> = read_jsonl(&dir.join(SELECTIONS_FILE), state.selection_lines)?;
    for selection in &selections {
        if selection.arm != ENSEMBLE && !arms.contains(&selection.arm) {
            arms.push(selection.arm.clone());
        }
    }
    write(dir, &config, &state, &arms, &[])
}

/// The arm name of prompts whose weights were spread over several arms.
const ENSEMBLE: &str = laser_plugins::RESERVED_ARM_NAME;

/// Writes a table of how often each arm was picked, the mean raw bandit
/// reward of its prompts and how often its pick was correct.
fn write_arm_table(md: &mut String, labels: &[String], selections: &[Selection]) -> Result<()> {
    writeln!(
        md,
        "| reward model | prompts | share | mean bandit reward | picked correct |"
    )?;
    writeln!(md, "|---|---|---|---|---|")?;
    let mean = |values: &[f64]| {
        if values.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3}", values.iter().sum::<f64>() / values.len() as f64)
        }
    };
    for label in labels {
        let picked: Vec<&Selection> = selections.iter().filter(|s| &s.arm == label).collect();
        let rewards: Vec<f64> = picked.iter().filter_map(|s| s.reward).collect();
        let correct: Vec<f64> = picked
            .iter()
            .filter_map(|s| s.correct.map(|c| f64::from(u8::from(c))))
            .collect();
        writeln!(
            md,
            "| {label} | {} | {:.2} | {} | {} |",
            picked.len(),
            picked.len() as f64 / selections.len().max(1) as f64,
            mean(&rewards),
            mean(&correct)
        )?;
    }
    writeln!(md)?;
    Ok(())
}

/// Writes held-out accuracy per category, before and after each
/// iteration, when the run measured it.
fn write_category_accuracy(md: &mut String, state: &RunState) -> Result<()> {
    let columns: Vec<(String, &CategoryCounts)> = state
        .eval_before_by_category
        .iter()
        .map(|counts| ("before".to_string(), counts))
        .chain(
            state
                .eval_by_category
                .iter()
                .enumerate()
                .map(|(i, counts)| (format!("after iteration {}", i + 1), counts)),
        )
        .collect();
    let Some((_, first)) = columns.first() else {
        return Ok(());
    };
    writeln!(md, "\nHeld-out greedy accuracy per category:\n")?;
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    writeln!(md, "| category | prompts | {} |", names.join(" | "))?;
    writeln!(md, "|---|---|{}", "---|".repeat(names.len()))?;
    for (category, (_, total)) in first.iter() {
        let cells: Vec<String> = columns
            .iter()
            .map(|(_, counts)| {
                counts.get(category).map_or("-".to_string(), |(c, t)| {
                    format!("{:.3}", *c as f64 / (*t).max(1) as f64)
                })
            })
            .collect();
        let category = table_cell(category);
        writeln!(md, "| {category} | {total} | {} |", cells.join(" | "))?;
    }
    writeln!(md)?;
    Ok(())
}

/// Escapes `text`, a category from the data, for one Markdown table cell.
/// A bare `|` would start a new cell, and a line break would end the table.
fn table_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

/// Reads the first `limit` records of a JSONL file; a missing file has none.
fn read_jsonl<T: for<'de> serde::Deserialize<'de>>(path: &Path, limit: usize) -> Result<Vec<T>> {
    if limit == 0 && !path.exists() {
        return Ok(Vec::new());
    }
    let text = fs::read_to_string(path).with_context(|| {
        format!(
            "failed to read {}, though state.json records {limit} finished lines in it",
            path.display()
        )
    })?;
    let lines = text.lines().count();
    ensure!(
        lines >= limit,
        "{} has {lines} lines, though state.json records {limit} finished ones: the run \
         folder is damaged, so restore the file or start a new run",
        path.display()
    );
    text.lines()
        .take(limit)
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: invalid record", path.display(), i + 1))
        })
        .collect()
}

fn plot_error<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> anyhow::Error + '_ {
    move |err| anyhow::anyhow!("failed to draw {}: {err}", path.display())
}

/// Draws `series` as lines into an SVG file.
fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> Result<()> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_min, mut y_max) = (1.0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if !y_min.is_finite() {
        (y_min, y_max) = (0.0, 1.0);
    }
    if y_max - y_min < 1e-9 {
        y_max += 0.5;
        y_min -= 0.5;
    }
    if let Some(range) = y_range {
        (y_min, y_max) = range;
    }
    let root = SVGBackend::new(path, (720, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error(path))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..x_max, y_min..y_max)
        .map_err(plot_error(path))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        // Batches and iterations are whole numbers: label only whole ticks,
        // at most 11 of them, so short runs do not repeat a rounded label.
        .x_labels((x_max.ceil() as usize + 1).min(11))
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round())
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(plot_error(path))?;
    for (i, (name, data)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        // A batch or iteration without a value breaks the line, so no
        // segment suggests values that were never measured.
        let mut segments: Vec<Vec<(f64, f64)>> = Vec::new();
        for &(x, y) in data {
            match segments.last_mut() {
                Some(segment) if segment.last().is_some_and(|&(last, _)| x - last <= 1.0) => {
                    segment.push((x, y));
                }
                _ => segments.push(vec![(x, y)]),
            }
        }
        for (j, segment) in segments.into_iter().enumerate() {
            let drawn = chart
                .draw_series(LineSeries::new(segment, color.stroke_width(2)))
                .map_err(plot_error(path))?;
            if j == 0 {
                drawn.label(name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            }
        }
        // Markers keep single points visible.
        chart
            .draw_series(
                data.iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
            )
            .map_err(plot_error(path))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.6))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error(path))?;
    root.present().map_err(plot_error(path))?;
    Ok(())
}

/// Draws, per category, one bar per arm with its share of choices.
fn category_chart(
    path: &Path,
    counts: &BTreeMap<String, BTreeMap<String, usize>>,
    arms: &[String],
) -> Result<()> {
    let categories: Vec<&String> = counts.keys().collect();
    let groups = categories.len().max(1);
    let width = arms.len() as f64 + 1.0;
    let root = SVGBackend::new(path, (720, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error(path))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("share of choices per category", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..groups as f64 * width, 0f64..1f64)
        .map_err(plot_error(path))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups)
        .x_label_formatter(&|x| {
            let index = (x / width).floor() as usize;
            categories
                .get(index)
                .map_or(String::new(), |c| (*c).clone())
        })
        .draw()
        .map_err(plot_error(path))?;
    for (k, arm) in arms.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let bars: Vec<Rectangle<(f64, f64)>> = categories
            .iter()
            .enumerate()
            .map(|(g, category)| {
                let by_arm = &counts[*category];
                let total: usize = by_arm.values().sum();
                let share = by_arm.get(arm).copied().unwrap_or(0) as f64 / total.max(1) as f64;
                let x = g as f64 * width + k as f64 + 0.5;
                Rectangle::new([(x, 0.0), (x + 0.9, share)], color.filled())
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(plot_error(path))?
            .label(arm.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error(path))?;
    root.present().map_err(plot_error(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cell_keeps_table_intact() {
        assert_eq!(table_cell("gsm8k"), "gsm8k");
        assert_eq!(table_cell("a|b"), "a\\|b");
        assert_eq!(table_cell("two\r\nlines"), "two  lines");
    }
}
