//! The `round-robin` selector plugin. Sequential baseline: the reward models in
//! turn, one step per choice.
//!
//! A thin wrapper: `laser_bandits::RoundRobin` implements the algorithm, and
//! `laser_selector_glue` maps the WIT calls onto it.

use laser_bandits::RoundRobin;
use laser_selector_glue::BanditSelector;

laser_plugin_sdk::export_selector!(BanditSelector<RoundRobin>);
