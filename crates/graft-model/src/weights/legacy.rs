//! PyTorch's legacy (pre-1.6) `torch.save` layout: back-to-back pickles — magic number,
//! protocol version, sys info, the state dict (tensors point at storages via persistent
//! ids), the list of storage keys — then each storage in key-list order as an 8-byte
//! little-endian element count followed by its raw little-endian elements.

use std::collections::HashMap;
use std::path::Path;

use super::error::ParseError;
use super::pickle::{self, Pickle, Value};
use super::statedict::{build, tensor_specs, StateDict};
use super::tensor::DType;

/// 0x1950a86a20f9469cfc6c as pickled by LONG1 (little-endian).
const MAGIC_LE: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

fn next(bytes: &[u8], at: usize, part: &str) -> Result<Pickle, ParseError> {
    pickle::parse(bytes, at).map_err(|e| ParseError::pickle(part, e))
}

/// Parse a whole legacy checkpoint held in memory.
pub(crate) fn parse(bytes: &[u8], source: &Path) -> Result<StateDict, ParseError> {
    let magic = next(bytes, 0, "magic number")?;
    if !matches!(magic.root(), Value::BigInt(b) if **b == MAGIC_LE) {
        return Err(ParseError::format(
            "magic number mismatch: this is not a legacy torch.save file",
        ));
    }
    let proto = next(bytes, magic.end(), "protocol version")?;
    match proto.root() {
        Value::Int(PROTOCOL_VERSION) => {}
        other => {
            return Err(ParseError::unsupported(format!(
                "legacy protocol version {other:?}, expected {PROTOCOL_VERSION}"
            )))
        }
    }
    let sys = next(bytes, proto.end(), "sys info")?;
    check_sys_info(&sys)?;
    let sd = next(bytes, sys.end(), "state dict")?;
    let specs = tensor_specs(&sd)?;
    let keys = next(bytes, sd.end(), "storage key list")?;
    let key_list = keys
        .list(keys.root())
        .ok_or_else(|| ParseError::format("storage key list is not a list"))?;

    // Element type and count per storage, as the tensors' persistent ids declare them.
    let mut declared: HashMap<&str, (DType, usize)> = HashMap::new();
    for s in &specs {
        let (dtype, numel) = *declared
            .entry(s.storage.key.as_str())
            .or_insert((s.storage.dtype, s.storage.numel));
        if dtype != s.storage.dtype || numel != s.storage.numel {
            return Err(ParseError::format(format!(
                "storage `{}` is referenced as both {dtype}×{numel} and {}×{}",
                s.storage.key, s.storage.dtype, s.storage.numel
            )));
        }
    }

    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    let mut pos = keys.end();
    for (i, key) in key_list.iter().enumerate() {
        let Value::Str(key) = key else {
            return Err(ParseError::format(format!(
                "storage key #{i} is not a string"
            )));
        };
        let &(dtype, numel) = declared.get(&**key).ok_or_else(|| {
            ParseError::format(format!(
                "storage `{key}` is listed but no tensor uses it, so its element size is unknown"
            ))
        })?;
        let header = bytes.get(pos..pos.saturating_add(8)).ok_or_else(|| {
            ParseError::format(format!(
                "data ends at byte {} before storage `{key}` ({} of {})",
                bytes.len(),
                i + 1,
                key_list.len()
            ))
        })?;
        let mut count = [0u8; 8];
        count.copy_from_slice(header);
        let count = u64::from_le_bytes(count);
        if usize::try_from(count).ok() != Some(numel) {
            return Err(ParseError::format(format!(
                "storage `{key}` holds {count} elements but its tensors declare {numel}"
            )));
        }
        let start = pos + 8;
        let data = numel
            .checked_mul(dtype.size())
            .and_then(|n| start.checked_add(n))
            .and_then(|end| bytes.get(start..end))
            .ok_or_else(|| {
                ParseError::format(format!(
                    "storage `{key}` ({numel} {dtype} elements at byte {start}) runs past the end of the file ({} bytes)",
                    bytes.len()
                ))
            })?;
        pos = start + data.len();
        storages.insert(key.to_string(), data);
    }
    if pos != bytes.len() {
        tracing::warn!(
            "{}: {} trailing bytes after the last storage are ignored",
            source.display(),
            bytes.len() - pos
        );
    }
    tracing::debug!(
        "{}: legacy checkpoint, {} tensors, {} storages",
        source.display(),
        specs.len(),
        storages.len()
    );
    build(source, specs, &storages)
}

fn check_sys_info(sys: &Pickle) -> Result<(), ParseError> {
    let info = sys
        .dict(sys.root())
        .ok_or_else(|| ParseError::format("sys info is not a dict"))?;
    for (k, v) in info {
        if matches!(k, Value::Str(s) if &**s == "little_endian") && *v == Value::Bool(false) {
            return Err(ParseError::unsupported(
                "the file was saved on a big-endian machine",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::testutil::{legacy_file, FixtureTensor};

    fn load(bytes: &[u8]) -> Result<StateDict, ParseError> {
        parse(bytes, Path::new("fixture.pth"))
    }

    #[test]
    fn reads_mixed_dtypes_strides_and_parameters() {
        let tensors = FixtureTensor::varied();
        let sd = load(&legacy_file(&tensors, 2)).expect("fixture parses");
        assert_eq!(sd.len(), tensors.len());
        for (fixture, (name, t)) in tensors.iter().zip(sd.iter()) {
            assert_eq!(name, fixture.name);
            assert_eq!(t.shape, fixture.size, "{name}");
            assert_eq!(t.data, fixture.expected, "{name}");
            assert_eq!(t.dtype, fixture.dtype, "{name}");
        }
    }

    #[test]
    fn reads_protocol_4_and_storage_views() {
        let mut tensors = FixtureTensor::varied();
        tensors.push(FixtureTensor::viewed());
        let sd = load(&legacy_file(&tensors, 4)).expect("fixture parses");
        assert_eq!(sd.len(), tensors.len());
        assert_eq!(sd.get("viewed").map(|t| t.data.clone()), Some(vec![3., 4.]));
        assert_eq!(
            sd.get("shared.b").map(|t| t.data.clone()),
            Some(vec![3., 4., 5.])
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = legacy_file(&FixtureTensor::varied(), 2);
        for cut in 0..bytes.len() {
            assert!(
                load(&bytes[..cut]).is_err(),
                "truncated at {cut} of {}",
                bytes.len()
            );
        }
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        let bytes = legacy_file(&FixtureTensor::varied(), 2);
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let _ = load(&b);
            }
        }
    }

    #[test]
    fn wrong_magic_and_big_endian_are_reported() {
        let mut bytes = legacy_file(&FixtureTensor::varied(), 2);
        bytes[4] ^= 1;
        let err = load(&bytes).expect_err("bad magic");
        assert!(err.to_string().contains("magic number"), "{err}");

        let tensors = FixtureTensor::varied();
        let be = crate::weights::testutil::legacy_file_with(&tensors, 2, false);
        let err = load(&be).expect_err("big endian");
        assert!(err.to_string().contains("big-endian"), "{err}");
    }

    #[test]
    fn storage_count_mismatch_is_reported() {
        let mut tensors = FixtureTensor::varied();
        tensors[0].declared_numel = Some(tensors[0].storage_numel() + 1);
        let err = load(&legacy_file(&tensors, 2)).expect_err("count mismatch");
        assert!(
            err.to_string().contains("elements but its tensors declare"),
            "{err}"
        );
    }
}
