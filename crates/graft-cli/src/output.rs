//! What the binary prints besides results and errors. `-q` silences it here, in one place:
//! status lines ([`say!`]), notes on stderr ([`note!`]) and progress bars.

use std::sync::atomic::{AtomicBool, Ordering};

static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A status line on stdout (stage headers, summaries, "wrote …"); nothing under `-q`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::output::quiet() {
            println!($($arg)*);
        }
    };
}

/// A note or warning on stderr that does not stop the command; nothing under `-q`.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        if !$crate::output::quiet() {
            eprintln!($($arg)*);
        }
    };
}
