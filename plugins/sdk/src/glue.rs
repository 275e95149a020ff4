//! State behind the export macros: the one plugin instance of a component
//! and the package metadata its default `info` reports.

use std::cell::RefCell;
use std::sync::OnceLock;

use crate::{Package, RewardModel, Selector};

static PACKAGE: OnceLock<Package> = OnceLock::new();

thread_local! {
    // A component instance runs on one thread, so thread-local storage is
    // the instance's global state.
    static REWARD_MODEL: RefCell<Option<Box<dyn RewardModel>>> =
        const { RefCell::new(None) };
    static SELECTOR: RefCell<Option<Box<dyn Selector>>> =
        const { RefCell::new(None) };
}

/// Records the plugin crate's package metadata. Later calls are ignored.
pub fn set_package(package: Package) {
    let _ = PACKAGE.set(package);
}

pub(crate) fn package() -> Package {
    *PACKAGE
        .get()
        .expect("package metadata is recorded by the export macro")
}

/// Runs `call` on the reward model, creating it on first use.
pub fn with_reward_model<R>(
    create: fn() -> Box<dyn RewardModel>,
    call: impl FnOnce(&mut dyn RewardModel) -> R,
) -> R {
    REWARD_MODEL.with(|cell| {
        let mut plugin = cell.borrow_mut();
        call(plugin.get_or_insert_with(create).as_mut())
    })
}

/// Runs `call` on the selector, creating it on first use.
pub fn with_selector<R>(
    create: fn() -> Box<dyn Selector>,
    call: impl FnOnce(&mut dyn Selector) -> R,
) -> R {
    SELECTOR.with(|cell| {
        let mut plugin = cell.borrow_mut();
        call(plugin.get_or_insert_with(create).as_mut())
    })
}

/// Accepts only an empty configuration object.
pub(crate) fn reject_config(config_json: &str) -> Result<(), String> {
    let compact: String = config_json.chars().filter(|c| !c.is_whitespace()).collect();
    if compact == "{}" {
        Ok(())
    } else {
        Err(format!(
            "this plugin takes no [config] settings, but got {config_json}"
        ))
    }
}
