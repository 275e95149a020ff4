//! The `epsilon-greedy` selector plugin. Epsilon-greedy over the reward models'
//! mean rewards; ignores the prompt.
//!
//! A thin wrapper: `laser_bandits::EpsilonGreedy` implements the algorithm, and
//! `laser_selector_glue` maps the WIT calls onto it.

use laser_bandits::EpsilonGreedy;
use laser_selector_glue::BanditSelector;

laser_plugin_sdk::export_selector!(BanditSelector<EpsilonGreedy>);
