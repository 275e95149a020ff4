//! The `linucb` selector plugin. LinUCB over the prompt embedding, as in LASeR:
//! per arm A = I + sum x x^T, b = sum r x, choose argmax x^T A^-1 b + alpha
//! sqrt(x^T A^-1 x).
//!
//! A thin wrapper: `laser_bandits::LinUcb` implements the algorithm, and
//! `laser_selector_glue` maps the WIT calls onto it.

use laser_bandits::LinUcb;
use laser_selector_glue::BanditSelector;

laser_plugin_sdk::export_selector!(BanditSelector<LinUcb>);
