//! PyTorch's zip `torch.save` format (default since 1.6): `<prefix>/data.pkl` holds the
//! state dict with persistent ids `('storage', type, key, location, numel)`, and each
//! storage's raw little-endian bytes live in `<prefix>/data/<key>`.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

use super::error::ParseError;
use super::pickle;
use super::statedict::{build, tensor_specs, StateDict};

/// Cap on the decompressed size of data.pkl, so a lying header cannot exhaust memory.
const MAX_PICKLE_BYTES: u64 = 1 << 30;

type Archive<'a> = zip::ZipArchive<Cursor<&'a [u8]>>;

/// Read up to `limit` bytes of entry `name`.
fn read_entry(archive: &mut Archive<'_>, name: &str, limit: u64) -> Result<Vec<u8>, ParseError> {
    let entry = archive
        .by_name(name)
        .map_err(|e| ParseError::format(format!("zip entry `{name}`: {e}")))?;
    let mut out = Vec::new();
    entry
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| ParseError::format(format!("zip entry `{name}`: {e}")))?;
    Ok(out)
}

/// Parse a whole zip-format checkpoint held in memory.
pub(crate) fn parse(bytes: &[u8], source: &Path) -> Result<StateDict, ParseError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| ParseError::format(format!("broken zip archive: {e}")))?;
    // The top folder is `archive` in recent torch, the file stem in older ones.
    let pkl = archive
        .file_names()
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .min_by_key(|n| n.len())
        .map(str::to_owned)
        .ok_or_else(|| {
            ParseError::format(
                "zip archive has no `<name>/data.pkl` entry; it is not a torch.save file",
            )
        })?;
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];

    let byteorder = format!("{prefix}byteorder");
    if archive.index_for_name(&byteorder).is_some() {
        let order = read_entry(&mut archive, &byteorder, 16)?;
        if order.trim_ascii() != b"little" {
            return Err(ParseError::unsupported(format!(
                "byte order `{}`; only little-endian checkpoints are supported",
                String::from_utf8_lossy(&order)
            )));
        }
    }

    let data = read_entry(&mut archive, &pkl, MAX_PICKLE_BYTES)?;
    let p = pickle::parse(&data, 0).map_err(|e| ParseError::pickle(pkl.clone(), e))?;
    let specs = tensor_specs(&p)?;

    let mut raw: HashMap<String, Vec<u8>> = HashMap::new();
    for s in &specs {
        if raw.contains_key(&s.storage.key) {
            continue;
        }
        let name = format!("{prefix}data/{}", s.storage.key);
        let want = s
            .storage
            .numel
            .checked_mul(s.storage.dtype.size())
            .ok_or_else(|| ParseError::format(format!("storage `{name}` size overflows")))?;
        let got = read_entry(&mut archive, &name, want as u64)?;
        if got.len() != want {
            return Err(ParseError::format(format!(
                "zip entry `{name}` has {} bytes, its tensors need {want} ({} {} elements)",
                got.len(),
                s.storage.numel,
                s.storage.dtype
            )));
        }
        raw.insert(s.storage.key.clone(), got);
    }
    tracing::debug!(
        "{}: zip checkpoint, {} tensors, {} storages",
        source.display(),
        specs.len(),
        raw.len()
    );
    let storages: HashMap<String, &[u8]> =
        raw.iter().map(|(k, v)| (k.clone(), v.as_slice())).collect();
    build(source, specs, &storages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::testutil::{zip_file, FixtureTensor};

    fn load(bytes: &[u8]) -> Result<StateDict, ParseError> {
        parse(bytes, Path::new("fixture.pt"))
    }

    #[test]
    fn reads_zip_checkpoints_with_any_prefix_and_protocol() {
        let tensors = FixtureTensor::varied();
        for (prefix, proto) in [("archive", 2), ("resnet_tiny", 4)] {
            let sd = load(&zip_file(&tensors, prefix, proto)).expect("fixture parses");
            let names: Vec<&str> = sd.names().collect();
            let want: Vec<&str> = tensors.iter().map(|t| t.name).collect();
            assert_eq!(names, want);
            for t in &tensors {
                let got = sd.get(t.name).expect("present");
                assert_eq!(
                    (&got.shape, &got.data, got.dtype),
                    (&t.size, &t.expected, t.dtype)
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = zip_file(&FixtureTensor::varied(), "archive", 2);
        for cut in 0..bytes.len() {
            assert!(load(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
    }

    #[test]
    fn short_storage_entry_is_reported() {
        let mut tensors = FixtureTensor::varied();
        tensors[1].declared_numel = Some(7);
        let err = load(&zip_file(&tensors, "archive", 2)).expect_err("short storage");
        assert!(err.to_string().contains("archive/data/11"), "{err}");
    }

    #[test]
    fn zip_without_data_pkl_is_reported() {
        let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zw.start_file("hello.txt", zip::write::SimpleFileOptions::default())
            .expect("entry");
        let bytes = zw.finish().expect("finish").into_inner();
        let err = load(&bytes).expect_err("not torch");
        assert!(err.to_string().contains("data.pkl"), "{err}");
    }
}
