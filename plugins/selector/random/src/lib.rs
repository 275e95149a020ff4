//! The `random` selector plugin. Random baseline: a uniformly random reward
//! model per prompt.
//!
//! A thin wrapper: `laser_bandits::Random` implements the algorithm, and
//! `laser_selector_glue` maps the WIT calls onto it.

use laser_bandits::Random;
use laser_selector_glue::BanditSelector;

laser_plugin_sdk::export_selector!(BanditSelector<Random>);
