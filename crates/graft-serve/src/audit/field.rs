//! Field predictions: made on a device by the exported web app while offline, sent by
//! `POST /feedback` when it is online again (table `field_predictions`). Rare and small (a
//! device catching up), so they are written on a connection of their own beside the trail's
//! writer thread (WAL, busy wait), not through its queue.

use std::path::Path;
use std::time::Duration;

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{now_ms, open, other, rows_since, sql, AuditError};

/// One prediction as the device made it (and as `POST /feedback` takes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldPrediction {
    /// The device's own count: with the device's identifier, what makes a resend harmless.
    pub seq: i64,
    /// When the device made it (ms since the Unix epoch, the device's clock).
    pub made_ms: i64,
    /// SHA-256 of the ONNX file that made it (the exported model.json's).
    pub sha256: String,
    pub predicted: String,
    pub probability: f32,
    pub confident: bool,
    pub top: Vec<(String, f32)>,
    pub latency_ms: f64,
}

/// A field prediction as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldRecord {
    pub received_ms: i64,
    /// The device's random identifier.
    pub client: String,
    pub request_id: String,
    /// First 16 hex digits of the API key's SHA-256, when one was sent.
    pub key_hash: Option<String>,
    #[serde(flatten)]
    pub prediction: FieldPrediction,
}

/// Record `rows` from device `client` in one transaction; returns how many were new (a row
/// already recorded, the same client and seq, is skipped).
pub fn insert(
    path: &Path,
    client: &str,
    rows: &[FieldPrediction],
    key_hash: Option<&str>,
) -> Result<usize, AuditError> {
    let mut conn = open(path)?;
    let err = sql(path);
    let tx = conn.transaction().map_err(&err)?;
    let mut n = 0;
    {
        let mut stmt = tx
            .prepare(
                "INSERT OR IGNORE INTO field_predictions (received_ms, made_ms, client, seq,
                     request_id, sha256, key_hash, predicted, probability, confident, top,
                     latency_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .map_err(&err)?;
        let now = now_ms();
        let request = super::request_id();
        for p in rows {
            let top = serde_json::to_string(&p.top).map_err(|e| other(path, e.to_string()))?;
            n += stmt
                .execute(params![
                    now,
                    p.made_ms,
                    client,
                    p.seq,
                    request,
                    p.sha256,
                    key_hash,
                    p.predicted,
                    p.probability,
                    p.confident,
                    top,
                    p.latency_ms
                ])
                .map_err(&err)?;
        }
    }
    tx.commit().map_err(&err)?;
    Ok(n)
}

/// The trail's field predictions made in the last `window` (all with `None`), oldest first.
pub fn read(path: &Path, window: Option<Duration>) -> Result<Vec<FieldRecord>, AuditError> {
    let query = "SELECT received_ms, client, request_id, key_hash, seq, made_ms, sha256,
             predicted, probability, confident, top, latency_ms
         FROM field_predictions WHERE made_ms >= ?1 ORDER BY made_ms, id";
    rows_since(path, window, query, |r| {
        let top: String = r.get(10)?;
        Ok(FieldRecord {
            received_ms: r.get(0)?,
            client: r.get(1)?,
            request_id: r.get(2)?,
            key_hash: r.get(3)?,
            prediction: FieldPrediction {
                seq: r.get(4)?,
                made_ms: r.get(5)?,
                sha256: r.get(6)?,
                predicted: r.get(7)?,
                probability: r.get(8)?,
                confident: r.get(9)?,
                top: serde_json::from_str(&top).unwrap_or_default(),
                latency_ms: r.get(11)?,
            },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resend_is_recorded_once_and_reads_back() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("audit.db");
        let p = FieldPrediction {
            seq: 1,
            made_ms: 1_000,
            sha256: "ab".into(),
            predicted: "red".into(),
            probability: 0.8,
            confident: true,
            top: vec![("red".into(), 0.8), ("green".into(), 0.2)],
            latency_ms: 60.0,
        };
        assert_eq!(
            insert(&path, "phone", std::slice::from_ref(&p), None).expect("first"),
            1
        );
        assert_eq!(
            insert(&path, "phone", std::slice::from_ref(&p), None).expect("again"),
            0
        );
        // Another device's seq 1 is another prediction.
        assert_eq!(
            insert(&path, "tablet", std::slice::from_ref(&p), Some("k")).expect("other"),
            1
        );
        let rows = read(&path, None).expect("read");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].prediction, p);
        assert_eq!(rows[1].key_hash.as_deref(), Some("k"));
    }
}
