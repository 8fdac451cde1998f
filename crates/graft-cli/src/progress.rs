//! Progress bars for long work. They draw on stderr only when it is a terminal, so logs and
//! piped output stay clean.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting `len` items, with a rate and an ETA; hidden under `-q`.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if crate::output::quiet() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{spinner} {msg:<10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}
