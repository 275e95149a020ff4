//! Ctrl-C during a long run: the first interrupt requests a stop once
//! the batch (in `dpo`, the step) in progress is saved, and a second one
//! ends the process at once, as before.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the first interrupt.
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C (SIGINT) request a stop instead of ending the process.
/// A process started with SIGINT ignored (a background job of a shell
/// script) keeps ignoring it. Does nothing on platforms other than Unix,
/// where Ctrl-C ends the process at once.
pub fn install() {
    #[cfg(unix)]
    // SAFETY: the handler only touches an atomic and calls write(2) and
    // _exit(2), which are async-signal-safe.
    unsafe {
        let handler: extern "C" fn(libc::c_int) = on_interrupt;
        let previous = libc::signal(libc::SIGINT, handler as *const () as libc::sighandler_t);
        if previous == libc::SIG_IGN {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
        }
    }
}

/// Returns whether an interrupt requested a stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

#[cfg(unix)]
extern "C" fn on_interrupt(_signal: libc::c_int) {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // 128 + SIGINT, the status of a process that Ctrl-C ended.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
    let message = b"\ninterrupted: stopping once the work in progress (a batch, step or eval) is \
                    saved; press Ctrl-C again to stop now and lose it\n";
    // SAFETY: write(2) is async-signal-safe, and the buffer outlives the
    // call. A failed write leaves nothing to do.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
    }
}
