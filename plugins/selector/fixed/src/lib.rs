//! The `fixed` selector plugin. Single-reward-model baseline: always the reward
//! model named in the config.
//!
//! A thin wrapper: `laser_bandits::Fixed` implements the algorithm, and
//! `laser_selector_glue` maps the WIT calls onto it.

use laser_bandits::Fixed;
use laser_selector_glue::BanditSelector;

laser_plugin_sdk::export_selector!(BanditSelector<Fixed>);
