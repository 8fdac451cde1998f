//! Integrity check for torchvision/torch-hub style names (`mobilenet_v2-b0353104.pth`),
//! whose suffix is the start of the file's sha256.

use std::path::Path;

use super::error::WeightError;

/// Lowercase hex sha256 of a file (graft-data's, with the error naming the weights file).
pub fn sha256_file(path: &Path) -> Result<String, WeightError> {
    graft_data::hash::sha256_file(path).map_err(|e| WeightError::io(path, "read", e))
}

pub use graft_data::hash::sha256_bytes;

/// The hex hash prefix in a name like `name-<hex>.ext`: the text after the last `-` of
/// the stem, if it is 6–64 lowercase hex digits (torchvision uses 8).
pub fn expected_hash_prefix(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let (_, suffix) = stem.rsplit_once('-')?;
    let is_hex = suffix
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (is_hex && (6..=64).contains(&suffix.len())).then(|| suffix.to_string())
}

/// Check that the file's sha256 starts with the prefix in its name; returns the full hash.
pub fn verify_hash_prefix(path: &Path) -> Result<String, WeightError> {
    let expected = expected_hash_prefix(path).ok_or_else(|| WeightError::NoHashInName {
        path: path.to_path_buf(),
    })?;
    let actual = sha256_file(path)?;
    if !actual.starts_with(&expected) {
        return Err(WeightError::HashMismatch {
            path: path.to_path_buf(),
            expected,
            actual,
        });
    }
    tracing::debug!("{}: sha256 {actual} matches its name", path.display());
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_from_names() {
        let p = |s: &str| expected_hash_prefix(Path::new(s));
        assert_eq!(p("mobilenet_v2-b0353104.pth").as_deref(), Some("b0353104"));
        assert_eq!(
            p("/x/y/efficientnet-lite0-57934424.pth").as_deref(),
            Some("57934424")
        );
        assert_eq!(p("resnet18-f37072fd.pt").as_deref(), Some("f37072fd"));
        assert_eq!(p("efficientnet-lite0.pth"), None);
        assert_eq!(
            p("model-B0353104.pth"),
            None,
            "torch hub hashes are lowercase"
        );
        assert_eq!(p("model-abc.pth"), None, "too short to mean anything");
        assert_eq!(p("weights.pth"), None);
    }

    #[test]
    fn sha256_and_mismatch_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = dir.path().join("abc-ba7816bf.bin");
        std::fs::write(&ok, b"abc").expect("write");
        let hash = verify_hash_prefix(&ok).expect("matches");
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_bytes(b"abc"), hash);

        let bad = dir.path().join("abc-00000000.bin");
        std::fs::write(&bad, b"abc").expect("write");
        let msg = verify_hash_prefix(&bad).expect_err("mismatch").to_string();
        assert!(msg.contains("abc-00000000.bin"), "{msg}");
        assert!(
            msg.contains("00000000") && msg.contains("ba7816bf8f01"),
            "{msg}"
        );

        let unnamed = dir.path().join("abc.bin");
        std::fs::write(&unnamed, b"abc").expect("write");
        assert!(matches!(
            verify_hash_prefix(&unnamed),
            Err(WeightError::NoHashInName { .. })
        ));
        assert!(matches!(
            sha256_file(&dir.path().join("missing")),
            Err(WeightError::Io { .. })
        ));
    }
}
