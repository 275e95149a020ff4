//! The `ucb1` selector plugin. UCB1 over the reward models' mean rewards;
//! ignores the prompt.
//!
//! A thin wrapper: `laser_bandits::Ucb1` implements the algorithm, and
//! `laser_selector_glue` maps the WIT calls onto it.

use laser_bandits::Ucb1;
use laser_selector_glue::BanditSelector;

laser_plugin_sdk::export_selector!(BanditSelector<Ucb1>);
