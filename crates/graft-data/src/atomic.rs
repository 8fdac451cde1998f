//! The one atomic file write of graft: a crash or `kill -9` leaves either the old file, no file,
//! or the whole new one, never a truncated file under the final name.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` atomically, through a hidden temporary sibling that names this
/// process (two processes writing the same file never share a temporary file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_via(path, &temp_sibling(path), |f| f.write_all(bytes))
}

/// [`write_atomic`] with the content streamed by `fill` (a CSV writer, an encoder).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    write_atomic_via(path, &temp_sibling(path), fill)
}

/// The steps, with the temporary file chosen by the caller (a cache whose writers recognise
/// their own leftovers): write `tmp`, fsync it, rename it onto `path`, fsync the folder.
pub fn write_atomic_via(
    path: &Path,
    tmp: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let result = (|| {
        let mut f = File::create(tmp)?;
        fill(&mut f)?;
        f.flush()?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result?;
    sync_dir(path);
    Ok(())
}

/// `.NAME.tmp-PID` beside `path`: a dot-name, so folder scanners skip one a kill left behind.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Make a rename durable. Best effort: some file systems refuse to open folders.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("a.json");
        write_atomic(&path, b"one").expect("write");
        write_atomic(&path, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file_and_removes_the_temporary() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("a.csv");
        write_atomic(&path, b"old").expect("write");
        let err = write_atomic_with(&path, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .expect_err("fails");
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        assert_eq!(std::fs::read_dir(tmp.path()).expect("list").count(), 1);
    }

    #[test]
    fn a_missing_folder_is_an_error() {
        let tmp = tempfile::tempdir().expect("tmp");
        assert!(write_atomic(&tmp.path().join("no/such/dir/f"), b"x").is_err());
    }
}
