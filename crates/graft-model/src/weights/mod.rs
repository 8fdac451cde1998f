//! Pure-Rust import of PyTorch `.pth` state dicts (nothing is ever executed) and a
//! safetensors cache for them.
//!
//! ```no_run
//! # fn main() -> Result<(), graft_model::WeightError> {
//! use std::path::Path;
//! let sd = graft_model::load_pth_cached(
//!     Path::new("weights/mobilenet_v2-b0353104.pth"),
//!     Path::new("cache/mobilenet_v2-b0353104.safetensors"),
//! )?;
//! let w = sd.require("features.0.0.weight", &[32, 3, 3, 3])?;
//! # let _ = w; Ok(()) }
//! ```

mod error;
mod legacy;
pub mod pickle;
mod safetensors_io;
mod statedict;
mod tensor;
#[cfg(test)]
mod testutil;
pub mod verify;
mod zipfmt;

use std::path::Path;

pub use error::WeightError;
pub use safetensors_io::{load_safetensors, save_safetensors};
pub use statedict::StateDict;
pub use tensor::{DType, Tensor};
pub use verify::{expected_hash_prefix, sha256_bytes, sha256_file, verify_hash_prefix};

/// Load a `torch.save`d state dict, detecting the zip (≥1.6) or legacy layout.
pub fn load_pth(path: impl AsRef<Path>) -> Result<StateDict, WeightError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| WeightError::io(path, "read", e))?;
    load_pth_bytes(&bytes, path)
}

/// [`load_pth`] on bytes already in memory; `origin` is only used in messages.
pub fn load_pth_bytes(bytes: &[u8], origin: &Path) -> Result<StateDict, WeightError> {
    let result = if bytes.starts_with(b"PK\x03\x04") {
        zipfmt::parse(bytes, origin)
    } else if bytes.get(257..262) == Some(b"ustar") {
        Err(error::ParseError::unsupported(
            "this is the pre-0.4 tar-based torch.save format",
        ))
    } else {
        legacy::parse(bytes, origin)
    };
    let sd = result.map_err(|e| e.at(origin))?;
    tracing::info!("{}: loaded {} tensors", origin.display(), sd.len());
    Ok(sd)
}

/// Load from the safetensors cache if it is readable; otherwise read the `.pth`
/// (checking its sha256 against the name first, when the name carries a hash) and
/// write the cache. A corrupt cache is rebuilt rather than trusted.
pub fn load_pth_cached(pth: &Path, cache: &Path) -> Result<StateDict, WeightError> {
    if cache.exists() {
        match load_safetensors(cache) {
            Ok(sd) => return Ok(sd),
            Err(e) => tracing::warn!("ignoring unreadable cache: {e}"),
        }
    }
    if expected_hash_prefix(pth).is_some() {
        verify_hash_prefix(pth)?;
    } else {
        tracing::info!("{}: no hash in the file name; not verified", pth.display());
    }
    let sd = load_pth(pth)?;
    save_safetensors(&sd, cache)?;
    Ok(sd)
}

#[cfg(test)]
mod tests {
    use super::testutil::{legacy_file, zip_file, FixtureTensor};
    use super::*;

    #[test]
    fn autodetects_both_formats_from_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tensors = FixtureTensor::varied();
        for (name, bytes) in [
            ("legacy.pth", legacy_file(&tensors, 2)),
            ("zip.pth", zip_file(&tensors, "archive", 2)),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            let sd = load_pth(&path).expect("loads");
            assert_eq!(sd.len(), tensors.len());
            assert_eq!(sd.source(), path.as_path());
            let fc = sd.require("fc.weight", &[3, 2]).expect("fc");
            assert_eq!(fc.data, vec![1., 4., 2., 5., 3., 6.]);
        }
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope-12345678.pth");
        let msg = load_pth(&missing).expect_err("missing").to_string();
        assert!(msg.contains("nope-12345678.pth"), "{msg}");

        let junk = dir.path().join("junk.pth");
        std::fs::write(&junk, b"hello world").expect("write");
        let msg = load_pth(&junk).expect_err("junk").to_string();
        assert!(
            msg.contains("junk.pth") && msg.contains("re-download"),
            "{msg}"
        );

        let sd = load_pth_bytes(&legacy_file(&FixtureTensor::varied(), 2), &junk).expect("ok");
        let msg = sd
            .require("fc.weight", &[2, 3])
            .expect_err("shape")
            .to_string();
        assert!(msg.contains("junk.pth") && msg.contains("[3, 2]"), "{msg}");
        assert!(matches!(
            sd.require("nope", &[1]),
            Err(WeightError::MissingTensor { .. })
        ));
    }

    #[test]
    fn unknown_opcode_error_names_opcode_and_offset() {
        let mut bytes = legacy_file(&FixtureTensor::varied(), 2);
        // Byte 2 is the LONG1 of the magic-number pickle; INT (text protocol) is refused.
        bytes[2] = b'I';
        let msg = load_pth_bytes(&bytes, Path::new("x.pth"))
            .expect_err("bad")
            .to_string();
        assert!(
            msg.contains("INT") && msg.contains("offset 2") && msg.contains("x.pth"),
            "{msg}"
        );
    }

    #[test]
    fn cached_load_writes_then_reuses_and_rebuilds_corrupt_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pth = dir.path().join("tiny.pth");
        std::fs::write(&pth, legacy_file(&FixtureTensor::varied(), 2)).expect("write");
        let cache = dir.path().join("cache/tiny.safetensors");
        let first = load_pth_cached(&pth, &cache).expect("convert");
        assert!(cache.exists());
        std::fs::remove_file(&pth).expect("rm");
        let second = load_pth_cached(&pth, &cache).expect("from cache");
        assert_eq!(first.entries(), second.entries());
        std::fs::write(&cache, b"garbage").expect("corrupt");
        assert!(
            load_pth_cached(&pth, &cache).is_err(),
            "pth gone and cache corrupt"
        );
    }

    #[test]
    fn cached_load_verifies_hash_in_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pth = dir.path().join("tiny-00000000.pth");
        std::fs::write(&pth, legacy_file(&FixtureTensor::varied(), 2)).expect("write");
        let err = load_pth_cached(&pth, &dir.path().join("c.safetensors")).expect_err("hash");
        assert!(matches!(err, WeightError::HashMismatch { .. }), "{err}");
    }
}
