//! Test reward model that returns invalid results, picked by
//! `[config] mode`: `nan`, `infinite`, `extreme` (the largest finite
//! f64), `short` (one score too few), `rows` (one row too few), `huge`
//! (more output than the limit), `error` (an error value), `long-error`
//! (an error value of 1 MiB that starts with an escape sequence) or
//! `exit` (calls `exit(1)`).

use laser_plugin_sdk::{RewardModel, ScoredInstance, export_reward_model};

struct BadScoresRm {
    mode: String,
}

impl RewardModel for BadScoresRm {
    fn new() -> Self {
        BadScoresRm {
            mode: "nan".to_string(),
        }
    }

    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let config: serde_json::Value =
            serde_json::from_str(config_json).map_err(|e| e.to_string())?;
        self.mode = config["mode"]
            .as_str()
            .ok_or("missing string setting `mode`")?
            .to_string();
        Ok(())
    }

    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        let mut scores: Vec<Vec<f64>> = batch
            .iter()
            .map(|item| vec![1.0; item.candidates.len()])
            .collect();
        match self.mode.as_str() {
            "nan" => scores[0][0] = f64::NAN,
            "infinite" => scores[0][0] = f64::INFINITY,
            "extreme" => scores[0][0] = -f64::MAX,
            "short" => {
                scores[0].pop();
            }
            "rows" => {
                scores.pop();
            }
            "huge" => scores[0] = vec![1.0; 1 << 20],
            "error" => return Err("bad-scores-rm refuses on purpose".into()),
            "long-error" => return Err(format!("\x1b[2J{}", "x".repeat(1 << 20))),
            "exit" => std::process::exit(1),
            other => return Err(format!("unknown mode {other:?}")),
        }
        Ok(scores)
    }
}

export_reward_model!(BadScoresRm);
