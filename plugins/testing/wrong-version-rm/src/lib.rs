//! Test reward model built against `laser:plugin@9.0.0`, a copy of the
//! 0.1.0 WIT in `wit/` with only the version changed. Its manifest claims
//! 0.1.0, so only the component's imports reveal the mismatch.

wit_bindgen::generate!({
    path: "wit",
    world: "reward-model",
});

struct WrongVersionRm;

impl Guest for WrongVersionRm {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "wrong-version-rm".to_string(),
            version: "0.1.0".to_string(),
            description: String::new(),
            models: Vec::new(),
            tags: Vec::new(),
        }
    }

    fn configure(_config_json: String) -> Result<(), String> {
        Ok(())
    }

    fn score(batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
        Ok(batch
            .iter()
            .map(|item| vec![0.0; item.candidates.len()])
            .collect())
    }
}

export!(WrongVersionRm);
