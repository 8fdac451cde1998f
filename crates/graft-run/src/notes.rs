//! Notes for the person running graft that do not stop the work ("ONNX Runtime unavailable,
//! using burn"). The library does not print: a front end installs where notes go (the command
//! line prints them on stderr unless `-q`); without one they go to the log.

use std::sync::OnceLock;

static SINK: OnceLock<fn(&str)> = OnceLock::new();

/// Where notes go from now on; the first call wins.
pub fn set_sink(sink: fn(&str)) {
    let _ = SINK.set(sink);
}

/// Pass one note on.
pub fn note(text: &str) {
    match SINK.get() {
        Some(sink) => sink(text),
        None => tracing::warn!("{text}"),
    }
}
