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

/// Write a file the user asked for (a report, `--json`), atomically (graft-data's one atomic
/// write), the error naming it.
pub fn write_file(
    path: impl AsRef<std::path::Path>,
    bytes: impl AsRef<[u8]>,
) -> anyhow::Result<()> {
    let path = path.as_ref();
    graft_data::atomic::write_atomic(path, bytes.as_ref())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}
