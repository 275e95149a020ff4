//! The `lints` selector plugin. Linear Thompson sampling over the prompt
//! embedding: per arm, draw x^T theta from N(x^T A^-1 b, v^2 x^T A^-1 x) and
//! choose the largest.
//!
//! A thin wrapper: `laser_bandits::LinTs` implements the algorithm, and
//! `laser_selector_glue` maps the WIT calls onto it.

use laser_bandits::LinTs;
use laser_selector_glue::BanditSelector;

laser_plugin_sdk::export_selector!(BanditSelector<LinTs>);
