//! Write laser-host plugins in Rust: reward models and selectors, built as
//! Wasm components (`wasm32-wasip2`) against the WIT package
//! `laser:plugin@0.1.0` in the repository's `wit/` folder.
//!
//! A reward model implements [`RewardModel`] and registers itself with
//! [`export_reward_model!`]; a selector implements [`Selector`] and
//! registers with [`export_selector!`]. One crate exports one plugin.
//! Every optional method has a default, so a minimal reward model is a
//! `new` and a `score`:
//!
//! ```ignore
//! use laser_plugin_sdk::{RewardModel, ScoredInstance, export_reward_model};
//!
//! struct Length;
//!
//! impl RewardModel for Length {
//!     fn new() -> Self {
//!         Length
//!     }
//!
//!     fn score(
//!         &mut self,
//!         batch: Vec<ScoredInstance>,
//!     ) -> Result<Vec<Vec<f64>>, String> {
//!         Ok(batch
//!             .iter()
//!             .map(|item| {
//!                 item.candidates.iter().map(|c| c.len() as f64).collect()
//!             })
//!             .collect())
//!     }
//! }
//!
//! export_reward_model!(Length);
//! ```
//!
//! Reward models call the host's language models through the functions in
//! [`models`], each batched. This crate is not for the host side: that is
//! the `laser-plugins` crate.

// Lets the generated bindings name this crate by the same path inside it
// as in the plugin crates that expand the export macros.
extern crate self as laser_plugin_sdk;

mod glue;

#[doc(hidden)]
pub mod __private {
    pub use crate::glue::*;

    /// Bindings of the `reward-model` world.
    pub mod reward_model {
        wit_bindgen::generate!({
            path: "../../wit/laser-plugin-0.1.0",
            world: "reward-model",
            pub_export_macro: true,
            export_macro_name: "__export_reward_model_bindings",
            default_bindings_module:
                "laser_plugin_sdk::__private::reward_model",
            runtime_path: "laser_plugin_sdk::__private::wit_bindgen_rt",
        });
    }

    /// Bindings of the `selector` world. The shared `types` interface is
    /// taken from the reward-model bindings, so both worlds use the same
    /// Rust types.
    pub mod selector {
        wit_bindgen::generate!({
            path: "../../wit/laser-plugin-0.1.0",
            world: "selector",
            pub_export_macro: true,
            export_macro_name: "__export_selector_bindings",
            default_bindings_module: "laser_plugin_sdk::__private::selector",
            runtime_path: "laser_plugin_sdk::__private::wit_bindgen_rt",
            with: {
                "laser:plugin/types@0.1.0":
                    crate::__private::reward_model::laser::plugin::types,
            },
        });
    }

    pub use wit_bindgen::rt as wit_bindgen_rt;
}

pub use __private::reward_model::laser::plugin::types::{
    ArmInfo, Continuation, Instance, PluginInfo, ScoredInstance,
};

/// The host's language models, run on the GPU and shared by all plugins.
///
/// Each function takes a model name from the plugin manifest's `models`
/// list ("policy" is the base model of the policy being trained) and a
/// whole batch, and returns one result per batch item in order. Errors
/// are plain messages from the host, such as a model the manifest does not
/// name.
pub mod models {
    pub use crate::__private::reward_model::laser::plugin::models::{
        apply_chat_template, generate, hidden_states, logprobs,
    };
}

/// Cargo metadata of the plugin crate, captured by the export macros and
/// used by the default [`RewardModel::info`] and [`Selector::info`].
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// `CARGO_PKG_NAME` of the plugin crate.
    pub name: &'static str,
    /// `CARGO_PKG_VERSION` of the plugin crate.
    pub version: &'static str,
    /// `CARGO_PKG_DESCRIPTION` of the plugin crate, possibly empty.
    pub description: &'static str,
}

impl Package {
    /// Returns the package of the plugin crate that this module is linked
    /// into, as recorded by its export macro.
    ///
    /// # Panics
    ///
    /// Panics when called before the host's first call into the plugin,
    /// which is when the export macro records the package.
    pub fn current() -> Package {
        glue::package()
    }

    /// Builds a [`PluginInfo`] from the package metadata, with no models
    /// and no tags.
    pub fn plugin_info(&self) -> PluginInfo {
        PluginInfo {
            name: self.name.to_string(),
            version: self.version.to_string(),
            description: self.description.to_string(),
            models: Vec::new(),
            tags: Vec::new(),
        }
    }
}

/// A reward model: scores candidate completions of prompts.
///
/// The host creates one instance with [`RewardModel::new`] on its first
/// call, then calls `configure` once and `score` for every batch.
pub trait RewardModel {
    /// Creates the plugin's state.
    fn new() -> Self
    where
        Self: Sized;

    /// Describes the plugin. The default takes name, version and
    /// description from the plugin crate's `Cargo.toml`.
    fn info(&self) -> PluginInfo {
        Package::current().plugin_info()
    }

    /// Applies the manifest's `[config]` table, given as a JSON object.
    ///
    /// # Errors
    ///
    /// The default rejects any configuration but the empty object `{}`,
    /// so that a setting the plugin does not read is not silently ignored.
    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        glue::reject_config(config_json)
    }

    /// Scores a batch: for each instance, one finite score per candidate,
    /// in candidate order. Higher is better.
    ///
    /// # Errors
    ///
    /// Returns a message when the batch cannot be scored. The host then
    /// disables the reward model for the rest of the run.
    fn score(&mut self, batch: Vec<ScoredInstance>) -> Result<Vec<Vec<f64>>, String>;
}

