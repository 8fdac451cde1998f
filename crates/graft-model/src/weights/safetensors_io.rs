//! safetensors cache of a [`StateDict`]: tensors stored as F32, with the original order
//! and dtypes kept in the header metadata (safetensors itself sorts tensors by name).

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::error::WeightError;
use super::statedict::StateDict;
use super::tensor::{decode, DType, Tensor};

const ORDER_KEY: &str = "graft.order";
const DTYPES_KEY: &str = "graft.dtypes";

fn st_err(path: &Path, detail: impl std::fmt::Display) -> WeightError {
    WeightError::Safetensors {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// Write `sd` to `path` atomically: a temp file in the same folder, fsync, then rename,
/// so a crash never leaves a half-written cache that later loads as valid.
pub fn save_safetensors(sd: &StateDict, path: &Path) -> Result<(), WeightError> {
    if let Some(bad) = sd.names().find(|n| n.contains('\n')) {
        return Err(st_err(
            path,
            format!("tensor name {bad:?} contains a newline, which the order metadata cannot hold"),
        ));
    }
    let bytes: Vec<Vec<u8>> = sd
        .iter()
        .map(|(_, t)| t.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for ((name, t), b) in sd.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, t.shape.clone(), b)
            .map_err(|e| st_err(path, format!("tensor `{name}`: {e}")))?;
        views.push((name, view));
    }
    let meta = HashMap::from([
        (
            ORDER_KEY.to_string(),
            sd.names().collect::<Vec<_>>().join("\n"),
        ),
        (
            DTYPES_KEY.to_string(),
            sd.iter()
                .map(|(_, t)| t.dtype.name())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ]);
    let out = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| st_err(path, e))?;
    let out = canonical_header(out).map_err(|e| st_err(path, e))?;

    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| WeightError::io(dir, "create directory", e))?;
    }
    graft_data::atomic::write_atomic(path, &out)
        .map_err(|e| WeightError::io(path, "write (atomically)", e))
}

/// The same file with its JSON header keys sorted: the metadata map is a `HashMap`, whose order
/// changes from run to run, and equal weights must give byte-identical files.
fn canonical_header(file: Vec<u8>) -> Result<Vec<u8>, String> {
    let n = file
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or("file shorter than its header")? as usize;
    let header = file.get(8..8 + n).ok_or("header longer than the file")?;
    // serde_json's map is a BTreeMap: re-serialising sorts every object's keys.
    let value: serde_json::Value = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let mut json = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + file.len() - 8 - n);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&file[8 + n..]);
    Ok(out)
}

