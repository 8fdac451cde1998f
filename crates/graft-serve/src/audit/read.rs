//! Reading the trail back: the server's predictions and failures of a time window.

use std::path::Path;
use std::time::Duration;

use graft_data::image_stats::ImageStats;
use rusqlite::params;

use super::{bytes_to_f32s, now_ms, open, other, sql, Arm, AuditError, Failure, Record};

/// The rows of `query` (whose `?1` is the earliest time) of the last `window` (all with
/// `None`), each made by `row`; from an existing trail only (opening creates one).
pub(crate) fn rows_since<T>(
    path: &Path,
    window: Option<Duration>,
    query: &str,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, AuditError> {
    let since_ms = window.map(|w| now_ms() - w.as_millis() as i64);
    let err = sql(path);
    if !path.is_file() {
        return Err(other(
            path,
            "no such file: graft serve writes it (RUN/audit.db unless --audit or --no-audit)",
        ));
    }
    let conn = open(path)?;
    let mut stmt = conn.prepare(query).map_err(&err)?;
    let rows = stmt
        .query_map(params![since_ms.unwrap_or(i64::MIN)], row)
        .map_err(&err)?
        .collect::<Result<_, _>>()
        .map_err(&err)?;
    Ok(rows)
}

/// The trail's predictions of the last `window` (all with `None`), oldest first.
pub fn read(path: &Path, window: Option<Duration>) -> Result<Vec<Record>, AuditError> {
    let query = "SELECT time_ms, request_id, endpoint, model, version, sha256, key_hash,
             predicted, probability, confident, top, latency_ms, width, height, mean_r, mean_g,
             mean_b, std_r, std_g, std_b, brightness, blur, embedding, arm, answered
         FROM predictions WHERE time_ms >= ?1 ORDER BY id";
    rows_since(path, window, query, |r| {
        let top: String = r.get(10)?;
        Ok(Record {
            time_ms: r.get(0)?,
            request_id: r.get(1)?,
            endpoint: r.get(2)?,
            model: r.get(3)?,
            version: r.get(4)?,
            sha256: r.get(5)?,
            key_hash: r.get(6)?,
            predicted: r.get(7)?,
            probability: r.get(8)?,
            confident: r.get(9)?,
            top: serde_json::from_str(&top).unwrap_or_default(),
            latency_ms: r.get(11)?,
            stats: ImageStats {
                width: r.get(12)?,
                height: r.get(13)?,
                mean: [r.get(14)?, r.get(15)?, r.get(16)?],
                std: [r.get(17)?, r.get(18)?, r.get(19)?],
                brightness: r.get(20)?,
                blur: r.get(21)?,
            },
            embedding: r.get::<_, Option<Vec<u8>>>(22)?.map(|b| bytes_to_f32s(&b)),
            arm: Arm::parse(&r.get::<_, String>(23)?),
            answered: r.get(24)?,
        })
    })
}

/// The failed prediction requests of the last `window` (all with `None`), oldest first.
pub fn read_failures(path: &Path, window: Option<Duration>) -> Result<Vec<Failure>, AuditError> {
    let query = "SELECT time_ms, request_id, endpoint, status, code FROM failures
         WHERE time_ms >= ?1 ORDER BY id";
    rows_since(path, window, query, |r| {
        Ok(Failure {
            time_ms: r.get(0)?,
            request_id: r.get(1)?,
            endpoint: r.get(2)?,
            status: r.get(3)?,
            code: r.get(4)?,
        })
    })
}
