//! A fine-tune's whole state in one file, replaced atomically: where the schedule stands
//! (stage, epoch, update), the history so far, and every buffer (weights, AdamW moments, the
//! best weights of this stage and of the stages before). Data order and dropout are derived
//! from the seed and these counters, so nothing else is needed to continue at the exact step.
//!
//! Layout: `GRAFTFT1`, u64 LE length of a JSON header, the header, then the buffers as f32 LE
//! in header order.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use crate::model::write_atomic;
use crate::TrainError;

const MAGIC: &[u8; 8] = b"GRAFTFT1";

#[derive(serde::Serialize, serde::Deserialize)]
struct Header<S> {
    state: S,
    /// Length of each buffer that follows.
    lens: Vec<usize>,
}

/// Write `state` and `buffers` to `path` (temporary file, then rename).
pub fn save<S: Serialize>(path: &Path, state: &S, buffers: &[&[f32]]) -> Result<(), TrainError> {
    let header = Header {
        state,
        lens: buffers.iter().map(|b| b.len()).collect(),
    };
    let json = serde_json::to_vec(&header)
        .map_err(|e| TrainError::Finetune(format!("encoding the checkpoint: {e}")))?;
    let total: usize = buffers.iter().map(|b| b.len() * 4).sum();
    let mut out = Vec::with_capacity(16 + json.len() + total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for b in buffers {
        for v in *b {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    write_atomic(path, &out)
}

/// A checkpoint's state and buffers.
pub type Loaded<S> = (S, Vec<Vec<f32>>);

/// Read what [`save`] wrote; `None` when there is no checkpoint.
pub fn load<S: DeserializeOwned>(path: &Path) -> Result<Option<Loaded<S>>, TrainError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TrainError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let bad = |why: &str| TrainError::BadCheckpoint {
        path: path.to_path_buf(),
        why: format!("{why}; delete it to start the fine-tune over"),
    };
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(bad("not a graft fine-tune checkpoint"));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[8..16]);
    let n = usize::try_from(u64::from_le_bytes(len8)).map_err(|_| bad("header too long"))?;
    let body = bytes
        .get(16..16 + n)
        .ok_or_else(|| bad("truncated header"))?;
    let header: Header<S> =
        serde_json::from_slice(body).map_err(|e| bad(&format!("unreadable header: {e}")))?;
    let mut at = 16 + n;
    let mut buffers = Vec::with_capacity(header.lens.len());
    for &len in &header.lens {
        let raw = bytes
            .get(at..at + len * 4)
            .ok_or_else(|| bad("truncated data"))?;
        buffers.push(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
        at += len * 4;
    }
    if at != bytes.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(Some((header.state, buffers)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_an_error() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = tmp.path().join("ck.bin");
        assert!(load::<u32>(&p).expect("absent").is_none());
        save(&p, &7u32, &[&[1.0, 2.5], &[], &[-3.0]]).expect("save");
        let (s, b) = load::<u32>(&p).expect("load").expect("present");
        assert_eq!(s, 7);
        assert_eq!(b, vec![vec![1.0, 2.5], vec![], vec![-3.0]]);
        let bytes = std::fs::read(&p).expect("read");
        std::fs::write(&p, &bytes[..bytes.len() - 2]).expect("truncate");
        let err = load::<u32>(&p).expect_err("truncated");
        assert!(err.to_string().contains("ck.bin"), "{err}");
    }
}
