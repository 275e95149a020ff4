//! The `laser-host` command: parses arguments, runs the command, and prints
//! any error chain once.

use std::io::IsTerminal;
use std::process::ExitCode;

use laser_host::cli::Cli;

fn main() -> ExitCode {
    exit_on_closed_pipe();
    quiet_wayland_probe();
    ignore_empty_settings();
    let cli = Cli::parse_with_sources();
    let filter = if cli.verbose {
        "laser=debug,laser_host=debug,laser_gpu=debug,laser_plugins=debug"
    } else {
        // Plugin failures and other warnings reach the user as `warning:`
        // lines; the log repeats them only with --verbose.
        "error"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LASER_HOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match laser_host::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Restores the default action of SIGPIPE, which Rust's runtime ignores,
/// so that `laser-host plugins list DIR | head -1` ends quietly when the
/// reader closes the pipe, as other command-line tools do, instead of
/// panicking in `println!`.
fn exit_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists,
    // and it changes only how the process reacts to the signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Unsets the `LASER_HOST_*` variables that are set but empty, so that
/// `LASER_HOST_MODEL=` means the default model rather than an empty path,
/// as for most command-line tools.
fn ignore_empty_settings() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(name, value)| {
            name.to_str()
                .is_some_and(|name| name.starts_with("LASER_HOST_"))
                && value.is_empty()
        })
        .map(|(name, _)| name)
        .collect();
    for name in empty {
        // SAFETY: called first thing in `main`, before any other thread
        // exists that could read the environment.
        unsafe { std::env::remove_var(name) };
    }
}

/// Mesa's Vulkan drivers probe for a Wayland display when the instance is
/// created, and libwayland prints `error: XDG_RUNTIME_DIR is invalid or not
/// set` on headless machines where that variable is unset. No surface is
/// ever created here, so pointing the variable at the temporary folder only
/// silences that message.
fn quiet_wayland_probe() {
    if cfg!(target_os = "linux") && std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: called first thing in `main`, before any other thread
        // exists that could read the environment.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
}
