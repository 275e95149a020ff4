//! The `exp3` selector plugin. Exp3 adversarial bandit over the reward models;
//! ignores the prompt.
//!
//! A thin wrapper: `laser_bandits::Exp3` implements the algorithm, and
//! `laser_selector_glue` maps the WIT calls onto it.

use laser_bandits::Exp3;
use laser_selector_glue::BanditSelector;

laser_plugin_sdk::export_selector!(BanditSelector<Exp3>);
