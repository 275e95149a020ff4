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
        // The WIT export has no error case. Saving applies the updates a
        // batch-granularity driver holds, which `update` has checked, and
        // serialises plain structs, so it is not expected to fail. If it
        // does, the panic traps, and the host keeps the last good state
        // rather than an empty one that would drop what was learned. An
        // unconfigured selector saves the empty state.
        match &self.driver {
            Some(driver) => driver
                .save()
                .unwrap_or_else(|e| panic!("failed to save the selector state: {e}")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use laser_bandits::{Fixed, LinUcb, RoundRobin};

    fn arms(names: &[&str]) -> Vec<ArmInfo> {
        names
            .iter()
            .map(|name| ArmInfo {
                name: (*name).to_owned(),
                version: "0.1.0".to_owned(),
                tags: Vec::new(),
                enabled: true,
            })
            .collect()
    }

    #[test]
    fn linucb_round_trip_through_state() {
        let mut selector = BanditSelector::<LinUcb>::new();
        selector
            .configure(r#"{"alpha": 0.5, "context": {"projection_dim": 4}}"#)
            .unwrap();
        let contexts: Vec<Vec<f32>> = (0..8)
            .map(|i| vec![i as f32, 1.0, -2.0, 0.5, 3.0])
            .collect();
        let weights = selector
            .choose(contexts.clone(), arms(&["a", "b"]))
            .unwrap();
        for (context, row) in contexts.iter().zip(&weights) {
            let arm = row.iter().position(|w| *w == 1.0).unwrap() as u32;
            selector.update(arm, context.clone(), -1.5).unwrap();
        }

        let mut restored = BanditSelector::<LinUcb>::new();
        restored.configure("{}").unwrap();
        restored.load_state(selector.save_state()).unwrap();
        let original = selector
            .choose(contexts.clone(), arms(&["a", "b", "c"]))
            .unwrap();
        let copy = restored.choose(contexts, arms(&["a", "b", "c"])).unwrap();
        assert_eq!(original, copy);
    }

    #[test]
    fn disabled_arm_never_chosen() {
        let mut selector = BanditSelector::<RoundRobin>::new();
        selector.configure("{}").unwrap();
        let mut arm_list = arms(&["a", "b", "c"]);
        arm_list[1].enabled = false;
        let weights = selector.choose(vec![vec![1.0]; 6], arm_list).unwrap();
        for row in &weights {
            assert_eq!(row[1], 0.0, "disabled arm chosen: {row:?}");
        }
    }

    #[test]
    fn unknown_key_rejected() {
        let mut selector = BanditSelector::<LinUcb>::new();
        let message = selector.configure(r#"{"alpah": 1.0}"#).unwrap_err();
        assert!(
            message.contains("alpah"),
            "message {message:?} does not name the key"
        );
    }

    #[test]
    fn fixed_needs_arm() {
        let mut selector = BanditSelector::<Fixed>::new();
        let message = selector.configure("{}").unwrap_err();
        assert!(
            message.contains("arm"),
            "message {message:?} does not name `arm`"
        );
    }

    #[test]
    fn fixed_picks_named_arm() {
        let mut selector = BanditSelector::<Fixed>::new();
        selector.configure(r#"{"arm": "b"}"#).unwrap();
        let weights = selector
            .choose(vec![vec![1.0]; 2], arms(&["a", "b"]))
            .unwrap();
        assert_eq!(weights, vec![vec![0.0, 1.0]; 2]);
    }

    #[test]
    fn garbage_state_rejected() {
        let mut selector = BanditSelector::<LinUcb>::new();
        let message = selector.load_state(b"not json".to_vec()).unwrap_err();
        assert!(
            message.contains("8 bytes"),
            "message {message:?} does not give the size"
        );
    }
}