/// Read a safetensors file into a [`StateDict`]. Order and original dtypes come from
/// graft's metadata when present (else name order, dtype from the file). F32/F16/BF16/
/// F64 and integer/bool tensors are all converted to f32.
pub fn load_safetensors(path: &Path) -> Result<StateDict, WeightError> {
    let buf = fs::read(path).map_err(|e| WeightError::io(path, "read", e))?;
    let st = SafeTensors::deserialize(&buf).map_err(|e| st_err(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&buf).map_err(|e| st_err(path, e))?;
    let meta = header.metadata().as_ref();

    let mut names: Vec<String> = st.names().into_iter().map(str::to_owned).collect();
    names.sort();
    let mut dtypes: HashMap<String, DType> = HashMap::new();
    if let Some(order) = meta.and_then(|m| m.get(ORDER_KEY)) {
        let listed: Vec<&str> = if order.is_empty() {
            vec![]
        } else {
            order.split('\n').collect()
        };
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        if sorted == names {
            if let Some(d) = meta.and_then(|m| m.get(DTYPES_KEY)) {
                let d: Vec<&str> = d.split('\n').collect();
                if d.len() == listed.len() {
                    for (n, d) in listed.iter().zip(d) {
                        if let Some(d) = DType::from_name(d) {
                            dtypes.insert(n.to_string(), d);
                        }
                    }
                }
            }
            names = listed.into_iter().map(str::to_owned).collect();
        } else {
            tracing::warn!(
                "{}: order metadata does not match the tensors; using name order",
                path.display()
            );
        }
    }

    let mut sd = StateDict::new(path);
    for name in names {
        let view = st.tensor(&name).map_err(|e| st_err(path, e))?;
        let file_dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F64 => DType::F64,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::I64 => DType::I64,
            Dtype::I32 => DType::I32,
            Dtype::I16 => DType::I16,
            Dtype::I8 => DType::I8,
            Dtype::U8 => DType::U8,
            Dtype::BOOL => DType::Bool,
            other => {
                return Err(st_err(
                    path,
                    format!("tensor `{name}` has unsupported dtype {other:?}"),
                ))
            }
        };
        let numel: usize = view.shape().iter().product();
        let data = decode(view.data(), file_dtype, 0, numel)
            .map_err(|e| st_err(path, format!("tensor `{name}`: {e}")))?;
        let dtype = dtypes.get(&name).copied().unwrap_or(file_dtype);
        sd.insert(
            name,
            Tensor {
                shape: view.shape().to_vec(),
                data,
                dtype,
            },
        );
    }
    Ok(sd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateDict {
        let mut sd = StateDict::new("sample.pth");
        sd.insert(
            "z.last",
            Tensor {
                shape: vec![2, 2],
                data: vec![1.0, -0.0, f32::MIN_POSITIVE, 3.5],
                dtype: DType::F32,
            },
        );
        sd.insert(
            "a.first",
            Tensor {
                shape: vec![],
                data: vec![42.0],
                dtype: DType::I64,
            },
        );
        sd.insert(
            "m.nan",
            Tensor {
                shape: vec![3],
                data: vec![f32::from_bits(0x7fc0_1234), f32::INFINITY, 1e-40],
                dtype: DType::F16,
            },
        );
        sd.insert(
            "empty",
            Tensor {
                shape: vec![0, 4],
                data: vec![],
                dtype: DType::F32,
            },
        );
        sd
    }

    #[test]
    fn round_trip_is_bit_exact_and_ordered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cache/sub/w.safetensors");
        let sd = sample();
        save_safetensors(&sd, &path).expect("save");
        let back = load_safetensors(&path).expect("load");
        assert_eq!(
            back.names().collect::<Vec<_>>(),
            sd.names().collect::<Vec<_>>()
        );
        for ((_, a), (_, b)) in sd.iter().zip(back.iter()) {
            assert_eq!(a.shape, b.shape);
            assert_eq!(a.dtype, b.dtype);
            let bits = |t: &Tensor| t.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a), bits(b));
        }
        assert_eq!(back.source(), path.as_path());
        // Only the final file remains: the temp file was renamed away.
        let left: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("ls")
            .collect();
        assert_eq!(left.len(), 1);
        // Same weights, same bytes, every time (the metadata map has no fixed order).
        let first = fs::read(&path).expect("read");
        for _ in 0..8 {
            save_safetensors(&sd, &path).expect("save");
            assert_eq!(fs::read(&path).expect("read"), first);
        }
    }

    #[test]
    fn corrupt_cache_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.safetensors");
        save_safetensors(&sample(), &path).expect("save");
        let bytes = fs::read(&path).expect("read");
        for cut in [0, 7, 8, 20, bytes.len() / 2, bytes.len() - 1] {
            fs::write(&path, &bytes[..cut]).expect("write");
            let msg = load_safetensors(&path).expect_err("truncated").to_string();
            assert!(
                msg.contains("w.safetensors") && msg.contains("delete"),
                "{msg}"
            );
        }
    }

    #[test]
    fn foreign_files_fall_back_to_name_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("foreign.safetensors");
        let a = 2.0f32.to_le_bytes();
        let b: Vec<u8> = [1u16, 2].iter().flat_map(|x| x.to_le_bytes()).collect();
        let views = vec![
            ("b", TensorView::new(Dtype::F32, vec![1], &a).expect("view")),
            ("a", TensorView::new(Dtype::I16, vec![2], &b).expect("view")),
        ];
        fs::write(
            &path,
            safetensors::tensor::serialize(views, None).expect("ser"),
        )
        .expect("write");
        let sd = load_safetensors(&path).expect("load");
        assert_eq!(sd.names().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            sd.get("a").map(|t| (t.dtype, t.data.clone())),
            Some((DType::I16, vec![1., 2.]))
        );
    }
}