/// A selector: picks, per prompt, the reward models to trust.
///
/// The arm list passed to [`Selector::choose`] is the current list of
/// reward models. It only grows during a run, and arm indices are stable,
/// so a selector grows its state when it receives more arms than before.
pub trait Selector {
    /// Creates the plugin's state, with no arms yet.
    fn new() -> Self
    where
        Self: Sized;

    /// Describes the plugin. The default takes name, version and
    /// description from the plugin crate's `Cargo.toml`.
    fn info(&self) -> PluginInfo {
        Package::current().plugin_info()
    }

    /// Applies the manifest's `[config]` table, given as a JSON object.
    ///
    /// # Errors
    ///
    /// The default rejects any configuration but the empty object `{}`.
    fn configure(&mut self, config_json: &str) -> Result<(), String> {
        glue::reject_config(config_json)
    }

    /// Returns one weight per arm for each context: `result[i][k]` is the
    /// weight of arm `k` for context `i`, finite and non-negative.
    ///
    /// # Errors
    ///
    /// Returns a message when no choice can be made, such as a context
    /// whose dimension differs from earlier ones. The host stops the run.
    fn choose(
        &mut self,
        contexts: Vec<Vec<f32>>,
        arms: Vec<ArmInfo>,
    ) -> Result<Vec<Vec<f32>>, String>;

    /// Records `reward` for `arm` at `context`.
    ///
    /// # Errors
    ///
    /// Returns a message for an unknown arm or a context of the wrong
    /// dimension. The host stops the run and keeps the state saved after
    /// the last successful update.
    fn update(&mut self, arm: u32, context: Vec<f32>, reward: f64) -> Result<(), String>;

    /// Serializes the learned state. The default returns an empty state,
    /// which suits a selector that learns nothing.
    fn save_state(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Restores a state returned by [`Selector::save_state`], possibly
    /// saved with fewer arms than the current run has.
    ///
    /// # Errors
    ///
    /// The default accepts only the empty state.
    fn load_state(&mut self, state: Vec<u8>) -> Result<(), String> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "this selector keeps no state, but got {} bytes",
                state.len()
            ))
        }
    }
}

/// Exports a [`RewardModel`] implementation as the component's
/// `reward-model` world. Use it once per plugin crate.
#[macro_export]
macro_rules! export_reward_model {
    ($plugin:ty) => {
        const _: () = {
            use $crate::__private::reward_model::laser::plugin::types;

            struct Exports;

            fn create() -> ::std::boxed::Box<dyn $crate::RewardModel> {
                $crate::__private::set_package($crate::Package {
                    name: env!("CARGO_PKG_NAME"),
                    version: env!("CARGO_PKG_VERSION"),
                    description: env!("CARGO_PKG_DESCRIPTION"),
                });
                ::std::boxed::Box::new(<$plugin as $crate::RewardModel>::new())
            }

            impl $crate::__private::reward_model::Guest for Exports {
                fn info() -> types::PluginInfo {
                    $crate::__private::with_reward_model(create, |p| p.info())
                }

                fn configure(config_json: String) -> Result<(), String> {
                    $crate::__private::with_reward_model(create, |p| p.configure(&config_json))
                }

                fn score(batch: Vec<types::ScoredInstance>) -> Result<Vec<Vec<f64>>, String> {
                    $crate::__private::with_reward_model(create, |p| p.score(batch))
                }
            }

            $crate::__private::reward_model::__export_reward_model_bindings!(
                Exports with_types_in $crate::__private::reward_model
            );
        };
    };
}

/// Exports a [`Selector`] implementation as the component's `selector`
/// world. Use it once per plugin crate.
#[macro_export]
macro_rules! export_selector {
    ($plugin:ty) => {
        const _: () = {
            use $crate::__private::reward_model::laser::plugin::types;

            struct Exports;

            fn create() -> ::std::boxed::Box<dyn $crate::Selector> {
                $crate::__private::set_package($crate::Package {
                    name: env!("CARGO_PKG_NAME"),
                    version: env!("CARGO_PKG_VERSION"),
                    description: env!("CARGO_PKG_DESCRIPTION"),
                });
                ::std::boxed::Box::new(<$plugin as $crate::Selector>::new())
            }

            impl $crate::__private::selector::Guest for Exports {
                fn info() -> types::PluginInfo {
                    $crate::__private::with_selector(create, |p| p.info())
                }

                fn configure(config_json: String) -> Result<(), String> {
                    $crate::__private::with_selector(create, |p| p.configure(&config_json))
                }

                fn choose(
                    contexts: Vec<Vec<f32>>,
                    arms: Vec<types::ArmInfo>,
                ) -> Result<Vec<Vec<f32>>, String> {
                    $crate::__private::with_selector(create, |p| p.choose(contexts, arms))
                }

                fn update(arm: u32, context: Vec<f32>, reward: f64) -> Result<(), String> {
                    $crate::__private::with_selector(create, |p| p.update(arm, context, reward))
                }

                fn save_state() -> Vec<u8> {
                    $crate::__private::with_selector(create, |p| p.save_state())
                }

                fn load_state(state: Vec<u8>) -> Result<(), String> {
                    $crate::__private::with_selector(create, |p| p.load_state(state))
                }
            }

            $crate::__private::selector::__export_selector_bindings!(
                Exports with_types_in $crate::__private::selector
            );
        };
    };
}
