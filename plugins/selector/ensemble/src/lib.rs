//! The `ensemble` selector plugin: uniform weights over every reward model,
//! so that the host combines all their scores.
//!
//! The host z-normalises each arm's scores over the run so far and
//! combines them as the run's `--ensemble` option chooses: the mean (with
//! w_k = 1/K, the `mean` mode of `laser_bandits::Ensemble`), the minimum,
//! or the mean minus lambda times the standard deviation. A selector of
//! `laser:plugin@0.1.0` returns weights only, so this plugin's own `mode`
//! cannot choose among them and accepts only `mean`.

use laser_bandits::{Aggregation, Ensemble, EnsembleConfig};
use laser_plugin_sdk::{ArmInfo, Package, PluginInfo, Selector, export_selector};

/// The ensemble selector; it learns nothing and keeps no state.
struct EnsembleSelector {
    config: EnsembleConfig,
}

impl Selector for EnsembleSelector {
    fn new() -> Self {
        Self {
            config: EnsembleConfig::default(),
        }
    }

    fn info(&self) -> PluginInfo {
        let mut info = Package::current().plugin_info();
        info.tags = vec![
            "selector".to_owned(),
            "ensemble".to_owned(),
            "baseline".to_owned(),
        ];
        info
    }

    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        let config: EnsembleConfig = serde_json::from_str(config_json)
            .map_err(|e| format!("invalid ensemble config {config_json}: {e}"))?;
        Ensemble::new(config.clone(), &[] as &[&str])
            .map_err(|e| format!("invalid ensemble config: {e}"))?;
        if config.mode != Aggregation::Mean {
            return Err(format!(
                "ensemble mode {:?} cannot be set here, since a selector of \
                 laser:plugin@0.1.0 returns weights only: keep mode = \"mean\" and choose \
                 the combination with the run's --ensemble option",
                config.mode
            ));
        }
        self.config = config;
        Ok(())
    }

    fn choose(
        &mut self,
        contexts: Vec<Vec<f32>>,
        arms: Vec<ArmInfo>,
    ) -> Result<Vec<Vec<f32>>, String> {
        let names: Vec<&str> = arms.iter().map(|arm| arm.name.as_str()).collect();
        let ensemble = Ensemble::new(self.config.clone(), &names)
            .map_err(|e| format!("choose failed: {e}"))?;
        let weights: Vec<f32> = ensemble
            .weights()
            .map_err(|e| format!("choose failed: {e}"))?
            .into_iter()
            .map(|w| w as f32)
            .collect();
        Ok(vec![weights; contexts.len()])
    }

    fn update(&mut self, _arm: u32, _context: Vec<f32>, reward: f64) -> Result<(), String> {
        if reward.is_finite() {
            Ok(())
        } else {
            Err(format!("update failed: non-finite reward {reward}"))
        }
    }
}

export_selector!(EnsembleSelector);
