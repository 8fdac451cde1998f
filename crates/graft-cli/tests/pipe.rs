//! Output into a pipe whose reader has gone (`graft runs show | head`) ends graft quietly, with
//! the shell's status for SIGPIPE, instead of a panic.

use std::process::{Command, Stdio};

#[test]
fn a_closed_pipe_stops_graft_quietly() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["models", "list"])
        .env("GRAFT_CACHE", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The reader goes before graft has printed anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        matches!(out.status.code(), Some(0 | 141)),
        "{:?}: {err}",
        out.status
    );
}
