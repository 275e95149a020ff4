//! The SDK `Selector` implementation shared by every bandit selector
//! plugin: [`BanditSelector`] wraps a `laser-bandits` algorithm in its
//! [`Driver`] and maps the WIT calls onto it.
//!
//! Config keys: the algorithm's own (see each plugin's README), plus
//! `granularity` (`"instance"` or `"batch"`), `normalize_reward` (bool),
//! `[context]` (`projection_dim`, `unit_norm`, `bias`, `seed`) and
//! `[reward]` (`lower_percentile`, `upper_percentile`, `window`).

use laser_bandits::{Driver, FromConfig, parse_config};
use laser_plugin_sdk::{ArmInfo, Package, PluginInfo, Selector};

/// A selector plugin built on the bandit `B`.
pub struct BanditSelector<B> {
    /// The configured driver; built from an empty config on first use when
    /// the host skipped `configure`.
    driver: Option<Driver<B>>,
}

impl<B: FromConfig> BanditSelector<B> {
    /// Returns the driver, building it from the default settings if
    /// `configure` was never called.
    fn driver(&mut self) -> Result<&mut Driver<B>, String> {
        if self.driver.is_none() {
            self.driver = Some(build("{}")?);
        }
        Ok(self.driver.as_mut().expect("driver was just built"))
    }
}

/// Builds a driver from a config JSON object.
fn build<B: FromConfig>(config_json: &str) -> Result<Driver<B>, String> {
    let (algorithm, settings) = parse_config::<B::Config>(config_json)
        .map_err(|e| format!("invalid selector config {config_json}: {e}"))?;
    let bandit = B::from_config(algorithm).map_err(|e| format!("invalid selector config: {e}"))?;
    Driver::new(bandit, settings).map_err(|e| format!("invalid selector config: {e}"))
}

impl<B: FromConfig> Selector for BanditSelector<B> {
    fn new() -> Self {
        Self { driver: None }
    }

    fn info(&self) -> PluginInfo {
        let mut info = Package::current().plugin_info();
        info.tags = vec!["selector".to_owned(), "bandit".to_owned()];
        info
    }

    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        self.driver = Some(build(config_json)?);
        Ok(())
    }

    fn choose(
        &mut self,
        contexts: Vec<Vec<f32>>,
        arms: Vec<ArmInfo>,
    ) -> Result<Vec<Vec<f32>>, String> {
        let names: Vec<&str> = arms.iter().map(|arm| arm.name.as_str()).collect();
        let enabled: Vec<bool> = arms.iter().map(|arm| arm.enabled).collect();
        self.driver()?
            .choose(&contexts, &names, &enabled)
            .map_err(|e| format!("choose failed: {e}"))
    }

    fn update(&mut self, arm: u32, context: Vec<f32>, reward: f64) -> Result<(), String> {
        self.driver()?
            .update(arm as usize, &context, reward)
            .map_err(|e| format!("update of arm {arm} failed: {e}"))
    }

    fn save_state(&self) -> Vec<u8> {
        // NOTE: serialisation of these plain structs does not fail (serde_json
        // writes a non-finite float as null, and inputs are checked finite),
        // and the WIT export has no error case, so an unconfigured selector
        // saves the empty state.
        match &self.driver {
            Some(driver) => driver.save().unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Restores a saved driver, including the settings it was saved with;
    /// the empty state keeps the configured, untrained driver.
    fn load_state(&mut self, state: Vec<u8>) -> Result<(), String> {
        if state.is_empty() {
            return Ok(());
        }
        let driver = Driver::load(&state)
            .map_err(|e| format!("invalid selector state ({} bytes): {e}", state.len()))?;
        self.driver = Some(driver);
        Ok(())
    }
}
