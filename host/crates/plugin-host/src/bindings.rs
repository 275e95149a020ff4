//! Host bindings of each WIT package version the host serves, generated
//! from the repository's `wit/` folder. A new version gets a module of its
//! own beside `v0_1_0`.

/// Bindings of `laser:plugin@0.1.0`.
pub mod v0_1_0 {
    /// The `reward-model` world, including the shared `types` and the
    /// `models` import.
    pub mod reward_model {
        wasmtime::component::bindgen!({
            path: "../../../wit/laser-plugin-0.1.0",
            world: "reward-model",
            additional_derives: [
                serde::Serialize,
                serde::Deserialize,
                PartialEq,
            ],
        });
    }

    /// The `selector` world. It reuses the reward-model world's `types`.
    pub mod selector {
        wasmtime::component::bindgen!({
            path: "../../../wit/laser-plugin-0.1.0",
            world: "selector",
            with: {
                "laser:plugin/types":
                    super::reward_model::laser::plugin::types,
            },
        });
    }
}
